//! Names and icons of apps from their `.desktop` entries, for the UI (the desktop app and
//! browser mode). It scans the XDG application directories (and Flatpak's and snapd's
//! exports), parses each entry's `[Desktop Entry]` group ([`parse`]), and maps the app keys
//! the helper uses — an executable path, `flatpak:ID`, `snap:NAME`, `appimage:PATH` — to a
//! name and an icon file ([`Catalog`]).
//!
//! It runs in the user's session only, never in the helper: entries are the user's to write,
//! so they only ever label what the UI shows; they decide nothing. Bounded on every side:
//! entries ≤ [`MAX_DESKTOP_FILE`] bytes and at most [`MAX_ENTRIES`] of them, icons ≤
//! [`MAX_ICON`] bytes; a file it cannot read or parse is skipped. The only files it hands out
//! are the icons its scan found for a key ([`Catalog::icon`]), never a path a caller names.

pub mod parse;

mod icons;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsString;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::icons::IconIndex;
use crate::parse::{Locale, RawEntry, parse_entry};

/// The largest `.desktop` file read.
pub const MAX_DESKTOP_FILE: u64 = 64 * 1024;
/// The largest icon file served.
pub const MAX_ICON: u64 = 1024 * 1024;
/// `.desktop` files read in one scan, at most.
pub const MAX_ENTRIES: usize = 4096;
/// Subdirectories of an applications directory followed (desktop file ids like
/// `kde4-foo.desktop` come from `kde4/foo.desktop`).
const MAX_DEPTH: usize = 2;
/// How old a scan may get before [`Cache::catalog`] scans again.
pub const MAX_AGE: Duration = Duration::from_secs(180);

/// Programs that run other programs: an entry whose command is one of them names the
/// interpreter's executable, which every script shares, so it labels no app by path.
const LAUNCHERS: &[&str] = &[
    "sh", "bash", "dash", "zsh", "env", "sudo", "pkexec", "flatpak", "snap", "xdg-open", "java",
    "node", "mono", "gjs", "wine", "ruby", "electron",
];

/// Where to look.
#[derive(Debug, Clone, Default)]
pub struct Dirs {
    /// `applications` directories, the most important first (an entry id found earlier hides
    /// the same id later).
    pub applications: Vec<PathBuf>,
    /// Icon theme roots (`…/icons`), each searched for the user's themes and `hicolor`.
    pub icons: Vec<PathBuf>,
    /// The user's icon theme and those it inherits, best first (`hicolor` comes after them
    /// by itself).
    pub themes: Vec<String>,
    /// Flat icon directories (`/usr/share/pixmaps`), after the theme.
    pub pixmaps: Vec<PathBuf>,
    /// `PATH`, for commands given by name.
    pub path: Vec<PathBuf>,
    /// For `Name[xx]`.
    pub locale: Option<Locale>,
}

impl Dirs {
    /// From this process's environment (`HOME`, `XDG_DATA_HOME`, `XDG_DATA_DIRS`, `PATH`, the
    /// locale variables).
    pub fn from_env() -> Dirs {
        let mut dirs = Dirs::from_vars(|name| std::env::var_os(name));
        dirs.locale = Locale::from_env();
        dirs
    }

    /// From the variables `var` gives (tests pass their own); no locale.
    pub fn from_vars(var: impl Fn(&str) -> Option<OsString>) -> Dirs {
        let absolute = |p: PathBuf| p.is_absolute().then_some(p);
        let home = var("HOME").map(PathBuf::from).and_then(absolute);
        let data_home = var("XDG_DATA_HOME")
            .map(PathBuf::from)
            .and_then(absolute)
            .or_else(|| home.as_ref().map(|h| h.join(".local/share")));
        let mut data: Vec<PathBuf> = data_home.into_iter().collect();
        let data_dirs = var("XDG_DATA_DIRS").filter(|v| !v.is_empty());
        let data_dirs = data_dirs.unwrap_or_else(|| OsString::from("/usr/local/share:/usr/share"));
        data.extend(std::env::split_paths(&data_dirs).filter_map(absolute));
        if let Some(h) = &home {
            data.push(h.join(".local/share/flatpak/exports/share"));
        }
        data.push(PathBuf::from("/var/lib/flatpak/exports/share"));
        let data = dedup(data);
        let mut applications: Vec<PathBuf> = data.iter().map(|d| d.join("applications")).collect();
        applications.push(PathBuf::from("/var/lib/snapd/desktop/applications"));
        let mut icons: Vec<PathBuf> = data.iter().map(|d| d.join("icons")).collect();
        icons.extend(home.as_ref().map(|h| h.join(".icons")));
        icons.push(PathBuf::from("/var/lib/snapd/desktop/icons"));
        let mut pixmaps: Vec<PathBuf> = data.iter().map(|d| d.join("pixmaps")).collect();
        pixmaps.push(PathBuf::from("/var/lib/snapd/desktop/icons"));
        let path = var("PATH")
            .map(|p| std::env::split_paths(&p).filter_map(absolute).collect())
            .unwrap_or_else(|| vec![PathBuf::from("/usr/local/bin"), PathBuf::from("/usr/bin")]);
        let icons = dedup(icons);
        let config_home = var("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .and_then(absolute)
            .or_else(|| home.as_ref().map(|h| h.join(".config")));
        let themes = config_home
            .as_deref()
            .and_then(icons::chosen_theme)
            .map(|t| icons::theme_chain(&t, &icons))
            .unwrap_or_default();
        Dirs {
            applications: dedup(applications),
            icons,
            themes,
            pixmaps: dedup(pixmaps),
            path,
            locale: None,
        }
    }
}

fn dedup(dirs: Vec<PathBuf>) -> Vec<PathBuf> {
    let mut seen = HashSet::new();
    dirs.into_iter()
        .filter(|d| seen.insert(d.clone()))
        .collect()
}

/// What the UI shows for an app key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppLabel {
    /// The entry's name, in the user's language when it has one.
    pub name: String,
    /// Whether an icon can be fetched for the key ([`Catalog::icon`]).
    pub icon: bool,
}

/// An icon's bytes and their media type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Icon {
    /// The file, at most [`MAX_ICON`] bytes.
    pub bytes: Vec<u8>,
    /// `image/png` or `image/svg+xml`.
    pub content_type: &'static str,
}

#[derive(Debug, Clone)]
struct Found {
    name: String,
    icon: Option<PathBuf>,
    /// Not `NoDisplay`: shown in menus, so preferred over an entry that is not.
    displayed: bool,
}

/// One scan's result: app key → name and icon.
#[derive(Debug, Default)]
pub struct Catalog {
    apps: HashMap<String, Found>,
}

impl Catalog {
    /// Scans `dirs` (blocking file I/O: a few hundred small reads).
    pub fn scan(dirs: &Dirs) -> Catalog {
        let started = Instant::now();
        let index = IconIndex::build(&dirs.themes, &dirs.icons, &dirs.pixmaps);
        let mut files = Vec::new();
        for dir in &dirs.applications {
            collect(dir, "", 0, &mut files);
        }
        let mut ids = HashSet::new();
        let mut catalog = Catalog::default();
        for (id, path) in files {
            if !ids.insert(id) {
                continue; // an earlier directory's entry of the same id wins (or hides it)
            }
            let Some(text) = read_bounded(&path, MAX_DESKTOP_FILE) else {
                continue;
            };
            let Ok(text) = String::from_utf8(text) else {
                continue;
            };
            let Some(entry) = parse_entry(&text, dirs.locale.as_ref()) else {
                continue;
            };
            if entry.hidden || !entry.is_application() {
                continue;
            }
            let Some(name) = entry.name.clone() else {
                continue;
            };
            if let Some(t) = &entry.try_exec
                && resolve_command(t, &dirs.path).is_none()
            {
                continue; // not installed
            }
            let found = Found {
                name: name.chars().take(200).collect(),
                icon: entry.icon.as_deref().and_then(|i| index.resolve(i)),
                displayed: !entry.no_display,
            };
            for key in keys_of(&entry, &path, &dirs.path) {
                catalog.add(key, found.clone());
            }
        }
        tracing::debug!(
            apps = catalog.apps.len(),
            elapsed_ms = started.elapsed().as_millis(),
            "scanned the desktop entries"
        );
        catalog
    }

    fn add(&mut self, key: String, found: Found) {
        match self.apps.get(&key) {
            Some(have) if have.displayed || !found.displayed => {}
            _ => {
                self.apps.insert(key, found);
            }
        }
    }

    /// How many keys have a label.
    pub fn len(&self) -> usize {
        self.apps.len()
    }

    /// Whether no key has a label.
    pub fn is_empty(&self) -> bool {
        self.apps.is_empty()
    }

    /// The label of one key.
    pub fn label(&self, key: &str) -> Option<AppLabel> {
        self.apps.get(key).map(|f| AppLabel {
            name: f.name.clone(),
            icon: f.icon.is_some(),
        })
    }

    /// Every key's label (what the UI fetches once).
    pub fn labels(&self) -> BTreeMap<String, AppLabel> {
        self.apps
            .keys()
            .filter_map(|k| Some((k.clone(), self.label(k)?)))
            .collect()
    }

    /// The icon of a key the scan found one for; `None` for any other key, or when the file
    /// changed into something unservable since (too large, not PNG or SVG).
    pub fn icon(&self, key: &str) -> Option<Icon> {
        let path = self.apps.get(key)?.icon.as_ref()?;
        let bytes = read_bounded(path, MAX_ICON)?;
        let content_type = match path.extension().and_then(|e| e.to_str()) {
            Some("png") if bytes.starts_with(b"\x89PNG\r\n\x1a\n") => "image/png",
            Some("svg") if looks_like_svg(&bytes) => "image/svg+xml",
            _ => return None,
        };
        Some(Icon {
            bytes,
            content_type,
        })
    }
}

fn looks_like_svg(bytes: &[u8]) -> bool {
    let head = bytes.get(..bytes.len().min(4096)).unwrap_or_default();
    head.windows(4).any(|w| w == b"<svg")
}

/// The whole file if it is a regular file of at most `max` bytes.
fn read_bounded(path: &Path, max: u64) -> Option<Vec<u8>> {
    let file = std::fs::File::open(path).ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() || meta.len() > max {
        return None;
    }
    let mut bytes = Vec::new();
    file.take(max + 1).read_to_end(&mut bytes).ok()?;
    (bytes.len() as u64 <= max).then_some(bytes)
}

/// The `.desktop` files under `dir` with their desktop file ids (`sub/foo.desktop` →
/// `sub-foo.desktop`), in directory order, until [`MAX_ENTRIES`].
fn collect(dir: &Path, prefix: &str, depth: usize, out: &mut Vec<(String, PathBuf)>) {
    let Ok(list) = std::fs::read_dir(dir) else {
        return;
    };
    let mut list: Vec<_> = list.flatten().take(MAX_ENTRIES).collect();
    list.sort_by_key(std::fs::DirEntry::file_name);
    for item in list {
        if out.len() >= MAX_ENTRIES {
            return;
        }
        let Ok(name) = item.file_name().into_string() else {
            continue;
        };
        let Ok(kind) = item.file_type() else { continue };
        if kind.is_dir() {
            if depth < MAX_DEPTH {
                collect(&item.path(), &format!("{prefix}{name}-"), depth + 1, out);
            }
        } else if name.ends_with(".desktop") {
            out.push((format!("{prefix}{name}"), item.path()));
        }
    }
}

/// The program an `Exec` runs: its first argument, past `env` and its assignments.
fn program(exec: &[String]) -> Option<&str> {
    let mut args = exec.iter().map(String::as_str);
    let first = args.next()?;
    let base = first.rsplit('/').next().unwrap_or(first);
    if base != "env" {
        return Some(first);
    }
    args.find(|a| !a.contains('=') && !a.starts_with('-'))
}

/// A command as the entry names it, to a file: an absolute path as it is, a bare name through
/// `PATH` (an executable regular file); relative paths name nothing.
fn resolve_command(command: &str, path: &[PathBuf]) -> Option<PathBuf> {
    if command.starts_with('/') {
        let p = PathBuf::from(command);
        return p.is_file().then_some(p);
    }
    if command.contains('/') || command.is_empty() {
        return None;
    }
    path.iter()
        .map(|d| d.join(command))
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file() && executable(&m)))
}

#[cfg(unix)]
fn executable(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn executable(_meta: &std::fs::Metadata) -> bool {
    true
}

fn is_launcher(path: &Path) -> bool {
    let Some(base) = path.file_name().and_then(|n| n.to_str()) else {
        return true;
    };
    LAUNCHERS.contains(&base)
        || base.starts_with("python")
        || base.starts_with("perl")
        || base.starts_with("java")
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 255
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// The app keys an entry names, as the helper forms them (see `portcullis-attribution`'s
/// `AppIdentity::key`): `flatpak:ID` from `X-Flatpak`; `snap:NAME` from
/// `X-SnapInstanceName`, a `/snap/bin/NAME[.APP]` command or snapd's `NAME_APP.desktop`;
/// `appimage:PATH` for a command ending in `.AppImage`; else the executable's path as the
/// entry gives it and with symbolic links resolved (the helper sees the latter), for the
/// command and `TryExec`, unless it is a launcher such as a shell or `env`.
fn keys_of(entry: &RawEntry, file: &Path, path: &[PathBuf]) -> Vec<String> {
    if let Some(id) = entry.flatpak.as_deref().filter(|id| valid_id(id)) {
        return vec![format!("flatpak:{id}")];
    }
    if let Some(name) = entry.snap.as_deref().filter(|n| valid_id(n)) {
        return vec![format!("snap:{name}")];
    }
    let command = program(&entry.exec);
    if let Some(snap) = command
        .and_then(|c| c.strip_prefix("/snap/bin/"))
        .and_then(|s| s.split('.').next())
        .filter(|n| valid_id(n))
    {
        return vec![format!("snap:{snap}")];
    }
    if file
        .parent()
        .is_some_and(|d| d.ends_with("snapd/desktop/applications"))
        && let Some(name) = file
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.split_once('_'))
            .map(|(name, _)| name)
            .filter(|n| valid_id(n))
    {
        return vec![format!("snap:{name}")];
    }
    let mut keys = Vec::new();
    for cmd in [command, entry.try_exec.as_deref()].into_iter().flatten() {
        let Some(found) = resolve_command(cmd, path) else {
            continue;
        };
        let real = std::fs::canonicalize(&found).unwrap_or_else(|_| found.clone());
        let is_appimage = found
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("appimage"));
        for p in [found, real] {
            let Some(text) = p.to_str() else { continue };
            if is_appimage {
                keys.push(format!("appimage:{text}"));
            } else if !is_launcher(&p) {
                keys.push(text.to_owned());
            }
        }
    }
    keys.sort();
    keys.dedup();
    keys
}

/// The scan, kept for [`MAX_AGE`] and made again when older (or on [`Cache::rescan`]).
#[derive(Debug)]
pub struct Cache {
    dirs: Dirs,
    max_age: Duration,
    state: Mutex<Option<(Instant, Arc<Catalog>)>>,
}

impl Cache {
    /// A cache over `dirs`; nothing is scanned until asked.
    pub fn new(dirs: Dirs) -> Cache {
        Cache {
            dirs,
            max_age: MAX_AGE,
            state: Mutex::new(None),
        }
    }

    /// A cache over this process's XDG directories.
    pub fn from_env() -> Cache {
        Cache::new(Dirs::from_env())
    }

    /// The current scan, made now if there is none or it is older than [`MAX_AGE`].
    /// Blocking: call it off async threads.
    pub fn catalog(&self) -> Arc<Catalog> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match &*state {
            Some((at, catalog)) if at.elapsed() < self.max_age => Arc::clone(catalog),
            _ => {
                let catalog = Arc::new(Catalog::scan(&self.dirs));
                *state = Some((Instant::now(), Arc::clone(&catalog)));
                catalog
            }
        }
    }

    /// Scans again now.
    pub fn rescan(&self) -> Arc<Catalog> {
        let catalog = Arc::new(Catalog::scan(&self.dirs));
        *self.state.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((Instant::now(), Arc::clone(&catalog)));
        catalog
    }
}

#[cfg(test)]
mod tests;

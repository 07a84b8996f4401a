//! Icon lookup: a theme icon name to a file, in the user's icon theme and the themes it
//! inherits, then `hicolor`, in each icon directory (preferring 48, 64 and scalable sizes),
//! and then the pixmaps directories; or an absolute path as it is. Only PNG and SVG files no larger than [`crate::MAX_ICON`] count (browsers
//! show both; XPM they do not). The directories are listed once per scan into an index, so a
//! few hundred entries cost a few hundred map lookups, not thousands of `stat`s.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::MAX_ICON;

/// Files read from one `apps` directory at most.
const MAX_FILES_PER_DIR: usize = 20_000;
/// Size directories of a theme looked at, at most.
const MAX_SIZE_DIRS: usize = 64;
/// Themes in a chain (the user's, what it inherits, …), at most.
const MAX_THEMES: usize = 8;
/// Largest `index.theme` or settings file read.
const MAX_THEME_FILE: u64 = 256 * 1024;

/// Whether `name` can be a theme directory's name (no path, no hidden name).
fn theme_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && !name.contains(['/', '\\', '\0'])
}

fn read_small(path: &Path) -> Option<String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).ok()?;
    let mut text = String::new();
    file.take(MAX_THEME_FILE).read_to_string(&mut text).ok()?;
    Some(text)
}

/// The value of `key` in `[group]` of an INI-style file.
fn ini_value(text: &str, group: &str, key: &str) -> Option<String> {
    let mut in_group = false;
    for line in text.lines() {
        let line = line.trim();
        if let Some(g) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_group = g.trim() == group;
        } else if in_group
            && let Some((k, v)) = line.split_once('=')
            && k.trim() == key
        {
            return Some(v.trim().trim_matches(['"', '\'']).to_owned());
        }
    }
    None
}

/// The icon theme the user chose, from GTK's settings (4, then 3) or KDE's, under
/// `config_home` (`~/.config`).
pub(crate) fn chosen_theme(config_home: &Path) -> Option<String> {
    let sources = [
        ("gtk-4.0/settings.ini", "Settings", "gtk-icon-theme-name"),
        ("gtk-3.0/settings.ini", "Settings", "gtk-icon-theme-name"),
        ("kdeglobals", "Icons", "Theme"),
    ];
    sources.iter().find_map(|(file, group, key)| {
        let text = read_small(&config_home.join(file))?;
        ini_value(&text, group, key).filter(|t| theme_name_ok(t))
    })
}

/// `theme` and the themes it inherits (breadth first, per its `index.theme` in the first icon
/// directory that has one), without `hicolor`, at most [`MAX_THEMES`].
pub(crate) fn theme_chain(theme: &str, icon_dirs: &[PathBuf]) -> Vec<String> {
    let mut chain: Vec<String> = Vec::new();
    let mut queue = std::collections::VecDeque::from([theme.to_owned()]);
    while let Some(name) = queue.pop_front() {
        if chain.len() >= MAX_THEMES || name == "hicolor" || !theme_name_ok(&name) {
            continue;
        }
        if chain.contains(&name) {
            continue;
        }
        let index = icon_dirs
            .iter()
            .find_map(|d| read_small(&d.join(&name).join("index.theme")));
        chain.push(name);
        if let Some(parents) = index.and_then(|t| ini_value(&t, "Icon Theme", "Inherits")) {
            queue.extend(parents.split(',').map(|p| p.trim().to_owned()));
        }
    }
    chain
}

/// How much a size directory is preferred: lower is better.
fn size_rank(dir: &str) -> u32 {
    if dir == "scalable" {
        return 4; // after 48 and 64, before everything larger
    }
    let (base, scaled) = match dir.split_once('@') {
        Some((b, _)) => (b, true),
        None => (dir, false),
    };
    let size: u32 = base
        .split_once('x')
        .and_then(|(w, _)| w.parse().ok())
        .unwrap_or(0);
    let rank = match size {
        48 => 0,
        64 => 1,
        96 => 3,
        128 => 4,
        72 => 5,
        256 => 6,
        32 => 7,
        512 => 8,
        36 => 9,
        24 => 10,
        22 => 11,
        16 => 12,
        _ => 20,
    };
    rank * 2 + u32::from(scaled)
}

/// Whether a file name is one we serve: `.png` or `.svg`.
pub(crate) fn servable(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("png" | "svg")
    )
}

/// The index of one scan: icon name → best file.
#[derive(Debug, Default)]
pub(crate) struct IconIndex {
    best: HashMap<String, (u32, PathBuf)>,
}

impl IconIndex {
    /// Lists the `themes` (the user's chain, best first) and then `hicolor` under each of
    /// `icon_dirs` (in order of preference), and then each of `pixmap_dirs`. A name found in
    /// an earlier theme wins at any size over a later theme, as the icon theme specification
    /// has it; within a theme, the preferred size wins.
    pub(crate) fn build(
        themes: &[String],
        icon_dirs: &[PathBuf],
        pixmap_dirs: &[PathBuf],
    ) -> IconIndex {
        let mut index = IconIndex::default();
        let all: Vec<&str> = themes
            .iter()
            .map(String::as_str)
            .filter(|t| *t != "hicolor")
            .take(MAX_THEMES)
            .chain(["hicolor"])
            .collect();
        for (t, theme) in all.iter().enumerate() {
            let theme_rank = u32::try_from(t).unwrap_or(u32::MAX) * 100_000;
            for (order, base) in icon_dirs.iter().enumerate() {
                let root = base.join(theme);
                let order = u32::try_from(order.min(63)).unwrap_or(63);
                let Ok(entries) = std::fs::read_dir(&root) else {
                    continue;
                };
                for entry in entries.flatten().take(MAX_SIZE_DIRS) {
                    let name = entry.file_name();
                    let Some(name) = name.to_str() else { continue };
                    if name == "apps" {
                        // The other layout (`apps/48`, Breeze's): sizes under the context.
                        let Ok(sizes) = std::fs::read_dir(entry.path()) else {
                            continue;
                        };
                        for size in sizes.flatten().take(MAX_SIZE_DIRS) {
                            let size_name = size.file_name();
                            let Some(size_name) = size_name.to_str() else {
                                continue;
                            };
                            let size_dir = if size_name == "scalable" {
                                "scalable".to_owned()
                            } else {
                                format!("{size_name}x{size_name}")
                            };
                            let rank = theme_rank + size_rank(&size_dir) * 64 + order;
                            index.add_dir(&size.path(), rank);
                        }
                    } else {
                        // Earlier directories win over later ones of the same size.
                        let rank = theme_rank + size_rank(name) * 64 + order;
                        index.add_dir(&entry.path().join("apps"), rank);
                    }
                }
            }
        }
        for (order, dir) in pixmap_dirs.iter().enumerate() {
            let rank = u32::try_from(all.len()).unwrap_or(u32::MAX) * 100_000
                + u32::try_from(order.min(63)).unwrap_or(63);
            index.add_dir(dir, rank);
        }
        index
    }

    fn add_dir(&mut self, dir: &Path, rank: u32) {
        let Ok(files) = std::fs::read_dir(dir) else {
            return;
        };
        for file in files.flatten().take(MAX_FILES_PER_DIR) {
            let path = file.path();
            if !servable(&path) {
                continue;
            }
            let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            match self.best.get(stem) {
                Some((have, _)) if *have <= rank => {}
                _ => {
                    self.best.insert(stem.to_owned(), (rank, path));
                }
            }
        }
    }

    /// The file for an entry's `Icon` value: an absolute path as it is, else the theme or
    /// pixmap file of that name (a name given with an extension is looked up without it).
    /// `None` when nothing servable is found, or the file is too large or not a regular file.
    pub(crate) fn resolve(&self, icon: &str) -> Option<PathBuf> {
        let path = if icon.starts_with('/') {
            let p = PathBuf::from(icon);
            servable(&p).then_some(p)?
        } else if icon.contains('/') {
            return None;
        } else {
            let name = icon
                .strip_suffix(".png")
                .or_else(|| icon.strip_suffix(".svg"))
                .or_else(|| icon.strip_suffix(".xpm"))
                .unwrap_or(icon);
            self.best.get(name)?.1.clone()
        };
        let meta = std::fs::metadata(&path).ok()?;
        (meta.is_file() && meta.len() <= MAX_ICON).then_some(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_users_theme_is_read_from_gtk_or_kde_settings() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path();
        assert_eq!(chosen_theme(cfg), None);
        std::fs::create_dir_all(cfg.join("gtk-3.0")).unwrap();
        std::fs::write(cfg.join("kdeglobals"), "[Icons]\nTheme=breeze\n").unwrap();
        assert_eq!(chosen_theme(cfg).as_deref(), Some("breeze"));
        std::fs::write(
            cfg.join("gtk-3.0/settings.ini"),
            "[Settings]\ngtk-theme-name=Adwaita\ngtk-icon-theme-name = \"Papirus-Dark\"\n",
        )
        .unwrap();
        assert_eq!(chosen_theme(cfg).as_deref(), Some("Papirus-Dark"));
        // A name that is a path is no theme.
        std::fs::write(
            cfg.join("gtk-3.0/settings.ini"),
            "[Settings]\ngtk-icon-theme-name=../../etc\n",
        )
        .unwrap();
        assert_eq!(chosen_theme(cfg).as_deref(), Some("breeze"));
    }

    #[test]
    fn a_theme_chain_follows_inherits_once_each_and_ends() {
        let dir = tempfile::tempdir().unwrap();
        let icons = dir.path().to_path_buf();
        let index = |theme: &str, inherits: &str| {
            std::fs::create_dir_all(icons.join(theme)).unwrap();
            std::fs::write(
                icons.join(theme).join("index.theme"),
                format!("[Icon Theme]\nName={theme}\nInherits={inherits}\n"),
            )
            .unwrap();
        };
        index("Papirus-Dark", "Papirus,breeze-dark,hicolor");
        index("Papirus", "breeze,hicolor");
        index("breeze-dark", "breeze");
        index("breeze", "Papirus-Dark"); // a loop
        let chain = theme_chain("Papirus-Dark", &[icons]);
        assert_eq!(chain, ["Papirus-Dark", "Papirus", "breeze-dark", "breeze"]);
    }

    #[test]
    fn sizes_prefer_48_then_64_then_scalable() {
        let mut dirs = [
            "16x16", "scalable", "256x256", "64x64", "48x48", "48x48@2", "odd",
        ];
        dirs.sort_by_key(|d| size_rank(d));
        assert_eq!(dirs[..3], ["48x48", "48x48@2", "64x64"]);
        assert_eq!(dirs[3], "scalable");
        assert_eq!(dirs[6], "odd");
    }
}

//! Which app a process belongs to, from facts already read: its cgroup path (Flatpak and Snap
//! launch every app in a systemd scope named after it), its sandbox's `/.flatpak-info`, the
//! `APPIMAGE` variable the AppImage runtime sets, and its executable. Pure functions only; the
//! reading is done by the caller. This module must not grant an identity on a claim it can
//! check and that fails the check: a cgroup name is chosen by whoever starts the scope, so a
//! Flatpak claim needs the sandbox's own `/.flatpak-info` (which an unsandboxed process cannot
//! create as a non-root user), and a Snap claim needs the process's AppArmor label, which
//! snapd gives its apps (`snap.<name>.<app>`) and nobody else can choose — or, for a snap
//! without confinement, an executable inside that snap (`/snap/<name>/…`). The `APPIMAGE` variable is only
//! consulted for a process whose executable lies inside an AppImage (see [`inside_appimage`]):
//! every program an AppImage starts inherits the variable, and reading a process' environment
//! costs a copy from its memory on the verdict thread.

use std::os::unix::ffi::OsStrExt as _;
use std::path::{Component, Path, PathBuf};

use crate::AppIdentity;

/// What `/proc/PID/root/.flatpak-info` said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FlatpakInfo {
    /// The file exists and names this application.
    App(String),
    /// The file does not exist (or names no application): the process is not in a Flatpak
    /// app sandbox, whatever its cgroup says.
    Absent,
    /// The file could not be read (e.g. permission): the cgroup claim cannot be checked.
    Unreadable,
}

/// The facts [`identify`] decides from.
#[derive(Debug, Clone)]
pub(crate) struct IdentityFacts<'a> {
    /// The unified cgroup path.
    pub cgroup: &'a str,
    /// The sandbox's `/.flatpak-info`; only consulted if the cgroup claims Flatpak.
    pub flatpak_info: FlatpakInfo,
    /// `APPIMAGE` from the environment, already checked to name an existing file; only read
    /// when the executable is [`inside_appimage`].
    pub appimage: Option<PathBuf>,
    /// The process's security label (`/proc/PID/attr/current`, e.g.
    /// `snap.spotify.spotify (enforce)`); only read when the cgroup claims a snap.
    pub label: Option<String>,
    /// The executable path.
    pub exe: &'a std::path::Path,
}

/// Decides the app: Flatpak (cgroup claim, confirmed by the sandbox's `/.flatpak-info`), then
/// Snap (cgroup claim, confirmed by the AppArmor label or, unconfined, the executable's place),
/// then AppImage, else the executable. A claim that cannot be confirmed is ignored.
pub(crate) fn identify(facts: IdentityFacts<'_>) -> AppIdentity {
    if let Some(claimed) = flatpak_from_cgroup(facts.cgroup) {
        match facts.flatpak_info {
            FlatpakInfo::App(id) => return AppIdentity::Flatpak(id),
            FlatpakInfo::Unreadable | FlatpakInfo::Absent => {
                tracing::debug!(
                    claimed = %claimed,
                    "cgroup names a Flatpak app but its /.flatpak-info cannot confirm it; ignoring the claim"
                );
            }
        }
    }
    if let Some(name) = snap_from_cgroup(facts.cgroup) {
        if snap_confirmed(&name, facts.label.as_deref(), facts.exe) {
            return AppIdentity::Snap(name);
        }
        tracing::debug!(claimed = %name, "cgroup names a snap that its label and executable do not confirm; ignoring the claim");
    }
    if let Some(path) = facts.appimage {
        return AppIdentity::AppImage(path);
    }
    AppIdentity::Executable(facts.exe.to_path_buf())
}

/// Whether a process whose cgroup claims snap `name` is that snap: its AppArmor label is the
/// snap's (`snap.<name>.<app>`), or — unconfined or without AppArmor (classic snaps) — its
/// executable lies inside the snap (`/snap/<name>/` or `/var/lib/snapd/snap/<name>/`).
fn snap_confirmed(name: &str, label: Option<&str>, exe: &Path) -> bool {
    let label = label.map(|l| l.split(' ').next().unwrap_or_default().trim());
    match label {
        Some(l) if !l.is_empty() && l != "unconfined" => l
            .strip_prefix("snap.")
            .and_then(|rest| rest.strip_prefix(name))
            .is_some_and(|rest| rest.starts_with('.')),
        _ => [Path::new("/snap"), Path::new("/var/lib/snapd/snap")]
            .iter()
            .any(|root| exe.starts_with(root.join(name))),
    }
}

/// Whether `exe` lies inside an AppImage, so that its `APPIMAGE` variable is worth reading: the
/// AppImage runtime mounts the image on `$TMPDIR/.mount_<name><random>` (or, to extract and run,
/// unpacks it to `$TMPDIR/appimage_extracted_<hash>`) and starts the app from there. A program
/// outside the image that the app started (a browser it opened, `/usr/bin/xdg-open`) inherited
/// the variable but is not the AppImage: it is identified by its own executable.
pub(crate) fn inside_appimage(exe: &Path) -> bool {
    let Some(dir) = exe.parent() else {
        return false;
    };
    dir.components().any(|c| match c {
        Component::Normal(name) => {
            name.as_bytes().starts_with(b".mount_")
                || name.as_bytes().starts_with(b"appimage_extracted_")
        }
        _ => false,
    })
}

/// The Flatpak app id from a cgroup path whose unit is `app-flatpak-<APPID>-<N>.scope` (or the
/// newer `app-flatpak-<APPID>@<N>.service`); the innermost such unit wins.
pub(crate) fn flatpak_from_cgroup(cgroup: &str) -> Option<String> {
    cgroup.rsplit('/').find_map(|unit| {
        let rest = unit.strip_prefix("app-flatpak-")?;
        let id = if let Some(scope) = rest.strip_suffix(".scope") {
            // The random suffix after the last `-` never contains a dot; an app id's last
            // element never contains a `-`. Without a suffix, the whole is the id.
            match scope.rsplit_once('-') {
                Some((id, random)) if !random.contains('.') && !random.is_empty() => id,
                _ => scope,
            }
        } else {
            let service = rest.strip_suffix(".service")?;
            service.split_once('@').map_or(service, |(id, _)| id)
        };
        valid_flatpak_id(id).then(|| id.to_owned())
    })
}

/// Flatpak (D-Bus style) application ids: at least two dot-separated elements of
/// `[A-Za-z0-9_-]`, none empty, none starting with a digit, at most 255 bytes.
fn valid_flatpak_id(id: &str) -> bool {
    id.len() <= 255
        && id.split('.').count() >= 2
        && id.split('.').all(|element| {
            !element.is_empty()
                && !element.starts_with(|c: char| c.is_ascii_digit())
                && element
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        })
}

/// The snap name from a cgroup path whose unit is `snap.<name>.<app>-<uuid>.scope` (apps) or
/// `snap.<name>.<app>.service` (daemons); the innermost such unit wins.
pub(crate) fn snap_from_cgroup(cgroup: &str) -> Option<String> {
    cgroup.rsplit('/').find_map(|unit| {
        let rest = unit.strip_prefix("snap.")?;
        if !(rest.ends_with(".scope") || rest.ends_with(".service")) {
            return None;
        }
        let (name, app) = rest.split_once('.')?;
        // `<app>…` plus the unit type: there must be something between the two dots.
        if app.starts_with('.') || !app.contains('.') {
            return None;
        }
        valid_snap_name(name).then(|| name.to_owned())
    })
}

/// Snap names: lower-case letters, digits and `-`, 1 to 40 characters, with a letter, and
/// neither starting nor ending with `-` nor containing `--`.
fn valid_snap_name(name: &str) -> bool {
    (1..=40).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && name.chars().any(|c| c.is_ascii_lowercase())
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const USER: &str = "/user.slice/user-1000.slice/user@1000.service/app.slice";

    fn facts<'a>(cgroup: &'a str, info: FlatpakInfo) -> IdentityFacts<'a> {
        IdentityFacts {
            cgroup,
            flatpak_info: info,
            appimage: None,
            label: None,
            exe: Path::new("/usr/bin/true"),
        }
    }

    #[test]
    fn flatpak_scope_names() {
        let cg = format!("{USER}/app-flatpak-org.mozilla.firefox-12345.scope");
        assert_eq!(flatpak_from_cgroup(&cg).unwrap(), "org.mozilla.firefox");
        let dashed = format!("{USER}/app-flatpak-com.my-company.Tool_2-99.scope");
        assert_eq!(
            flatpak_from_cgroup(&dashed).unwrap(),
            "com.my-company.Tool_2"
        );
        let no_suffix = format!("{USER}/app-flatpak-org.gnome.Maps.scope");
        assert_eq!(flatpak_from_cgroup(&no_suffix).unwrap(), "org.gnome.Maps");
        let service = format!("{USER}/app-flatpak-org.gnome.Maps@a1b2.service");
        assert_eq!(flatpak_from_cgroup(&service).unwrap(), "org.gnome.Maps");
        let nested = format!("{USER}/app-flatpak-org.telegram.desktop-7.scope/sub");
        assert_eq!(
            flatpak_from_cgroup(&nested).unwrap(),
            "org.telegram.desktop"
        );
        for not in [
            format!("{USER}/app-gnome-org.gnome.Terminal-1234.scope"),
            format!("{USER}/app-flatpak-.scope"),
            format!("{USER}/app-flatpak-nodots-12.scope"),
            format!("{USER}/app-flatpak-org..x-1.scope"),
            format!("{USER}/app-flatpak-org.9x-1.scope"),
            format!("{USER}/app-flatpak-org.x y-1.scope"),
            format!("{USER}/app-flatpak-org.foo-1.slice"),
            "/".to_owned(),
            String::new(),
        ] {
            assert_eq!(flatpak_from_cgroup(&not), None, "{not}");
        }
    }

    #[test]
    fn snap_scope_names() {
        let cg = format!("{USER}/snap.firefox.firefox-2f2bd1e4-4b8a-4c8e-9c83-1f6a8f1e2d3c.scope");
        assert_eq!(snap_from_cgroup(&cg).unwrap(), "firefox");
        let daemon = "/system.slice/snap.lxd.daemon.service";
        assert_eq!(snap_from_cgroup(daemon).unwrap(), "lxd");
        let dashed = format!("{USER}/snap.my-tool.run-1.scope");
        assert_eq!(snap_from_cgroup(&dashed).unwrap(), "my-tool");
        for not in [
            "/system.slice/snapd.service".to_owned(),
            "/system.slice/snap-core22-1380.mount".to_owned(),
            format!("{USER}/snap.firefox.scope"),
            format!("{USER}/snap..x.scope"),
            format!("{USER}/snap.Firefox.firefox-1.scope"),
            format!("{USER}/snap.-x.a-1.scope"),
            format!("{USER}/snap.123.a-1.scope"),
            format!("{USER}/snap.firefox.firefox-1.slice"),
        ] {
            assert_eq!(snap_from_cgroup(&not), None, "{not}");
        }
    }

    #[test]
    fn identity_order_and_flatpak_check() {
        let flatpak = format!("{USER}/app-flatpak-org.mozilla.firefox-1.scope");
        assert_eq!(
            identify(facts(
                &flatpak,
                FlatpakInfo::App("org.mozilla.firefox".into())
            )),
            AppIdentity::Flatpak("org.mozilla.firefox".into())
        );
        // The sandbox's own file wins over the cgroup name.
        assert_eq!(
            identify(facts(&flatpak, FlatpakInfo::App("org.other.App".into()))),
            AppIdentity::Flatpak("org.other.App".into())
        );
        // A claim that cannot be checked is not believed.
        assert_eq!(
            identify(facts(&flatpak, FlatpakInfo::Unreadable)),
            AppIdentity::Executable("/usr/bin/true".into())
        );
        // A scope named like Flatpak's, without a sandbox: the executable decides.
        assert_eq!(
            identify(facts(&flatpak, FlatpakInfo::Absent)),
            AppIdentity::Executable("/usr/bin/true".into())
        );
        let snap = format!("{USER}/snap.spotify.spotify-1.scope");
        // A scope named like a snap's, from any program: not believed.
        assert_eq!(
            identify(facts(&snap, FlatpakInfo::Absent)),
            AppIdentity::Executable("/usr/bin/true".into())
        );
        // The snap's AppArmor label confirms it; another snap's label does not.
        let mut labelled = facts(&snap, FlatpakInfo::Absent);
        labelled.label = Some("snap.spotify.spotify (enforce)\n".into());
        assert_eq!(identify(labelled), AppIdentity::Snap("spotify".into()));
        let mut other = facts(&snap, FlatpakInfo::Absent);
        other.label = Some("snap.spotifyx.app (enforce)".into());
        assert_eq!(
            identify(other),
            AppIdentity::Executable("/usr/bin/true".into())
        );
        // Unconfined (classic): the executable must lie inside the snap.
        let inside = IdentityFacts {
            label: Some("unconfined".into()),
            exe: Path::new("/snap/spotify/81/usr/share/spotify/spotify"),
            ..facts(&snap, FlatpakInfo::Absent)
        };
        assert_eq!(identify(inside), AppIdentity::Snap("spotify".into()));
        let plain = format!("{USER}/app-gnome-org.gnome.Terminal-1.scope");
        assert_eq!(
            identify(facts(&plain, FlatpakInfo::Absent)),
            AppIdentity::Executable("/usr/bin/true".into())
        );
        let mut appimage = facts(&plain, FlatpakInfo::Absent);
        appimage.appimage = Some("/home/u/Foo.AppImage".into());
        assert_eq!(
            identify(appimage),
            AppIdentity::AppImage("/home/u/Foo.AppImage".into())
        );
        // A Flatpak app wins over an inherited APPIMAGE variable.
        let mut both = facts(&flatpak, FlatpakInfo::App("org.mozilla.firefox".into()));
        both.appimage = Some("/home/u/Foo.AppImage".into());
        assert_eq!(
            identify(both),
            AppIdentity::Flatpak("org.mozilla.firefox".into())
        );
    }

    #[test]
    fn appimage_executables() {
        for inside in [
            "/tmp/.mount_ToolXYZ/usr/bin/tool",
            "/tmp/.mount_Tool1a2b3c/AppRun",
            "/run/user/1000/.mount_Foo/usr/lib/foo/foo",
            "/tmp/appimage_extracted_0123abcd/usr/bin/tool",
        ] {
            assert!(inside_appimage(Path::new(inside)), "{inside}");
        }
        for outside in [
            "/usr/bin/xdg-open",
            "/home/u/Apps/Tool.AppImage",
            "/tmp/.mount_",
            "/home/u/.mount_notes",
            "/tmp/x.mount_Tool/bin/tool",
            "relative/.mount_x",
            "",
        ] {
            assert!(!inside_appimage(Path::new(outside)), "{outside}");
        }
    }

    proptest::proptest! {
        #[test]
        fn cgroup_parsers_never_panic(s in "\\PC{0,120}") {
            let _ = flatpak_from_cgroup(&s);
            let _ = snap_from_cgroup(&s);
        }
    }
}

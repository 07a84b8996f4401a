//! The scan over fixtures in a temporary directory: executable, Flatpak, snap and AppImage
//! entries, field codes, localized names, `NoDisplay`, `Hidden`, `TryExec`, icons, and
//! garbage. Unix only: the fixtures use permissions and symbolic links.

#![cfg(unix)]

use std::os::unix::fs::PermissionsExt as _;

use super::*;

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n0000";

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    fn write(&self, rel: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
        p
    }
    fn exe(&self, rel: &str) -> PathBuf {
        let p = self.write(rel, "#!/bin/sh\n");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }
    fn dirs(&self) -> Dirs {
        let data = [self.path("home/share"), self.path("usr/share")];
        Dirs {
            applications: vec![
                data[0].join("applications"),
                data[1].join("applications"),
                self.path("flatpak/exports/share/applications"),
                self.path("snapd/desktop/applications"),
            ],
            icons: vec![
                data[0].join("icons"),
                data[1].join("icons"),
                self.path("flatpak/exports/share/icons"),
            ],
            themes: Vec::new(),
            pixmaps: vec![data[1].join("pixmaps")],
            path: vec![self.path("bin")],
            locale: Locale::parse("de_DE.UTF-8"),
        }
    }
    fn key(&self, rel: &str) -> String {
        self.path(rel).to_str().unwrap().to_owned()
    }
}

#[test]
fn maps_every_kind_of_key_to_its_entry() {
    let f = Fixture::new();
    f.exe("bin/editor");
    f.exe("opt/real/viewer");
    std::os::unix::fs::symlink(f.path("opt/real/viewer"), f.path("bin/viewer")).unwrap();
    f.exe("bin/python3");
    f.exe("apps/Tool.AppImage");
    f.write("usr/share/icons/hicolor/16x16/apps/editor.png", PNG);
    f.write("usr/share/icons/hicolor/48x48/apps/editor.png", PNG);
    f.write("usr/share/pixmaps/viewer.png", PNG);
    f.write(
        "flatpak/exports/share/icons/hicolor/scalable/apps/org.example.Chat.svg",
        "<svg xmlns='http://www.w3.org/2000/svg'/>",
    );
    f.write(
        "usr/share/applications/editor.desktop",
        "[Desktop Entry]\nType=Application\nName=Editor\nName[de]=Bearbeiter\nIcon=editor\nExec=editor %F\n",
    );
    f.write(
        "usr/share/applications/viewer.desktop",
        "[Desktop Entry]\nType=Application\nName=Viewer\nIcon=viewer.png\nExec=\"viewer\" --new %u\n",
    );
    f.write(
        "usr/share/applications/script.desktop",
        "[Desktop Entry]\nType=Application\nName=Script\nExec=python3 /opt/script.py\n",
    );
    let appimage = f.key("apps/Tool.AppImage");
    f.write(
        "usr/share/applications/appimagekit-tool.desktop",
        format!("[Desktop Entry]\nType=Application\nName=Tool\nExec={appimage} %U\n"),
    );
    f.write(
        "flatpak/exports/share/applications/org.example.Chat.desktop",
        "[Desktop Entry]\nType=Application\nName=Chat\nIcon=org.example.Chat\n\
         Exec=/usr/bin/flatpak run --branch=stable --command=chat org.example.Chat\n\
         X-Flatpak=org.example.Chat\n",
    );
    f.write(
        "snapd/desktop/applications/spotify_spotify.desktop",
        "[Desktop Entry]\nType=Application\nName=Spotify\nExec=env BAMF_DESKTOP_FILE_HINT=/x.desktop /snap/bin/spotify %U\n",
    );
    f.write(
        "snapd/desktop/applications/firefox_firefox.desktop",
        "[Desktop Entry]\nType=Application\nName=Firefox Web Browser\nExec=firefox %u\nX-SnapInstanceName=firefox_beta\n",
    );
    let c = Catalog::scan(&f.dirs());

    let editor = c.label(&f.key("bin/editor")).unwrap();
    assert_eq!(editor.name, "Bearbeiter", "localized by the locale");
    assert!(editor.icon);
    let icon = c.icon(&f.key("bin/editor")).unwrap();
    assert_eq!(
        (icon.content_type, icon.bytes.as_slice()),
        ("image/png", PNG)
    );
    // Both the command's path and the file behind its link (what the helper sees).
    assert_eq!(c.label(&f.key("bin/viewer")).unwrap().name, "Viewer");
    let real = std::fs::canonicalize(f.path("opt/real/viewer")).unwrap();
    assert_eq!(c.label(real.to_str().unwrap()).unwrap().name, "Viewer");
    assert!(
        c.label(&f.key("bin/viewer")).unwrap().icon,
        "pixmaps, name with extension"
    );
    assert!(
        c.label(&f.key("bin/python3")).is_none(),
        "an interpreter labels no app"
    );
    assert_eq!(
        c.label(&format!("appimage:{appimage}")).unwrap().name,
        "Tool"
    );
    let chat = c.label("flatpak:org.example.Chat").unwrap();
    assert!(chat.icon && chat.name == "Chat");
    assert_eq!(
        c.icon("flatpak:org.example.Chat").unwrap().content_type,
        "image/svg+xml"
    );
    assert!(c.label("/usr/bin/flatpak").is_none());
    assert_eq!(c.label("snap:spotify").unwrap().name, "Spotify");
    assert_eq!(
        c.label("snap:firefox_beta").unwrap().name,
        "Firefox Web Browser"
    );
    assert!(!c.label("snap:spotify").unwrap().icon);
    assert_eq!(c.labels().len(), c.len());
}

#[test]
fn earlier_directories_nodisplay_hidden_and_tryexec() {
    let f = Fixture::new();
    f.exe("bin/mail");
    f.exe("bin/notes");
    // The user's own entry of the same id wins over the system's.
    f.write(
        "home/share/applications/mail.desktop",
        "[Desktop Entry]\nName=My Mail\nExec=mail\n",
    );
    f.write(
        "usr/share/applications/mail.desktop",
        "[Desktop Entry]\nName=Mail\nExec=mail\n",
    );
    // A displayed entry wins over a NoDisplay one for the same program.
    f.write(
        "usr/share/applications/a-notes-helper.desktop",
        "[Desktop Entry]\nName=Notes helper\nExec=notes --helper\nNoDisplay=true\n",
    );
    f.write(
        "usr/share/applications/notes.desktop",
        "[Desktop Entry]\nName=Notes\nExec=notes\n",
    );
    // Hidden in the user's directory deletes the system's entry.
    f.exe("bin/gone");
    f.write(
        "home/share/applications/gone.desktop",
        "[Desktop Entry]\nHidden=true\n",
    );
    f.write(
        "usr/share/applications/gone.desktop",
        "[Desktop Entry]\nName=Gone\nExec=gone\n",
    );
    // TryExec names a program that is not installed: not an entry.
    f.write(
        "usr/share/applications/absent.desktop",
        "[Desktop Entry]\nName=Absent\nExec=notes\nTryExec=no-such-program\n",
    );
    // Subdirectories give ids with dashes.
    f.exe("bin/kdeapp");
    f.write(
        "usr/share/applications/kde4/app.desktop",
        "[Desktop Entry]\nName=KDE app\nExec=kdeapp\n",
    );
    let c = Catalog::scan(&f.dirs());
    assert_eq!(c.label(&f.key("bin/mail")).unwrap().name, "My Mail");
    assert_eq!(c.label(&f.key("bin/notes")).unwrap().name, "Notes");
    assert!(c.label(&f.key("bin/gone")).is_none());
    assert_eq!(c.label(&f.key("bin/kdeapp")).unwrap().name, "KDE app");
    assert!(!c.label(&f.key("bin/mail")).unwrap().icon);
}

#[test]
fn garbage_is_skipped_and_icons_are_bounded() {
    let f = Fixture::new();
    f.exe("bin/ok");
    f.exe("bin/big");
    f.write(
        "usr/share/applications/binary.desktop",
        [0u8, 159, 146, 150, 255, 0],
    );
    f.write(
        "usr/share/applications/nogroup.desktop",
        "Name=x\nExec=ok\n",
    );
    f.write(
        "usr/share/applications/huge.desktop",
        format!(
            "[Desktop Entry]\nName=Huge\nExec=big\n{}",
            "#".repeat(70 * 1024)
        ),
    );
    f.write(
        "usr/share/applications/noname.desktop",
        "[Desktop Entry]\nExec=ok\n",
    );
    f.write(
        "usr/share/applications/link.desktop",
        "[Desktop Entry]\nType=Link\nName=L\nExec=ok\n",
    );
    std::fs::create_dir_all(f.path("usr/share/applications/dir.desktop")).unwrap();
    f.write(
        "usr/share/applications/readme.txt",
        "[Desktop Entry]\nName=Txt\nExec=ok\n",
    );
    // Icons: one too large, one that is not a PNG, one relative path.
    f.write(
        "usr/share/icons/hicolor/48x48/apps/big.png",
        vec![0u8; 1024 * 1024 + 1],
    );
    f.write("usr/share/icons/hicolor/48x48/apps/fake.png", "<script>");
    f.exe("bin/fake");
    f.exe("bin/rel");
    f.write(
        "usr/share/applications/ok.desktop",
        "[Desktop Entry]\nName=Ok\nExec=ok\nIcon=big\n",
    );
    f.write(
        "usr/share/applications/fake.desktop",
        "[Desktop Entry]\nName=Fake\nExec=fake\nIcon=fake\n",
    );
    f.write(
        "usr/share/applications/rel.desktop",
        "[Desktop Entry]\nName=Rel\nExec=rel\nIcon=../../../etc/passwd\n",
    );
    let c = Catalog::scan(&f.dirs());
    assert_eq!(c.len(), 3, "{:?}", c.labels());
    assert!(!c.label(&f.key("bin/ok")).unwrap().icon, "too large");
    assert!(c.label(&f.key("bin/fake")).unwrap().icon);
    assert!(c.icon(&f.key("bin/fake")).is_none(), "not a PNG after all");
    assert!(!c.label(&f.key("bin/rel")).unwrap().icon);
    assert!(c.label(&f.key("bin/big")).is_none());
    // Only keys the scan found have icons: never a path.
    assert!(c.icon("/etc/passwd").is_none());
    assert!(
        c.icon(&f.key("usr/share/icons/hicolor/48x48/apps/fake.png"))
            .is_none()
    );
}

#[test]
fn dirs_follow_the_xdg_variables() {
    let vars = |name: &str| -> Option<OsString> {
        match name {
            "HOME" => Some("/home/u".into()),
            "XDG_DATA_DIRS" => Some("/opt/share:relative:/usr/share".into()),
            "PATH" => Some("/usr/bin:/bin".into()),
            _ => None,
        }
    };
    let d = Dirs::from_vars(vars);
    let apps: Vec<_> = d.applications.iter().map(|p| p.to_str().unwrap()).collect();
    assert_eq!(
        apps,
        [
            "/home/u/.local/share/applications",
            "/opt/share/applications",
            "/usr/share/applications",
            "/home/u/.local/share/flatpak/exports/share/applications",
            "/var/lib/flatpak/exports/share/applications",
            "/var/lib/snapd/desktop/applications",
        ]
    );
    assert!(d.pixmaps.contains(&PathBuf::from("/usr/share/pixmaps")));
    assert_eq!(d.path, [PathBuf::from("/usr/bin"), PathBuf::from("/bin")]);
    let defaults = Dirs::from_vars(|n| (n == "XDG_DATA_HOME").then(|| "/x/data".into()));
    let apps: Vec<_> = defaults
        .applications
        .iter()
        .map(|p| p.to_str().unwrap())
        .collect();
    assert_eq!(
        apps[..3],
        [
            "/x/data/applications",
            "/usr/local/share/applications",
            "/usr/share/applications"
        ]
    );
}

#[test]
fn the_cache_keeps_a_scan_until_asked_again() {
    let f = Fixture::new();
    f.exe("bin/a");
    let cache = Cache::new(f.dirs());
    assert!(cache.catalog().is_empty());
    f.write(
        "usr/share/applications/a.desktop",
        "[Desktop Entry]\nName=A\nExec=a\n",
    );
    assert!(cache.catalog().is_empty(), "cached");
    assert_eq!(cache.rescan().len(), 1);
    assert_eq!(cache.catalog().len(), 1);
}

#[test]
fn the_users_icon_theme_comes_before_hicolor_in_either_layout() {
    let f = Fixture::new();
    f.exe("bin/editor");
    f.exe("bin/viewer");
    f.exe("bin/mail");
    // The user's theme has the editor only at 16 px: a theme's icon wins over hicolor's at
    // any size. Its parent uses the `apps/48` layout.
    f.write(
        "usr/share/icons/MyTheme/16x16/apps/editor.png",
        b"\x89PNG\r\n\x1a\nTHEME",
    );
    f.write(
        "usr/share/icons/hicolor/48x48/apps/editor.png",
        b"\x89PNG\r\n\x1a\nHICOLOR",
    );
    f.write(
        "usr/share/icons/Parent/apps/48/viewer.png",
        b"\x89PNG\r\n\x1a\nPARENT",
    );
    f.write(
        "usr/share/icons/hicolor/48x48/apps/viewer.png",
        b"\x89PNG\r\n\x1a\nHICOLOR",
    );
    f.write(
        "usr/share/icons/hicolor/48x48/apps/mail.png",
        b"\x89PNG\r\n\x1a\nHICOLOR",
    );
    f.write(
        "usr/share/icons/MyTheme/index.theme",
        "[Icon Theme]\nName=Mine\nInherits=Parent,hicolor\n",
    );
    for (name, id) in [("Editor", "editor"), ("Viewer", "viewer"), ("Mail", "mail")] {
        f.write(
            &format!("usr/share/applications/{id}.desktop"),
            format!("[Desktop Entry]\nType=Application\nName={name}\nIcon={id}\nExec={id}\n"),
        );
    }
    let mut dirs = f.dirs();
    dirs.themes = icons::theme_chain("MyTheme", &dirs.icons);
    assert_eq!(dirs.themes, ["MyTheme", "Parent"]);
    let c = Catalog::scan(&dirs);
    let bytes = |exe: &str| c.icon(&f.key(exe)).unwrap().bytes;
    assert!(bytes("bin/editor").ends_with(b"THEME"));
    assert!(bytes("bin/viewer").ends_with(b"PARENT"));
    assert!(bytes("bin/mail").ends_with(b"HICOLOR"));
    // Without a chosen theme, hicolor as before.
    let c = Catalog::scan(&f.dirs());
    assert!(
        c.icon(&f.key("bin/editor"))
            .unwrap()
            .bytes
            .ends_with(b"HICOLOR")
    );
}

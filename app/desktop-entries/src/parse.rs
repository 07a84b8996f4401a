//! The `.desktop` file format, as far as naming an app needs it: the `[Desktop Entry]` group's
//! `Type`, `Name` (localized by the user's locale), `Icon`, `Exec`, `TryExec`, `NoDisplay`,
//! `Hidden`, `X-Flatpak` and `X-SnapInstanceName`. Pure: text in, fields out. Anything it does
//! not understand is ignored; it never panics on any input (a proptest feeds it noise).

/// The longest value kept (a name or path longer than this is cut or dropped).
const MAX_VALUE: usize = 1024;

/// The user's locale, for choosing among `Name[xx]` keys: `lang_COUNTRY.ENCODING@MODIFIER`
/// without the encoding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Locale {
    lang: String,
    country: Option<String>,
    modifier: Option<String>,
}

impl Locale {
    /// Parses a POSIX locale name (`de_DE.UTF-8@euro`); `C`, `POSIX` and empty give `None`.
    pub fn parse(value: &str) -> Option<Locale> {
        let value = value.trim();
        if value.is_empty() || value == "C" || value == "POSIX" || value.starts_with("C.") {
            return None;
        }
        let (rest, modifier) = match value.split_once('@') {
            Some((r, m)) => (r, Some(m.to_owned())),
            None => (value, None),
        };
        let rest = rest.split('.').next().unwrap_or_default();
        let (lang, country) = match rest.split_once('_') {
            Some((l, c)) => (l, Some(c.to_owned())),
            None => (rest, None),
        };
        if lang.is_empty() {
            return None;
        }
        Some(Locale {
            lang: lang.to_owned(),
            country,
            modifier,
        })
    }

    /// From `LC_ALL`, `LC_MESSAGES`, `LANG`, the first one set and not empty.
    pub fn from_env() -> Option<Locale> {
        ["LC_ALL", "LC_MESSAGES", "LANG"]
            .iter()
            .filter_map(|v| std::env::var(v).ok())
            .find(|v| !v.is_empty())
            .and_then(|v| Locale::parse(&v))
    }

    /// How well the `xx` of a `Name[xx]` key matches: lower is better; `None` when it does not
    /// match at all. Order of the spec: `lang_COUNTRY@MODIFIER`, `lang_COUNTRY`,
    /// `lang@MODIFIER`, `lang`.
    fn rank(&self, tag: &str) -> Option<u8> {
        let (rest, modifier) = match tag.split_once('@') {
            Some((r, m)) => (r, Some(m)),
            None => (tag, None),
        };
        let (lang, country) = match rest.split_once('_') {
            Some((l, c)) => (l, Some(c)),
            None => (rest, None),
        };
        if lang != self.lang {
            return None;
        }
        let country_ok = country.is_none() || country == self.country.as_deref();
        let modifier_ok = modifier.is_none() || modifier == self.modifier.as_deref();
        if !country_ok || !modifier_ok {
            return None;
        }
        Some(match (country.is_some(), modifier.is_some()) {
            (true, true) => 0,
            (true, false) => 1,
            (false, true) => 2,
            (false, false) => 3,
        })
    }
}

/// The fields of one entry's `[Desktop Entry]` group that matter here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawEntry {
    /// `Type` (only `Application` entries name apps).
    pub kind: Option<String>,
    /// `Name`, in the best matching locale.
    pub name: Option<String>,
    /// `Icon`: a theme icon name or an absolute path.
    pub icon: Option<String>,
    /// `Exec`, split into arguments with field codes removed.
    pub exec: Vec<String>,
    /// `TryExec`: the entry applies only when this program exists.
    pub try_exec: Option<String>,
    /// `NoDisplay=true`: not in menus (still the app's entry).
    pub no_display: bool,
    /// `Hidden=true`: deleted; it hides entries of the same id in later directories.
    pub hidden: bool,
    /// `X-Flatpak`: the Flatpak application id.
    pub flatpak: Option<String>,
    /// `X-SnapInstanceName`: the snap's (instance) name.
    pub snap: Option<String>,
}

impl RawEntry {
    /// Whether this is an application entry (no `Type` counts as one; some old files omit it).
    pub fn is_application(&self) -> bool {
        self.kind.as_deref().is_none_or(|k| k == "Application")
    }
}

/// Parses the text of a `.desktop` file. `None` when it has no `[Desktop Entry]` group.
pub fn parse_entry(text: &str, locale: Option<&Locale>) -> Option<RawEntry> {
    let mut entry = RawEntry::default();
    let mut in_group = false;
    let mut seen_group = false;
    // Rank of the `Name` kept so far (4: unlocalized).
    let mut name_rank = u8::MAX;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with('[') {
            if in_group {
                break; // the group is over; other groups (actions) are not ours
            }
            in_group = line == "[Desktop Entry]";
            seen_group |= in_group;
            continue;
        }
        if !in_group {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        let value = value.trim();
        if value.len() > MAX_VALUE {
            continue;
        }
        match key {
            "Type" => entry.kind = Some(value.to_owned()),
            "Name" => {
                if name_rank > 4 {
                    entry.name = Some(unescape(value));
                    name_rank = 4;
                }
            }
            "Icon" => entry.icon = Some(unescape(value)),
            "Exec" => entry.exec = exec_args(&unescape(value)),
            "TryExec" => entry.try_exec = Some(unescape(value)),
            "NoDisplay" => entry.no_display = value == "true",
            "Hidden" => entry.hidden = value == "true",
            "X-Flatpak" => entry.flatpak = Some(value.to_owned()),
            "X-SnapInstanceName" => entry.snap = Some(value.to_owned()),
            _ => {
                if let Some(tag) = key.strip_prefix("Name[").and_then(|t| t.strip_suffix(']'))
                    && let Some(rank) = locale.and_then(|l| l.rank(tag))
                    && rank < name_rank
                {
                    entry.name = Some(unescape(value));
                    name_rank = rank;
                }
            }
        }
    }
    if !seen_group {
        return None;
    }
    entry.name = entry
        .name
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty());
    entry.icon = entry.icon.filter(|i| !i.is_empty());
    entry.try_exec = entry.try_exec.filter(|t| !t.is_empty());
    Some(entry)
}

/// The string escapes of the format: `\s`, `\n`, `\t`, `\r`, `\\`.
fn unescape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('s') => out.push(' '),
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('\\') => out.push('\\'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// Splits an `Exec` value into arguments: double quotes group (inside them `\"`, `` \` ``,
/// `\$` and `\\` escape), field codes (`%f`, `%U`, …) are dropped and `%%` is a `%`.
pub fn exec_args(value: &str) -> Vec<String> {
    let mut args = Vec::new();
    let mut current = String::new();
    let mut has_token = false;
    let mut quoted = false;
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                quoted = !quoted;
                has_token = true;
            }
            '\\' if quoted => {
                if let Some(next) = chars.next() {
                    current.push(next);
                }
            }
            ' ' | '\t' if !quoted => {
                if has_token {
                    args.push(std::mem::take(&mut current));
                    has_token = false;
                }
            }
            // A field code (`%f`, …) leaves nothing; `%%` is a `%`.
            '%' => {
                if chars.next() == Some('%') {
                    current.push('%');
                    has_token = true;
                }
            }
            _ => {
                current.push(c);
                has_token = true;
            }
        }
    }
    if has_token {
        args.push(current);
    }
    args.retain(|a| !a.is_empty());
    args
}

#[cfg(test)]
mod tests {

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn reads_the_desktop_entry_group_only() {
        let text = "# comment\n[Desktop Entry]\nType=Application\nName=Text Editor\n\
                    Icon=org.gnome.TextEditor\nExec=gnome-text-editor %U\nNoDisplay=false\n\
                    [Desktop Action new-window]\nName=New Window\nExec=other\n";
        let e = parse_entry(text, None).unwrap();
        assert_eq!(e.name.as_deref(), Some("Text Editor"));
        assert_eq!(e.icon.as_deref(), Some("org.gnome.TextEditor"));
        assert_eq!(e.exec, ["gnome-text-editor"]);
        assert!(e.is_application() && !e.no_display && !e.hidden);
        assert_eq!(parse_entry("[Other]\nName=x\n", None), None);
        assert_eq!(parse_entry("", None), None);
    }

    #[test]
    fn names_follow_the_locale() {
        let text = "[Desktop Entry]\nName=Files\nName[de]=Dateien\nName[de_AT]=Dateien AT\n\
                    Name[fr]=Fichiers\nName[de@euro]=Dateien Euro\n";
        let name = |l: &str| parse_entry(text, Locale::parse(l).as_ref()).unwrap().name;
        assert_eq!(name("de_DE.UTF-8").as_deref(), Some("Dateien"));
        assert_eq!(name("de_AT.UTF-8").as_deref(), Some("Dateien AT"));
        assert_eq!(name("de_DE.UTF-8@euro").as_deref(), Some("Dateien Euro"));
        assert_eq!(name("fr_FR").as_deref(), Some("Fichiers"));
        assert_eq!(name("ja_JP.UTF-8").as_deref(), Some("Files"));
        assert_eq!(name("C.UTF-8").as_deref(), Some("Files"));
        // A localized name before the plain one still wins.
        let early = "[Desktop Entry]\nName[de]=Dateien\nName=Files\n";
        let de = Locale::parse("de_DE").unwrap();
        assert_eq!(
            parse_entry(early, Some(&de)).unwrap().name.as_deref(),
            Some("Dateien")
        );
    }

    #[test]
    fn exec_drops_field_codes_and_honours_quotes() {
        assert_eq!(exec_args("foo %U"), ["foo"]);
        assert_eq!(exec_args("%k foo"), ["foo"]);
        assert_eq!(
            exec_args("\"/opt/My App/run\" --x %f"),
            ["/opt/My App/run", "--x"]
        );
        assert_eq!(exec_args("echo 100%%"), ["echo", "100%"]);
        assert_eq!(exec_args("a\\ b"), ["a\\", "b"]);
        assert_eq!(exec_args("\"a\\\"b\""), ["a\"b"]);
        assert_eq!(exec_args("  "), Vec::<String>::new());
        let e = parse_entry("[Desktop Entry]\nExec=/opt/x\\sy/bin %u\n", None).unwrap();
        assert_eq!(e.exec, ["/opt/x", "y/bin"]);
    }

    #[test]
    fn flags_and_ids() {
        let e = parse_entry(
            "[Desktop Entry]\nType=Application\nNoDisplay=true\nHidden=true\n\
             X-Flatpak=org.example.App\nX-SnapInstanceName=spotify\nTryExec=spotify\n",
            None,
        )
        .unwrap();
        assert!(e.no_display && e.hidden);
        assert_eq!(e.flatpak.as_deref(), Some("org.example.App"));
        assert_eq!(e.snap.as_deref(), Some("spotify"));
        assert_eq!(e.try_exec.as_deref(), Some("spotify"));
        let link = parse_entry("[Desktop Entry]\nType=Link\nName=x\n", None).unwrap();
        assert!(!link.is_application());
    }

    proptest! {
        #[test]
        fn never_panics_on_noise(text in "\\PC{0,400}") {
            let de = Locale::parse("de_DE.UTF-8@euro");
            let _ = parse_entry(&text, de.as_ref());
            let _ = exec_args(&text);
            let _ = Locale::parse(&text);
        }

        #[test]
        fn never_panics_on_entry_like_noise(
            lines in proptest::collection::vec(
                ("(Name|Name\\[[a-z_@]{0,6}\\]|Exec|Icon|TryExec|Type|NoDisplay|X-Flatpak|\\[Desktop Entry\\]|[A-Za-z\\[\\]]{0,5})",
                 "[ -~\\\\%\"]{0,30}"),
                0..20,
            )
        ) {
            let text: String = lines.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
            let text = format!("[Desktop Entry]\n{text}");
            let locale = Locale::parse("de_DE");
            let e = parse_entry(&text, locale.as_ref());
            prop_assert!(e.is_some());
        }
    }
}

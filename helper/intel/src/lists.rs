//! Filter list files: parsing the formats people publish (adblock-style domain rules, hosts
//! files, plain domain lists, IP/CIDR lists) into normalised entries, with what was skipped
//! and why, and every bad line with its number.
//!
//! Parsing is pure (bytes in, [`Parsed`] out) and never panics on any input: a line that is not
//! UTF-8, or names something that is not a valid domain, is a [`LineError`] and the rest of the
//! file is still read. Lines that are valid in their format but mean something a DNS and
//! connection firewall cannot enforce (cosmetic filters, URL paths, regexes, rules limited to a
//! resource type) are skipped and counted per [`SkipReason`]. This module reads no files and
//! keeps no state; the compact set that answers lookups is [`crate::matcher`].
//!
//! # Decisions
//!
//! - **Domains** are lowercased and lose one trailing dot. Allowed are ASCII letters, digits,
//!   `-` and `_` (underscores occur in real hosts lists and DNS carries them); labels are 1–63
//!   bytes, the name at most 253. Internationalised names must be given as punycode (`xn--…`):
//!   non-ASCII text is a bad line, not converted, because what reaches the resolver is the
//!   punycode form and a converter would be a large dependency for a rare case.
//! - A name that is an IP address (`0.0.0.0` in a hosts file, `||1.2.3.4^`) is skipped as
//!   [`SkipReason::IpAddress`]: it is not a domain, and IP lists have their own format.
//! - **Adblock**: `||name^` (optionally `^|`) blocks `name` and its subdomains;
//!   `@@||name^` is an exception. Options after `$` are accepted only if they do not narrow the
//!   rule to something a DNS firewall cannot see: `important`, `third-party`/`3p`, `document`/
//!   `doc`, `all`, `~first-party`. `$third-party` is accepted on purpose: a
//!   DNS firewall cannot tell who loads a name, and lists mark with it names that are only ever
//!   loaded as third parties (trackers, ad servers), so blocking the name is what the list
//!   author wants. Any other option (resource types, `domain=`, `denyallow`, `dnsrewrite`,
//!   `badfilter`, …) skips the rule as [`SkipReason::Options`]. `important` gets no extra
//!   precedence here: exceptions and blocks are ordered by the matcher's specificity rule.
//!   `||name` without `^` also matches `name.evil` in a browser, so it is skipped as
//!   [`SkipReason::NotDomain`], as are URL, path, port and bare-text rules. `||*.name^` and
//!   other wildcards are [`SkipReason::Wildcard`].
//! - **Hosts**: the first field must be an address; names mapped to a sink address
//!   (unspecified `0.0.0.0`/`::` or loopback) are blocks. Names mapped to any other address are
//!   redirects, not blocks, and are skipped ([`SkipReason::Redirect`]). `localhost`,
//!   `localhost.localdomain`, `local`, `broadcasthost` and `ip6-*` are skipped
//!   ([`SkipReason::LocalName`]). A bad name is reported, and the good names of the same line
//!   are kept.
//! - **IP lists**: one address or CIDR per line, `#` or `;` comments (also trailing). A single
//!   address is a /32 or /128; a CIDR with host bits set is truncated to its network. Each entry
//!   also keeps how it was written ([`IpEntry`]), so an explanation shows the line's own text.
//! - **Mixed lists** ([`ListFormat::Mixed`]; some threat feeds publish names and addresses in
//!   one file): one entry per line, `#` or `;` comments; a line that is an address or CIDR is
//!   an IP entry, any other line a domain as in a plain list. The format is never guessed
//!   ([`detect`] does not answer it): in a domain list, a stray address stays skipped as
//!   [`SkipReason::IpAddress`] unless the user says the list is mixed, because an address
//!   entry blocks every connection to that address, not only those made by that name.
//! - Adblock `||1.2.3.4^` rules and hosts lines naming an address stay skipped
//!   ([`SkipReason::IpAddress`]): in a browser they block URLs written with that literal host,
//!   and blocking every connection to the address (a shared host, a CDN) would be broader than
//!   their authors meant.
//! - Stored errors are capped at [`MAX_STORED_ERRORS`]; [`Parsed::error_count`] counts all.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

/// At most this many [`LineError`]s are kept per parse; the rest are only counted.
pub const MAX_STORED_ERRORS: usize = 100;

/// The longest domain name, without its trailing dot.
pub const MAX_NAME_LEN: usize = 253;

/// The longest label of a domain name.
pub const MAX_LABEL_LEN: usize = 63;

/// What a list is for; the user enables lists by category, per app or globally.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Category {
    /// Advertising.
    Ads,
    /// Tracking and telemetry.
    Trackers,
    /// Malware distribution and command-and-control.
    Malware,
    /// Phishing and scams.
    Phishing,
    /// Anything else, by the name its source gives.
    Other(String),
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ads => f.write_str("ads"),
            Self::Trackers => f.write_str("trackers"),
            Self::Malware => f.write_str("malware"),
            Self::Phishing => f.write_str("phishing"),
            Self::Other(name) => f.write_str(name),
        }
    }
}

/// Who a list is, for the user and for explanations ("blocked by list X, line N").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListMeta {
    /// Stable identifier (settings refer to lists by it), e.g. `"stevenblack-hosts"`.
    pub id: String,
    /// Human-readable name.
    pub name: String,
    /// What the list blocks.
    pub category: Category,
    /// Where it comes from: a URL or a path, as given.
    pub source: String,
}

/// The file formats this module reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListFormat {
    /// Adblock Plus / uBlock / AdGuard rules; only domain rules are kept.
    Adblock,
    /// `/etc/hosts` style: an address, then names.
    Hosts,
    /// One domain per line.
    Domains,
    /// One IP address or CIDR per line.
    Ips,
    /// One domain, IP address or CIDR per line (see the module docs).
    Mixed,
}

impl ListFormat {
    /// Every format, in a fixed order.
    pub const ALL: [Self; 5] = [
        Self::Adblock,
        Self::Hosts,
        Self::Domains,
        Self::Ips,
        Self::Mixed,
    ];

    /// Whether the format yields domains.
    #[must_use]
    pub fn is_domains(self) -> bool {
        !matches!(self, Self::Ips)
    }

    /// Whether the format yields IP networks.
    #[must_use]
    pub fn is_ips(self) -> bool {
        matches!(self, Self::Ips | Self::Mixed)
    }

    /// The format's name in configuration files.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Adblock => "adblock",
            Self::Hosts => "hosts",
            Self::Domains => "domains",
            Self::Ips => "ips",
            Self::Mixed => "mixed",
        }
    }
}

impl fmt::Display for ListFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a line was skipped (valid in its format, but nothing a firewall enforces).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SkipReason {
    /// Empty or only whitespace.
    Blank,
    /// A comment line (`!`, `#`, `;` depending on the format).
    Comment,
    /// An adblock header such as `[Adblock Plus 2.0]`.
    Header,
    /// A cosmetic (element hiding, scriptlet, HTML) filter.
    Cosmetic,
    /// A regular-expression rule.
    Regex,
    /// A rule on URLs, paths, ports or text, not on a whole domain.
    NotDomain,
    /// A rule with a wildcard in the domain.
    Wildcard,
    /// A domain rule whose options narrow it to what a DNS firewall cannot enforce.
    Options,
    /// An IP address where a domain was expected.
    IpAddress,
    /// `localhost` and similar names of a hosts file.
    LocalName,
    /// A hosts entry mapping a name to a real address (a redirect, not a block).
    Redirect,
}

impl SkipReason {
    /// Every reason, in a fixed order.
    pub const ALL: [Self; 11] = [
        Self::Blank,
        Self::Comment,
        Self::Header,
        Self::Cosmetic,
        Self::Regex,
        Self::NotDomain,
        Self::Wildcard,
        Self::Options,
        Self::IpAddress,
        Self::LocalName,
        Self::Redirect,
    ];

    /// A short word for reports.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Blank => "blank",
            Self::Comment => "comment",
            Self::Header => "header",
            Self::Cosmetic => "cosmetic",
            Self::Regex => "regex",
            Self::NotDomain => "not a domain rule",
            Self::Wildcard => "wildcard",
            Self::Options => "unsupported options",
            Self::IpAddress => "ip address",
            Self::LocalName => "local name",
            Self::Redirect => "redirect",
        }
    }
}

/// How many lines (or hosts names) were skipped, per reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Skipped([u64; SkipReason::ALL.len()]);

impl Skipped {
    /// The count for one reason.
    #[must_use]
    pub fn get(&self, reason: SkipReason) -> u64 {
        self.0.get(reason as usize).copied().unwrap_or(0)
    }

    /// All skipped lines.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// The non-zero counts, in [`SkipReason::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (SkipReason, u64)> + '_ {
        SkipReason::ALL
            .into_iter()
            .map(|r| (r, self.get(r)))
            .filter(|&(_, n)| n > 0)
    }

    fn add(&mut self, reason: SkipReason) {
        if let Some(n) = self.0.get_mut(reason as usize) {
            *n += 1;
        }
    }
}

/// Why a line is bad.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineErrorKind {
    /// The line is not UTF-8.
    #[error("not UTF-8")]
    NotUtf8,
    /// The name has a character no hostname has (the first one is given).
    #[error("invalid character {0:?} in name")]
    BadChar(char),
    /// The name has non-ASCII text; give it as punycode (`xn--…`).
    #[error("non-ASCII name: give it as punycode (xn--…)")]
    NotAscii,
    /// The name has an empty label (`a..b`, a leading dot) or is empty.
    #[error("empty label in name")]
    EmptyLabel,
    /// A label is longer than 63 bytes.
    #[error("label longer than {MAX_LABEL_LEN} bytes")]
    LabelTooLong,
    /// The name is longer than 253 bytes.
    #[error("name longer than {MAX_NAME_LEN} bytes")]
    NameTooLong,
    /// A hosts line does not start with an address.
    #[error("hosts line does not start with an IP address")]
    NoAddress,
    /// A hosts line has an address but no names.
    #[error("hosts line has no names")]
    NoNames,
    /// A line of a one-entry-per-line format has more than one field.
    #[error("more than one entry on the line")]
    ExtraFields,
    /// An IP list line is not an address or CIDR.
    #[error("not an IP address or CIDR")]
    BadNetwork,
}

/// A bad line: its 1-based number and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {kind}")]
pub struct LineError {
    /// 1-based line number.
    pub line: u32,
    /// Why the line (or one name on it) is bad.
    pub kind: LineErrorKind,
}

/// One domain entry: a normalised name and the line it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainRule {
    /// Lowercase, no trailing dot, validated.
    pub name: String,
    /// 1-based line number in the list file.
    pub line: u32,
}

/// One IP list entry: a network (single addresses are /32 or /128), how it was written, and
/// its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpRule {
    /// The network, host bits cleared.
    pub net: IpNet,
    /// 1-based line number in the list file.
    pub line: u32,
    /// The entry as the line wrote it.
    pub written: IpEntry,
}

/// An IP list entry as written: an address, with the prefix length if the line gave one (host
/// bits kept). Displays as the line wrote it, in canonical address notation (`192.0.2.1`,
/// `10.0.0.5/8`, `2001:db8::/32`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpEntry {
    /// The address part.
    pub addr: IpAddr,
    /// The prefix length; `None` for a single address written without one.
    pub prefix: Option<u8>,
}

impl fmt::Display for IpEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.prefix {
            Some(p) => write!(f, "{}/{p}", self.addr),
            None => write!(f, "{}", self.addr),
        }
    }
}

/// What parsing a list produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed<T> {
    /// Blocking entries, in file order.
    pub entries: Vec<T>,
    /// Exception entries (adblock `@@`), in file order.
    pub exceptions: Vec<T>,
    /// Lines skipped, per reason.
    pub skipped: Skipped,
    /// The first [`MAX_STORED_ERRORS`] bad lines.
    pub errors: Vec<LineError>,
    /// All bad lines (or bad names on hosts lines), stored or not.
    pub error_count: u64,
}

impl<T> Default for Parsed<T> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            exceptions: Vec::new(),
            skipped: Skipped::default(),
            errors: Vec::new(),
            error_count: 0,
        }
    }
}

impl<T> Parsed<T> {
    fn error(&mut self, line: u32, kind: LineErrorKind) {
        self.error_count += 1;
        if self.errors.len() < MAX_STORED_ERRORS {
            self.errors.push(LineError { line, kind });
        }
    }
}

/// What parsing a mixed list produced: its domains, with every skipped and bad line counted
/// there, and its IP entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedMixed {
    /// The domain entries, the skipped lines and the bad lines.
    pub domains: Parsed<DomainRule>,
    /// The IP entries, in file order.
    pub ips: Vec<IpRule>,
}

/// A parsed list of any kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParsedList {
    /// From [`ListFormat::Adblock`], [`ListFormat::Hosts`] or [`ListFormat::Domains`].
    Domains(Parsed<DomainRule>),
    /// From [`ListFormat::Ips`].
    Ips(Parsed<IpRule>),
    /// From [`ListFormat::Mixed`].
    Mixed(ParsedMixed),
}

impl ParsedList {
    /// The domain entries and exceptions (none for an IP list).
    #[must_use]
    pub fn domains(&self) -> Option<&Parsed<DomainRule>> {
        match self {
            Self::Domains(p) => Some(p),
            Self::Mixed(m) => Some(&m.domains),
            Self::Ips(_) => None,
        }
    }

    /// The IP entries (none for a domain list).
    #[must_use]
    pub fn ips(&self) -> &[IpRule] {
        match self {
            Self::Ips(p) => &p.entries,
            Self::Mixed(m) => &m.ips,
            Self::Domains(_) => &[],
        }
    }

    /// Lines that are no entry of this kind of list (comments, cosmetic rules, …), counted.
    #[must_use]
    pub fn skipped_count(&self) -> u64 {
        match self {
            Self::Domains(p) => p.skipped.total(),
            Self::Ips(p) => p.skipped.total(),
            Self::Mixed(m) => m.domains.skipped.total(),
        }
    }

    /// All bad lines, stored or not.
    #[must_use]
    pub fn error_count(&self) -> u64 {
        match self {
            Self::Domains(p) => p.error_count,
            Self::Ips(p) => p.error_count,
            Self::Mixed(m) => m.domains.error_count,
        }
    }
}

/// Parses `bytes` in the given format.
#[must_use]
pub fn parse(bytes: &[u8], format: ListFormat) -> ParsedList {
    match format {
        ListFormat::Ips => ParsedList::Ips(parse_ips(bytes)),
        ListFormat::Mixed => ParsedList::Mixed(parse_mixed(bytes)),
        domains => ParsedList::Domains(parse_domains(bytes, domains)),
    }
}

/// Parses `bytes` in the format [`detect`] finds.
#[must_use]
pub fn parse_detected(bytes: &[u8]) -> (ListFormat, ParsedList) {
    let format = detect(bytes);
    (format, parse(bytes, format))
}

/// Splits into numbered lines: `\n` or `\r\n`, a UTF-8 byte order mark at the start removed.
fn lines(bytes: &[u8]) -> impl Iterator<Item = (u32, &[u8])> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut lines = bytes.split(|&b| b == b'\n');
    if bytes.last() == Some(&b'\n') || bytes.is_empty() {
        // `split` yields an empty piece after the final newline: not a line of the file.
        let _ = lines.next_back();
    }
    lines.enumerate().map(|(i, line)| {
        let n = u32::try_from(i).map_or(u32::MAX, |i| i.saturating_add(1));
        (n, line.strip_suffix(b"\r").unwrap_or(line))
    })
}

/// Parses a domain list (adblock, hosts or plain). Given [`ListFormat::Ips`] or
/// [`ListFormat::Mixed`], it reads the file as a plain domain list, so its addresses are
/// skipped as [`SkipReason::IpAddress`]; use [`parse_ips`] or [`parse_mixed`] for those.
#[must_use]
pub fn parse_domains(bytes: &[u8], format: ListFormat) -> Parsed<DomainRule> {
    let mut out = Parsed::default();
    for (n, raw) in lines(bytes) {
        let Ok(line) = std::str::from_utf8(raw) else {
            out.error(n, LineErrorKind::NotUtf8);
            continue;
        };
        match format {
            ListFormat::Adblock => adblock_line(&mut out, n, line),
            ListFormat::Hosts => hosts_line(&mut out, n, line),
            ListFormat::Domains | ListFormat::Ips | ListFormat::Mixed => {
                plain_line(&mut out, n, line, None);
            }
        }
    }
    out
}

/// Parses a mixed list: addresses and CIDRs become IP entries, other lines are read as a plain
/// domain list; `#` and `;` start comments.
#[must_use]
pub fn parse_mixed(bytes: &[u8]) -> ParsedMixed {
    let mut out = ParsedMixed::default();
    for (n, raw) in lines(bytes) {
        let Ok(line) = std::str::from_utf8(raw) else {
            out.domains.error(n, LineErrorKind::NotUtf8);
            continue;
        };
        plain_line(&mut out.domains, n, line, Some(&mut out.ips));
    }
    out
}

/// Parses an IP/CIDR list.
#[must_use]
pub fn parse_ips(bytes: &[u8]) -> Parsed<IpRule> {
    let mut out = Parsed::default();
    for (n, raw) in lines(bytes) {
        let Ok(line) = std::str::from_utf8(raw) else {
            out.error(n, LineErrorKind::NotUtf8);
            continue;
        };
        let trimmed = line.trim();
        if trimmed.is_empty() {
            out.skipped.add(SkipReason::Blank);
            continue;
        }
        let body = strip_comment(trimmed, b"#;").trim();
        if body.is_empty() {
            out.skipped.add(SkipReason::Comment);
            continue;
        }
        let mut fields = body.split_ascii_whitespace();
        let first = fields.next().unwrap_or_default();
        if fields.next().is_some() {
            out.error(n, LineErrorKind::ExtraFields);
            continue;
        }
        match parse_net(first) {
            Some((net, written)) => out.entries.push(IpRule {
                net,
                line: n,
                written,
            }),
            None => out.error(n, LineErrorKind::BadNetwork),
        }
    }
    out
}

/// An address or CIDR: the network (host bits cleared) and the entry as written.
fn parse_net(text: &str) -> Option<(IpNet, IpEntry)> {
    if text.contains('/') {
        let net = text.parse::<IpNet>().ok()?;
        let written = IpEntry {
            addr: net.addr(),
            prefix: Some(net.prefix_len()),
        };
        Some((net.trunc(), written))
    } else {
        let addr = text.parse::<IpAddr>().ok()?;
        Some((IpNet::from(addr), IpEntry { addr, prefix: None }))
    }
}

/// The line up to the first of the (ASCII) comment markers.
fn strip_comment<'a>(line: &'a str, markers: &[u8]) -> &'a str {
    line.bytes()
        .position(|b| markers.contains(&b))
        .map_or(line, |at| line.get(..at).unwrap_or_default())
}

/// A plain-list line; with `ips` (a mixed list), an address or CIDR goes there and `;` also
/// starts a comment.
fn plain_line(out: &mut Parsed<DomainRule>, n: u32, line: &str, ips: Option<&mut Vec<IpRule>>) {
    let trimmed = line.trim();
    if trimmed.is_empty() {
        out.skipped.add(SkipReason::Blank);
        return;
    }
    let markers: &[u8] = if ips.is_some() { b"#;" } else { b"#" };
    let body = strip_comment(trimmed, markers).trim();
    if body.is_empty() {
        out.skipped.add(SkipReason::Comment);
        return;
    }
    let mut fields = body.split_ascii_whitespace();
    let name = fields.next().unwrap_or_default();
    if fields.next().is_some() {
        out.error(n, LineErrorKind::ExtraFields);
        return;
    }
    if let Some(ips) = ips
        && let Some((net, written)) = parse_net(name)
    {
        ips.push(IpRule {
            net,
            line: n,
            written,
        });
        return;
    }
    push_name(out, n, name, false);
}

fn hosts_line(out: &mut Parsed<DomainRule>, n: u32, line: &str) {
    let trimmed = line.trim();
    if trimmed.is_empty() {
        out.skipped.add(SkipReason::Blank);
        return;
    }
    let body = strip_comment(trimmed, b"#").trim();
    if body.is_empty() {
        out.skipped.add(SkipReason::Comment);
        return;
    }
    let mut fields = body.split_ascii_whitespace();
    let Some(addr) = fields.next().and_then(|a| a.parse::<IpAddr>().ok()) else {
        out.error(n, LineErrorKind::NoAddress);
        return;
    };
    let sink = addr.is_unspecified() || addr.is_loopback();
    let mut any = false;
    for name in fields {
        any = true;
        let lower = name.trim_end_matches('.');
        if is_local_name(lower) {
            out.skipped.add(SkipReason::LocalName);
        } else if !sink {
            out.skipped.add(SkipReason::Redirect);
        } else {
            push_name(out, n, name, false);
        }
    }
    if !any {
        out.error(n, LineErrorKind::NoNames);
    }
}

fn is_local_name(name: &str) -> bool {
    [
        "localhost",
        "localhost.localdomain",
        "local",
        "broadcasthost",
    ]
    .iter()
    .any(|l| name.eq_ignore_ascii_case(l))
        || name
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case("ip6-"))
}

fn adblock_line(out: &mut Parsed<DomainRule>, n: u32, line: &str) {
    let line = line.trim();
    if line.is_empty() {
        out.skipped.add(SkipReason::Blank);
        return;
    }
    if line.starts_with('!') || line.starts_with("# ") || line == "#" {
        out.skipped.add(SkipReason::Comment);
        return;
    }
    if line.starts_with('[') && line.ends_with(']') {
        out.skipped.add(SkipReason::Header);
        return;
    }
    const COSMETIC: [&str; 10] = [
        "##", "#@#", "#?#", "#@?#", "#$#", "#@$#", "#%#", "#@%#", "$$", "$@$",
    ];
    if COSMETIC.iter().any(|m| line.contains(m)) {
        out.skipped.add(SkipReason::Cosmetic);
        return;
    }
    let (exception, rule) = match line.strip_prefix("@@") {
        Some(rest) => (true, rest),
        None => (false, line),
    };
    if rule.len() > 1 && rule.starts_with('/') && rule.ends_with('/') {
        out.skipped.add(SkipReason::Regex);
        return;
    }
    let (pattern, options) = match rule.rfind('$') {
        Some(at) => (rule.get(..at).unwrap_or_default(), rule.get(at + 1..)),
        None => (rule, None),
    };
    let Some(rest) = pattern.strip_prefix("||") else {
        out.skipped.add(SkipReason::NotDomain);
        return;
    };
    let Some(host) = rest.strip_suffix("^|").or_else(|| rest.strip_suffix('^')) else {
        // `||name` alone, `||name/path`, `||name^*…`: not a whole-domain rule.
        let wildcard = rest.contains('*') && !rest.contains(['/', '^', ':']);
        out.skipped.add(if wildcard {
            SkipReason::Wildcard
        } else {
            SkipReason::NotDomain
        });
        return;
    };
    if host.contains('*') {
        out.skipped.add(SkipReason::Wildcard);
        return;
    }
    if host.contains(['/', ':', '^', '|', '?', '=', '&']) {
        out.skipped.add(SkipReason::NotDomain);
        return;
    }
    if let Some(options) = options
        && !options
            .split(',')
            .all(|o| ACCEPTED_OPTIONS.contains(&o.trim()))
    {
        out.skipped.add(SkipReason::Options);
        return;
    }
    push_name(out, n, host, exception);
}

/// Options that do not narrow a domain rule below what a DNS firewall enforces (see the module
/// docs for why `third-party` is here).
const ACCEPTED_OPTIONS: [&str; 7] = [
    "important",
    "third-party",
    "3p",
    "document",
    "doc",
    "all",
    "~first-party",
];

fn push_name(out: &mut Parsed<DomainRule>, n: u32, name: &str, exception: bool) {
    if looks_like_ip(name) {
        out.skipped.add(SkipReason::IpAddress);
        return;
    }
    if name.starts_with("*.") {
        out.skipped.add(SkipReason::Wildcard);
        return;
    }
    match normalize_domain(name) {
        Ok(name) => {
            let rule = DomainRule { name, line: n };
            if exception {
                out.exceptions.push(rule);
            } else {
                out.entries.push(rule);
            }
        }
        Err(kind) => out.error(n, kind),
    }
}

fn looks_like_ip(name: &str) -> bool {
    // Cheap test first: an IPv4 address ends in a digit, an IPv6 one has a colon; no TLD ends
    // in a digit, so most names never reach the full parse.
    if !(name.ends_with(|c: char| c.is_ascii_digit()) || name.contains(':')) {
        return false;
    }
    let bare = name
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(name);
    bare.parse::<IpAddr>().is_ok()
}

/// Validates and normalises a domain name: lowercase, no trailing dot, letters, digits, `-`
/// and `_` only, labels of 1–63 bytes, at most 253 bytes.
///
/// # Errors
///
/// Says what is wrong with the name; see [`LineErrorKind`].
pub fn normalize_domain(name: &str) -> Result<String, LineErrorKind> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        return Err(LineErrorKind::EmptyLabel);
    }
    // One pass: characters, label lengths, and whether anything needs lowercasing.
    let mut label = 0usize;
    let mut upper = false;
    for (i, &b) in name.as_bytes().iter().enumerate() {
        match b {
            b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' => label += 1,
            b'A'..=b'Z' => {
                upper = true;
                label += 1;
            }
            b'.' => {
                if label == 0 {
                    return Err(LineErrorKind::EmptyLabel);
                }
                label = 0;
            }
            _ if !b.is_ascii() => return Err(LineErrorKind::NotAscii),
            _ => {
                let bad = name.get(i..).and_then(|r| r.chars().next()).unwrap_or('?');
                return Err(LineErrorKind::BadChar(bad));
            }
        }
        if label > MAX_LABEL_LEN {
            return Err(LineErrorKind::LabelTooLong);
        }
    }
    if label == 0 {
        return Err(LineErrorKind::EmptyLabel);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(LineErrorKind::NameTooLong);
    }
    let mut out = name.to_owned();
    if upper {
        out.make_ascii_lowercase();
    }
    Ok(out)
}

/// Guesses a list's format from its first meaningful lines (up to 200): adblock if it has an
/// adblock header or `||`/`@@`/`!` lines, hosts if lines start with an address followed by a
/// name, IPs if lines are single addresses or CIDRs, plain domains otherwise. Explicit choice
/// through [`parse`] is always possible; detection is for lists added without one. It never
/// answers [`ListFormat::Mixed`]: whether addresses in a domain list block connections is the
/// user's choice (see the module docs).
#[must_use]
pub fn detect(bytes: &[u8]) -> ListFormat {
    let (mut adblock, mut hosts, mut ips, mut domains) = (0u32, 0u32, 0u32, 0u32);
    let mut seen = 0;
    for (_, raw) in lines(bytes) {
        if seen >= 200 {
            break;
        }
        let Ok(line) = std::str::from_utf8(raw) else {
            continue;
        };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if line.starts_with("[Adblock")
            || line.starts_with("[AdGuard")
            || line.starts_with("[uBlock")
        {
            return ListFormat::Adblock;
        }
        if line.starts_with('!') || line.starts_with("||") || line.starts_with("@@") {
            adblock += 1;
            seen += 1;
            continue;
        }
        let body = strip_comment(line, b"#;").trim();
        if body.is_empty() {
            continue;
        }
        seen += 1;
        let mut fields = body.split_ascii_whitespace();
        let first = fields.next().unwrap_or_default();
        let more = fields.next().is_some();
        if more && first.parse::<IpAddr>().is_ok() {
            hosts += 1;
        } else if !more && parse_net(first).is_some() {
            ips += 1;
        } else {
            domains += 1;
        }
    }
    let best = adblock.max(hosts).max(ips).max(domains);
    if best == 0 {
        ListFormat::Domains
    } else if adblock == best {
        ListFormat::Adblock
    } else if hosts == best {
        ListFormat::Hosts
    } else if ips == best {
        ListFormat::Ips
    } else {
        ListFormat::Domains
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domains(p: &Parsed<DomainRule>) -> Vec<(&str, u32)> {
        p.entries
            .iter()
            .map(|r| (r.name.as_str(), r.line))
            .collect()
    }

    #[test]
    fn adblock_rules_exceptions_and_skips() {
        let text = "[Adblock Plus 2.0]\n\
                    ! Title: test\n\
                    ||Ads.Example.com^\n\
                    @@||good.ads.example.com^\n\
                    ||tracker.net^$third-party\n\
                    ||img.net^$image\n\
                    example.org##.banner\n\
                    ||a.com/ads\n\
                    /ads[0-9]+/\n\
                    ||*.wild.com^\n\
                    ||nocaret.com\n\
                    \n\
                    ||bad_host!.com^\n\
                    ||1.2.3.4^\n\
                    ||x.com^|\n\
                    ||imp.com^$important,3p\n\
                    |http://a.com/|\n";
        let p = parse_domains(text.as_bytes(), ListFormat::Adblock);
        assert_eq!(
            domains(&p),
            [
                ("ads.example.com", 3),
                ("tracker.net", 5),
                ("x.com", 15),
                ("imp.com", 16)
            ]
        );
        assert_eq!(
            p.exceptions,
            [DomainRule {
                name: "good.ads.example.com".into(),
                line: 4
            }]
        );
        assert_eq!(p.skipped.get(SkipReason::Header), 1);
        assert_eq!(p.skipped.get(SkipReason::Comment), 1);
        assert_eq!(p.skipped.get(SkipReason::Options), 1);
        assert_eq!(p.skipped.get(SkipReason::Cosmetic), 1);
        assert_eq!(p.skipped.get(SkipReason::NotDomain), 3);
        assert_eq!(p.skipped.get(SkipReason::Regex), 1);
        assert_eq!(p.skipped.get(SkipReason::Wildcard), 1);
        assert_eq!(p.skipped.get(SkipReason::Blank), 1);
        assert_eq!(p.skipped.get(SkipReason::IpAddress), 1);
        assert_eq!(
            p.errors,
            [LineError {
                line: 13,
                kind: LineErrorKind::BadChar('!')
            }]
        );
        assert_eq!(p.error_count, 1);
    }

    #[test]
    fn hosts_file() {
        let text = "# comment\n\
                    127.0.0.1 localhost\n\
                    ::1 ip6-localhost ip6-loopback\n\
                    0.0.0.0 A.com b.com. # trailing\n\
                    0.0.0.0\tc.com\r\n\
                    :: d.com\n\
                    192.168.1.1 router.lan\n\
                    0.0.0.0 0.0.0.0\n\
                    0.0.0.0 good.com bad..com\n\
                    notanip e.com\n\
                    0.0.0.0\n\
                    255.255.255.255 broadcasthost\n";
        let p = parse_domains(text.as_bytes(), ListFormat::Hosts);
        assert_eq!(
            domains(&p),
            [
                ("a.com", 4),
                ("b.com", 4),
                ("c.com", 5),
                ("d.com", 6),
                ("good.com", 9)
            ]
        );
        assert_eq!(p.skipped.get(SkipReason::LocalName), 4);
        assert_eq!(p.skipped.get(SkipReason::Redirect), 1);
        assert_eq!(p.skipped.get(SkipReason::IpAddress), 1);
        assert_eq!(p.skipped.get(SkipReason::Comment), 1);
        assert_eq!(
            p.errors,
            [
                LineError {
                    line: 9,
                    kind: LineErrorKind::EmptyLabel
                },
                LineError {
                    line: 10,
                    kind: LineErrorKind::NoAddress
                },
                LineError {
                    line: 11,
                    kind: LineErrorKind::NoNames
                },
            ]
        );
    }

    #[test]
    fn plain_domains_and_bad_names() {
        let long_label = "a".repeat(64);
        let long_name = ["abcdefghi"; 26].join(".");
        let text = format!(
            "# list\nexample.com\nEXAMPLE.NET.\n\nsub.example.org # why\n{long_label}.com\n\
             {long_name}\nbücher.de\nxn--bcher-kva.de\ntwo names.com\n*.w.com\n.lead.com\n"
        );
        let p = parse_domains(text.as_bytes(), ListFormat::Domains);
        assert_eq!(
            domains(&p),
            [
                ("example.com", 2),
                ("example.net", 3),
                ("sub.example.org", 5),
                ("xn--bcher-kva.de", 9)
            ]
        );
        let kinds: Vec<_> = p.errors.iter().map(|e| (e.line, e.kind.clone())).collect();
        assert_eq!(
            kinds,
            [
                (6, LineErrorKind::LabelTooLong),
                (7, LineErrorKind::NameTooLong),
                (8, LineErrorKind::NotAscii),
                (10, LineErrorKind::ExtraFields),
                (12, LineErrorKind::EmptyLabel),
            ]
        );
        assert_eq!(p.skipped.get(SkipReason::Wildcard), 1);
        assert_eq!(p.skipped.get(SkipReason::Comment), 1);
        assert_eq!(p.skipped.get(SkipReason::Blank), 1);
    }

    #[test]
    fn non_utf8_line_is_a_bad_line_and_the_rest_is_read() {
        let p = parse_domains(b"a.com\n\xff\xfe.com\nb.com", ListFormat::Domains);
        assert_eq!(domains(&p), [("a.com", 1), ("b.com", 3)]);
        assert_eq!(
            p.errors,
            [LineError {
                line: 2,
                kind: LineErrorKind::NotUtf8
            }]
        );
    }

    #[test]
    fn errors_are_capped_and_counted() {
        let text = "bad!\n".repeat(MAX_STORED_ERRORS + 50);
        let p = parse_domains(text.as_bytes(), ListFormat::Domains);
        assert_eq!(p.errors.len(), MAX_STORED_ERRORS);
        assert_eq!(p.error_count, (MAX_STORED_ERRORS + 50) as u64);
        assert_eq!(
            p.errors.last().map(|e| e.line),
            Some(MAX_STORED_ERRORS as u32)
        );
    }

    #[test]
    fn ip_lists() {
        let text = "; spamhaus\n1.10.16.0/20 ; SBL256894\n10.0.0.5/8\n192.0.2.1\n2001:db8::/32\n\
                    ::1\nnope\n1.2.3.4 5.6.7.8\n300.1.1.1\n";
        let p = parse_ips(text.as_bytes());
        let nets: Vec<_> = p
            .entries
            .iter()
            .map(|r| (r.net.to_string(), r.line))
            .collect();
        assert_eq!(
            nets,
            [
                ("1.10.16.0/20".to_string(), 2),
                ("10.0.0.0/8".to_string(), 3),
                ("192.0.2.1/32".to_string(), 4),
                ("2001:db8::/32".to_string(), 5),
                ("::1/128".to_string(), 6),
            ]
        );
        let errs: Vec<_> = p.errors.iter().map(|e| e.line).collect();
        assert_eq!(errs, [7, 8, 9]);
        assert_eq!(p.skipped.get(SkipReason::Comment), 1);
        // As written: host bits and the absence of a prefix are kept for explanations.
        let written: Vec<_> = p.entries.iter().map(|r| r.written.to_string()).collect();
        assert_eq!(
            written,
            [
                "1.10.16.0/20",
                "10.0.0.5/8",
                "192.0.2.1",
                "2001:db8::/32",
                "::1"
            ]
        );
    }

    #[test]
    fn mixed_lists_split_names_and_addresses() {
        let text = "# feed
evil.example
198.51.100.0/24 ; c2
2001:db8::1
bad..name
                    ; comment
EVIL.test # x
1.2.3.4/33
";
        let p = parse_mixed(text.as_bytes());
        assert_eq!(domains(&p.domains), [("evil.example", 2), ("evil.test", 7)]);
        let ips: Vec<_> = p
            .ips
            .iter()
            .map(|r| (r.written.to_string(), r.line))
            .collect();
        assert_eq!(
            ips,
            [
                ("198.51.100.0/24".to_string(), 3),
                ("2001:db8::1".to_string(), 4)
            ]
        );
        let errs: Vec<_> = p.domains.errors.iter().map(|e| e.line).collect();
        assert_eq!(errs, [5, 8]);
        assert_eq!(p.domains.skipped.get(SkipReason::Comment), 2);
        let parsed = parse(text.as_bytes(), ListFormat::Mixed);
        assert_eq!(parsed.ips().len(), 2);
        assert_eq!(parsed.domains().map(|d| d.entries.len()), Some(2));
        assert_eq!(parsed.error_count(), 2);
        // The same file read as a plain domain list skips the addresses.
        let plain = parse_domains(text.as_bytes(), ListFormat::Domains);
        assert_eq!(plain.skipped.get(SkipReason::IpAddress), 1);
        assert_eq!(detect(text.as_bytes()), ListFormat::Domains);
    }

    #[test]
    fn detection() {
        assert_eq!(detect(b"[Adblock Plus 2.0]\nfoo"), ListFormat::Adblock);
        assert_eq!(detect(b"! c\n||a.com^\n||b.com^\n"), ListFormat::Adblock);
        assert_eq!(
            detect(b"# hosts\n127.0.0.1 localhost\n0.0.0.0 a.com\n"),
            ListFormat::Hosts
        );
        assert_eq!(detect(b"# x\na.com\nb.com\n"), ListFormat::Domains);
        assert_eq!(detect(b"1.2.3.0/24\n::1\n5.6.7.8 ; c\n"), ListFormat::Ips);
        assert_eq!(detect(b""), ListFormat::Domains);
        let (format, parsed) = parse_detected(b"0.0.0.0 a.com\n");
        assert_eq!(format, ListFormat::Hosts);
        assert!(matches!(parsed, ParsedList::Domains(p) if p.entries.len() == 1));
    }

    #[test]
    fn line_numbers_with_crlf_and_bom() {
        let p = parse_domains(b"\xEF\xBB\xBFa.com\r\n\r\nb.com\r\n", ListFormat::Domains);
        assert_eq!(domains(&p), [("a.com", 1), ("b.com", 3)]);
        assert_eq!(p.skipped.total(), 1);
    }
}

//! Endpoint rules: their text grammar, their canonical text, and whether one matches a
//! connection. This module owns the parser, `Display` and `Rule::matches`; it must not decide
//! verdicts (that is `decide`), read settings, or touch anything outside its inputs. The parser
//! takes text from people and from the database, so it never panics and every error names the
//! offending token and its column.
//!
//! Grammar (whitespace-separated tokens): `ACTION [Inbound] [ENTITY] [PORTSPEC] [# comment]`,
//! e.g. `- *.example.com tcp/443`, `+ Inbound 192.168.0.0/16 tcp/22`, `- P2P`.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use portcullis_protocol::Scope;

use crate::decide::Facts;
use crate::scope::{AddressClass, classify_ip};

/// Longest domain name, in characters, without the trailing dot (RFC 1035).
const MAX_DOMAIN_LEN: usize = 253;
/// Longest label of a domain name, in characters (RFC 1035).
const MAX_LABEL_LEN: usize = 63;
/// Tokens longer than this are shortened in error messages so one bad paste stays readable.
const MAX_SHOWN_TOKEN: usize = 64;

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuleAction {
    /// `+`: let the connection through.
    Allow,
    /// `-`: refuse the connection.
    Block,
}

impl RuleAction {
    /// The rule-text symbol: `+` or `-`.
    pub fn symbol(self) -> &'static str {
        match self {
            RuleAction::Allow => "+",
            RuleAction::Block => "-",
        }
    }
}

pub use portcullis_protocol::{Direction, Protocol};

/// Whom a rule is about: the remote end of the connection.
///
/// The parser upholds these invariants, and `Display`/`FromStr` round-trip only values that
/// keep them: domains are lowercase ASCII without a trailing dot (and `Domain` has a dot);
/// `Ip` and `Net` are canonical (see [`Entity::ip`], [`Entity::net`]); countries are two
/// uppercase ASCII letters; `Scope` never holds `Scope::Inbound` (that is a [`Direction`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Entity {
    /// `*`: every peer.
    Any,
    /// `example.com`: exactly this name.
    Domain(String),
    /// `*.example.com`: strict subdomains of this name, not the name itself.
    Subdomains(String),
    /// `.example.com`: this name and all its subdomains.
    DomainTree(String),
    /// `10.1.2.3`, `2001:db8::1`: one address.
    Ip(IpAddr),
    /// `10.0.0.0/8`, `2001:db8::/32`: a network.
    Net(IpNet),
    /// `DE`: a country, by ISO 3166 alpha-2 code (as resolved by geo-IP).
    Country([u8; 2]),
    /// `AS1234`: an autonomous system.
    Asn(u32),
    /// `continent:EU`: a continent (AF, AN, AS, EU, NA, OC, SA), of the country geo-IP gives.
    Continent([u8; 2]),
    /// `Localhost`, `LAN`, `Internet`, `P2P`: a class of addresses.
    Scope(Scope),
}

impl Entity {
    /// One address as an entity. IPv4-mapped IPv6 addresses become IPv4, because connection
    /// facts are compared in that form: `::ffff:10.0.0.1` is IPv4 traffic.
    pub fn ip(addr: IpAddr) -> Entity {
        Entity::Ip(addr.to_canonical())
    }

    /// A network as an entity: host bits are cleared, and an IPv6 network inside the
    /// IPv4-mapped range `::ffff:0:0/96` becomes the IPv4 network it stands for, for the same
    /// reason as in [`Entity::ip`].
    pub fn net(net: IpNet) -> Entity {
        Entity::Net(canonical_net(net.trunc()))
    }

    /// Whether this entity describes the remote end of `facts`.
    pub fn matches(&self, facts: &Facts<'_>) -> bool {
        match self {
            Entity::Any => true,
            Entity::Domain(name) => facts.domain.is_some_and(|d| domain_eq(d, name)),
            Entity::Subdomains(name) => facts.domain.is_some_and(|d| is_strict_subdomain(d, name)),
            Entity::DomainTree(name) => facts
                .domain
                .is_some_and(|d| domain_eq(d, name) || is_strict_subdomain(d, name)),
            Entity::Ip(addr) => facts.remote.to_canonical() == addr.to_canonical(),
            Entity::Net(net) => canonical_net(*net).contains(&facts.remote.to_canonical()),
            Entity::Country(code) => facts.country.is_some_and(|c| c.eq_ignore_ascii_case(code)),
            Entity::Asn(asn) => facts.asn == Some(*asn),
            Entity::Continent(code) => facts.continent == Some(*code),
            Entity::Scope(scope) => scope_matches(*scope, facts),
        }
    }
}

impl fmt::Display for Entity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Entity::Any => f.write_str("*"),
            Entity::Domain(name) => f.write_str(name),
            Entity::Subdomains(name) => write!(f, "*.{name}"),
            Entity::DomainTree(name) => write!(f, ".{name}"),
            Entity::Ip(addr) => write!(f, "{addr}"),
            Entity::Net(net) => write!(f, "{net}"),
            Entity::Country([a, b]) => write!(f, "{}{}", char::from(*a), char::from(*b)),
            Entity::Asn(asn) => write!(f, "AS{asn}"),
            Entity::Continent([a, b]) => {
                write!(f, "continent:{}{}", char::from(*a), char::from(*b))
            }
            Entity::Scope(scope) => f.write_str(scope.keyword()),
        }
    }
}

/// Protocol and ports: `tcp`, `udp/53`, `tcp/8000-8100`, `*/443`, `icmp`.
///
/// Invariants kept by the parser (and needed for a round trip through text): at least one
/// field is set; `Icmp` has no ports; port ranges are `1 <= low <= high`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortSpec {
    /// The protocol; `None` (`*/443`) means TCP or UDP.
    pub protocol: Option<Protocol>,
    /// Inclusive port range; `None` means every port. Outbound rules match the remote port,
    /// inbound rules our local port.
    pub ports: Option<(u16, u16)>,
}

impl PortSpec {
    /// Whether the connection's protocol and relevant port fit this spec.
    pub fn matches(&self, facts: &Facts<'_>) -> bool {
        let protocol_fits = match self.protocol {
            Some(p) => p == facts.protocol,
            // `*/443` is "any protocol that has ports"; ICMP has none.
            None => matches!(facts.protocol, Protocol::Tcp | Protocol::Udp),
        };
        if !protocol_fits {
            return false;
        }
        let Some((low, high)) = self.ports else {
            return true;
        };
        let port = match facts.direction {
            Direction::Outbound => facts.remote_port,
            Direction::Inbound => facts.local_port,
        };
        // A port-qualified rule cannot vouch for a connection whose port is unknown.
        port.is_some_and(|p| (low..=high).contains(&p))
    }
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.protocol {
            Some(p) => f.write_str(p.as_str())?,
            None => f.write_str("*")?,
        }
        match self.ports {
            Some((low, high)) if low == high => write!(f, "/{low}"),
            Some((low, high)) => write!(f, "/{low}-{high}"),
            None => Ok(()),
        }
    }
}

/// One endpoint rule, e.g. `- *.example.com tcp/443`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rule {
    /// Allow (`+`) or block (`-`).
    pub action: RuleAction,
    /// Outbound unless the rule says `Inbound`.
    pub direction: Direction,
    /// The remote peer; `Entity::Any` when the rule names none.
    pub entity: Entity,
    /// Protocol and ports; `None` for every protocol and port.
    pub portspec: Option<PortSpec>,
}

impl Rule {
    /// Whether this rule applies to the connection described by `facts`: same direction,
    /// matching entity and matching port spec.
    pub fn matches(&self, facts: &Facts<'_>) -> bool {
        self.direction == facts.direction
            && self.entity.matches(facts)
            && self.portspec.is_none_or(|p| p.matches(facts))
    }
}

impl fmt::Display for Rule {
    /// The canonical text: `ACTION[ Inbound][ ENTITY][ PORTSPEC]`, with `*` written only
    /// when nothing else follows the action.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.action.symbol())?;
        let inbound = self.direction == Direction::Inbound;
        if inbound {
            f.write_str(" Inbound")?;
        }
        let entity_implied = self.entity == Entity::Any && (inbound || self.portspec.is_some());
        if !entity_implied {
            write!(f, " {}", self.entity)?;
        }
        if let Some(spec) = &self.portspec {
            write!(f, " {spec}")?;
        }
        Ok(())
    }
}

/// Why a rule text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct RuleError {
    /// The offending token as written (empty when the rule has no tokens at all).
    pub token: String,
    /// 1-based character (not byte) column where the token starts.
    pub column: usize,
    /// What is wrong with it and, where possible, how to write it instead.
    pub message: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid rule at column {}: ", self.column)?;
        if !self.token.is_empty() {
            write!(f, "`{}`: ", shorten(&self.token))?;
        }
        f.write_str(&self.message)
    }
}

impl FromStr for Rule {
    type Err = RuleError;

    fn from_str(text: &str) -> Result<Rule, RuleError> {
        parse(text)
    }
}

/// A token of the input and where it starts.
#[derive(Debug, Clone, Copy)]
struct Token<'a> {
    text: &'a str,
    /// 1-based character column.
    column: usize,
}

impl Token<'_> {
    fn error(&self, message: impl Into<String>) -> RuleError {
        RuleError {
            token: self.text.to_owned(),
            column: self.column,
            message: message.into(),
        }
    }
}

/// Splits on Unicode whitespace like `str::split_whitespace`, but lazily and with character
/// columns, so a huge input costs only the tokens the parser actually looks at.
#[derive(Debug)]
struct Tokens<'a> {
    text: &'a str,
    chars: std::iter::Peekable<std::str::CharIndices<'a>>,
    /// 1-based column of the next character `chars` yields.
    column: usize,
}

impl<'a> Tokens<'a> {
    fn new(text: &'a str) -> Tokens<'a> {
        Tokens {
            text,
            chars: text.char_indices().peekable(),
            column: 1,
        }
    }
}

impl<'a> Iterator for Tokens<'a> {
    type Item = Token<'a>;

    fn next(&mut self) -> Option<Token<'a>> {
        while let Some(&(_, c)) = self.chars.peek() {
            if !c.is_whitespace() {
                break;
            }
            self.chars.next();
            self.column += 1;
        }
        let (start, _) = *self.chars.peek()?;
        let column = self.column;
        let mut end = self.text.len();
        while let Some(&(i, c)) = self.chars.peek() {
            if c.is_whitespace() {
                end = i;
                break;
            }
            self.chars.next();
            self.column += 1;
        }
        Some(Token {
            text: self.text.get(start..end).unwrap_or_default(),
            column,
        })
    }
}

/// Parses rule text; see the module doc for the grammar.
fn parse(text: &str) -> Result<Rule, RuleError> {
    // A token starting with `#` starts a comment; it and everything after are dropped.
    let mut tokens = Tokens::new(text).take_while(|t| !t.text.starts_with('#'));

    let Some(first) = tokens.next() else {
        return Err(RuleError {
            token: String::new(),
            column: 1,
            message: "rule is empty: write e.g. `+ example.com` or `- tcp/25`".to_owned(),
        });
    };
    let action = match first.text {
        "+" => RuleAction::Allow,
        "-" => RuleAction::Block,
        t if t.starts_with(['+', '-']) => {
            return Err(first.error("put a space after the action: `+ …` or `- …`"));
        }
        _ => return Err(first.error("a rule starts with `+` (allow) or `-` (block)")),
    };

    let mut next = tokens.next();
    let mut direction = Direction::Outbound;
    if next.is_some_and(|t| t.text.eq_ignore_ascii_case("inbound")) {
        direction = Direction::Inbound;
        next = tokens.next();
    }

    let mut entity = None;
    let mut portspec = None;
    // Position decides: the first remaining token is the entity unless it is a port spec.
    if let Some(tok) = next {
        if looks_like_portspec(tok.text) {
            portspec = Some(parse_portspec(tok.text).map_err(|m| tok.error(m))?);
        } else {
            entity = Some(parse_entity(tok.text).map_err(|m| tok.error(m))?);
        }
        next = tokens.next();
    }
    if entity.is_some()
        && let Some(tok) = next
    {
        portspec = Some(parse_portspec_after_entity(tok)?);
        next = tokens.next();
    }
    if let Some(tok) = next {
        // Only reachable with a port spec already parsed: say why the token is one too many.
        let message = if entity.is_none() && parse_entity(tok.text).is_ok() {
            "the entity comes before the port spec, e.g. `- example.com tcp/443`"
        } else {
            "unexpected token: a rule has at most one entity and one port spec (write two rules)"
        };
        return Err(tok.error(message));
    }

    if direction == Direction::Outbound && entity.is_none() && portspec.is_none() {
        return Err(first.error(
            "rule has no target: add an entity, a port spec or `Inbound` (`- *` matches everything)",
        ));
    }
    Ok(Rule {
        action,
        direction,
        entity: entity.unwrap_or(Entity::Any),
        portspec,
    })
}

/// The token after an entity must be a port spec; say precisely what it is instead.
fn parse_portspec_after_entity(tok: Token<'_>) -> Result<PortSpec, RuleError> {
    if looks_like_portspec(tok.text) {
        return parse_portspec(tok.text).map_err(|m| tok.error(m));
    }
    if tok.text.eq_ignore_ascii_case("inbound") {
        return Err(tok.error("`Inbound` must come right after the action: `+ Inbound …`"));
    }
    if tok.text == "*" {
        return Err(tok.error(
            "`*` is not a port spec: leave the port spec out to match every protocol and port",
        ));
    }
    if parse_entity(tok.text).is_ok() {
        return Err(tok.error("a rule has at most one entity (write two rules)"));
    }
    Err(tok.error("expected a port spec here, e.g. `tcp`, `udp/53`, `tcp/8000-8100` or `*/443`"))
}

/// Whether a token is meant as a port spec (`tcp`, `udp/53`, `*/443`, `icmp`…), so that it
/// gets port-spec errors rather than entity errors.
fn looks_like_portspec(token: &str) -> bool {
    let (head, has_slash) = match token.split_once('/') {
        Some((head, _)) => (head, true),
        None => (token, false),
    };
    is_protocol_word(head) || (has_slash && head == "*")
}

fn is_protocol_word(word: &str) -> bool {
    ["tcp", "udp", "icmp"]
        .iter()
        .any(|p| p.eq_ignore_ascii_case(word))
}

/// Parses a port spec token; the error is the message for that token.
fn parse_portspec(token: &str) -> Result<PortSpec, String> {
    let (proto_text, ports_text) = match token.split_once('/') {
        Some((p, ports)) => (p, Some(ports)),
        None => (token, None),
    };
    let protocol = if proto_text == "*" {
        None
    } else if proto_text.eq_ignore_ascii_case("tcp") {
        Some(Protocol::Tcp)
    } else if proto_text.eq_ignore_ascii_case("udp") {
        Some(Protocol::Udp)
    } else if proto_text.eq_ignore_ascii_case("icmp") {
        Some(Protocol::Icmp)
    } else {
        return Err(format!(
            "unknown protocol `{}`: expected `tcp`, `udp`, `icmp` or `*`",
            shorten(proto_text)
        ));
    };
    let Some(ports_text) = ports_text else {
        if protocol.is_none() {
            return Err("`*` needs a port (`*/443`) or must be left out".to_owned());
        }
        return Ok(PortSpec {
            protocol,
            ports: None,
        });
    };
    if protocol == Some(Protocol::Icmp) {
        return Err("ICMP has no ports: write `icmp`".to_owned());
    }
    if ports_text == "*" {
        return Err(match protocol {
            Some(p) => format!("leave out `/*` to match every port: write `{p}`"),
            None => "`*/*` matches everything: leave the port spec out".to_owned(),
        });
    }
    let ports = parse_port_range(ports_text)?;
    Ok(PortSpec {
        protocol,
        ports: Some(ports),
    })
}

/// Parses `N` or `N-M` with `1 <= N <= M <= 65535`.
fn parse_port_range(text: &str) -> Result<(u16, u16), String> {
    let (low_text, high_text) = text.split_once('-').unwrap_or((text, text));
    let low = parse_port(low_text)?;
    let high = parse_port(high_text)?;
    if low > high {
        return Err(format!(
            "port range `{low}-{high}` is reversed: write `{high}-{low}`"
        ));
    }
    Ok((low, high))
}

fn parse_port(text: &str) -> Result<u16, String> {
    if text.is_empty() {
        return Err("missing port number: write e.g. `tcp/443` or `tcp/8000-8100`".to_owned());
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "`{}` is not a port number (1 to 65535)",
            shorten(text)
        ));
    }
    // `u16::from_str` would also accept `+443`; digits were checked above.
    match text.parse::<u16>() {
        Ok(0) => Err("port 0 is not a real port: ports run from 1 to 65535".to_owned()),
        Ok(port) => Ok(port),
        Err(_) => Err(format!(
            "port `{}` is too large: ports run from 1 to 65535",
            shorten(text)
        )),
    }
}

/// Parses an entity token; the error is the message for that token.
fn parse_entity(token: &str) -> Result<Entity, String> {
    if token == "*" {
        return Ok(Entity::Any);
    }
    if token.eq_ignore_ascii_case("inbound") {
        return Err("`Inbound` must come right after the action: `+ Inbound …`".to_owned());
    }
    if let Some(scope) = Scope::from_keyword(token) {
        return Ok(Entity::Scope(scope));
    }
    if let Some(code) = token
        .get(..10)
        .filter(|p| p.eq_ignore_ascii_case("continent:"))
        .and_then(|_| token.get(10..))
    {
        return parse_continent(code);
    }
    if token.contains('/') {
        return parse_net(token);
    }
    if let Ok(addr) = token.parse::<IpAddr>() {
        return Ok(Entity::ip(addr));
    }
    if token.contains(':') {
        let hint = if token.contains('%') {
            " (zone ids like `%eth0` are not supported)"
        } else {
            ""
        };
        return Err(format!("not a valid IPv6 address{hint}"));
    }
    if let Some(digits) = asn_digits(token) {
        return parse_asn(digits);
    }
    if token.len() == 2 && token.bytes().all(|b| b.is_ascii_alphabetic()) {
        let mut code = [0u8; 2];
        for (slot, b) in code.iter_mut().zip(token.bytes()) {
            *slot = b.to_ascii_uppercase();
        }
        return Ok(Entity::Country(code));
    }
    if token.contains('.') && !token.is_ascii() {
        return Err(
            "domains must be ASCII: write internationalized names in punycode \
                    (`xn--…`, e.g. `xn--bcher-kva.de` for `bücher.de`)"
                .to_owned(),
        );
    }
    if token.contains(['.', '*']) {
        return parse_domain(token);
    }
    if token.bytes().all(|b| b.is_ascii_digit()) {
        return Err("a port needs a protocol: write `tcp/N`, `udp/N` or `*/N`".to_owned());
    }
    Err(
        "not a rule target: expected a domain (with a dot), IP address, network, \
         two-letter country code, ASN (`AS1234`), scope (Localhost, LAN, Internet, P2P) \
         or port spec (`tcp/443`)"
            .to_owned(),
    )
}

/// `AS1234` / `as1234` → `Some("1234")`: the token is meant as an ASN (even if the number is
/// bad) when `AS` is followed by a digit and the token has no dot (`as1.example.com` is a
/// domain).
fn asn_digits(token: &str) -> Option<&str> {
    let prefix = token.get(..2)?;
    let rest = token.get(2..)?;
    (prefix.eq_ignore_ascii_case("as")
        && rest.starts_with(|c: char| c.is_ascii_digit())
        && !rest.contains('.'))
    .then_some(rest)
}

/// The continent codes geo-IP data uses.
pub const CONTINENTS: [&str; 7] = ["AF", "AN", "AS", "EU", "NA", "OC", "SA"];

fn parse_continent(code: &str) -> Result<Entity, String> {
    let upper = code.to_ascii_uppercase();
    match CONTINENTS
        .iter()
        .find(|c| **c == upper)
        .map(|c| c.as_bytes())
    {
        Some(&[a, b]) => Ok(Entity::Continent([a, b])),
        _ => Err(format!(
            "unknown continent `{code}`: expected one of {}",
            CONTINENTS.join(", ")
        )),
    }
}

fn parse_asn(digits: &str) -> Result<Entity, String> {
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err("not a valid ASN: write `AS` and a number, e.g. `AS1234`".to_owned());
    }
    digits
        .parse::<u32>()
        .map(Entity::Asn)
        .map_err(|_| format!("ASN out of range: the largest is AS{}", u32::MAX))
}

/// Parses `ADDRESS/PREFIX`, refusing host bits so that what is stored is what was meant.
fn parse_net(token: &str) -> Result<Entity, String> {
    let Some((addr_text, prefix_text)) = token.split_once('/') else {
        return Err("expected a network like `10.0.0.0/8`".to_owned());
    };
    let Ok(addr) = addr_text.parse::<IpAddr>() else {
        if !addr_text.is_empty() && addr_text.bytes().all(|b| b.is_ascii_alphabetic()) {
            // `sctp/5`: a port spec with a protocol we do not know, not a network.
            return Err(format!(
                "unknown protocol `{}`: expected `tcp`, `udp`, `icmp` or `*`",
                shorten(addr_text)
            ));
        }
        return Err(format!(
            "`{}` is not an IP address: write a network like `10.0.0.0/8` or `2001:db8::/32`",
            shorten(addr_text)
        ));
    };
    let max = match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    };
    let prefix = if !prefix_text.is_empty() && prefix_text.bytes().all(|b| b.is_ascii_digit()) {
        prefix_text.parse::<u8>().ok().filter(|p| *p <= max)
    } else {
        None
    };
    let Some(prefix) = prefix else {
        return Err(format!(
            "prefix length `/{}` is invalid: it must be 0 to {max}",
            shorten(prefix_text)
        ));
    };
    let net = IpNet::new(addr, prefix)
        .map_err(|_| format!("prefix length `/{prefix}` is invalid: it must be 0 to {max}"))?;
    if net.trunc() != net {
        return Err(format!(
            "host bits are set: the network is `{}` (or write the address alone for one host)",
            net.trunc()
        ));
    }
    Ok(Entity::net(net))
}

/// Parses `example.com`, `*.example.com` and `.example.com`.
fn parse_domain(token: &str) -> Result<Entity, String> {
    let lower = token.to_ascii_lowercase();
    let (make, rest, exact): (fn(String) -> Entity, &str, bool) =
        if let Some(rest) = lower.strip_prefix("*.") {
            (Entity::Subdomains, rest, false)
        } else if let Some(rest) = lower.strip_prefix('.') {
            (Entity::DomainTree, rest, false)
        } else {
            (Entity::Domain, lower.as_str(), true)
        };
    if rest.contains('*') {
        return Err("wildcard `*` is only allowed as the first label (`*.example.com`)".to_owned());
    }
    // A fully qualified name may end in a dot; it names the same domain.
    let name = rest.strip_suffix('.').unwrap_or(rest);
    check_domain_name(name)?;
    // An exact single-label name would be ambiguous with country codes (`de`) and never comes
    // out of public DNS; `.de` and `*.de` are unambiguous and cover a whole TLD.
    if exact && !name.contains('.') {
        return Err("a domain needs a dot (`example.com`); `.name` matches a whole TLD".to_owned());
    }
    Ok(make(name.to_owned()))
}

/// Checks an ASCII, lowercase domain name without trailing dot (RFC 1035 sizes; `_` allowed
/// because service names like `_dmarc.example.com` use it).
fn check_domain_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty domain name".to_owned());
    }
    if name.len() > MAX_DOMAIN_LEN {
        return Err(format!(
            "domain name is longer than {MAX_DOMAIN_LEN} characters"
        ));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("empty label in domain name (two dots in a row?)".to_owned());
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(format!("label is longer than {MAX_LABEL_LEN} characters"));
        }
        if let Some(bad) = label
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_'))
        {
            return Err(format!(
                "character `{bad}` is not allowed in a domain (letters, digits, `-`, `_`)"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!(
                "label `{}` must not start or end with `-`",
                shorten(label)
            ));
        }
    }
    // No top-level domain is all digits, so this is a mistyped IP address, not a name.
    if name
        .rsplit('.')
        .next()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err("not a valid IP address (and a domain cannot end in a number)".to_owned());
    }
    Ok(())
}

/// Maps an IPv6 network inside `::ffff:0:0/96` to the IPv4 network it stands for.
fn canonical_net(net: IpNet) -> IpNet {
    if let IpNet::V6(v6) = net
        && v6.prefix_len() >= 96
        && let Some(v4) = v6.network().to_ipv4_mapped()
        && let Ok(mapped) = ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96)
    {
        return IpNet::V4(mapped);
    }
    net
}

/// Domain names compare without case and without a trailing dot, in case a caller did not
/// normalize (the facts contract says they are normalized, but a mismatch must not allow).
fn domain_eq(domain: &str, name: &str) -> bool {
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    domain.eq_ignore_ascii_case(name)
}

/// Whether `domain` is `something.name` (a strict subdomain of `name`).
fn is_strict_subdomain(domain: &str, name: &str) -> bool {
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    let Some(dot) = domain.len().checked_sub(name.len() + 1) else {
        return false;
    };
    // `dot > 0` keeps `.example.com` (an empty label) from counting as a subdomain.
    dot > 0
        && domain.as_bytes().get(dot) == Some(&b'.')
        && domain
            .get(dot + 1..)
            .is_some_and(|tail| tail.eq_ignore_ascii_case(name))
}

fn scope_matches(scope: Scope, facts: &Facts<'_>) -> bool {
    let class = classify_ip(facts.remote);
    match scope {
        Scope::Localhost => class == AddressClass::Localhost,
        Scope::Lan => class == AddressClass::Lan,
        // Internet covers P2P: P2P is Internet traffic the app did not look up.
        Scope::Internet => class == AddressClass::Internet,
        Scope::P2p => class == AddressClass::Internet && !facts.looked_up,
        Scope::Inbound => facts.direction == Direction::Inbound,
    }
}

/// Shortens long text for messages, on a character boundary.
fn shorten(text: &str) -> String {
    match text.char_indices().nth(MAX_SHOWN_TOKEN) {
        Some((cut, _)) => format!("{}…", text.get(..cut).unwrap_or_default()),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(text: &str) -> Rule {
        text.parse()
            .unwrap_or_else(|e| panic!("{text:?} should parse: {e}"))
    }

    fn parse_err(text: &str) -> RuleError {
        match text.parse::<Rule>() {
            Ok(rule) => panic!("{text:?} should be refused, got {rule:?}"),
            Err(e) => e,
        }
    }

    fn rule(action: RuleAction, entity: Entity, portspec: Option<PortSpec>) -> Rule {
        Rule {
            action,
            direction: Direction::Outbound,
            entity,
            portspec,
        }
    }

    fn net(text: &str) -> Entity {
        Entity::Net(text.parse().unwrap())
    }

    fn ports(protocol: Option<Protocol>, range: Option<(u16, u16)>) -> Option<PortSpec> {
        Some(PortSpec {
            protocol,
            ports: range,
        })
    }

    use Protocol::{Icmp, Tcp, Udp};
    use RuleAction::{Allow, Block};

    #[test]
    fn accepts_every_documented_example_and_prints_it_canonically() {
        let cases = [
            (
                "+ example.com",
                rule(Allow, Entity::Domain("example.com".into()), None),
            ),
            (
                "- *.example.com",
                rule(Block, Entity::Subdomains("example.com".into()), None),
            ),
            (
                "- .example.com",
                rule(Block, Entity::DomainTree("example.com".into()), None),
            ),
            ("- 10.0.0.0/8", rule(Block, net("10.0.0.0/8"), None)),
            (
                "+ tcp/443",
                rule(Allow, Entity::Any, ports(Some(Tcp), Some((443, 443)))),
            ),
            ("- AS1234", rule(Block, Entity::Asn(1234), None)),
            ("- DE", rule(Block, Entity::Country(*b"DE"), None)),
            ("+ LAN", rule(Allow, Entity::Scope(Scope::Lan), None)),
            (
                "- 2001:db8::/32 udp/53",
                rule(
                    Block,
                    net("2001:db8::/32"),
                    ports(Some(Udp), Some((53, 53))),
                ),
            ),
            (
                "+ Inbound tcp/22",
                Rule {
                    direction: Direction::Inbound,
                    ..rule(Allow, Entity::Any, ports(Some(Tcp), Some((22, 22))))
                },
            ),
            (
                "+ Inbound 192.168.0.0/16 tcp/22",
                Rule {
                    direction: Direction::Inbound,
                    ..rule(
                        Allow,
                        net("192.168.0.0/16"),
                        ports(Some(Tcp), Some((22, 22))),
                    )
                },
            ),
            ("- *", rule(Block, Entity::Any, None)),
            (
                "+ 10.1.2.3",
                rule(Allow, Entity::Ip("10.1.2.3".parse().unwrap()), None),
            ),
            (
                "+ 2001:db8::1",
                rule(Allow, Entity::Ip("2001:db8::1".parse().unwrap()), None),
            ),
            ("- udp", rule(Block, Entity::Any, ports(Some(Udp), None))),
            ("- icmp", rule(Block, Entity::Any, ports(Some(Icmp), None))),
            (
                "+ tcp/8000-8100",
                rule(Allow, Entity::Any, ports(Some(Tcp), Some((8000, 8100)))),
            ),
            (
                "- */443",
                rule(Block, Entity::Any, ports(None, Some((443, 443)))),
            ),
            (
                "- Localhost",
                rule(Block, Entity::Scope(Scope::Localhost), None),
            ),
            (
                "- Internet",
                rule(Block, Entity::Scope(Scope::Internet), None),
            ),
            ("- P2P", rule(Block, Entity::Scope(Scope::P2p), None)),
            (
                "- Inbound",
                Rule {
                    direction: Direction::Inbound,
                    ..rule(Block, Entity::Any, None)
                },
            ),
            (
                "+ _dmarc.example.com",
                rule(Allow, Entity::Domain("_dmarc.example.com".into()), None),
            ),
            ("- .de", rule(Block, Entity::DomainTree("de".into()), None)),
        ];
        for (text, expected) in cases {
            let parsed = parse_ok(text);
            assert_eq!(parsed, expected, "{text}");
            assert_eq!(parsed.to_string(), text, "canonical form of {text}");
        }
    }

    #[test]
    fn normalizes_case_spacing_comments_and_redundant_parts() {
        let cases = [
            ("  +   EXAMPLE.com.  ", "+ example.com"),
            ("- *.Example.COM # trackers", "- *.example.com"),
            ("-\t.example.com\t#", "- .example.com"),
            ("+ inbound TCP/22", "+ Inbound tcp/22"),
            ("+ INBOUND * tcp/22", "+ Inbound tcp/22"),
            ("- * tcp/443", "- tcp/443"),
            ("- as1234", "- AS1234"),
            ("- AS1.Example.com", "- as1.example.com"),
            ("- de", "- DE"),
            ("+ lan", "+ LAN"),
            ("+ p2p", "+ P2P"),
            ("- tcp/443-443", "- tcp/443"),
            ("- tcp/0443", "- tcp/443"),
            ("- ::ffff:10.1.2.3", "- 10.1.2.3"),
            ("- ::ffff:10.0.0.0/104", "- 10.0.0.0/8"),
            ("- 2001:DB8:0::/32", "- 2001:db8::/32"),
            ("+ Inbound *", "+ Inbound"),
        ];
        for (text, canonical) in cases {
            assert_eq!(parse_ok(text).to_string(), canonical, "{text}");
        }
    }

    #[test]
    fn refuses_bad_rules_naming_token_and_column() {
        // (input, offending token, column, part of the message)
        let cases = [
            ("- 10.0.0.0/33", "10.0.0.0/33", 3, "0 to 32"),
            ("- 2001:db8::/129", "2001:db8::/129", 3, "0 to 128"),
            ("- 10.0.0.1/8", "10.0.0.1/8", 3, "`10.0.0.0/8`"),
            ("* example.com", "*", 1, "starts with `+`"),
            ("+example.com", "+example.com", 1, "space after"),
            ("+", "+", 1, "rule has no target"),
            ("- # only a comment", "-", 1, "rule has no target"),
            ("- exa mple.com extra", "exa", 3, "not a rule target"),
            (
                "- example.com tcp/443 extra",
                "extra",
                23,
                "at most one entity",
            ),
            (
                "- example.com 10.0.0.1",
                "10.0.0.1",
                15,
                "at most one entity",
            ),
            ("- example.com foo", "foo", 15, "expected a port spec"),
            ("- example.com *", "*", 15, "not a port spec"),
            ("- tcp/443 udp/53", "udp/53", 11, "unexpected token"),
            (
                "- tcp/443 example.com",
                "example.com",
                11,
                "comes before the port spec",
            ),
            ("- tcp/0", "tcp/0", 3, "port 0"),
            ("- tcp/65536", "tcp/65536", 3, "too large"),
            ("- tcp/+443", "tcp/+443", 3, "not a port number"),
            ("- tcp/", "tcp/", 3, "missing port"),
            ("- tcp/9-1", "tcp/9-1", 3, "reversed"),
            ("- tcp/*", "tcp/*", 3, "write `tcp`"),
            ("- */*", "*/*", 3, "leave the port spec out"),
            ("- icmp/3", "icmp/3", 3, "ICMP has no ports"),
            (
                "- *.ex*ample.com",
                "*.ex*ample.com",
                3,
                "only allowed as the first label",
            ),
            (
                "- ex*ample.com",
                "ex*ample.com",
                3,
                "only allowed as the first label",
            ),
            ("- bücher.de", "bücher.de", 3, "punycode"),
            ("- AS99999999999", "AS99999999999", 3, "out of range"),
            ("- AS12x", "AS12x", 3, "not a valid ASN"),
            ("- de.", "de.", 3, "needs a dot"),
            ("- localhost.", "localhost.", 3, "needs a dot"),
            ("- 10.0.0.256", "10.0.0.256", 3, "not a valid IP"),
            ("- fe80::1%eth0", "fe80::1%eth0", 3, "zone"),
            ("- 2001:db8::g", "2001:db8::g", 3, "IPv6"),
            ("- example..com", "example..com", 3, "empty label"),
            ("- -example.com", "-example.com", 3, "start or end with `-`"),
            ("- exa$mple.com", "exa$mple.com", 3, "`$`"),
            ("- 443", "443", 3, "needs a protocol"),
            ("- LAN Inbound", "Inbound", 7, "right after the action"),
            ("+ Inbound Inbound", "Inbound", 11, "right after the action"),
            ("- sctp/5", "sctp/5", 3, "unknown protocol `sctp`"),
            ("- 10.0.0/8", "10.0.0/8", 3, "not an IP address"),
            ("", "", 1, "empty"),
            ("   ", "", 1, "empty"),
            ("# nothing", "", 1, "empty"),
            // Columns count characters, not bytes: two ideographic spaces (3 bytes each).
            ("-\u{3000}\u{3000}nodot", "nodot", 4, "not a rule target"),
        ];
        for (text, token, column, message) in cases {
            let err = parse_err(text);
            assert_eq!(
                (err.token.as_str(), err.column),
                (token, column),
                "{text:?}: {err}"
            );
            assert!(err.message.contains(message), "{text:?}: {err}");
        }
    }

    #[test]
    fn error_display_names_column_and_token() {
        let err = parse_err("- *.exa*mple.com");
        assert_eq!(
            err.to_string(),
            "invalid rule at column 3: `*.exa*mple.com`: wildcard `*` is only allowed as the \
             first label (`*.example.com`)"
        );
        let long = format!("- {}", "x".repeat(10_000));
        let shown = parse_err(&long).to_string();
        assert!(shown.len() < 400, "{shown}");
    }

    #[test]
    fn domain_length_limits() {
        let label63 = "a".repeat(63);
        parse_ok(&format!("- {label63}.com"));
        parse_err(&format!("- {label63}a.com"));
        // 4 labels of 63 + 3 dots = 255 > 253; trimmed to exactly 253 it is fine.
        let long = [label63.as_str(); 4].join(".");
        parse_err(&format!("- {long}"));
        let exactly = long.get(..253).unwrap().trim_end_matches('.');
        assert!(exactly.len() <= 253);
        parse_ok(&format!("- {exactly}"));
    }

    fn facts(remote: &str) -> Facts<'static> {
        Facts {
            direction: Direction::Outbound,
            protocol: Tcp,
            remote: remote.parse().unwrap(),
            remote_port: Some(443),
            local_port: Some(50123),
            domain: None,
            looked_up: true,
            country: None,
            asn: None,
            continent: None,
            listed: None,
        }
    }

    #[test]
    fn domain_entities_match_their_names() {
        let with = |d: &'static str| Facts {
            domain: Some(d),
            ..facts("203.0.113.1")
        };
        let exact = parse_ok("- example.com");
        let subs = parse_ok("- *.example.com");
        let tree = parse_ok("- .example.com");
        for (domain, e, s, t) in [
            ("example.com", true, false, true),
            ("www.example.com", false, true, true),
            ("a.b.example.com", false, true, true),
            ("Example.COM.", true, false, true),
            ("badexample.com", false, false, false),
            ("example.com.evil", false, false, false),
            ("com", false, false, false),
            (".example.com", false, false, false),
        ] {
            assert_eq!(exact.matches(&with(domain)), e, "exact {domain}");
            assert_eq!(subs.matches(&with(domain)), s, "subdomains {domain}");
            assert_eq!(tree.matches(&with(domain)), t, "tree {domain}");
        }
        // Without a domain, domain rules never match.
        assert!(!tree.matches(&facts("203.0.113.1")));
    }

    #[test]
    fn address_entities_match_mapped_addresses_too() {
        let ip = parse_ok("- 10.1.2.3");
        let net4 = parse_ok("- 10.0.0.0/8");
        let net6 = parse_ok("- 2001:db8::/32");
        assert!(ip.matches(&facts("10.1.2.3")));
        assert!(ip.matches(&facts("::ffff:10.1.2.3")));
        assert!(!ip.matches(&facts("10.1.2.4")));
        assert!(net4.matches(&facts("::ffff:10.200.0.1")));
        assert!(!net4.matches(&facts("11.0.0.1")));
        assert!(net6.matches(&facts("2001:db8:1::5")));
        assert!(!net6.matches(&facts("2001:db9::5")));
        // A hand-built mapped network still matches the IPv4 form of its addresses.
        let mapped = rule(
            Block,
            Entity::Net("::ffff:10.0.0.0/104".parse().unwrap()),
            None,
        );
        assert!(mapped.matches(&facts("10.9.9.9")));
    }

    #[test]
    fn country_asn_and_scope_entities() {
        let base = facts("203.0.113.1");
        let de = parse_ok("- de");
        assert!(de.matches(&Facts {
            country: Some(*b"DE"),
            ..base
        }));
        assert!(!de.matches(&Facts {
            country: Some(*b"FR"),
            ..base
        }));
        assert!(!de.matches(&base));
        let asn = parse_ok("- AS64500");
        assert!(asn.matches(&Facts {
            asn: Some(64500),
            ..base
        }));
        assert!(!asn.matches(&Facts {
            asn: Some(64501),
            ..base
        }));
        assert!(!asn.matches(&base));
        // Continents by their own keyword: `AS` alone is American Samoa, `NA` Namibia.
        let eu = parse_ok("- continent:eu");
        assert_eq!(eu.to_string(), "- continent:EU");
        assert!(eu.matches(&Facts {
            continent: Some(*b"EU"),
            ..base
        }));
        assert!(!eu.matches(&Facts {
            continent: Some(*b"AS"),
            country: Some(*b"EU"),
            ..base
        }));
        assert!(!eu.matches(&base));
        assert_eq!(parse_ok("- AS").to_string(), "- AS", "a country");
        for bad in ["- continent:XX", "- continent:", "- continent:Europe"] {
            let e = parse_err(bad).to_string();
            assert!(e.contains("continent"), "{bad}: {e}");
        }

        let scope = |s: &str| parse_ok(&format!("- {s}"));
        assert!(scope("Localhost").matches(&facts("127.0.0.1")));
        assert!(scope("LAN").matches(&facts("192.168.1.1")));
        assert!(!scope("LAN").matches(&facts("100.64.0.1")));
        assert!(scope("Internet").matches(&facts("100.64.0.1")));
        // Internet covers P2P; P2P needs an address nobody looked up.
        let p2p = Facts {
            looked_up: false,
            ..base
        };
        assert!(scope("Internet").matches(&p2p));
        assert!(scope("P2P").matches(&p2p));
        assert!(!scope("P2P").matches(&base));
        assert!(!scope("P2P").matches(&Facts {
            looked_up: false,
            ..facts("10.0.0.1")
        }));
    }

    #[test]
    fn portspecs_use_remote_port_outbound_and_local_port_inbound() {
        let out = facts("203.0.113.1");
        assert!(parse_ok("- tcp/443").matches(&out));
        assert!(parse_ok("- */443").matches(&out));
        assert!(parse_ok("- */443").matches(&Facts {
            protocol: Udp,
            ..out
        }));
        assert!(!parse_ok("- */443").matches(&Facts {
            protocol: Icmp,
            remote_port: None,
            ..out
        }));
        assert!(!parse_ok("- udp/443").matches(&out));
        assert!(parse_ok("- tcp/400-500").matches(&out));
        assert!(!parse_ok("- tcp/444-500").matches(&out));
        assert!(!parse_ok("- tcp/443").matches(&Facts {
            remote_port: None,
            ..out
        }));
        assert!(parse_ok("- tcp").matches(&Facts {
            remote_port: None,
            ..out
        }));
        assert!(parse_ok("- icmp").matches(&Facts {
            protocol: Icmp,
            remote_port: None,
            ..out
        }));
        assert!(!parse_ok("- icmp").matches(&out));

        let inbound = Facts {
            direction: Direction::Inbound,
            local_port: Some(22),
            ..out
        };
        assert!(parse_ok("+ Inbound tcp/22").matches(&inbound));
        assert!(!parse_ok("+ Inbound tcp/443").matches(&inbound));
        // Outbound rules never match inbound connections, and vice versa.
        assert!(!parse_ok("+ tcp/22").matches(&inbound));
        assert!(!parse_ok("+ Inbound tcp/443").matches(&out));
        assert!(parse_ok("+ Inbound").matches(&inbound));
        assert!(parse_ok("+ Inbound 203.0.113.0/24 tcp/22").matches(&inbound));
        assert!(!parse_ok("+ Inbound 198.51.100.0/24 tcp/22").matches(&inbound));
    }
}

//! The iptables rule sets Portcullis installs, as text for `iptables-restore --noflush`, and the
//! plans that take them out again, computed from `iptables-save` output. Pure: it renders and
//! reads text; running the tools is the platform module's job. It must not decide verdicts and
//! must not touch any chain or rule that is not ours — removal plans name our chains and only
//! the rules that jump to them.
//!
//! # The rule set
//!
//! Two chains in the `filter` table of both families, each entered first from a built-in chain:
//! `PORTCULLIS-OUT` from `OUTPUT` and `PORTCULLIS-IN` from `INPUT`. In order:
//!
//! 1. (`PORTCULLIS-IN` only) `-i lo -j RETURN`: loopback traffic is decided once, on its way
//!    out; on its way in the same connection is still NEW and would be asked about twice.
//! 2. With an excluded cgroup: `-m cgroup --path X -j RETURN`. The helper's own traffic must
//!    never wait behind its own queue.
//! 3. Packets the queue marked "allow": save our mark bits on the connection (`CONNMARK
//!    --save-mark` with `--nfmask`/`--ctmask` = our mask, so other software's connection marks
//!    stay) and ACCEPT.
//! 4. Marked "drop": DROP. Checked with the exact value within the mask, before "block".
//! 5. Marked "block": REJECT, with a TCP reset for TCP and a port-unreachable for the rest, so
//!    the app fails at once instead of waiting for a timeout.
//! 6. Connections in state NEW: NFQUEUE to our queue (with `--queue-bypass` when failing open,
//!    so traffic passes while no helper is bound to the queue).
//!
//! Packets of connections that are already established never reach the queue; the verdict on a
//! queued packet is "repeat", so it walks the chain again, now with its mark, and meets 3–5.
//!
//! # The DNS redirect
//!
//! With [`InterceptConfig::dns_redirect`], a third chain, `PORTCULLIS-DNS` in the `nat` table,
//! entered first from `nat OUTPUT`, sends DNS that this machine's programs address to any other
//! server to the helper's resolver:
//!
//! 1. With an excluded cgroup: `-m cgroup --path X -j RETURN`; then our allow bits within our
//!    mask: RETURN. The helper's own upstream queries must leave as they are.
//! 2. `-d RESOLVER -j RETURN`: already going to the resolver.
//! 3. UDP and TCP to port 53: DNAT to the resolver's address and port. systemd-resolved's stub
//!    (127.0.0.53/54) is covered too, so the asking app is known.
//!
//! The `nat` table sees only the first packet of a connection; conntrack rewrites the rest and
//! the answers (whose source is again the address the app asked). So a flow conntrack already
//! tracked before the rules went in keeps its destination until its entry expires. `nat
//! OUTPUT` comes before `filter OUTPUT`, so the queue sees a redirected query as going to the
//! resolver. Only what this machine sends is redirected, not what it forwards.
//!
//! DNAT to a loopback address from `OUTPUT` needs no `route_localnet` (tried in a lab with it
//! off on every interface, for a server on the link, one behind the default route and
//! resolved's stub, IPv4 and IPv6): the packet is routed again after `nat OUTPUT`, to `lo`.
//! That sysctl matters for packets with a loopback destination arriving on other interfaces,
//! i.e. DNAT in `PREROUTING`, which we do not use. So no sysctl is changed. The query keeps its
//! source address (the one routing chose for the original server) and port, so the resolver
//! sees the app's own socket; the original destination stays in the conntrack entry.
//!
//! IPv6 without a resolver address (`v6: None`): no `nat` chain for IPv6; instead
//! `PORTCULLIS-OUT` refuses IPv6 DNS to port 53 that does not carry our allow bits, just before
//! the queue rule (UDP: ICMPv6 port unreachable, and the sender's `send()` fails with `EPERM`;
//! TCP: a reset, `ECONNREFUSED`), so stub resolvers move on to an IPv4 server at once instead
//! of leaking past the resolver.
//!
//! # Backend
//!
//! This kernel has no native nft queue statement, so we use the iptables NFQUEUE target through
//! whichever iptables the host uses, never both in one namespace: see [`choose_backend`].

use std::fmt;

use crate::error::InterceptError;
use crate::marks::Marks;
use crate::{DnsRedirect, InterceptConfig};

/// Our chain for packets this machine sends.
pub const CHAIN_OUT: &str = "PORTCULLIS-OUT";
/// Our chain for packets this machine receives.
pub const CHAIN_IN: &str = "PORTCULLIS-IN";
/// Our chain in the `nat` table that redirects astray DNS (only with a DNS redirect).
pub const CHAIN_DNS: &str = "PORTCULLIS-DNS";
/// Our chains in the `filter` table.
pub const FILTER_CHAINS: [&str; 2] = [CHAIN_OUT, CHAIN_IN];
/// Every chain of ours, in any table: everything removal looks for.
pub const OUR_CHAINS: [&str; 3] = [CHAIN_OUT, CHAIN_IN, CHAIN_DNS];
/// The table our filter chains live in.
pub const TABLE: &str = "filter";
/// The table of our DNS redirect chain.
pub const NAT_TABLE: &str = "nat";
/// The port DNS is redirected from.
pub const DNS_PORT: u16 = 53;

/// An address family: which of `iptables` / `ip6tables`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// IPv4: `iptables`.
    V4,
    /// IPv6: `ip6tables`.
    V6,
}

impl Family {
    /// Both families, IPv4 first.
    pub const ALL: [Family; 2] = [Family::V4, Family::V6];
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        })
    }
}

/// Which iptables implementation holds the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// iptables-nft: xtables rules inside nf_tables (Debian's default).
    Nft,
    /// iptables-legacy: the old x_tables kernel interface.
    Legacy,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Nft => "nft",
            Backend::Legacy => "legacy",
        })
    }
}

/// Chooses the backend from what `iptables-legacy-save` and `iptables-nft-save` print (both
/// families concatenated): legacy when the legacy tables hold rules and the nft ones hold none,
/// nft otherwise.
///
/// The host's other firewall software (Docker, ufw, a VPN) put its rules into one of the two;
/// ours must go into the same one, because the two are evaluated independently and a packet
/// accepted by one can still be dropped by the other. When neither holds rules, nft is the
/// modern default (and what Debian's `iptables` points at).
pub fn choose_backend(legacy_save: &str, nft_save: &str) -> Backend {
    if has_rules(legacy_save) && !has_rules(nft_save) {
        Backend::Legacy
    } else {
        Backend::Nft
    }
}

/// Whether `iptables-save` output holds anything beyond empty built-in chains with an ACCEPT
/// policy: a rule, a user-defined chain, or a built-in chain with another policy.
pub fn has_rules(save: &str) -> bool {
    save.lines().map(str::trim).any(|line| {
        if line.starts_with("-A ") {
            return true;
        }
        let Some(decl) = line.strip_prefix(':') else {
            return false;
        };
        let mut words = decl.split_whitespace();
        let name = words.next().unwrap_or_default();
        let policy = words.next().unwrap_or_default();
        !is_builtin(name) || policy != "ACCEPT"
    })
}

fn is_builtin(chain: &str) -> bool {
    matches!(
        chain,
        "INPUT" | "OUTPUT" | "FORWARD" | "PREROUTING" | "POSTROUTING"
    )
}

/// Whether `path` is a cgroup path we can put into a rule: absolute, and only letters, digits
/// and `._-@:+=,/` (no spaces, quotes or line breaks that could change the rule text).
pub fn valid_cgroup_path(path: &str) -> bool {
    path.starts_with('/')
        && path.len() <= 4096
        && path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-@:+=,/".contains(c))
}

/// Checks `config` and derives its marks.
pub fn validate(config: &InterceptConfig) -> Result<Marks, InterceptError> {
    let marks = Marks::from_mask(config.mark_mask).ok_or(InterceptError::BadMarkMask {
        mask: config.mark_mask,
    })?;
    if let Some(path) = &config.exclude_cgroup
        && !valid_cgroup_path(path)
    {
        return Err(InterceptError::BadCgroupPath { path: path.clone() });
    }
    if let Some(redirect) = &config.dns_redirect {
        validate_dns(redirect)?;
    }
    Ok(marks)
}

/// Refuses resolver addresses a DNAT cannot sensibly go to: port 0, an unspecified, multicast
/// or broadcast address, an IPv4-mapped IPv6 address, or a scoped one (a link-local address
/// needs an interface, which a DNAT target cannot name).
fn validate_dns(redirect: &DnsRedirect) -> Result<(), InterceptError> {
    let bad = |addr: String, reason: &'static str| InterceptError::BadDnsRedirect { addr, reason };
    let v4 = redirect.v4;
    if v4.port() == 0 {
        return Err(bad(v4.to_string(), "port 0"));
    }
    if v4.ip().is_unspecified() || v4.ip().is_multicast() || v4.ip().is_broadcast() {
        return Err(bad(v4.to_string(), "not a unicast address"));
    }
    if let Some(v6) = redirect.v6 {
        let text = v6.to_string();
        if v6.port() == 0 {
            return Err(bad(text, "port 0"));
        }
        if v6.ip().is_unspecified() || v6.ip().is_multicast() {
            return Err(bad(text, "not a unicast address"));
        }
        if v6.ip().to_ipv4_mapped().is_some() {
            return Err(bad(
                text,
                "an IPv4-mapped address; give it as the IPv4 resolver",
            ));
        }
        if v6.scope_id() != 0 {
            return Err(bad(
                text,
                "a scoped address (a DNAT target cannot name an interface)",
            ));
        }
    }
    Ok(())
}

/// The `iptables-restore --noflush` input that creates our chains for `family` and jumps to
/// them first from `OUTPUT` and `INPUT` (`filter`), and with a DNS redirect for this family
/// our `nat` chain and the jump to it first from `nat OUTPUT`. Apply it only where none of our
/// chains exist (install removes leftovers first): declaring an existing chain would flush it,
/// and the jumps would be added a second time.
pub fn render_install(family: Family, config: &InterceptConfig) -> Result<String, InterceptError> {
    let marks = validate(config)?;
    let mut out = format!("*{TABLE}\n");
    for chain in FILTER_CHAINS {
        out.push_str(&format!(":{chain} - [0:0]\n"));
    }
    for chain in FILTER_CHAINS {
        for rule in chain_rules(family, chain, config, &marks) {
            out.push_str(&format!("-A {chain} {rule}\n"));
        }
    }
    out.push_str(&format!("-I OUTPUT 1 -j {CHAIN_OUT}\n"));
    out.push_str(&format!("-I INPUT 1 -j {CHAIN_IN}\n"));
    out.push_str("COMMIT\n");
    if let Some(rules) = dns_rules(family, config, &marks) {
        out.push_str(&format!("*{NAT_TABLE}\n:{CHAIN_DNS} - [0:0]\n"));
        for rule in rules {
            out.push_str(&format!("-A {CHAIN_DNS} {rule}\n"));
        }
        out.push_str(&format!("-I OUTPUT 1 -j {CHAIN_DNS}\n"));
        out.push_str("COMMIT\n");
    }
    Ok(out)
}

/// The rules of our `nat` chain for `family`, without the `-A CHAIN` prefix; `None` without a
/// DNS redirect for this family.
fn dns_rules(family: Family, config: &InterceptConfig, m: &Marks) -> Option<Vec<String>> {
    let redirect = config.dns_redirect.as_ref()?;
    let (resolver, target) = match family {
        Family::V4 => (
            format!("{}/32", redirect.v4.ip()),
            format!("{}:{}", redirect.v4.ip(), redirect.v4.port()),
        ),
        Family::V6 => {
            let v6 = redirect.v6?;
            (
                format!("{}/128", v6.ip()),
                format!("[{}]:{}", v6.ip(), v6.port()),
            )
        }
    };
    let mut rules = Vec::new();
    if let Some(path) = &config.exclude_cgroup {
        rules.push(format!("-m cgroup --path {path} -j RETURN"));
    }
    rules.push(format!(
        "-m mark --mark {:#x}/{:#x} -j RETURN",
        m.allow, m.mask
    ));
    rules.push(format!("-d {resolver} -j RETURN"));
    for proto in ["udp", "tcp"] {
        rules.push(format!(
            "-p {proto} --dport {DNS_PORT} -j DNAT --to-destination {target}"
        ));
    }
    Some(rules)
}

/// The `iptables-restore --noflush` input that switches the queue rules of our installed
/// chains (installed with `config` apart from `fail_open`) to `config.fail_open`, each
/// replaced in place (`-R`), so no packet passes unqueued while it changes.
pub fn render_fail_open(
    family: Family,
    config: &InterceptConfig,
) -> Result<String, InterceptError> {
    let marks = validate(config)?;
    let mut out = format!("*{TABLE}\n");
    for chain in FILTER_CHAINS {
        let rules = chain_rules(family, chain, config, &marks);
        let (Some(queue), position) = (rules.last(), rules.len()) else {
            continue;
        };
        out.push_str(&format!("-R {chain} {position} {queue}\n"));
    }
    out.push_str("COMMIT\n");
    Ok(out)
}

/// The rules of one of our chains, without the `-A CHAIN` prefix.
fn chain_rules(family: Family, chain: &str, config: &InterceptConfig, m: &Marks) -> Vec<String> {
    let mask = m.mask;
    let mut rules = Vec::new();
    if chain == CHAIN_IN {
        rules.push("-i lo -j RETURN".to_owned());
    }
    if let Some(path) = &config.exclude_cgroup {
        rules.push(format!("-m cgroup --path {path} -j RETURN"));
    }
    let allow = format!("-m mark --mark {:#x}/{mask:#x}", m.allow);
    rules.push(format!(
        "{allow} -j CONNMARK --save-mark --nfmask {mask:#x} --ctmask {mask:#x}"
    ));
    rules.push(format!("{allow} -j ACCEPT"));
    rules.push(format!("-m mark --mark {:#x}/{mask:#x} -j DROP", m.drop));
    let block = format!("-m mark --mark {:#x}/{mask:#x}", m.block);
    rules.push(format!("-p tcp {block} -j REJECT --reject-with tcp-reset"));
    let unreachable = match family {
        Family::V4 => "icmp-port-unreachable",
        Family::V6 => "icmp6-port-unreachable",
    };
    rules.push(format!("{block} -j REJECT --reject-with {unreachable}"));
    let refuse_v6_dns = family == Family::V6
        && chain == CHAIN_OUT
        && config.dns_redirect.is_some_and(|d| d.v6.is_none());
    if refuse_v6_dns {
        // The allowed (the helper's own) were accepted above; what is left would leak.
        rules.push(format!(
            "-p udp --dport {DNS_PORT} -j REJECT --reject-with {unreachable}"
        ));
        rules.push(format!(
            "-p tcp --dport {DNS_PORT} -j REJECT --reject-with tcp-reset"
        ));
    }
    let bypass = if config.fail_open {
        " --queue-bypass"
    } else {
        ""
    };
    rules.push(format!(
        "-m conntrack --ctstate NEW -j NFQUEUE --queue-num {}{bypass}",
        config.queue_num
    ));
    rules
}

/// Something removal took out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovedItem {
    /// The iptables backend it was in.
    pub backend: Backend,
    /// Its address family.
    pub family: Family,
    /// Its table (`filter`, or `nat` for the DNS redirect).
    pub table: String,
    /// What it was.
    pub kind: RemovedKind,
}

/// What a [`RemovedItem`] was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemovedKind {
    /// A rule in someone's chain that jumped to one of ours.
    Jump {
        /// The chain the rule was in (`OUTPUT`, `INPUT`, …).
        chain: String,
        /// The rule as `iptables-save` printed it, without `-A CHAIN`.
        rule: String,
    },
    /// One of our chains, with the number of rules it held.
    Chain {
        /// Its name.
        name: String,
        /// How many rules it held.
        rules: usize,
    },
}

impl fmt::Display for RemovedItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (b, fam, t) = (self.backend, self.family, &self.table);
        match &self.kind {
            RemovedKind::Jump { chain, rule } => {
                write!(f, "{fam} ({b}) table {t}: rule `-A {chain} {rule}`")
            }
            RemovedKind::Chain { name, rules } => {
                write!(f, "{fam} ({b}) table {t}: chain {name} ({rules} rules)")
            }
        }
    }
}

/// Everything a removal took out; empty when there was nothing of ours.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Removed {
    /// The jumps and chains removed, in the order they were found.
    pub items: Vec<RemovedItem>,
}

impl Removed {
    /// Whether nothing was removed.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Adds what another removal took out.
    pub fn extend(&mut self, other: Removed) {
        self.items.extend(other.items);
    }
}

impl fmt::Display for Removed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.items.is_empty() {
            return f.write_str("nothing");
        }
        for (i, item) in self.items.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{item}")?;
        }
        Ok(())
    }
}

/// How to remove what `iptables-save` shows of ours: the restore input and what it removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovalPlan {
    /// Input for `iptables-restore --noflush`, one block per table that holds something of
    /// ours (`filter`, `nat`): deletes every rule (in any chain of that table) that jumps to
    /// one of our chains, then flushes and deletes our chains.
    pub script: String,
    /// What the script removes (backend and family as given).
    pub removed: Removed,
}

/// Plans the removal of everything of ours in `save` (the output of `iptables-save` or
/// `ip6tables-save` of one backend); `None` when there is nothing of ours.
///
/// Every copy of a jump is deleted (`-D` with the rule exactly as saved, once per copy), so
/// leftovers of several crashed runs go too; nothing else is touched. Each table is planned
/// on its own, so other software's rules in the same table (Docker's `nat` chains, say) stay.
pub fn plan_removal(save: &str, backend: Backend, family: Family) -> Option<RemovalPlan> {
    let mut script = String::new();
    let mut removed = Removed::default();
    let mut table: Option<TablePlan> = None;
    for line in save.lines() {
        let line = line.trim_end();
        if let Some(name) = line.strip_prefix('*') {
            table = Some(TablePlan::new(name));
        } else if line == "COMMIT" {
            if let Some(t) = table.take() {
                t.finish(&mut script, &mut removed, backend, family);
            }
        } else if let Some(t) = table.as_mut() {
            t.read(line);
        }
    }
    if removed.is_empty() {
        None
    } else {
        Some(RemovalPlan { script, removed })
    }
}

/// What one table of a save output holds of ours.
struct TablePlan {
    name: String,
    /// (chain, rule text after `-A CHAIN `) of every rule jumping to one of our chains.
    jumps: Vec<(String, String)>,
    /// Our chains declared in this table, with their rule counts.
    chains: Vec<(String, usize)>,
}

impl TablePlan {
    fn new(name: &str) -> TablePlan {
        TablePlan {
            name: name.trim().to_owned(),
            jumps: Vec::new(),
            chains: Vec::new(),
        }
    }

    fn read(&mut self, line: &str) {
        if let Some(decl) = line.strip_prefix(':') {
            let name = decl.split_whitespace().next().unwrap_or_default();
            if OUR_CHAINS.contains(&name) {
                self.chains.push((name.to_owned(), 0));
            }
            return;
        }
        let Some(rest) = line.strip_prefix("-A ") else {
            return;
        };
        let Some((chain, rule)) = rest.split_once(' ') else {
            return;
        };
        if OUR_CHAINS.contains(&chain) {
            if let Some(entry) = self.chains.iter_mut().find(|(n, _)| n == chain) {
                entry.1 += 1;
            }
            return;
        }
        let words = split_words(rule);
        let jumps_to_ours = words.windows(2).any(|w| match w {
            [flag, target] => {
                matches!(flag.as_str(), "-j" | "-g" | "--jump" | "--goto")
                    && OUR_CHAINS.contains(&target.as_str())
            }
            _ => false,
        });
        if jumps_to_ours {
            self.jumps.push((chain.to_owned(), rule.to_owned()));
        }
    }

    fn finish(self, script: &mut String, removed: &mut Removed, backend: Backend, family: Family) {
        if self.jumps.is_empty() && self.chains.is_empty() {
            return;
        }
        script.push_str(&format!("*{}\n", self.name));
        for (chain, rule) in &self.jumps {
            script.push_str(&format!("-D {chain} {rule}\n"));
        }
        for (chain, _) in &self.chains {
            script.push_str(&format!("-F {chain}\n"));
        }
        for (chain, _) in &self.chains {
            script.push_str(&format!("-X {chain}\n"));
        }
        script.push_str("COMMIT\n");
        let item = |kind| RemovedItem {
            backend,
            family,
            table: self.name.clone(),
            kind,
        };
        for (chain, rule) in &self.jumps {
            removed.items.push(item(RemovedKind::Jump {
                chain: chain.clone(),
                rule: rule.clone(),
            }));
        }
        for (name, rules) in &self.chains {
            removed.items.push(item(RemovedKind::Chain {
                name: name.clone(),
                rules: *rules,
            }));
        }
    }
}

/// Splits a saved rule into words the way iptables-save quotes them: double quotes group, a
/// backslash escapes the next character inside quotes.
fn split_words(rule: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quoted = false;
    let mut chars = rule.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            '\\' if quoted => {
                if let Some(next) = chars.next() {
                    word.push(next);
                }
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

#[cfg(test)]
mod tests {
    #[test]
    fn fail_open_switch_replaces_only_the_queue_rules_in_place() {
        let mut config = InterceptConfig {
            fail_open: false,
            ..InterceptConfig::default()
        };
        let text = render_fail_open(Family::V4, &config).unwrap();
        let installed = render_install(Family::V4, &config).unwrap();
        let out_rules = installed
            .lines()
            .filter(|l| l.starts_with("-A PORTCULLIS-OUT"))
            .count();
        let in_rules = installed
            .lines()
            .filter(|l| l.starts_with("-A PORTCULLIS-IN"))
            .count();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.first(), Some(&"*filter"));
        assert_eq!(lines.last(), Some(&"COMMIT"));
        assert_eq!(lines.len(), 4, "{text}");
        let out = format!("-R PORTCULLIS-OUT {out_rules} ");
        let inn = format!("-R PORTCULLIS-IN {in_rules} ");
        assert!(
            lines[1].starts_with(&out) && lines[1].ends_with("--queue-num 4200"),
            "{text}"
        );
        assert!(
            lines[2].starts_with(&inn) && !lines[2].contains("bypass"),
            "{text}"
        );
        config.fail_open = true;
        let text = render_fail_open(Family::V6, &config).unwrap();
        assert_eq!(text.matches("--queue-bypass").count(), 2, "{text}");
        // The replaced rule is the one install put last.
        let last_out = installed
            .lines()
            .rfind(|l| l.starts_with("-A PORTCULLIS-OUT"))
            .unwrap();
        assert!(last_out.contains("NFQUEUE"), "{last_out}");
    }

    use super::*;

    fn config(fail_open: bool, cgroup: Option<&str>) -> InterceptConfig {
        InterceptConfig {
            fail_open,
            exclude_cgroup: cgroup.map(str::to_owned),
            ..InterceptConfig::default()
        }
    }

    #[test]
    fn ipv4_default_rule_set() {
        let text = render_install(Family::V4, &config(true, None)).unwrap();
        assert_eq!(
            text,
            "*filter\n\
             :PORTCULLIS-OUT - [0:0]\n\
             :PORTCULLIS-IN - [0:0]\n\
             -A PORTCULLIS-OUT -m mark --mark 0x10000000/0x90000000 -j CONNMARK --save-mark --nfmask 0x90000000 --ctmask 0x90000000\n\
             -A PORTCULLIS-OUT -m mark --mark 0x10000000/0x90000000 -j ACCEPT\n\
             -A PORTCULLIS-OUT -m mark --mark 0x90000000/0x90000000 -j DROP\n\
             -A PORTCULLIS-OUT -p tcp -m mark --mark 0x80000000/0x90000000 -j REJECT --reject-with tcp-reset\n\
             -A PORTCULLIS-OUT -m mark --mark 0x80000000/0x90000000 -j REJECT --reject-with icmp-port-unreachable\n\
             -A PORTCULLIS-OUT -m conntrack --ctstate NEW -j NFQUEUE --queue-num 4200 --queue-bypass\n\
             -A PORTCULLIS-IN -i lo -j RETURN\n\
             -A PORTCULLIS-IN -m mark --mark 0x10000000/0x90000000 -j CONNMARK --save-mark --nfmask 0x90000000 --ctmask 0x90000000\n\
             -A PORTCULLIS-IN -m mark --mark 0x10000000/0x90000000 -j ACCEPT\n\
             -A PORTCULLIS-IN -m mark --mark 0x90000000/0x90000000 -j DROP\n\
             -A PORTCULLIS-IN -p tcp -m mark --mark 0x80000000/0x90000000 -j REJECT --reject-with tcp-reset\n\
             -A PORTCULLIS-IN -m mark --mark 0x80000000/0x90000000 -j REJECT --reject-with icmp-port-unreachable\n\
             -A PORTCULLIS-IN -m conntrack --ctstate NEW -j NFQUEUE --queue-num 4200 --queue-bypass\n\
             -I OUTPUT 1 -j PORTCULLIS-OUT\n\
             -I INPUT 1 -j PORTCULLIS-IN\n\
             COMMIT\n"
        );
    }

    #[test]
    fn ipv6_uses_icmp6_unreachable_and_fail_closed_has_no_bypass() {
        let text = render_install(Family::V6, &config(false, None)).unwrap();
        assert!(text.contains("-j REJECT --reject-with icmp6-port-unreachable\n"));
        assert!(!text.contains("icmp-port-unreachable"));
        assert!(text.contains("-j REJECT --reject-with tcp-reset\n"));
        assert!(text.contains("-j NFQUEUE --queue-num 4200\n"));
        assert!(!text.contains("--queue-bypass"));
    }

    #[test]
    fn excluded_cgroup_returns_first_in_out_and_after_loopback_in_in() {
        let cfg = config(true, Some("/system.slice/portcullisd.service"));
        let text = render_install(Family::V4, &cfg).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let ret = "-m cgroup --path /system.slice/portcullisd.service -j RETURN";
        assert_eq!(
            lines.get(3).copied(),
            Some(&*format!("-A PORTCULLIS-OUT {ret}"))
        );
        let lo = lines
            .iter()
            .position(|l| *l == "-A PORTCULLIS-IN -i lo -j RETURN")
            .unwrap();
        assert_eq!(
            lines.get(lo + 1).copied(),
            Some(&*format!("-A PORTCULLIS-IN {ret}"))
        );
        assert_eq!(text.matches("-m cgroup").count(), 2);
    }

    #[test]
    fn other_queue_and_mask() {
        let cfg = InterceptConfig {
            queue_num: 7,
            mark_mask: 0x0300,
            ..InterceptConfig::default()
        };
        let text = render_install(Family::V4, &cfg).unwrap();
        assert!(text.contains("--mark 0x100/0x300 -j ACCEPT"));
        assert!(text.contains("--mark 0x300/0x300 -j DROP"));
        assert!(text.contains("-p tcp -m mark --mark 0x200/0x300 -j REJECT"));
        assert!(text.contains("--nfmask 0x300 --ctmask 0x300"));
        assert!(text.contains("--queue-num 7 --queue-bypass"));
    }

    #[test]
    fn drop_is_checked_before_block() {
        let text = render_install(Family::V4, &config(true, None)).unwrap();
        let drop = text.find("-j DROP").unwrap();
        let reject = text.find("-j REJECT").unwrap();
        let queue = text.find("-j NFQUEUE").unwrap();
        assert!(drop < reject && reject < queue);
    }

    #[test]
    fn bad_configs_are_refused() {
        let cfg = InterceptConfig {
            mark_mask: 0x8000_0000,
            ..InterceptConfig::default()
        };
        assert!(matches!(
            render_install(Family::V4, &cfg),
            Err(InterceptError::BadMarkMask { mask: 0x8000_0000 })
        ));
        for bad in [
            "relative",
            "/with space",
            "/new\n-A OUTPUT -j ACCEPT",
            "/quo\"te",
            "",
        ] {
            assert!(
                matches!(
                    render_install(Family::V4, &config(true, Some(bad))),
                    Err(InterceptError::BadCgroupPath { .. })
                ),
                "{bad:?}"
            );
        }
        assert!(valid_cgroup_path(
            "/user.slice/user-1000.slice/app@1.service"
        ));
    }

    #[test]
    fn backend_follows_the_rules_already_there() {
        let empty = "";
        let empty_tables = "# Generated by iptables-save\n*filter\n:INPUT ACCEPT [0:0]\n\
                            :FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [12:34]\nCOMMIT\n";
        let with_rule = "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -i lo -j ACCEPT\nCOMMIT\n";
        let with_chain = "*nat\n:DOCKER - [0:0]\nCOMMIT\n";
        let with_policy = "*filter\n:INPUT DROP [0:0]\nCOMMIT\n";
        assert_eq!(choose_backend(empty, empty), Backend::Nft);
        assert_eq!(choose_backend(empty_tables, empty_tables), Backend::Nft);
        assert_eq!(choose_backend(with_rule, empty), Backend::Legacy);
        assert_eq!(choose_backend(with_chain, empty_tables), Backend::Legacy);
        assert_eq!(choose_backend(with_policy, empty), Backend::Legacy);
        assert_eq!(choose_backend(empty, with_rule), Backend::Nft);
        // Both hold rules: the host already mixes; we follow the default.
        assert_eq!(choose_backend(with_rule, with_rule), Backend::Nft);
    }

    const SAVED: &str = "\
# Generated by iptables-save v1.8.9 (nf_tables) on Mon Nov 23 14:10:34 2026
*mangle
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A OUTPUT -j MARK --set-xmark 0x4000/0x4000
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:PORTCULLIS-IN - [0:0]
:PORTCULLIS-OUT - [0:0]
:OTHER - [0:0]
-A INPUT -j PORTCULLIS-IN
-A OUTPUT -j PORTCULLIS-OUT
-A OUTPUT -j PORTCULLIS-OUT
-A OUTPUT -m mark --mark 0xca6c -j ACCEPT
-A OUTPUT -m comment --comment \"-j PORTCULLIS-OUT\" -j ACCEPT
-A OTHER -p tcp -g PORTCULLIS-OUT
-A PORTCULLIS-IN -i lo -j RETURN
-A PORTCULLIS-OUT -m conntrack --ctstate NEW -j NFQUEUE --queue-num 4200 --queue-bypass
-A PORTCULLIS-OUT -m mark --mark 0x10000000/0x90000000 -j ACCEPT
COMMIT
# Completed on Mon Nov 23 14:10:34 2026
";

    #[test]
    fn removal_deletes_every_jump_and_our_chains_only() {
        let plan = plan_removal(SAVED, Backend::Nft, Family::V4).unwrap();
        assert_eq!(
            plan.script,
            "*filter\n\
             -D INPUT -j PORTCULLIS-IN\n\
             -D OUTPUT -j PORTCULLIS-OUT\n\
             -D OUTPUT -j PORTCULLIS-OUT\n\
             -D OTHER -p tcp -g PORTCULLIS-OUT\n\
             -F PORTCULLIS-IN\n\
             -F PORTCULLIS-OUT\n\
             -X PORTCULLIS-IN\n\
             -X PORTCULLIS-OUT\n\
             COMMIT\n"
        );
        assert_eq!(plan.removed.items.len(), 6);
        assert!(plan.removed.items.contains(&RemovedItem {
            backend: Backend::Nft,
            family: Family::V4,
            table: "filter".to_owned(),
            kind: RemovedKind::Chain {
                name: "PORTCULLIS-OUT".to_owned(),
                rules: 2
            },
        }));
        let text = plan.removed.to_string();
        assert!(text.contains("ipv4 (nft) table filter: rule `-A INPUT -j PORTCULLIS-IN`"));
    }

    #[test]
    fn removal_of_nothing_is_none() {
        assert_eq!(plan_removal("", Backend::Nft, Family::V4), None);
        let foreign = "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j ACCEPT\nCOMMIT\n";
        assert_eq!(plan_removal(foreign, Backend::Legacy, Family::V6), None);
        assert_eq!(Removed::default().to_string(), "nothing");
    }

    #[test]
    fn removal_of_what_install_renders() {
        // What install renders, as iptables-save would print it back.
        let saved = "*filter\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
                     :PORTCULLIS-IN - [0:0]\n:PORTCULLIS-OUT - [0:0]\n\
                     -A INPUT -j PORTCULLIS-IN\n-A OUTPUT -j PORTCULLIS-OUT\n\
                     -A PORTCULLIS-IN -m cgroup --path \"/a b\" -j RETURN\nCOMMIT\n";
        let plan = plan_removal(saved, Backend::Nft, Family::V6).unwrap();
        assert!(
            plan.script
                .starts_with("*filter\n-D INPUT -j PORTCULLIS-IN\n")
        );
        assert_eq!(plan.removed.items.len(), 4);
    }

    #[test]
    fn words_follow_save_quoting() {
        assert_eq!(
            split_words(r#"-m comment --comment "a \"b\" c" -j X"#),
            ["-m", "comment", "--comment", "a \"b\" c", "-j", "X"]
        );
        assert_eq!(split_words(r#"--path """#), ["--path", ""]);
    }

    fn dns(v6: Option<&str>) -> InterceptConfig {
        InterceptConfig {
            dns_redirect: Some(DnsRedirect {
                v4: crate::DEFAULT_DNS_RESOLVER,
                v6: v6.map(|a| a.parse().unwrap()),
            }),
            ..InterceptConfig::default()
        }
    }

    /// The `*nat` block of a rendered install, if any.
    fn nat_block(text: &str) -> Option<&str> {
        text.find("*nat\n").map(|i| &text[i..])
    }

    #[test]
    fn dns_redirect_renders_a_nat_chain_after_the_unchanged_filter_table() {
        let text = render_install(Family::V4, &dns(None)).unwrap();
        let plain = render_install(Family::V4, &InterceptConfig::default()).unwrap();
        assert!(
            text.starts_with(&plain),
            "the filter table is unchanged:\n{text}"
        );
        assert_eq!(
            &text[plain.len()..],
            "*nat\n\
             :PORTCULLIS-DNS - [0:0]\n\
             -A PORTCULLIS-DNS -m mark --mark 0x10000000/0x90000000 -j RETURN\n\
             -A PORTCULLIS-DNS -d 127.0.0.153/32 -j RETURN\n\
             -A PORTCULLIS-DNS -p udp --dport 53 -j DNAT --to-destination 127.0.0.153:53\n\
             -A PORTCULLIS-DNS -p tcp --dport 53 -j DNAT --to-destination 127.0.0.153:53\n\
             -I OUTPUT 1 -j PORTCULLIS-DNS\n\
             COMMIT\n"
        );
        // Without a redirect, no nat table at all.
        assert_eq!(nat_block(&plain), None);
        assert_eq!(
            nat_block(&render_install(Family::V6, &InterceptConfig::default()).unwrap()),
            None
        );
    }

    #[test]
    fn dns_redirect_ipv6_to_its_own_address_and_port() {
        let text = render_install(Family::V6, &dns(Some("[::1]:5353"))).unwrap();
        assert_eq!(
            nat_block(&text),
            Some(
                "*nat\n\
                 :PORTCULLIS-DNS - [0:0]\n\
                 -A PORTCULLIS-DNS -m mark --mark 0x10000000/0x90000000 -j RETURN\n\
                 -A PORTCULLIS-DNS -d ::1/128 -j RETURN\n\
                 -A PORTCULLIS-DNS -p udp --dport 53 -j DNAT --to-destination [::1]:5353\n\
                 -A PORTCULLIS-DNS -p tcp --dport 53 -j DNAT --to-destination [::1]:5353\n\
                 -I OUTPUT 1 -j PORTCULLIS-DNS\n\
                 COMMIT\n"
            )
        );
        // With an IPv6 resolver, IPv6 DNS is redirected, not refused.
        assert!(!text.contains("--dport 53 -j REJECT"), "{text}");
        // The IPv4 chain goes to the IPv4 resolver only.
        let v4 = render_install(Family::V4, &dns(Some("[::1]:5353"))).unwrap();
        assert!(v4.contains("--to-destination 127.0.0.153:53\n"));
        assert!(!v4.contains("::1"));
    }

    #[test]
    fn without_an_ipv6_resolver_ipv6_dns_is_refused_before_the_queue() {
        let text = render_install(Family::V6, &dns(None)).unwrap();
        assert_eq!(nat_block(&text), None, "no IPv6 nat chain: {text}");
        let out: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("-A PORTCULLIS-OUT "))
            .collect();
        let n = out.len();
        assert_eq!(
            out.get(n - 3..),
            Some(
                &[
                    "-p udp --dport 53 -j REJECT --reject-with icmp6-port-unreachable",
                    "-p tcp --dport 53 -j REJECT --reject-with tcp-reset",
                    "-m conntrack --ctstate NEW -j NFQUEUE --queue-num 4200 --queue-bypass",
                ][..]
            ),
            "{text}"
        );
        // After the allow rules, so the helper's own (marked) queries pass.
        let accept = text.find("-j ACCEPT").unwrap();
        assert!(accept < text.find("--dport 53 -j REJECT").unwrap());
        // Only outbound, and only IPv6.
        assert!(!text.contains("-A PORTCULLIS-IN -p udp --dport 53"));
        let v4 = render_install(Family::V4, &dns(None)).unwrap();
        assert!(!v4.contains("--dport 53 -j REJECT"), "{v4}");
        // The fail-open switch still replaces the queue rule, now one further down.
        let switch = render_fail_open(Family::V6, &dns(None)).unwrap();
        assert!(
            switch.contains(&format!("-R PORTCULLIS-OUT {n} -m conntrack")),
            "{switch}"
        );
    }

    #[test]
    fn dns_redirect_lets_the_excluded_cgroup_and_other_marks_pass() {
        let cfg = InterceptConfig {
            mark_mask: 0x0300,
            exclude_cgroup: Some("/system.slice/portcullisd.service".to_owned()),
            ..dns(Some("[fd00::53]:53"))
        };
        for family in Family::ALL {
            let text = render_install(family, &cfg).unwrap();
            let nat = nat_block(&text).unwrap();
            let chain: Vec<&str> = nat
                .lines()
                .filter_map(|l| l.strip_prefix("-A PORTCULLIS-DNS "))
                .collect();
            assert_eq!(
                chain.get(..2),
                Some(
                    &[
                        "-m cgroup --path /system.slice/portcullisd.service -j RETURN",
                        "-m mark --mark 0x100/0x300 -j RETURN",
                    ][..]
                ),
                "{nat}"
            );
        }
    }

    #[test]
    fn unusable_resolver_addresses_are_refused() {
        let with = |v4: &str, v6: Option<&str>| InterceptConfig {
            dns_redirect: Some(DnsRedirect {
                v4: v4.parse().unwrap(),
                v6: v6.map(|a| a.parse().unwrap()),
            }),
            ..InterceptConfig::default()
        };
        for (v4, v6) in [
            ("127.0.0.153:0", None),
            ("0.0.0.0:53", None),
            ("224.0.0.251:53", None),
            ("255.255.255.255:53", None),
            ("127.0.0.153:53", Some("[::]:53")),
            ("127.0.0.153:53", Some("[::1]:0")),
            ("127.0.0.153:53", Some("[ff02::fb]:53")),
            ("127.0.0.153:53", Some("[::ffff:127.0.0.1]:53")),
            ("127.0.0.153:53", Some("[fe80::1%2]:53")),
        ] {
            let err = render_install(Family::V4, &with(v4, v6)).unwrap_err();
            assert!(
                matches!(err, InterceptError::BadDnsRedirect { .. }),
                "{v4} {v6:?}: {err}"
            );
        }
        assert!(render_install(Family::V6, &with("10.0.0.53:5353", Some("[fd00::53]:53"))).is_ok());
    }

    /// A Docker host: Docker's own chains in `nat` and `filter`, as `iptables-save` prints them.
    const DOCKER: &str = "\
# Generated by iptables-save v1.8.9 (nf_tables) on Mon Nov 23 14:10:34 2026
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
-A DOCKER -i docker0 -j RETURN
-A DOCKER ! -i docker0 -p udp -m udp --dport 53 -j DNAT --to-destination 172.17.0.2:53
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER - [0:0]
-A FORWARD -o docker0 -j DOCKER
-A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p udp -m udp --dport 53 -j ACCEPT
COMMIT
";

    /// [`DOCKER`] with our rules installed (DNS redirect on), as `iptables-save` prints it.
    const DOCKER_WITH_OURS: &str = "\
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
:PORTCULLIS-DNS - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A OUTPUT -j PORTCULLIS-DNS
-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
-A DOCKER -i docker0 -j RETURN
-A DOCKER ! -i docker0 -p udp -m udp --dport 53 -j DNAT --to-destination 172.17.0.2:53
-A PORTCULLIS-DNS -m mark --mark 0x10000000/0x90000000 -j RETURN
-A PORTCULLIS-DNS -d 127.0.0.153/32 -j RETURN
-A PORTCULLIS-DNS -p udp -m udp --dport 53 -j DNAT --to-destination 127.0.0.153:53
-A PORTCULLIS-DNS -p tcp -m tcp --dport 53 -j DNAT --to-destination 127.0.0.153:53
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER - [0:0]
:PORTCULLIS-IN - [0:0]
:PORTCULLIS-OUT - [0:0]
-A INPUT -j PORTCULLIS-IN
-A FORWARD -o docker0 -j DOCKER
-A OUTPUT -j PORTCULLIS-OUT
-A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p udp -m udp --dport 53 -j ACCEPT
-A PORTCULLIS-IN -i lo -j RETURN
-A PORTCULLIS-OUT -m conntrack --ctstate NEW -j NFQUEUE --queue-num 4200 --queue-bypass
COMMIT
";

    /// What `iptables-restore --noflush` does with a removal script, for the commands plans
    /// use (`-D` deletes the first equal rule, `-F` a chain's rules, `-X` its declaration),
    /// applied to save output with comment lines dropped.
    fn apply(save: &str, script: &str) -> String {
        let mut lines: Vec<String> = save
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(str::to_owned)
            .collect();
        let mut table = String::new();
        for cmd in script.lines() {
            if let Some(name) = cmd.strip_prefix('*') {
                table = name.to_owned();
                continue;
            }
            if cmd == "COMMIT" {
                continue;
            }
            let start = lines
                .iter()
                .position(|l| *l == format!("*{table}"))
                .unwrap();
            let end = start + lines[start..].iter().position(|l| l == "COMMIT").unwrap();
            let (op, rest) = cmd.split_once(' ').unwrap();
            match op {
                "-D" => {
                    let at = (start..end)
                        .find(|&i| lines[i] == format!("-A {rest}"))
                        .unwrap_or_else(|| panic!("no rule to delete: {cmd}"));
                    lines.remove(at);
                }
                "-F" => {
                    let prefix = format!("-A {rest} ");
                    let mut i = start;
                    let mut end = end;
                    while i < end {
                        if lines[i].starts_with(&prefix) {
                            lines.remove(i);
                            end -= 1;
                        } else {
                            i += 1;
                        }
                    }
                }
                "-X" => {
                    let decl = format!(":{rest} ");
                    assert!(
                        !lines[start..end]
                            .iter()
                            .any(|l| l.starts_with(&format!("-A {rest} "))),
                        "{cmd}: chain not empty"
                    );
                    let at = (start..end)
                        .find(|&i| lines[i].starts_with(&decl))
                        .unwrap_or_else(|| panic!("no chain to delete: {cmd}"));
                    lines.remove(at);
                }
                _ => panic!("unexpected command {cmd}"),
            }
        }
        lines.iter().map(|l| format!("{l}\n")).collect()
    }

    #[test]
    fn removal_takes_our_nat_chain_and_jump_and_leaves_dockers_rules() {
        let plan = plan_removal(DOCKER_WITH_OURS, Backend::Nft, Family::V4).unwrap();
        assert_eq!(
            plan.script,
            "*nat\n\
             -D OUTPUT -j PORTCULLIS-DNS\n\
             -F PORTCULLIS-DNS\n\
             -X PORTCULLIS-DNS\n\
             COMMIT\n\
             *filter\n\
             -D INPUT -j PORTCULLIS-IN\n\
             -D OUTPUT -j PORTCULLIS-OUT\n\
             -F PORTCULLIS-IN\n\
             -F PORTCULLIS-OUT\n\
             -X PORTCULLIS-IN\n\
             -X PORTCULLIS-OUT\n\
             COMMIT\n"
        );
        assert!(plan.removed.items.contains(&RemovedItem {
            backend: Backend::Nft,
            family: Family::V4,
            table: "nat".to_owned(),
            kind: RemovedKind::Chain {
                name: "PORTCULLIS-DNS".to_owned(),
                rules: 4
            },
        }));
        assert!(
            plan.removed
                .to_string()
                .contains("ipv4 (nft) table nat: rule `-A OUTPUT -j PORTCULLIS-DNS`")
        );
        // Applied, the plan gives back Docker's rule set line for line.
        let docker: String = DOCKER
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(apply(DOCKER_WITH_OURS, &plan.script), docker);
        // Docker's rules alone are nothing of ours.
        assert_eq!(plan_removal(DOCKER, Backend::Nft, Family::V4), None);
    }

    #[test]
    fn removal_finds_a_nat_chain_left_alone_by_a_crash_between_tables() {
        // Only the nat part (e.g. a filter-only removal by an older version), plus a second
        // copy of the jump.
        let saved = "*nat\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
                     :PORTCULLIS-DNS - [0:0]\n-A OUTPUT -j PORTCULLIS-DNS\n\
                     -A OUTPUT -j PORTCULLIS-DNS\n\
                     -A PORTCULLIS-DNS -d ::1/128 -j RETURN\nCOMMIT\n\
                     *filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n";
        let plan = plan_removal(saved, Backend::Legacy, Family::V6).unwrap();
        assert_eq!(
            plan.script,
            "*nat\n-D OUTPUT -j PORTCULLIS-DNS\n-D OUTPUT -j PORTCULLIS-DNS\n\
             -F PORTCULLIS-DNS\n-X PORTCULLIS-DNS\nCOMMIT\n"
        );
        assert_eq!(plan.removed.items.len(), 3);
        assert!(plan.removed.items.iter().all(|i| i.table == "nat"));
        assert_eq!(
            apply(saved, &plan.script),
            "*nat\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n\
             *filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n"
        );
    }

    #[test]
    fn removal_plan_undoes_what_install_renders_with_the_dns_redirect() {
        // Install's text applied to Docker's rule set the way iptables-restore would (new
        // chains declared after the existing ones, `-I OUTPUT 1` first in OUTPUT), then the
        // removal plan of that: Docker's rule set again.
        let mut saved = String::new();
        let install = render_install(Family::V4, &dns(None)).unwrap();
        for line in DOCKER.lines().filter(|l| !l.starts_with('#')) {
            saved.push_str(line);
            saved.push('\n');
        }
        for (table, block) in install.split_inclusive("COMMIT\n").map(|b| {
            let (head, body) = b.split_once('\n').unwrap();
            (head.trim_start_matches('*').to_owned(), body.to_owned())
        }) {
            let start = saved.find(&format!("*{table}\n")).unwrap();
            let end = start + saved[start..].find("COMMIT\n").unwrap();
            let mut section: Vec<String> = saved[start..end].lines().map(str::to_owned).collect();
            for line in block.lines() {
                if let Some(decl) = line.strip_prefix(':') {
                    let last = section.iter().rposition(|l| l.starts_with(':')).unwrap();
                    section.insert(last + 1, format!(":{decl}"));
                } else if let Some(rule) = line.strip_prefix("-I OUTPUT 1 ") {
                    let first = section.iter().position(|l| l.starts_with("-A ")).unwrap();
                    let first_output = section
                        .iter()
                        .position(|l| l.starts_with("-A OUTPUT "))
                        .unwrap_or(first);
                    section.insert(first_output, format!("-A OUTPUT {rule}"));
                } else if let Some(rule) = line.strip_prefix("-I INPUT 1 ") {
                    let first = section.iter().position(|l| l.starts_with("-A ")).unwrap();
                    section.insert(first, format!("-A INPUT {rule}"));
                } else if line.starts_with("-A ") {
                    section.push(line.to_owned());
                }
            }
            let mut text: String = section.iter().map(|l| format!("{l}\n")).collect();
            text.push_str(&saved[end..]);
            saved = format!("{}{text}", &saved[..start]);
        }
        assert!(
            saved.contains("-A PORTCULLIS-DNS -d 127.0.0.153/32 -j RETURN\n"),
            "{saved}"
        );
        let plan = plan_removal(&saved, Backend::Nft, Family::V4).unwrap();
        assert_eq!(plan.removed.items.len(), 6, "{}", plan.removed);
        let docker: String = DOCKER
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(apply(&saved, &plan.script), docker);
    }
}

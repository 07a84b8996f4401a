//! The iptables rule sets Portcullis installs, as text for `iptables-restore --noflush`, and the
//! plans that take them out again, computed from `iptables-save` output. Pure: it renders and
//! reads text; running the tools is the platform module's job. It must not decide verdicts and
//! must not touch any chain or rule that is not ours — removal plans name our two chains and
//! only the rules that jump to them.
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
//! # Backend
//!
//! This kernel has no native nft queue statement, so we use the iptables NFQUEUE target through
//! whichever iptables the host uses, never both in one namespace: see [`choose_backend`].

use std::fmt;

use crate::InterceptConfig;
use crate::error::InterceptError;
use crate::marks::Marks;

/// Our chain for packets this machine sends.
pub const CHAIN_OUT: &str = "PORTCULLIS-OUT";
/// Our chain for packets this machine receives.
pub const CHAIN_IN: &str = "PORTCULLIS-IN";
/// Both of our chains: everything removal looks for.
pub const OUR_CHAINS: [&str; 2] = [CHAIN_OUT, CHAIN_IN];
/// The table our chains live in.
pub const TABLE: &str = "filter";

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
    Ok(marks)
}

/// The `iptables-restore --noflush` input that creates our chains for `family` and jumps to
/// them first from `OUTPUT` and `INPUT`. Apply it only where none of our chains exist (install
/// removes leftovers first): declaring an existing chain would flush it, and the jumps would
/// be added a second time.
pub fn render_install(family: Family, config: &InterceptConfig) -> Result<String, InterceptError> {
    let marks = validate(config)?;
    let mut out = String::new();
    out.push_str("*filter\n");
    for chain in OUR_CHAINS {
        out.push_str(&format!(":{chain} - [0:0]\n"));
    }
    for chain in OUR_CHAINS {
        for rule in chain_rules(family, chain, config, &marks) {
            out.push_str(&format!("-A {chain} {rule}\n"));
        }
    }
    out.push_str(&format!("-I OUTPUT 1 -j {CHAIN_OUT}\n"));
    out.push_str(&format!("-I INPUT 1 -j {CHAIN_IN}\n"));
    out.push_str("COMMIT\n");
    Ok(out)
}

/// The `iptables-restore --noflush` input that switches the queue rules of our installed
/// chains (installed with `config` apart from `fail_open`) to `config.fail_open`, each
/// replaced in place (`-R`), so no packet passes unqueued while it changes.
pub fn render_fail_open(
    family: Family,
    config: &InterceptConfig,
) -> Result<String, InterceptError> {
    let marks = validate(config)?;
    let mut out = String::from("*filter\n");
    for chain in OUR_CHAINS {
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
    /// Its table (`filter` for everything we install).
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
    /// Input for `iptables-restore --noflush`: deletes every rule (in any chain of any table)
    /// that jumps to one of our chains, then flushes and deletes our chains.
    pub script: String,
    /// What the script removes (backend and family as given).
    pub removed: Removed,
}

/// Plans the removal of everything of ours in `save` (the output of `iptables-save` or
/// `ip6tables-save` of one backend); `None` when there is nothing of ours.
///
/// Every copy of a jump is deleted (`-D` with the rule exactly as saved, once per copy), so
/// leftovers of several crashed runs go too; nothing else is touched.
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
}

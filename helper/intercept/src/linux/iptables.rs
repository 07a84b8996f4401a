//! Installs and removes our iptables rule sets (text from [`crate::rules`]) with
//! `iptables-restore --noflush` / `ip6tables-restore --noflush`, one atomic transaction per
//! family, in the backend the host uses. It owns the choice of backend and the undo; it must
//! not write to a backend other than the chosen one, except to remove our own leftovers, and
//! must never touch a rule or chain that is not ours.

use tracing::{debug, info, warn};

use super::tools::{self, NetnsPin, Tool};
use crate::InterceptConfig;
use crate::error::InterceptError;
use crate::rules::{self, Backend, Family, Removed};

/// Debian package of every iptables program.
const PACKAGE: &str = "iptables";
/// `--noflush`: keep everything else; `-w 5`: wait up to 5 s for the xtables lock (legacy;
/// nft accepts and ignores it) instead of failing when another tool holds it.
const RESTORE_ARGS: [&str; 3] = ["--noflush", "-w", "5"];

#[derive(Debug, Clone, Copy)]
enum Op {
    Save,
    Restore,
}

/// Program names to try for `op` on `family` in `backend`, most specific first.
fn names(backend: Backend, family: Family, op: Op) -> &'static [&'static str] {
    use {Backend as B, Family as F, Op as O};
    match (backend, family, op) {
        (B::Nft, F::V4, O::Save) => &["iptables-nft-save", "iptables-save"],
        (B::Nft, F::V4, O::Restore) => &["iptables-nft-restore", "iptables-restore"],
        (B::Nft, F::V6, O::Save) => &["ip6tables-nft-save", "ip6tables-save"],
        (B::Nft, F::V6, O::Restore) => &["ip6tables-nft-restore", "ip6tables-restore"],
        (B::Legacy, F::V4, O::Save) => &["iptables-legacy-save"],
        (B::Legacy, F::V4, O::Restore) => &["iptables-legacy-restore"],
        (B::Legacy, F::V6, O::Save) => &["ip6tables-legacy-save"],
        (B::Legacy, F::V6, O::Restore) => &["ip6tables-legacy-restore"],
    }
}

fn tool(backend: Backend, family: Family, op: Op) -> Result<Tool, InterceptError> {
    tools::require(names(backend, family, op), PACKAGE)
}

/// `iptables-save` (all tables) of one backend and family.
fn save(backend: Backend, family: Family, netns: &NetnsPin) -> Result<String, InterceptError> {
    tools::run_ok(&tool(backend, family, Op::Save)?, &[], None, Some(netns))
}

/// Both families' save output of `backend`, or `None` when its tools are not installed. The
/// legacy tools may also fail where the kernel lacks x_tables; that counts as "no rules".
fn save_both(backend: Backend, netns: &NetnsPin) -> Result<Option<String>, InterceptError> {
    let mut all = String::new();
    for family in Family::ALL {
        if tools::find(names(backend, family, Op::Save)).is_none() {
            return Ok(None);
        }
        match save(backend, family, netns) {
            Ok(text) => all.push_str(&text),
            Err(e) if backend == Backend::Legacy => {
                debug!(error = %e, "legacy iptables unavailable; treating it as empty");
                return Ok(None);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(Some(all))
}

/// Detects the backend the host uses (see [`rules::choose_backend`]).
fn detect(netns: &NetnsPin) -> Result<Backend, InterceptError> {
    let nft = save_both(Backend::Nft, netns)?;
    let legacy = save_both(Backend::Legacy, netns)?;
    let backend = match (&legacy, &nft) {
        (Some(l), Some(n)) => rules::choose_backend(l, n),
        (Some(_), None) => Backend::Legacy,
        (None, _) => Backend::Nft,
    };
    debug!(%backend, "iptables backend chosen");
    Ok(backend)
}

/// Removes everything of ours from one backend (both families). Missing tools of a backend
/// mean nothing of ours can be there.
fn remove_from(backend: Backend, netns: &NetnsPin) -> Result<Removed, InterceptError> {
    let mut removed = Removed::default();
    for family in Family::ALL {
        let Some(save_tool) = tools::find(names(backend, family, Op::Save)) else {
            continue;
        };
        let saved = match tools::run_ok(&save_tool, &[], None, Some(netns)) {
            Ok(text) => text,
            // Where the kernel lacks x_tables, nothing of ours can be in legacy tables.
            Err(e) if backend == Backend::Legacy => {
                debug!(error = %e, %family, "legacy iptables unavailable; nothing to remove");
                continue;
            }
            Err(e) => return Err(e),
        };
        let Some(plan) = rules::plan_removal(&saved, backend, family) else {
            continue;
        };
        let restore = tool(backend, family, Op::Restore)?;
        tools::run_ok(&restore, &RESTORE_ARGS, Some(&plan.script), Some(netns))?;
        for item in &plan.removed.items {
            debug!(%item, "removed");
        }
        removed.extend(plan.removed);
    }
    Ok(removed)
}

/// Removes our rules and chains from both backends in `netns`.
fn recover_in(netns: &NetnsPin) -> Result<Removed, InterceptError> {
    // At least the tools of the default backend must exist, or nothing can be checked.
    tool(Backend::Nft, Family::V4, Op::Save)?;
    let mut removed = remove_from(Backend::Nft, netns)?;
    removed.extend(remove_from(Backend::Legacy, netns)?);
    Ok(removed)
}

/// See [`crate::recover`].
pub(crate) fn recover() -> Result<Removed, InterceptError> {
    let removed = recover_in(&NetnsPin::current()?)?;
    if !removed.is_empty() {
        info!(
            items = removed.items.len(),
            "removed firewall rules left by an earlier run"
        );
    }
    Ok(removed)
}

/// The cgroup2 mount point, from this process's mount table.
fn cgroup2_mount() -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    text.lines().find_map(|line| {
        // "... mount-point options ... - fstype source super-options"
        let (left, right) = line.split_once(" - ")?;
        if right.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        left.split_whitespace().nth(4).map(str::to_owned)
    })
}

/// Fails clearly when the excluded cgroup does not exist (the kernel's own answer is an
/// opaque "Invalid argument" from iptables-restore).
fn check_cgroup(path: &str) -> Result<(), InterceptError> {
    let Some(mount) = cgroup2_mount() else {
        // No cgroup2 mount visible here: let the kernel judge.
        return Ok(());
    };
    let dir = std::path::Path::new(&mount).join(path.trim_start_matches('/'));
    if dir.is_dir() {
        Ok(())
    } else {
        Err(InterceptError::CgroupMissing {
            path: path.to_owned(),
            mount,
        })
    }
}

/// See [`crate::InstalledRules`].
#[derive(Debug)]
pub(crate) struct InstalledRules {
    backend: Backend,
    netns: NetnsPin,
    removed: bool,
}

impl InstalledRules {
    pub(crate) fn install(config: &InterceptConfig) -> Result<InstalledRules, InterceptError> {
        rules::validate(config)?;
        if let Some(path) = &config.exclude_cgroup {
            check_cgroup(path)?;
        }
        let texts = [
            rules::render_install(Family::V4, config)?,
            rules::render_install(Family::V6, config)?,
        ];
        let netns = NetnsPin::current()?;
        let leftovers = recover_in(&netns)?;
        if !leftovers.is_empty() {
            info!(
                items = leftovers.items.len(),
                "removed firewall rules left by an earlier run"
            );
        }
        let backend = detect(&netns)?;
        let restores = [
            tool(backend, Family::V4, Op::Restore)?,
            tool(backend, Family::V6, Op::Restore)?,
        ];
        let mut installed = InstalledRules {
            backend,
            netns,
            removed: false,
        };
        for (restore, text) in restores.iter().zip(&texts) {
            if let Err(e) =
                tools::run_ok(restore, &RESTORE_ARGS, Some(text), Some(&installed.netns))
            {
                // Take out what the other family got, so a failed install leaves nothing.
                if let Err(undo) = installed.remove() {
                    warn!(error = %undo, "could not remove the rules of a failed install");
                }
                return Err(e);
            }
        }
        info!(
            %backend,
            queue = config.queue_num,
            fail_open = config.fail_open,
            dns_redirect = config.dns_redirect.is_some(),
            "firewall rules installed"
        );
        Ok(installed)
    }

    pub(crate) fn set_fail_open(&self, config: &InterceptConfig) -> Result<(), InterceptError> {
        for family in Family::ALL {
            let text = rules::render_fail_open(family, config)?;
            let restore = tool(self.backend, family, Op::Restore)?;
            tools::run_ok(&restore, &RESTORE_ARGS, Some(&text), Some(&self.netns))?;
        }
        info!(fail_open = config.fail_open, "queue rules switched");
        Ok(())
    }

    pub(crate) fn remove(&mut self) -> Result<Removed, InterceptError> {
        let removed = remove_from(self.backend, &self.netns)?;
        self.removed = true;
        if !removed.is_empty() {
            info!(backend = %self.backend, "firewall rules removed");
        }
        Ok(removed)
    }

    pub(crate) fn is_removed(&self) -> bool {
        self.removed
    }

    pub(crate) fn backend(&self) -> Backend {
        self.backend
    }
}

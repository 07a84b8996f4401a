//! Socket inode → the process holding it, from the `fd/N -> socket:[INODE]` links of `/proc`.
//!
//! Reading every process' descriptors is the slow part of attribution (tens of milliseconds on
//! a busy desktop), so this index remembers every socket it has seen (`inode → (pid, fd)`) and
//! re-checks a remembered holder with one `readlink` before trusting it: the holder must still
//! have that socket at that descriptor, so neither a closed socket nor a recycled pid is ever
//! returned. On a miss it first reads the descriptors of the processes that owned recent
//! sockets (an app that connects once usually connects again), then all processes, those of
//! the socket's uid and the newest first, stopping at the holder. Failed complete scans are
//! remembered briefly, and all scanning draws on a time budget, so a storm of unattributable
//! sockets cannot pin a core: when the budget is spent, misses are answered without scanning.
//! This module reads only `/proc`; it knows nothing of netlink or of apps.

use std::collections::{HashMap, VecDeque};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::MetadataExt as _;
use std::time::{Duration, Instant};

use super::procfs::{ProcFs, parse_socket_link};

/// Remembered holders beyond this are dropped wholesale (each is re-checked anyway).
const MAX_HOLDERS: usize = 262_144;
/// Remembered failures beyond this are dropped wholesale.
const MAX_NEGATIVE: usize = 16_384;
/// How many recent owners are scanned before a full scan.
const RECENT_OWNERS: usize = 16;

/// Who holds a socket: descriptor `fd` of process `pid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Holder {
    pid: u32,
    fd: u32,
}

/// The answer for one inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owner {
    /// Process `pid` holds the socket right now.
    Found {
        /// The holder.
        pid: u32,
        /// Whether it came from the index without scanning.
        cached: bool,
    },
    /// No process holds it (as of a complete scan, possibly a remembered one).
    NotHeld,
    /// Not known: the scan budget is spent.
    Throttled,
}

/// Counters for [`crate::AttributionStats`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ScanCounters {
    pub holder_hits: u64,
    pub negative_hits: u64,
    pub targeted_scans: u64,
    pub full_scans: u64,
    pub throttled: u64,
    pub scan_time: Duration,
    /// The longest single scan (a scan may overshoot the budget by this much).
    pub longest_scan: Duration,
}

/// A token bucket of scanning time: it refills at `per_second` per second up to `burst`;
/// a scan may start while it is positive and is charged what it took afterwards (so it may
/// go negative, and a long scan is paid back before the next).
#[derive(Debug, Clone)]
pub(crate) struct ScanBudget {
    /// Available scanning time in nanoseconds (may be negative).
    tokens: i128,
    burst: i128,
    per_second: Duration,
    last: Instant,
}

impl ScanBudget {
    pub(crate) fn new(per_second: Duration, burst: Duration, now: Instant) -> ScanBudget {
        let burst = i128::try_from(burst.as_nanos()).unwrap_or(i128::MAX);
        ScanBudget {
            tokens: burst,
            burst,
            per_second,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last);
        self.last = now;
        let add = elapsed
            .as_nanos()
            .saturating_mul(self.per_second.as_nanos())
            / 1_000_000_000;
        let add = i128::try_from(add).unwrap_or(i128::MAX);
        self.tokens = self.tokens.saturating_add(add).min(self.burst);
    }

    /// Whether a scan may start now.
    pub(crate) fn allows(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens > 0
    }

    /// Charges a scan that took `spent`.
    pub(crate) fn charge(&mut self, spent: Duration) {
        let spent = i128::try_from(spent.as_nanos()).unwrap_or(i128::MAX);
        self.tokens = self.tokens.saturating_sub(spent);
    }
}

/// Tunables of the index.
#[derive(Debug, Clone)]
pub(crate) struct IndexConfig {
    pub negative_ttl: Duration,
    pub scan_budget_per_second: Duration,
    pub scan_burst: Duration,
}

/// The inode → holder index.
#[derive(Debug)]
pub(crate) struct InodeIndex {
    procfs: ProcFs,
    holders: HashMap<u64, Holder>,
    negative: HashMap<u64, Instant>,
    recent: VecDeque<u32>,
    budget: ScanBudget,
    negative_ttl: Duration,
    pub(crate) counters: ScanCounters,
}

impl InodeIndex {
    pub(crate) fn new(procfs: ProcFs, config: &IndexConfig, now: Instant) -> InodeIndex {
        InodeIndex {
            procfs,
            holders: HashMap::new(),
            negative: HashMap::new(),
            recent: VecDeque::new(),
            budget: ScanBudget::new(config.scan_budget_per_second, config.scan_burst, now),
            negative_ttl: config.negative_ttl,
            counters: ScanCounters::default(),
        }
    }

    /// Who holds socket `inode` (owned by `uid`, which orders a full scan).
    pub(crate) fn owner(&mut self, inode: u64, uid: u32, now: Instant) -> Owner {
        if let Some(holder) = self.holders.get(&inode).copied() {
            if self.procfs.fd_socket(holder.pid, holder.fd) == Some(inode) {
                self.counters.holder_hits += 1;
                self.touch_recent(holder.pid);
                return Owner::Found {
                    pid: holder.pid,
                    cached: true,
                };
            }
            self.holders.remove(&inode);
        }
        if let Some(&at) = self.negative.get(&inode) {
            if now.saturating_duration_since(at) < self.negative_ttl {
                self.counters.negative_hits += 1;
                return Owner::NotHeld;
            }
            self.negative.remove(&inode);
        }
        if !self.budget.allows(now) {
            self.counters.throttled += 1;
            return Owner::Throttled;
        }

        // The processes that owned recent sockets first.
        let started = Instant::now();
        let recent: Vec<u32> = self.recent.iter().copied().collect();
        if !recent.is_empty() {
            self.counters.targeted_scans += 1;
        }
        let mut found = None;
        for &pid in &recent {
            if self.scan_pid(pid, inode) {
                found = Some(pid);
                break;
            }
        }
        let spent = started.elapsed();
        self.charge(spent);
        if let Some(pid) = found {
            self.touch_recent(pid);
            return Owner::Found { pid, cached: false };
        }
        if !self.budget.allows(Instant::now()) {
            self.counters.throttled += 1;
            return Owner::Throttled;
        }

        // Everyone else: the socket's uid first, newest pids first.
        let started = Instant::now();
        self.counters.full_scans += 1;
        let mut pids = self.list_pids(uid);
        pids.retain(|(pid, _)| !recent.contains(pid));
        let found = pids
            .iter()
            .map(|&(pid, _)| pid)
            .find(|&pid| self.scan_pid(pid, inode));
        let spent = started.elapsed();
        self.charge(spent);
        tracing::trace!(
            inode,
            processes = pids.len(),
            found = found.is_some(),
            micros = u64::try_from(spent.as_micros()).unwrap_or(u64::MAX),
            "scanned /proc for a socket"
        );
        match found {
            Some(pid) => {
                self.touch_recent(pid);
                Owner::Found { pid, cached: false }
            }
            None => {
                if self.negative.len() >= MAX_NEGATIVE {
                    self.negative.clear();
                }
                self.negative.insert(inode, now);
                Owner::NotHeld
            }
        }
    }

    fn charge(&mut self, spent: Duration) {
        self.budget.charge(spent);
        self.counters.scan_time += spent;
        self.counters.longest_scan = self.counters.longest_scan.max(spent);
    }

    /// Forgets `pid` as a recent owner (it exited or was replaced).
    pub(crate) fn forget_pid(&mut self, pid: u32) {
        self.recent.retain(|&p| p != pid);
    }

    fn touch_recent(&mut self, pid: u32) {
        if self.recent.front() == Some(&pid) {
            return;
        }
        self.recent.retain(|&p| p != pid);
        self.recent.push_front(pid);
        self.recent.truncate(RECENT_OWNERS);
    }

    /// All pids, with whether their `/proc` entry belongs to `uid`: those first, then by
    /// descending pid (recently started processes first, until pids wrap).
    fn list_pids(&self, uid: u32) -> Vec<(u32, bool)> {
        let Ok(entries) = std::fs::read_dir(self.procfs.root()) else {
            return Vec::new();
        };
        let mut pids: Vec<(u32, bool)> = entries
            .flatten()
            .filter_map(|e| {
                let pid = e.file_name().to_str()?.parse::<u32>().ok()?;
                let mine = e.metadata().is_ok_and(|m| m.uid() == uid);
                Some((pid, mine))
            })
            .collect();
        pids.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(b.0.cmp(&a.0)));
        pids
    }

    /// Records every socket `pid` holds; returns whether `target` is among them.
    fn scan_pid(&mut self, pid: u32, target: u64) -> bool {
        let Ok(entries) = std::fs::read_dir(self.procfs.pid_path(pid, "fd")) else {
            return false;
        };
        if self.holders.len() >= MAX_HOLDERS {
            self.holders.clear();
        }
        let mut found = false;
        for entry in entries.flatten() {
            let Some(fd) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(link) = std::fs::read_link(entry.path()) else {
                continue;
            };
            if let Some(inode) = parse_socket_link(link.as_os_str().as_bytes()) {
                self.holders.insert(inode, Holder { pid, fd });
                found |= inode == target;
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_refills_and_goes_negative() {
        let t0 = Instant::now();
        let mut b = ScanBudget::new(Duration::from_millis(100), Duration::from_millis(50), t0);
        assert!(b.allows(t0));
        b.charge(Duration::from_millis(80)); // -30 ms
        assert!(!b.allows(t0));
        // 100 ms of scanning per second: 300 ms later it is back to 0, then positive.
        assert!(!b.allows(t0 + Duration::from_millis(300)));
        assert!(b.allows(t0 + Duration::from_millis(310)));
        // Never above the burst.
        assert!(b.allows(t0 + Duration::from_secs(100)));
        b.charge(Duration::from_millis(50));
        assert!(!b.allows(t0 + Duration::from_secs(100)));
    }
}

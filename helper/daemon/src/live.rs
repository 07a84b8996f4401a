//! State shared between the IPC side and the verdict path: the policy snapshot that decisions
//! read, and the log of recent connections. Both are built for a reader that must never wait
//! on the database: the service publishes a new immutable snapshot after every committed
//! change, and the verdict path only clones an `Arc` or pushes into a bounded ring.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};

use portcullis_attribution::{FastMarks, FastPath};
use std::net::SocketAddr;

use portcullis_protocol::{ConnectionInfo, Direction, Protocol, Verdict};

use crate::store::Snapshot;

/// The policy in force, swapped whole on every change, with its generation: a number that
/// grows with every swap. The kernel's decision cache (the fast path) keeps only verdicts made
/// under the current generation, so the swap and the kernel's generation move together, under
/// one lock.
#[derive(Debug)]
pub struct SharedPolicy {
    current: RwLock<(Arc<Snapshot>, u64)>,
    fast: OnceLock<FastPath>,
    /// While protection is paused: when the pause ends (ms since the epoch); 0 otherwise.
    paused_until: AtomicU64,
}

impl SharedPolicy {
    /// Starts with `snapshot`, generation 1.
    pub fn new(snapshot: Snapshot) -> SharedPolicy {
        SharedPolicy {
            current: RwLock::new((Arc::new(snapshot), 1)),
            fast: OnceLock::new(),
            paused_until: AtomicU64::new(0),
        }
    }

    /// The snapshot in force now; holding it never blocks a writer.
    pub fn load(&self) -> Arc<Snapshot> {
        self.load_with_generation().0
    }

    /// The snapshot in force now and its generation.
    pub fn load_with_generation(&self) -> (Arc<Snapshot>, u64) {
        let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
        (current.0.clone(), current.1)
    }

    /// Pauses protection until `until_ms`, and retires every verdict the kernel cached (a
    /// cached block must not outlive the user's wish to let everything pass).
    pub fn pause(&self, until_ms: u64) {
        self.paused_until.store(until_ms.max(1), Ordering::SeqCst);
        self.retire_cached();
    }

    /// Retires every verdict the kernel cached, keeping the snapshot in force (a new
    /// generation of the same policy): for changes outside the snapshot, such as a pause or new
    /// filter lists.
    pub fn retire_cached(&self) {
        let snapshot = self.load();
        self.store((*snapshot).clone());
    }

    /// Ends a pause.
    pub fn resume(&self) {
        self.paused_until.store(0, Ordering::SeqCst);
    }

    /// When the pause in force at `now_ms` ends, if one is.
    pub fn paused_at(&self, now_ms: u64) -> Option<u64> {
        let until = self.paused_until.load(Ordering::SeqCst);
        (until > now_ms).then_some(until)
    }

    /// When the pause ends, if one was set (even if its time has passed: not yet resumed).
    pub fn pause_end(&self) -> Option<u64> {
        let until = self.paused_until.load(Ordering::SeqCst);
        (until != 0).then_some(until)
    }

    /// Replaces the snapshot, and retires the verdicts the kernel cached under the old one.
    pub fn store(&self, snapshot: Snapshot) {
        let new = Arc::new(snapshot);
        let old = {
            let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
            let generation = current.1.wrapping_add(1);
            if let Some(fast) = self.fast.get()
                && let Err(e) = fast.set_generation(generation)
            {
                // The kernel would go on repeating old verdicts: stop it instead.
                tracing::error!(error = %e, "cannot update the fast path; turning it off");
                let _ = fast.disable();
            }
            std::mem::replace(&mut *current, (new, generation))
        };
        // The old snapshot is freed here, after the lock is released.
        drop(old);
    }

    /// Turns the kernel's decision cache on, in step with this policy from now on.
    pub fn attach_fast_path(&self, fast: FastPath, marks: FastMarks) -> std::io::Result<()> {
        let current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        fast.enable(marks, current.1)?;
        if self.fast.set(fast.clone()).is_err() {
            // Attached before: the first one stays in step.
            let _ = fast.disable();
        }
        Ok(())
    }

    /// Turns the kernel's decision cache off (at stop).
    pub fn detach_fast_path(&self) {
        let _current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(fast) = self.fast.get()
            && let Err(e) = fast.disable()
        {
            tracing::warn!(error = %e, "cannot turn the fast path off");
        }
    }
}

/// Small numbers for app profile keys, which the kernel's decision cache stores instead of the
/// keys. Numbers are never reused while the helper runs; at most [`AppSlots::MAX`] are given.
#[derive(Debug, Default)]
pub struct AppSlots {
    inner: Mutex<SlotTable>,
}

#[derive(Debug, Default)]
struct SlotTable {
    by_key: HashMap<String, u32>,
    keys: Vec<String>,
}

impl AppSlots {
    /// Most numbers given out; apps beyond are simply not cached in the kernel.
    pub const MAX: usize = 65_536;

    /// The number of `key`, given now if it has none; `None` when the table is full.
    pub fn slot(&self, key: &str) -> Option<u32> {
        let mut t = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(&n) = t.by_key.get(key) {
            return Some(n);
        }
        if t.keys.len() >= Self::MAX {
            return None;
        }
        let n = u32::try_from(t.keys.len()).ok()?;
        t.keys.push(key.to_string());
        t.by_key.insert(key.to_string(), n);
        Some(n)
    }

    /// The key of number `n`.
    pub fn key(&self, n: u32) -> Option<String> {
        let t = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        t.keys.get(usize::try_from(n).ok()?).cloned()
    }
}

/// Which names each app looked addresses up by through the helper's resolver: (app, address)
/// → name, for as long as the answer's TTL says plus a grace period (apps keep using an
/// answer a little longer than its TTL, and live connections outlast it). Per app, never
/// global: one app's lookups never lend another app a name. At most [`DomainMap::MAX`]
/// entries; expired ones go first when it is full, then the oldest.
#[derive(Debug, Default)]
pub struct DomainMap {
    inner: Mutex<DomainTable>,
}

#[derive(Debug, Default)]
struct DomainTable {
    by_app: HashMap<Arc<str>, HashMap<std::net::IpAddr, DomainEntry>>,
    len: usize,
}

#[derive(Debug, Clone)]
struct DomainEntry {
    name: Arc<str>,
    until: std::time::Instant,
}

impl DomainTable {
    fn retain(&mut self, keep: impl Fn(&DomainEntry) -> bool) {
        for addrs in self.by_app.values_mut() {
            addrs.retain(|_, e| keep(e));
        }
        self.by_app.retain(|_, addrs| !addrs.is_empty());
        self.len = self.by_app.values().map(HashMap::len).sum();
    }
}

impl DomainMap {
    /// Most entries kept.
    pub const MAX: usize = 65_536;
    /// Most entries kept for one app, so one app's flood of lookups cannot push out the
    /// names of the others.
    pub const MAX_PER_APP: usize = 8_192;
    /// How long an answer counts after its TTL.
    pub const GRACE: std::time::Duration = std::time::Duration::from_secs(300);

    /// Records that `app` looked `addr` up by `name`, with the answer's `ttl`.
    pub fn record(
        &self,
        app: &str,
        addr: std::net::IpAddr,
        name: &str,
        ttl: std::time::Duration,
        now: std::time::Instant,
    ) {
        let until = now + ttl + Self::GRACE;
        let mut t = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if t.len >= Self::MAX {
            t.retain(|e| e.until > now);
            if t.len >= Self::MAX {
                let mut ends: Vec<std::time::Instant> = t
                    .by_app
                    .values()
                    .flat_map(|a| a.values().map(|e| e.until))
                    .collect();
                ends.sort_unstable();
                let cutoff = ends.get(Self::MAX / 8).copied();
                t.retain(|e| cutoff.is_none_or(|c| e.until > c));
            }
        }
        if let Some(addrs) = t.by_app.get_mut(app)
            && addrs.len() >= Self::MAX_PER_APP
            && !addrs.contains_key(&addr)
        {
            // This app's oldest eighth goes (expired ones first, as they end soonest).
            let mut ends: Vec<std::time::Instant> = addrs.values().map(|e| e.until).collect();
            ends.sort_unstable();
            let cutoff = ends.get(Self::MAX_PER_APP / 8).copied();
            let before = addrs.len();
            addrs.retain(|_, e| cutoff.is_none_or(|c| e.until > c));
            t.len -= before - addrs.len();
        }
        let entry = DomainEntry {
            name: Arc::from(name),
            until,
        };
        let added = match t.by_app.get_mut(app) {
            Some(addrs) => addrs.insert(addr, entry).is_none(),
            None => {
                t.by_app
                    .insert(Arc::from(app), HashMap::from([(addr, entry)]));
                true
            }
        };
        if added {
            t.len += 1;
        }
    }

    /// The name `app` looked `addr` up by, if that still counts, and how long it will.
    pub fn lookup(
        &self,
        app: &str,
        addr: std::net::IpAddr,
        now: std::time::Instant,
    ) -> Option<(Arc<str>, std::time::Duration)> {
        let t = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let e = t.by_app.get(app)?.get(&addr)?;
        (e.until > now).then(|| (Arc::clone(&e.name), e.until - now))
    }
}

/// A connection as conntrack names it: its protocol and original direction (`src` sent the
/// packet that created the entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// TCP or UDP.
    pub protocol: Protocol,
    /// Where the first packet came from.
    pub src: SocketAddr,
    /// Where it went.
    pub dst: SocketAddr,
}

/// What decided a live allowed connection, to decide it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveFlow {
    /// The app's profile key.
    pub app: Arc<str>,
    /// Who opened the connection.
    pub direction: Direction,
    /// This machine's end.
    pub local: SocketAddr,
    /// The other end.
    pub remote: SocketAddr,
    seq: u64,
}

/// The connections allowed while the helper runs, by conntrack tuple: what a policy change
/// decides again. At most [`LiveFlows::MAX`]; when full, the oldest eighth is forgotten, and
/// entries whose connection conntrack no longer tracks are pruned at re-decisions.
#[derive(Debug, Default)]
pub struct LiveFlows {
    inner: Mutex<LiveTable>,
}

#[derive(Debug, Default)]
struct LiveTable {
    flows: HashMap<FlowKey, LiveFlow>,
    seq: u64,
    /// Flows pushed out when the table was full, to be forgotten in conntrack (so their next
    /// packet is queued, decided and recorded again: no live allowed flow escapes re-decision).
    evicted: Vec<FlowKey>,
}

impl LiveFlows {
    /// Most flows kept.
    pub const MAX: usize = 65_536;

    /// Records an allowed connection.
    pub fn insert(&self, key: FlowKey, app: &str, direction: Direction, local: SocketAddr) {
        let mut t = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if t.flows.len() >= Self::MAX && !t.flows.contains_key(&key) {
            let mut seqs: Vec<u64> = t.flows.values().map(|f| f.seq).collect();
            seqs.sort_unstable();
            let cutoff = seqs.get(Self::MAX / 8).copied().unwrap_or(u64::MAX);
            let old: Vec<FlowKey> = t
                .flows
                .iter()
                .filter(|(_, f)| f.seq < cutoff)
                .map(|(k, _)| *k)
                .collect();
            t.flows.retain(|_, f| f.seq >= cutoff);
            if t.evicted.len() + old.len() <= Self::MAX {
                t.evicted.extend(old);
            }
        }
        t.seq += 1;
        let seq = t.seq;
        let remote = if local == key.src { key.dst } else { key.src };
        t.flows.insert(
            key,
            LiveFlow {
                app: Arc::from(app),
                direction,
                local,
                remote,
                seq,
            },
        );
    }

    /// The flows pushed out since the last call (see `LiveTable::evicted`).
    pub fn take_evicted(&self) -> Vec<FlowKey> {
        let mut t = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        std::mem::take(&mut t.evicted)
    }

    /// Who opened the kept connection between `a` and `b`, in whichever order they are given.
    pub fn direction_of(
        &self,
        protocol: Protocol,
        a: SocketAddr,
        b: SocketAddr,
    ) -> Option<Direction> {
        let t = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let key = |src, dst| FlowKey { protocol, src, dst };
        t.flows
            .get(&key(a, b))
            .or_else(|| t.flows.get(&key(b, a)))
            .map(|f| f.direction)
    }

    /// The app of the kept connection whose end on this machine is `local` and whose other
    /// end is `remote` (the other end of a connection within this machine is not the app's).
    pub fn app_at(
        &self,
        protocol: Protocol,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Option<Arc<str>> {
        let t = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let key = |src, dst| FlowKey { protocol, src, dst };
        t.flows
            .get(&key(local, remote))
            .or_else(|| t.flows.get(&key(remote, local)))
            .filter(|f| f.local == local)
            .map(|f| Arc::clone(&f.app))
    }

    /// For each `(a, b)` pair (either order), the app of the kept UDP flow between them and
    /// whether `a` is its end on this machine: one lock for the lot, so that a sampler looking
    /// up thousands of flows never holds up the verdict thread lock by lock.
    pub fn udp_apps(&self, pairs: &[(SocketAddr, SocketAddr)]) -> Vec<Option<(Arc<str>, bool)>> {
        let t = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let key = |src, dst| FlowKey {
            protocol: Protocol::Udp,
            src,
            dst,
        };
        pairs
            .iter()
            .map(|&(a, b)| {
                let f = t
                    .flows
                    .get(&key(a, b))
                    .or_else(|| t.flows.get(&key(b, a)))?;
                Some((Arc::clone(&f.app), f.local == a))
            })
            .collect()
    }

    /// Every kept flow.
    pub fn snapshot(&self) -> Vec<(FlowKey, LiveFlow)> {
        let t = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        t.flows.iter().map(|(k, f)| (*k, f.clone())).collect()
    }

    /// Forgets one flow.
    #[cfg(test)]
    pub fn remove(&self, key: &FlowKey) {
        let mut t = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        t.flows.remove(key);
    }

    /// Keeps only the flows in `live`.
    pub fn retain(&self, live: &std::collections::HashSet<FlowKey>) {
        let mut t = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        t.flows.retain(|k, _| live.contains(k));
    }

    /// How many are kept.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .flows
            .len()
    }
}

/// The most recent decided connections, oldest dropped first.
#[derive(Debug)]
pub struct ConnectionLog {
    entries: Mutex<VecDeque<ConnectionInfo>>,
    next_id: AtomicU64,
    capacity: usize,
    /// Where decided connections also go to be kept (the network history).
    history: Arc<crate::history::Recorder>,
}

impl ConnectionLog {
    /// Keeps at most `capacity` connections.
    pub fn new(capacity: usize) -> ConnectionLog {
        ConnectionLog {
            entries: Mutex::new(VecDeque::with_capacity(capacity.min(4096))),
            next_id: AtomicU64::new(1),
            capacity,
            history: Arc::default(),
        }
    }

    /// The history recorder every decided connection is also given to.
    pub fn history(&self) -> Arc<crate::history::Recorder> {
        Arc::clone(&self.history)
    }

    /// A fresh connection id.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Adds a connection, dropping the oldest when full.
    pub fn record(&self, info: ConnectionInfo) {
        self.history.connection(&info);
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= self.capacity {
            entries.pop_front();
        }
        entries.push_back(info);
    }

    /// Ends the `ask` of connection `id`: its verdict becomes `verdict` and its summary says
    /// `how`. Returns the updated connection, or `None` if it is no longer kept.
    pub fn settle(&self, id: u64, verdict: Verdict, how: &str) -> Option<ConnectionInfo> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = entries.iter_mut().rev().find(|c| c.id == id)?;
        entry.explanation.verdict = verdict;
        entry.explanation.summary = format!("{}; {how}: {verdict}", entry.explanation.summary);
        self.history.connection(entry);
        Some(entry.clone())
    }

    /// Every kept connection, oldest first.
    pub fn recent(&self) -> Vec<ConnectionInfo> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use portcullis_protocol::{DecidedBy, Explanation, ProfileLabel, Scope};

    use super::*;

    fn conn(log: &ConnectionLog) -> ConnectionInfo {
        ConnectionInfo {
            country: None,
            asn: None,
            id: log.next_id(),
            unix_ms: 1,
            app: "/bin/x".into(),
            pid: None,
            direction: Direction::Outbound,
            protocol: Protocol::Udp,
            local: [10, 0, 0, 1].into(),
            local_port: Some(1),
            remote: [10, 0, 0, 2].into(),
            remote_port: Some(2),
            domain: None,
            scope: Scope::Lan,
            decided_in_kernel: false,
            explanation: Explanation {
                verdict: Verdict::Allow,
                decided_by: DecidedBy::Rule {
                    profile: ProfileLabel::Global,
                    rule_id: None,
                    text: "+ *".into(),
                },
                summary: String::new(),
            },
        }
    }

    #[test]
    fn settling_an_asked_connection_changes_its_verdict_and_says_how() {
        let log = ConnectionLog::new(4);
        let mut asked = conn(&log);
        asked.explanation.verdict = Verdict::Ask;
        asked.explanation.summary = "default_action=ask".into();
        let id = asked.id;
        log.record(asked);
        log.record(conn(&log));
        let settled = log.settle(id, Verdict::Block, "no answer").unwrap();
        assert_eq!(settled.explanation.verdict, Verdict::Block);
        assert_eq!(
            settled.explanation.summary,
            "default_action=ask; no answer: block"
        );
        assert_eq!(log.recent()[0].explanation.verdict, Verdict::Block);
        assert_eq!(log.settle(999, Verdict::Allow, "x"), None);
    }

    #[test]
    fn live_flows_are_bounded_and_pruned() {
        let flows = LiveFlows::default();
        let key = |port: u16, dst: u16| FlowKey {
            protocol: Protocol::Tcp,
            src: SocketAddr::from(([10, 0, 0, 1], port)),
            dst: SocketAddr::from(([10, 0, 0, 2], dst)),
        };
        for port in 0..=u16::MAX {
            flows.insert(
                key(port, 443),
                "/bin/a",
                Direction::Outbound,
                key(port, 443).src,
            );
        }
        assert_eq!(flows.len(), LiveFlows::MAX);
        // One more: the oldest eighth goes.
        flows.insert(key(1, 444), "/bin/a", Direction::Outbound, key(1, 444).src);
        assert_eq!(flows.len(), LiveFlows::MAX - LiveFlows::MAX / 8 + 1);
        let evicted = flows.take_evicted();
        assert_eq!(
            evicted.len(),
            LiveFlows::MAX / 8,
            "the pushed-out flows are handed over"
        );
        assert!(evicted.iter().all(|k| k.src.port() < 8192));
        assert!(flows.take_evicted().is_empty());
        let kept = flows.snapshot();
        assert!(
            kept.iter()
                .all(|(k, _)| k.dst.port() == 444 || k.src.port() >= 8192),
            "the oldest go first"
        );
        let (k, f) = kept.first().unwrap();
        assert_eq!((f.local, f.remote), (k.src, k.dst));
        let live: std::collections::HashSet<FlowKey> = [key(65_000, 443)].into_iter().collect();
        flows.retain(&live);
        assert_eq!(flows.len(), 1);
        flows.remove(&key(65_000, 443));
        assert_eq!(flows.len(), 0);
    }

    #[test]
    fn domains_are_per_app_and_expire_after_ttl_and_grace() {
        let map = DomainMap::default();
        let now = std::time::Instant::now();
        let ip: std::net::IpAddr = [192, 0, 2, 1].into();
        map.record(
            "/bin/a",
            ip,
            "shop.test",
            std::time::Duration::from_secs(60),
            now,
        );
        let (name, left) = map.lookup("/bin/a", ip, now).unwrap();
        assert_eq!(&*name, "shop.test");
        assert_eq!(left, std::time::Duration::from_secs(60) + DomainMap::GRACE);
        assert_eq!(
            map.lookup("/bin/b", ip, now),
            None,
            "never lent to another app"
        );
        let later = now + std::time::Duration::from_secs(60) + DomainMap::GRACE;
        assert_eq!(map.lookup("/bin/a", ip, later), None, "expired");
        // One app's flood stays within its own share and leaves other apps' names alone.
        map.record(
            "/bin/b",
            ip,
            "other.test",
            std::time::Duration::from_secs(60),
            now,
        );
        for i in 0..(DomainMap::MAX_PER_APP as u32 * 2) {
            map.record(
                "/bin/a",
                std::net::Ipv4Addr::from(i + 7).into(),
                "x.test",
                std::time::Duration::from_secs(60),
                now,
            );
        }
        assert!(map.inner.lock().unwrap().by_app["/bin/a"].len() <= DomainMap::MAX_PER_APP);
        assert!(map.lookup("/bin/b", ip, now).is_some());
        // Bounded in all: a flood of entries keeps at most MAX.
        for i in 0..(DomainMap::MAX as u32 + 10) {
            map.record(
                "/bin/a",
                std::net::Ipv4Addr::from(i).into(),
                "x.test",
                std::time::Duration::ZERO,
                now,
            );
        }
        assert!(map.inner.lock().unwrap().len <= DomainMap::MAX);
    }

    #[test]
    fn app_slots_are_stable_and_reversible() {
        let slots = AppSlots::default();
        let a = slots.slot("/usr/bin/a").unwrap();
        let b = slots.slot("/usr/bin/b").unwrap();
        assert_ne!(a, b);
        assert_eq!(slots.slot("/usr/bin/a"), Some(a));
        assert_eq!(slots.key(b).as_deref(), Some("/usr/bin/b"));
        assert_eq!(slots.key(999), None);
    }

    #[test]
    fn the_log_keeps_the_newest_connections_in_order() {
        let log = ConnectionLog::new(3);
        for _ in 0..5 {
            log.record(conn(&log));
        }
        let ids: Vec<u64> = log.recent().iter().map(|c| c.id).collect();
        assert_eq!(ids, [3, 4, 5]);
    }
}

/// A prompt the verdict thread holds packets for, as the IPC side sees it.
#[derive(Debug, Clone)]
pub struct OpenPrompt {
    /// What clients are shown.
    pub info: portcullis_protocol::PromptInfo,
    /// The asking process's start time, for "until the app quits" rules.
    pub start_time: Option<u64>,
}

/// An answer on its way to the verdict thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PromptReply {
    /// The prompt.
    pub id: u64,
    /// Allow or block.
    pub allow: bool,
}

/// Prompts waiting for an answer: written by the verdict thread (which holds their packets),
/// read and answered from the IPC side. Answers travel back over a channel, so the verdict
/// thread never waits on a client.
#[derive(Debug)]
pub struct PromptBoard {
    open: Mutex<std::collections::BTreeMap<u64, OpenPrompt>>,
    replies: std::sync::mpsc::Sender<PromptReply>,
    watchers: std::sync::atomic::AtomicU32,
    next_id: AtomicU64,
}

impl PromptBoard {
    /// A board, and the receiving end of its answers (for the verdict thread).
    pub fn new() -> (PromptBoard, std::sync::mpsc::Receiver<PromptReply>) {
        let (replies, rx) = std::sync::mpsc::channel();
        let board = PromptBoard {
            open: Mutex::new(std::collections::BTreeMap::new()),
            replies,
            watchers: std::sync::atomic::AtomicU32::new(0),
            // Ids differ from one run to the next, so an answer meant for a prompt of an
            // earlier run (a client that reconnected) cannot land on a new one.
            next_id: AtomicU64::new(crate::now_ms().saturating_mul(1000).max(1)),
        };
        (board, rx)
    }

    /// Whether someone could answer a prompt now.
    pub fn can_ask(&self) -> bool {
        self.watchers.load(Ordering::Relaxed) > 0
    }

    /// One more client answers prompts; the returned guard counts it until dropped.
    pub fn watch(self: &std::sync::Arc<Self>) -> PromptWatcher {
        self.watchers.fetch_add(1, Ordering::Relaxed);
        PromptWatcher(self.clone())
    }

    /// A fresh prompt id.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn open(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<u64, OpenPrompt>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Publishes (or updates) a prompt.
    pub fn put(&self, prompt: OpenPrompt) {
        self.open().insert(prompt.info.id, prompt);
    }

    /// Withdraws a prompt.
    pub fn remove(&self, id: u64) {
        self.open().remove(&id);
    }

    /// Takes a prompt off the board (it can be answered once); `put` returns it.
    pub fn claim(&self, id: u64) -> Option<OpenPrompt> {
        self.open().remove(&id)
    }

    /// One prompt.
    pub fn get(&self, id: u64) -> Option<OpenPrompt> {
        self.open().get(&id).cloned()
    }

    /// Every open prompt, oldest first.
    pub fn list(&self) -> Vec<portcullis_protocol::PromptInfo> {
        self.open().values().map(|p| p.info.clone()).collect()
    }

    /// Sends an answer to the verdict thread (ignored there if the prompt ended meanwhile).
    pub fn reply(&self, reply: PromptReply) {
        let _ = self.replies.send(reply);
    }
}

/// Counts one prompt-answering client while it lives.
#[derive(Debug)]
pub struct PromptWatcher(std::sync::Arc<PromptBoard>);

impl Drop for PromptWatcher {
    fn drop(&mut self) {
        self.0.watchers.fetch_sub(1, Ordering::Relaxed);
    }
}

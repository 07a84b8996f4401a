//! State shared between the IPC side and the verdict path: the policy snapshot that decisions
//! read, and the log of recent connections. Both are built for a reader that must never wait
//! on the database: the service publishes a new immutable snapshot after every committed
//! change, and the verdict path only clones an `Arc` or pushes into a bounded ring.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use portcullis_protocol::ConnectionInfo;

use crate::store::Snapshot;

/// The policy in force, swapped whole on every change.
#[derive(Debug)]
pub struct SharedPolicy(RwLock<Arc<Snapshot>>);

impl SharedPolicy {
    /// Starts with `snapshot`.
    pub fn new(snapshot: Snapshot) -> SharedPolicy {
        SharedPolicy(RwLock::new(Arc::new(snapshot)))
    }

    /// The snapshot in force now; holding it never blocks a writer.
    pub fn load(&self) -> Arc<Snapshot> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces the snapshot.
    pub fn store(&self, snapshot: Snapshot) {
        let new = Arc::new(snapshot);
        let old = std::mem::replace(
            &mut *self.0.write().unwrap_or_else(PoisonError::into_inner),
            new,
        );
        // The old snapshot is freed here, after the lock is released.
        drop(old);
    }
}

/// The most recent decided connections, oldest dropped first.
#[derive(Debug)]
pub struct ConnectionLog {
    entries: Mutex<VecDeque<ConnectionInfo>>,
    next_id: AtomicU64,
    capacity: usize,
}

impl ConnectionLog {
    /// Keeps at most `capacity` connections.
    pub fn new(capacity: usize) -> ConnectionLog {
        ConnectionLog {
            entries: Mutex::new(VecDeque::with_capacity(capacity.min(4096))),
            next_id: AtomicU64::new(1),
            capacity,
        }
    }

    /// A fresh connection id.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Adds a connection, dropping the oldest when full.
    pub fn record(&self, info: ConnectionInfo) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= self.capacity {
            entries.pop_front();
        }
        entries.push_back(info);
    }

    /// Every kept connection, oldest first.
    pub fn recent(&self) -> Vec<ConnectionInfo> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use portcullis_protocol::{
        DecidedBy, Direction, Explanation, ProfileLabel, Protocol, Scope, Verdict,
    };

    use super::*;

    fn conn(log: &ConnectionLog) -> ConnectionInfo {
        ConnectionInfo {
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

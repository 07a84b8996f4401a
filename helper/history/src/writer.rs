//! The batched writer: the verdict path hands records to a bounded channel and returns at
//! once; one thread owns the database and commits records in batches (by count and by age).
//! When the channel is full the record is counted as lost — the caller never blocks.
//!
//! The thread also applies retention periodically, filters out apps the user chose not to
//! record, and runs "clear history". If the database turns out corrupt while writing, it is
//! moved aside and a fresh one is started (the batch in hand is counted as failed); the
//! [`Reader`]s made by the writer are closed first and open the fresh file at their next read.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::store::{Clear, ReadLimits, Removed, Retention, Store, Verify, is_corrupt, now_ms};
use crate::{HistoryError, Record, Traffic};

/// How often the writer looks for more records while a batch fills (it is not woken for them).
const POLL_WHILE_FILLING: Duration = Duration::from_millis(5);

/// Decides, by app key, that an app's activity must not be recorded.
pub type DontRecord = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// How the writer runs.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Records the channel holds before new ones are counted as lost.
    pub capacity: usize,
    /// A batch is committed when it has this many records…
    pub batch_max: usize,
    /// …or when its oldest record has waited this long.
    pub batch_delay: Duration,
    /// What retention keeps.
    pub retention: Retention,
    /// How often retention runs.
    pub retention_every: Duration,
    /// How thoroughly the database is checked when it is opened.
    pub verify: Verify,
    /// The largest the database file may grow, in bytes (`None`: no cap).
    pub max_bytes: Option<u64>,
    /// Retention also runs after this many rows were written since it last ran, so a flood
    /// cannot outgrow the row limits between timed passes.
    pub retention_every_rows: u64,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            capacity: 65_536,
            batch_max: 16_384,
            batch_delay: Duration::from_millis(250),
            retention: Retention::default(),
            retention_every: Duration::from_secs(600),
            verify: Verify::Schema,
            max_bytes: None,
            retention_every_rows: 200_000,
        }
    }
}

/// What the writer has done since it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Records written.
    pub written: u64,
    /// Records dropped because the channel was full or the writer had stopped.
    pub lost: u64,
    /// Records skipped because their app is not recorded.
    pub not_recorded: u64,
    /// Records in batches that could not be written.
    pub failed: u64,
    /// Corrupt databases moved aside while running.
    pub moved_aside: u64,
}

#[derive(Debug, Default)]
struct Counters {
    written: AtomicU64,
    lost: AtomicU64,
    not_recorded: AtomicU64,
    failed: AtomicU64,
    moved_aside: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> Stats {
        Stats {
            written: self.written.load(Ordering::Relaxed),
            lost: self.lost.load(Ordering::Relaxed),
            not_recorded: self.not_recorded.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            moved_aside: self.moved_aside.load(Ordering::Relaxed),
        }
    }
}

type Reply<T> = mpsc::Sender<Result<T, HistoryError>>;

enum Msg {
    Record(Box<Record>),
    Traffic(Box<Traffic>),
    Flush(Reply<()>),
    Clear(Clear, Reply<Removed>),
    Retention(i64, Reply<Removed>),
    SetDontRecord(Option<DontRecord>),
    Stop,
}

/// The cheap, cloneable handle the verdict path records through.
#[derive(Clone)]
pub struct RecordSender {
    tx: SyncSender<Msg>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for RecordSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordSender").finish_non_exhaustive()
    }
}

impl RecordSender {
    /// Queues `record` for writing. Never blocks: returns `false` (and counts the record as
    /// lost) when the channel is full or the writer has stopped.
    pub fn record(&self, record: Record) -> bool {
        match self.tx.try_send(Msg::Record(Box::new(record))) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.counters.lost.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Queues what an ended connection carried (see [`Traffic`]). Never blocks, like
    /// [`record`](Self::record).
    pub fn traffic(&self, traffic: Traffic) -> bool {
        match self.tx.try_send(Msg::Traffic(Box::new(traffic))) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.counters.lost.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// What the writer has done so far.
    pub fn stats(&self) -> Stats {
        self.counters.snapshot()
    }
}

/// A reader's connection, and the database generation it was opened on.
#[derive(Debug, Default)]
struct Slot {
    store: Option<Store>,
    generation: u64,
}

/// The readers of one writer's database, which the writer closes before it moves the file.
#[derive(Debug, Default)]
struct Readers {
    /// Bumped each time the writer starts a new database file.
    generation: AtomicU64,
    slots: Mutex<Vec<Weak<Mutex<Slot>>>>,
}

impl Readers {
    /// Closes every reader's connection (each waits for a read in progress to end, which
    /// the read time limit bounds).
    fn close_all(&self) {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots.retain(|w| w.strong_count() > 0);
        for slot in slots.iter().filter_map(Weak::upgrade) {
            slot.lock().unwrap_or_else(PoisonError::into_inner).store = None;
        }
    }

    /// A new database file is in place: readers reopen, also one that opened the old file
    /// while it was being moved.
    fn new_file(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.close_all();
    }
}

/// A read-only connection to a [`Writer`]'s database that follows it: when the writer moves
/// a corrupt file aside and starts a fresh one, this connection is closed at once (it never
/// keeps the moved file open, or reads from it) and the next read opens the fresh file. It
/// is also reopened after a read fails (other than by its time limit).
#[derive(Debug)]
pub struct Reader {
    path: PathBuf,
    slot: Arc<Mutex<Slot>>,
    readers: Arc<Readers>,
    limits: ReadLimits,
}

impl Reader {
    /// Sets the bounds of each read (see [`ReadLimits`]).
    pub fn set_limits(&mut self, limits: ReadLimits) {
        self.limits = limits;
        let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(store) = slot.store.as_mut() {
            store.set_read_limits(limits);
        }
    }

    /// Runs `read` on the connection, opening it first if needed.
    pub fn read<T>(
        &self,
        read: impl FnOnce(&Store) -> Result<T, HistoryError>,
    ) -> Result<T, HistoryError> {
        let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        let generation = self.readers.generation.load(Ordering::Acquire);
        if slot.generation != generation {
            slot.store = None;
        }
        let store = match slot.store.take() {
            Some(store) => store,
            None => {
                let mut store = Store::open_reader(&self.path)?;
                store.set_read_limits(self.limits);
                store
            }
        };
        let result = read(&store);
        if result.is_ok() || matches!(result, Err(HistoryError::TimedOut { .. })) {
            slot.store = Some(store);
            slot.generation = generation;
        }
        result
    }

    /// Whether the connection is open now.
    pub fn is_open(&self) -> bool {
        self.slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .store
            .is_some()
    }
}

/// The writer: owns the thread and the database. Dropping it writes what is queued and stops
/// the thread.
pub struct Writer {
    sender: RecordSender,
    thread: Option<JoinHandle<()>>,
    path: PathBuf,
    readers: Arc<Readers>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Writer {
    /// Opens the database at `path` (see [`Store::open`]: a corrupt one is moved aside) and
    /// starts the writer thread. Returns the writer and, if one was moved aside, where the
    /// corrupt file went.
    pub fn start(
        path: &Path,
        config: WriterConfig,
        dont_record: Option<DontRecord>,
    ) -> Result<(Writer, Option<PathBuf>), HistoryError> {
        let mut opened = Store::open(path, config.verify)?;
        if let Some(bytes) = config.max_bytes {
            opened.store.set_max_bytes(bytes)?;
        }
        let (tx, rx) = mpsc::sync_channel(config.capacity.max(1));
        let counters = Arc::new(Counters::default());
        let readers = Arc::new(Readers::default());
        let state = Thread {
            readers: Arc::clone(&readers),
            store: Some(opened.store),
            path: path.to_path_buf(),
            rx,
            counters: Arc::clone(&counters),
            config,
            dont_record,
            since_retention: 0,
        };
        let thread = std::thread::Builder::new()
            .name("history-writer".into())
            .spawn(move || state.run())
            .map_err(HistoryError::Spawn)?;
        Ok((
            Writer {
                sender: RecordSender { tx, counters },
                thread: Some(thread),
                path: path.to_path_buf(),
                readers,
            },
            opened.moved_aside,
        ))
    }

    /// A handle for the verdict path.
    pub fn sender(&self) -> RecordSender {
        self.sender.clone()
    }

    /// A reader of this writer's database (opened at its first read), which follows the
    /// writer to a fresh file when a corrupt one is moved aside.
    pub fn reader(&self) -> Reader {
        let slot = Arc::new(Mutex::new(Slot::default()));
        {
            let mut slots = self
                .readers
                .slots
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            slots.retain(|w| w.strong_count() > 0);
            slots.push(Arc::downgrade(&slot));
        }
        Reader {
            path: self.path.clone(),
            slot,
            readers: Arc::clone(&self.readers),
            limits: ReadLimits::default(),
        }
    }

    /// Queues one record (see [`RecordSender::record`]).
    pub fn record(&self, record: Record) -> bool {
        self.sender.record(record)
    }

    /// What the writer has done so far.
    pub fn stats(&self) -> Stats {
        self.sender.stats()
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Msg) -> Result<T, HistoryError> {
        let (reply, answer) = mpsc::channel();
        // Control messages wait for room: they come from users, not from the verdict path.
        self.sender
            .tx
            .send(make(reply))
            .map_err(|_| HistoryError::WriterGone)?;
        answer.recv().map_err(|_| HistoryError::WriterGone)?
    }

    /// Writes everything queued before this call, and returns once it is committed.
    pub fn flush(&self) -> Result<(), HistoryError> {
        self.call(Msg::Flush)
    }

    /// Writes what is queued, then clears one app's history or all of it.
    pub fn clear(&self, what: Clear) -> Result<Removed, HistoryError> {
        self.call(|r| Msg::Clear(what, r))
    }

    /// Writes what is queued, then applies retention as of `now_ms`.
    pub fn apply_retention(&self, now_ms: i64) -> Result<Removed, HistoryError> {
        self.call(|r| Msg::Retention(now_ms, r))
    }

    /// Replaces the "don't record" predicate. It applies to records still queued too.
    pub fn set_dont_record(&self, dont_record: Option<DontRecord>) -> Result<(), HistoryError> {
        self.sender
            .tx
            .send(Msg::SetDontRecord(dont_record))
            .map_err(|_| HistoryError::WriterGone)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.sender.tx.send(Msg::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Records and traffic waiting to be committed.
struct Batch {
    records: Vec<Record>,
    traffic: Vec<Traffic>,
}

impl Batch {
    fn len(&self) -> usize {
        self.records.len() + self.traffic.len()
    }

    fn is_empty(&self) -> bool {
        self.records.is_empty() && self.traffic.is_empty()
    }
}

struct Thread {
    readers: Arc<Readers>,
    store: Option<Store>,
    path: PathBuf,
    rx: Receiver<Msg>,
    counters: Arc<Counters>,
    config: WriterConfig,
    dont_record: Option<DontRecord>,
    /// Rows written since retention last ran.
    since_retention: u64,
}

impl Thread {
    fn run(mut self) {
        let mut batch = Batch {
            records: Vec::with_capacity(self.config.batch_max),
            traffic: Vec::new(),
        };
        let mut deadline = Instant::now();
        let mut next_retention = Instant::now() + self.config.retention_every;
        loop {
            let now = Instant::now();
            let wait = if batch.is_empty() {
                next_retention.saturating_duration_since(now)
            } else {
                deadline.saturating_duration_since(now)
            };
            // While a batch fills, poll instead of waiting on the channel: a sender never
            // has to wake this thread (a system call per record, and a context switch that
            // competes with the verdict and DNS threads); the first record of a batch does.
            let msg = if batch.is_empty() {
                self.rx.recv_timeout(wait)
            } else {
                match self.rx.try_recv() {
                    Ok(m) => Ok(m),
                    Err(TryRecvError::Disconnected) => Err(RecvTimeoutError::Disconnected),
                    Err(TryRecvError::Empty) if wait.is_zero() => Err(RecvTimeoutError::Timeout),
                    Err(TryRecvError::Empty) => {
                        std::thread::sleep(wait.min(POLL_WHILE_FILLING));
                        continue;
                    }
                }
            };
            match msg {
                Ok(Msg::Record(r)) => {
                    if self.dont_record.as_ref().is_some_and(|skip| skip(&r.app)) {
                        self.counters.not_recorded.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    if batch.is_empty() {
                        deadline = Instant::now() + self.config.batch_delay;
                    }
                    batch.records.push(*r);
                    if batch.len() >= self.config.batch_max {
                        self.commit(&mut batch);
                    }
                }
                Ok(Msg::Traffic(t)) => {
                    if self.dont_record.as_ref().is_some_and(|skip| skip(&t.app)) {
                        self.counters.not_recorded.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    if batch.is_empty() {
                        deadline = Instant::now() + self.config.batch_delay;
                    }
                    batch.traffic.push(*t);
                    if batch.len() >= self.config.batch_max {
                        self.commit(&mut batch);
                    }
                }
                Ok(Msg::Flush(reply)) => {
                    self.commit(&mut batch);
                    let _ = reply.send(Ok(()));
                }
                Ok(Msg::Clear(what, reply)) => {
                    self.commit(&mut batch);
                    let result = self.store().and_then(|s| s.clear(&what));
                    let _ = reply.send(self.check(result));
                }
                Ok(Msg::Retention(at, reply)) => {
                    self.commit(&mut batch);
                    let retention = self.config.retention;
                    let result = self.store().and_then(|s| s.apply_retention(&retention, at));
                    let _ = reply.send(self.check(result));
                }
                Ok(Msg::SetDontRecord(p)) => {
                    self.dont_record = p;
                    if let Some(skip) = &self.dont_record {
                        let before = batch.len();
                        batch.records.retain(|r| !skip(&r.app));
                        batch.traffic.retain(|t| !skip(&t.app));
                        let skipped = (before - batch.len()) as u64;
                        self.counters
                            .not_recorded
                            .fetch_add(skipped, Ordering::Relaxed);
                    }
                }
                Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => {
                    self.commit(&mut batch);
                    return;
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.commit(&mut batch);
                    if Instant::now() >= next_retention {
                        next_retention = Instant::now() + self.config.retention_every;
                        let retention = self.config.retention;
                        let result = self
                            .store()
                            .and_then(|s| s.apply_retention(&retention, now_ms()));
                        if let Err(e) = self.check(result) {
                            tracing::warn!(error = %e, "history retention failed");
                        }
                    }
                }
            }
        }
    }

    fn commit(&mut self, batch: &mut Batch) {
        if !batch.records.is_empty() {
            let n = batch.records.len() as u64;
            let result = self.store().and_then(|s| s.insert(&batch.records));
            batch.records.clear();
            match self.check(result) {
                Ok(()) => {
                    self.counters.written.fetch_add(n, Ordering::Relaxed);
                    self.since_retention += n;
                    if self.since_retention >= self.config.retention_every_rows {
                        self.since_retention = 0;
                        let retention = self.config.retention;
                        let result = self
                            .store()
                            .and_then(|s| s.apply_retention(&retention, now_ms()));
                        if let Err(e) = self.check(result) {
                            tracing::warn!(error = %e, "history retention failed");
                        }
                    }
                }
                Err(e) => {
                    self.counters.failed.fetch_add(n, Ordering::Relaxed);
                    tracing::warn!(error = %e, records = n, "history batch not written");
                }
            }
        }
        // After the records: a connection's row is written before what it carried.
        if !batch.traffic.is_empty() {
            let n = batch.traffic.len() as u64;
            let result = self.store().and_then(|s| s.add_traffic(&batch.traffic));
            batch.traffic.clear();
            if let Err(e) = self.check(result) {
                self.counters.failed.fetch_add(n, Ordering::Relaxed);
                tracing::warn!(error = %e, connections = n, "traffic not written");
            }
        }
    }

    /// The database, reopened if an earlier corruption left none.
    fn store(&mut self) -> Result<&mut Store, HistoryError> {
        if self.store.is_none() {
            let mut opened = Store::open(&self.path, Verify::Schema)?;
            if let Some(bytes) = self.config.max_bytes {
                opened.store.set_max_bytes(bytes)?;
            }
            self.store = Some(opened.store);
            self.readers.new_file();
        }
        self.store.as_mut().ok_or(HistoryError::WriterGone)
    }

    /// Passes `result` through; if it says the database is corrupt, moves it aside and
    /// starts a fresh one, so the next batch has somewhere to go.
    fn check<T>(&mut self, result: Result<T, HistoryError>) -> Result<T, HistoryError> {
        if let Err(e) = &result
            && is_corrupt(e)
        {
            // Every connection must be closed before its file is renamed (Windows), and no
            // reader may go on reading the moved file.
            self.store = None;
            self.readers.close_all();
            match Store::move_aside_and_open(&self.path) {
                Ok(mut opened) => {
                    if let Some(bytes) = self.config.max_bytes {
                        let _ = opened.store.set_max_bytes(bytes);
                    }
                    self.store = Some(opened.store);
                    self.readers.new_file();
                    self.counters.moved_aside.fetch_add(1, Ordering::Relaxed);
                }
                Err(e2) => {
                    tracing::error!(error = %e2, "cannot start a fresh history database");
                }
            }
        }
        result
    }
}

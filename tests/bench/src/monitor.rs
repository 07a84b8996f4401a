//! Watches for other work on the machine while the benchmarks run. Every figure here is
//! sensitive to CPU contention (two cores), and the machine may be shared: a thread samples,
//! twice a second, which processes are runnable (`R` in `/proc/PID/stat`) and counts those that
//! are not part of the run — neither this process nor anything inside a lab namespace
//! (`pcl-<our pid>-…`). The report states how often something else was running, so that a
//! noisy figure can be told from a regression. It only reads `/proc`.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

const PERIOD: Duration = Duration::from_millis(500);

/// What the monitor saw.
#[derive(Debug, Clone, Copy, Default)]
pub struct Load {
    /// Samples taken.
    pub samples: u64,
    /// Samples in which at least one foreign process was runnable.
    pub busy_samples: u64,
    /// The most foreign processes runnable at once.
    pub max_running: u64,
}

impl Load {
    /// Share of samples with foreign work, 0.0–1.0.
    pub fn busy_share(&self) -> f64 {
        if self.samples == 0 {
            0.0
        } else {
            self.busy_samples as f64 / self.samples as f64
        }
    }
}

/// The running monitor; [`Monitor::stop`] returns what it saw.
#[derive(Debug)]
pub struct Monitor {
    stop: Arc<AtomicBool>,
    counters: Arc<[AtomicU64; 3]>,
    thread: Option<JoinHandle<()>>,
}

impl Monitor {
    /// Starts sampling.
    pub fn start() -> Monitor {
        let stop = Arc::new(AtomicBool::new(false));
        let counters: Arc<[AtomicU64; 3]> = Arc::new(Default::default());
        let (s, c) = (Arc::clone(&stop), Arc::clone(&counters));
        let thread = std::thread::Builder::new()
            .name("monitor".into())
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    let n = foreign_running();
                    let [samples, busy, max] = &*c;
                    samples.fetch_add(1, Ordering::Relaxed);
                    if n > 0 {
                        busy.fetch_add(1, Ordering::Relaxed);
                    }
                    max.fetch_max(n, Ordering::Relaxed);
                    std::thread::sleep(PERIOD);
                }
            })
            .ok();
        Monitor {
            stop,
            counters,
            thread,
        }
    }

    /// Stops sampling and returns the counts.
    pub fn stop(mut self) -> Load {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ignored = t.join();
        }
        let [samples, busy, max] = &*self.counters;
        Load {
            samples: samples.load(Ordering::Relaxed),
            busy_samples: busy.load(Ordering::Relaxed),
            max_running: max.load(Ordering::Relaxed),
        }
    }
}

/// How many foreign processes are runnable now (see the module docs).
pub fn foreign_running() -> u64 {
    let me = std::process::id();
    let ours = our_netns_inodes(me);
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut n = 0;
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me || !runnable(pid) {
            continue;
        }
        let in_lab =
            std::fs::metadata(format!("/proc/{pid}/ns/net")).is_ok_and(|m| ours.contains(&m.ino()));
        if !in_lab {
            n += 1;
        }
    }
    n
}

/// Whether some thread of user process `pid` is runnable. Kernel threads (children of
/// kthreadd, pid 2) do not count: they run our own traffic's softirqs too.
fn runnable(pid: u32) -> bool {
    // (state, ppid) from a stat line; the command name may hold spaces and parentheses.
    let fields = |path: String| -> Option<(char, u32)> {
        let text = std::fs::read_to_string(path).ok()?;
        let (_, rest) = text.rsplit_once(')')?;
        let mut it = rest.split_whitespace();
        let state = it.next()?.chars().next()?;
        let ppid = it.next()?.parse().ok()?;
        Some((state, ppid))
    };
    let Some((state, ppid)) = fields(format!("/proc/{pid}/stat")) else {
        return false;
    };
    if pid == 2 || ppid == 2 {
        return false;
    }
    if state == 'R' {
        return true;
    }
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().any(|t| {
        let tid = t.file_name();
        fields(format!("/proc/{pid}/task/{}/stat", tid.to_string_lossy()))
            .is_some_and(|(s, _)| s == 'R')
    })
}

/// Inodes of the lab namespaces of this run (`/run/netns/pcl-<pid>-…`).
fn our_netns_inodes(me: u32) -> HashSet<u64> {
    let prefix = format!("pcl-{me}-");
    std::fs::read_dir("/run/netns")
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                .filter_map(|e| e.metadata().ok().map(|m| m.ino()))
                .collect()
        })
        .unwrap_or_default()
}

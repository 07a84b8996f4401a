//! Live bandwidth per app, at one-second resolution: once a second the kernel's byte counters
//! of every open TCP connection are sampled (sock_diag `tcp_info`, one dump per family: no
//! per-packet cost), each connection is tied to its app through the table of live allowed
//! connections, and the app's rate is what its connections carried since the last sample.
//! A connection first seen counts from its second sample on (what it carried before is in
//! its history row when it ends). Off the verdict path: its own thread.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use portcullis_attribution::TcpSampler;
use portcullis_protocol::{AppRate, Protocol};

use crate::live::LiveFlows;

/// Most connections sampled per second.
const MAX_SOCKETS: usize = 65_536;

/// The latest rates.
#[derive(Debug, Default)]
pub struct Rates {
    current: Mutex<Vec<AppRate>>,
}

impl Rates {
    /// Apps with traffic in the last second, busiest first.
    pub fn current(&self) -> Vec<AppRate> {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set(&self, rates: Vec<AppRate>) {
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = rates;
    }
}

type Key = (SocketAddr, SocketAddr);

/// Samples until `stop`, publishing into `rates`.
pub fn run(rates: &Rates, flows: &LiveFlows, stop: &AtomicBool) {
    let mut sampler = match TcpSampler::new() {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "live bandwidth is off: cannot sample connections");
            return;
        }
    };
    let mut last: HashMap<Key, (u64, u64)> = HashMap::new();
    let mut at = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        // Sleep in short steps so that stopping is prompt.
        for _ in 0..10 {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let samples = match sampler.sample(MAX_SOCKETS) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "cannot sample connections");
                continue;
            }
        };
        let now = Instant::now();
        let secs = now.duration_since(at).as_secs_f64().max(0.001);
        at = now;
        let mut next: HashMap<Key, (u64, u64)> = HashMap::with_capacity(samples.len());
        let mut per_app: HashMap<Arc<str>, (u64, u64)> = HashMap::new();
        for s in samples {
            let key = (s.local, s.remote);
            if let Some((out0, in0)) = last.get(&key)
                && let Some(app) = flows.app_at(Protocol::Tcp, s.local, s.remote)
            {
                let e = per_app.entry(app).or_default();
                e.0 += s.bytes_out.saturating_sub(*out0);
                e.1 += s.bytes_in.saturating_sub(*in0);
            }
            next.insert(key, (s.bytes_out, s.bytes_in));
        }
        last = next;
        let mut list: Vec<AppRate> = per_app
            .into_iter()
            .filter(|(_, (o, i))| o + i > 0)
            .map(|(app, (o, i))| AppRate {
                app: app.to_string(),
                bytes_out_per_sec: (o as f64 / secs).round() as u64,
                bytes_in_per_sec: (i as f64 / secs).round() as u64,
            })
            .collect();
        list.sort_by(|a, b| {
            (b.bytes_out_per_sec + b.bytes_in_per_sec)
                .cmp(&(a.bytes_out_per_sec + a.bytes_in_per_sec))
                .then_with(|| a.app.cmp(&b.app))
        });
        rates.set(list);
    }
}

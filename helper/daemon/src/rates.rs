//! Live bandwidth per app, at one-second resolution: once a second the kernel's byte counters
//! of every open TCP connection are sampled (sock_diag `tcp_info`, one dump per family: no
//! per-packet cost), each connection is tied to its app through the table of live allowed
//! connections, and the app's rate is what its connections carried since the last sample.
//! A connection first seen counts from its second sample on (what it carried before is in
//! its history row when it ends). UDP flows are sampled the same way from conntrack's
//! accounting (one dump of the flows we allowed), and when conntrack forgets one, what it
//! carried goes to its history row. Off the verdict path: its own thread.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use portcullis_attribution::{TcpSampler, TrafficEvent};
use portcullis_intercept::InterceptConfig;
use portcullis_intercept::ctnetlink::Counters;
use portcullis_protocol::{AppRate, Protocol};

use crate::live::LiveFlows;

/// Most connections sampled per second.
const MAX_SOCKETS: usize = 65_536;
/// Most UDP flows followed (a storm of new flows costs the sampler no more than this; flows
/// beyond it have no bytes recorded).
const MAX_UDP_FLOWS: usize = 4_096;

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

/// One UDP flow conntrack accounts for: its app (found when the flow was first seen), which end
/// is ours, and what it carried by the last sample.
struct UdpFlow {
    app: Arc<str>,
    /// Whether this machine opened it (the conntrack entry's original direction is ours).
    outbound: bool,
    counters: Counters,
}

impl UdpFlow {
    /// Payload bytes and packets (out, in, packets out, packets in): conntrack counts IP and
    /// UDP headers, which are taken off.
    fn carried(&self, ipv4: bool) -> (u64, u64, u64, u64) {
        let header: u64 = if ipv4 { 28 } else { 48 };
        let c = self.counters;
        let orig = c
            .orig_bytes
            .saturating_sub(c.orig_packets.saturating_mul(header));
        let reply = c
            .reply_bytes
            .saturating_sub(c.reply_packets.saturating_mul(header));
        if self.outbound {
            (orig, reply, c.orig_packets, c.reply_packets)
        } else {
            (reply, orig, c.reply_packets, c.orig_packets)
        }
    }

    /// Puts what it carried in its history row.
    fn record(&self, (src, dst): Key, history: &crate::history::Recorder) {
        let (bytes_out, bytes_in, packets_out, packets_in) = self.carried(src.is_ipv4());
        let (local, remote) = if self.outbound {
            (src, dst)
        } else {
            (dst, src)
        };
        history.traffic(
            &self.app,
            &TrafficEvent {
                protocol: Protocol::Udp,
                local,
                remote,
                bytes_out,
                bytes_in,
                packets_out,
                packets_in,
            },
        );
    }
}

/// The UDP flows we allowed, by conntrack's original tuple.
#[derive(Default)]
struct UdpFlows {
    known: HashMap<Key, UdpFlow>,
}

impl UdpFlows {
    /// Samples conntrack's counters: adds each app's bytes since the last sample to `per_app`,
    /// and records the flows conntrack no longer tracks.
    fn sample(
        &mut self,
        config: &InterceptConfig,
        flows: &LiveFlows,
        history: &crate::history::Recorder,
        per_app: &mut HashMap<Arc<str>, (u64, u64)>,
    ) {
        let live = match portcullis_intercept::allowed_udp_flows(config) {
            Ok(live) => live,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read conntrack's UDP counters");
                return;
            }
        };
        let mut now: HashMap<Key, UdpFlow> = HashMap::new();
        let mut fresh: Vec<(Key, Counters)> = Vec::new();
        for c in live {
            let (Protocol::Udp, Some(counters)) = (c.protocol, c.counters) else {
                continue;
            };
            let key = (c.src, c.dst);
            // Flows already followed stay followed wherever the dump lists them (else one
            // would pass for ended and be recorded twice); new ones only while there is room.
            match self.known.remove(&key) {
                Some(mut f) => {
                    let (o0, i0, _, _) = f.carried(c.src.is_ipv4());
                    f.counters = counters;
                    let (o1, i1, _, _) = f.carried(c.src.is_ipv4());
                    let e = per_app.entry(Arc::clone(&f.app)).or_default();
                    e.0 += o1.saturating_sub(o0);
                    e.1 += i1.saturating_sub(i0);
                    now.insert(key, f);
                }
                None if self.known.len() + now.len() + fresh.len() < MAX_UDP_FLOWS => {
                    fresh.push((key, counters));
                }
                None => {}
            }
        }
        // New flows' apps, in one lookup.
        let pairs: Vec<Key> = fresh.iter().map(|(k, _)| *k).collect();
        for ((key, counters), found) in fresh.into_iter().zip(flows.udp_apps(&pairs)) {
            if let Some((app, outbound)) = found {
                now.insert(
                    key,
                    UdpFlow {
                        app,
                        outbound,
                        counters,
                    },
                );
            }
        }
        // What conntrack no longer tracks has ended.
        if history.is_on() {
            for (key, flow) in &self.known {
                flow.record(*key, history);
            }
        }
        self.known = now;
    }

    /// At stop: records the flows still open.
    fn finish(&mut self, history: &crate::history::Recorder) {
        if history.is_on() {
            for (key, flow) in self.known.drain() {
                flow.record(key, history);
            }
        }
    }
}

/// Samples until `stop`, publishing into `rates`, and records what ended UDP flows carried.
pub fn run(
    rates: &Rates,
    flows: &LiveFlows,
    config: &InterceptConfig,
    history: &crate::history::Recorder,
    stop: &AtomicBool,
) {
    let mut sampler = match TcpSampler::new() {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "live TCP bandwidth is off: cannot sample connections");
            None
        }
    };
    let mut udp = UdpFlows::default();
    let mut last: HashMap<Key, (u64, u64)> = HashMap::new();
    let mut at = Instant::now();
    'run: while !stop.load(Ordering::Relaxed) {
        // Sleep in short steps so that stopping is prompt.
        for _ in 0..10 {
            if stop.load(Ordering::Relaxed) {
                break 'run;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let samples = match sampler.as_mut().map(|s| s.sample(MAX_SOCKETS)) {
            Some(Ok(s)) => s,
            Some(Err(e)) => {
                tracing::debug!(error = %e, "cannot sample connections");
                Vec::new()
            }
            None => Vec::new(),
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
        udp.sample(config, flows, history, &mut per_app);
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
    udp.finish(history);
}

//! One measurement of one arm: each function runs its traffic in the arm's lab and returns raw
//! figures (samples, counts, durations). The traffic comes from `pcl-probe` processes in the
//! client namespace, which time their own calls; counters come from the kernel (queue,
//! interface, UDP and conntrack statistics of the namespace) and from the helper's CLI.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use portcullis_attribution::{
    Attribution, AttributionConfig, Attributor, Direction, Flow, Protocol,
};
use portcullis_intercept::{QueueStats, queue_stats};
use portcullis_lab::lab_bin;
use serde_json::Value;

use crate::arms::Arm;
use crate::servers::{CONNECT_PORT, HOLD_PORT, IPERF_PORT, SINK_PORT, STORM_PORT};
use crate::sys;

/// Runs the probe `app` in the arm's client namespace and returns its one line of output.
fn probe(arm: &Arm, app: &Path, args: &[&str]) -> anyhow::Result<String> {
    let mut cmd = Command::new(app);
    cmd.args(args);
    let out = arm.client().output(cmd);
    if !out.success() {
        bail!(
            "{} {} in {} failed: {out}",
            app.display(),
            args.join(" "),
            arm.kind.label()
        );
    }
    Ok(out.stdout.trim().to_owned())
}

/// Numbers after the tag of a probe's line (`lat 1 2 3` → [1, 2, 3]).
fn numbers(line: &str, tag: &str) -> anyhow::Result<Vec<u128>> {
    let mut words = line.split_whitespace();
    if words.next() != Some(tag) {
        bail!("unexpected probe output {line:?} (wanted `{tag} …`)");
    }
    words
        .map(|w| {
            w.parse::<u128>()
                .with_context(|| format!("bad number {w:?} in {line:?}"))
        })
        .collect()
}

fn ns_to_us(ns: u128) -> f64 {
    ns as f64 / 1000.0
}

/// `count` connects (after `warmup` untimed ones) from one process to the accept server, each
/// closed at once; returns their latencies in µs.
pub fn connect_latency(arm: &Arm, count: usize, warmup: usize) -> anyhow::Result<Vec<f64>> {
    let ip = arm.server_ip();
    let line = probe(
        arm,
        &arm.probe,
        &[
            "latency",
            &ip,
            &CONNECT_PORT.to_string(),
            &count.to_string(),
            &warmup.to_string(),
        ],
    )?;
    Ok(numbers(&line, "lat")?.into_iter().map(ns_to_us).collect())
}

/// Where the placement measurement puts the client and the deciding process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Both on CPU 0.
    SameCpu,
    /// Client on CPU 0, decider on CPU 1.
    Split,
}

/// Like [`connect_latency`], with the client and every thread of the deciding process pinned
/// as `placement` says (with `taskset`); the decider is unpinned again afterwards. Returns
/// the latencies in µs.
pub fn connect_latency_placed(
    arm: &Arm,
    count: usize,
    warmup: usize,
    placement: Placement,
) -> anyhow::Result<Vec<f64>> {
    let decider_cpu = match placement {
        Placement::SameCpu => "0",
        Placement::Split => "1",
    };
    let all_cpus = format!("0-{}", num_cpus().saturating_sub(1));
    let pin = |cpus: &str| -> anyhow::Result<()> {
        let Some(pid) = arm.firewall_pid() else {
            return Ok(());
        };
        let out = Command::new("taskset")
            .args(["-a", "-p", "-c", cpus, &pid.to_string()])
            .output()
            .context("running taskset")?;
        if !out.status.success() {
            bail!(
                "taskset -a -p -c {cpus} {pid} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    };
    pin(decider_cpu)?;
    let ip = arm.server_ip();
    let port = CONNECT_PORT.to_string();
    let (count, warmup) = (count.to_string(), warmup.to_string());
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", "0"]).arg(&arm.probe).args([
        "latency",
        ip.as_str(),
        port.as_str(),
        count.as_str(),
        warmup.as_str(),
    ]);
    let out = arm.client().output(cmd);
    let unpinned = pin(&all_cpus);
    if !out.success() {
        bail!("pinned latency probe in {} failed: {out}", arm.kind.label());
    }
    unpinned?;
    Ok(numbers(out.stdout.trim(), "lat")?
        .into_iter()
        .map(ns_to_us)
        .collect())
}

/// CPUs this process may use.
pub fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

/// Connections per second over `millis`, with `threads` client threads in one process.
pub fn connect_rate(arm: &Arm, millis: u64, threads: usize) -> anyhow::Result<f64> {
    arm.flush_conntrack()?;
    let ip = arm.server_ip();
    let line = probe(
        arm,
        &arm.probe,
        &[
            "rate",
            &ip,
            &CONNECT_PORT.to_string(),
            &millis.to_string(),
            &threads.to_string(),
        ],
    )?;
    match numbers(&line, "rate")?.as_slice() {
        [ok, elapsed, errors] => {
            if *errors > 0 {
                bail!(
                    "{}: {errors} connects failed during the rate test",
                    arm.kind.label()
                );
            }
            Ok(*ok as f64 / (*elapsed as f64 / 1e9))
        }
        _ => bail!("unexpected rate output {line:?}"),
    }
}

/// `n` new processes, each a new app (its own executable path), each timing its one connect;
/// returns the latencies in µs.
pub fn first_connect(arm: &Arm, n: usize) -> anyhow::Result<Vec<f64>> {
    let ip = arm.server_ip();
    let port = CONNECT_PORT.to_string();
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let app = arm.new_app("first")?;
        let line = probe(arm, &app, &["once", &ip, &port])?;
        if let [ns] = numbers(&line, "once")?.as_slice() {
            samples.push(ns_to_us(*ns));
        }
        // The link has served its one process; the app stays in the firewall's records.
        let _ignored = std::fs::remove_file(&app);
    }
    Ok(samples)
}

/// One iperf3 run and what the queue saw meanwhile.
#[derive(Debug, Clone, Copy)]
pub struct Throughput {
    /// Received bits per second (iperf3's `sum_received`).
    pub bps: f64,
    /// TCP connections iperf3 opened (one control connection plus one per stream).
    pub connections: u64,
    /// Packets the client interface sent during the run.
    pub packets: u64,
    /// Packets the arm's queue received during the run (`None`: no queue).
    pub queued: Option<u64>,
    /// CPU seconds the deciding process used during the run (`None`: no such process).
    pub decider_cpu: Option<f64>,
}

fn stats_of(arm: &Arm) -> Option<QueueStats> {
    let q = arm.kind.queue_num()?;
    arm.client().in_ns(|| queue_stats(q))
}

fn queued_between(before: Option<QueueStats>, after: Option<QueueStats>) -> Option<u64> {
    let (b, a) = (before?, after?);
    Some(u64::from(a.packets.wrapping_sub(b.packets)))
}

/// iperf3 from the client to the server namespace, `streams` parallel streams for `secs`
/// (after `omit` seconds of warm-up that do not count).
pub fn throughput(arm: &Arm, streams: usize, secs: u64, omit: u64) -> anyhow::Result<Throughput> {
    let iface = arm.client().iface().to_owned();
    let tx = || arm.client().in_ns(|| sys::tx_packets(&iface)).unwrap_or(0);
    let cpu = || arm.firewall_pid().and_then(sys::cpu_secs);
    let q_before = stats_of(arm);
    let tx_before = tx();
    let cpu_before = cpu();
    let ip = arm.server_ip();
    let args = [
        "-c".to_owned(),
        ip,
        "-p".to_owned(),
        IPERF_PORT.to_string(),
        "-t".to_owned(),
        secs.to_string(),
        "-P".to_owned(),
        streams.to_string(),
        "-O".to_owned(),
        omit.to_string(),
        "-J".to_owned(),
    ];
    let mut last = String::new();
    // The server takes a moment to accept the next test after one ends: try a few times.
    for _attempt in 0..5 {
        let mut cmd = Command::new("iperf3");
        cmd.args(&args);
        let out = arm.client().output(cmd);
        let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_default();
        if let Some(bps) = json
            .pointer("/end/sum_received/bits_per_second")
            .and_then(serde_json::Value::as_f64)
            && out.success()
        {
            let queued = queued_between(q_before, stats_of(arm));
            return Ok(Throughput {
                bps,
                connections: streams as u64 + 1,
                packets: tx().saturating_sub(tx_before),
                queued,
                decider_cpu: cpu_before.zip(cpu()).map(|(b, a)| a - b),
            });
        }
        last = format!("{out}");
        std::thread::sleep(Duration::from_millis(300));
    }
    bail!("iperf3 in {} failed: {last}", arm.kind.label())
}

/// One storm of new UDP flows.
#[derive(Debug, Clone, Copy)]
pub struct Storm {
    /// Datagrams the probe sent, each from a new socket.
    pub sent: u64,
    /// Seconds the probe sent for.
    pub send_secs: f64,
    /// Datagrams the sink received.
    pub arrived: u64,
    /// Packets the queue received (each got a verdict); `None`: no queue.
    pub verdicts: Option<u64>,
    /// Seconds from the storm's start until the queue was empty again.
    pub verdict_secs: f64,
    /// Datagrams the sink's own socket buffer dropped (not the firewall's doing).
    pub sink_drops: u64,
    /// Packets conntrack dropped in the client namespace.
    pub conntrack_drops: u64,
    /// The deciding process's resident memory before and after, in bytes.
    pub rss: Option<(u64, u64)>,
}

/// A storm of new UDP flows for `millis` from `threads` sending threads: one datagram per new
/// socket, the last `ring` sockets of each thread kept open.
pub fn udp_storm(arm: &Arm, millis: u64, threads: usize, ring: usize) -> anyhow::Result<Storm> {
    arm.flush_conntrack()?;
    let rss_before = arm.firewall_pid().and_then(sys::rss);
    let sink_before = arm.servers.sink_count();
    let sink_drops_before = arm.lab.server().in_ns(sys::udp_rcvbuf_errors).unwrap_or(0);
    let ct_before = arm.client().in_ns(sys::conntrack_drops).unwrap_or(0);
    let q_before = stats_of(arm);
    let ip = arm.server_ip();
    // Run directly (not through the lab's polling wait) so that the moment it exits is known.
    let out = arm
        .client()
        .cmd(
            &arm.probe,
            [
                "udp-storm",
                ip.as_str(),
                &SINK_PORT.to_string(),
                &millis.to_string(),
                &ring.to_string(),
                &threads.to_string(),
            ],
        )
        .output()
        .context("running the UDP storm probe")?;
    let exited = Instant::now();
    let line = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() {
        bail!(
            "UDP storm in {} failed ({}): {line} {}",
            arm.kind.label(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (sent, send_ns) = match numbers(&line, "udp")?.as_slice() {
        [sent, elapsed, _errors] => (*sent as u64, *elapsed),
        _ => bail!("unexpected storm output {line:?}"),
    };
    // Wait (bounded) until the queue is empty and the sink has taken in everything.
    let deadline = Instant::now() + Duration::from_secs(5);
    while stats_of(arm).is_some_and(|s| s.waiting > 0) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_micros(200));
    }
    let drain_secs = exited.elapsed().as_secs_f64();
    let (mut seen, mut stable_since) = (arm.servers.sink_count(), Instant::now());
    while Instant::now() < deadline && stable_since.elapsed() < Duration::from_millis(200) {
        std::thread::sleep(Duration::from_millis(20));
        let now = arm.servers.sink_count();
        if now != seen {
            (seen, stable_since) = (now, Instant::now());
        }
    }
    let verdicts = queued_between(q_before, stats_of(arm));
    let rss_after = arm.firewall_pid().and_then(sys::rss);
    let sink_drops = arm
        .lab
        .server()
        .in_ns(sys::udp_rcvbuf_errors)
        .unwrap_or(0)
        .saturating_sub(sink_drops_before);
    let conntrack_drops = arm
        .client()
        .in_ns(sys::conntrack_drops)
        .unwrap_or(0)
        .saturating_sub(ct_before);
    // The verdict window: the sending plus the drain of the queue after it.
    let send_secs = send_ns as f64 / 1e9;
    let verdict_secs = send_secs + drain_secs;
    Ok(Storm {
        sent,
        send_secs,
        arrived: arm.servers.sink_count().saturating_sub(sink_before),
        verdicts,
        verdict_secs,
        sink_drops,
        conntrack_drops,
        rss: rss_before.zip(rss_after),
    })
}

/// What the helper recorded of a fork–connect–exit storm.
#[derive(Debug, Clone)]
pub struct StormAttribution {
    /// Processes started (each connects once and exits at once).
    pub processes: usize,
    /// Processes whose connect succeeded.
    pub connected: usize,
    /// Distinct storm connections the helper recorded.
    pub recorded: usize,
    /// Recorded connections attributed to the storm's app.
    pub attributed: usize,
    /// Recorded connections attributed to nothing (`system:kernel`).
    pub unattributed: usize,
    /// Recorded connections attributed to another app.
    pub other: usize,
    /// Events the subscription lost (it read too slowly); their connections count as missing.
    pub missed_events: u64,
    /// Wall time of the storm in seconds.
    pub secs: f64,
}

/// `n` short-lived processes of one app, `parallel` at a time, each connecting once and
/// exiting right after; counts, from the helper's own stream of decided connections
/// (`portcullisctl --json events`, subscribed before the storm), how many of the storm's
/// connections it tied to that app.
pub fn attribution_storm(arm: &Arm, n: usize, parallel: usize) -> anyhow::Result<StormAttribution> {
    let Some(helper) = &arm.helper else {
        bail!("the attribution storm needs the Portcullis arm");
    };
    let app = arm.new_app("storm")?;
    let ip = arm.server_ip();
    let port = STORM_PORT.to_string();
    let events = arm.client().spawn(arm.client().cmd(
        lab_bin("portcullisctl"),
        [
            OsStr::new("--socket"),
            helper.socket().as_os_str(),
            OsStr::new("--json"),
            OsStr::new("events"),
        ],
    ));
    // Subscribed once a connection made now shows up in the stream.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        probe(arm, &arm.probe, &["once", &ip, &CONNECT_PORT.to_string()])?;
        if events.stdout().contains("\"connection\"") {
            break;
        }
        if Instant::now() >= deadline {
            bail!(
                "`portcullisctl events` showed no connection within 10 s\n{}",
                events.logs()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let next = AtomicU64::new(0);
    let connected = AtomicU64::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..parallel.max(1) {
            s.spawn(|| {
                while next.fetch_add(1, Ordering::Relaxed) < n as u64 {
                    let ok = arm
                        .client()
                        .cmd(&app, ["exit", ip.as_str(), port.as_str()])
                        .output()
                        .is_ok_and(|o| o.status.success());
                    if ok {
                        connected.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let secs = start.elapsed().as_secs_f64();
    // Let the helper finish what is queued and the stream catch up.
    std::thread::sleep(Duration::from_millis(500));
    let text = events.stdout();
    events.terminate();
    let key = app.to_string_lossy().into_owned();
    let mut by_port: BTreeMap<u64, String> = BTreeMap::new();
    let mut missed = 0_u64;
    for line in text.lines() {
        let Ok(e) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if field(&e, "event") == "lagged" {
            missed += field(&e, "missed").as_u64().unwrap_or(0);
            continue;
        }
        let c = field(&e, "connection");
        let to_storm = field(&e, "event") == "connection"
            && field(c, "remote_port").as_u64() == Some(u64::from(STORM_PORT))
            && field(c, "protocol") == "tcp"
            && field(c, "direction") == "outbound";
        if let (true, Some(local_port)) = (to_storm, field(c, "local_port").as_u64()) {
            by_port.insert(
                local_port,
                field(c, "app").as_str().unwrap_or_default().to_owned(),
            );
        }
    }
    let attributed = by_port.values().filter(|a| **a == key).count();
    let unattributed = by_port.values().filter(|a| *a == "system:kernel").count();
    Ok(StormAttribution {
        processes: n,
        connected: connected.load(Ordering::Relaxed) as usize,
        recorded: by_port.len(),
        attributed,
        unattributed,
        other: by_port.len() - attributed - unattributed,
        missed_events: missed,
        secs,
    })
}

/// What Portcullis' eBPF programs cost on their own, on the connecting process's side.
#[derive(Debug, Clone, Default)]
pub struct HookCost {
    /// Cached connect latencies without the programs, µs.
    pub base_latency: Vec<f64>,
    /// The same with the programs attached, µs.
    pub hooked_latency: Vec<f64>,
    /// UDP storm sends per second without the programs, per run.
    pub base_sends: Vec<f64>,
    /// The same with the programs attached.
    pub hooked_sends: Vec<f64>,
}

/// Measures, in the no-firewall arm (no rules, no queue), cached connect latency and the UDP
/// storm's send rate without and with the attribution crate's eBPF programs attached to the
/// lab's cgroup (as the helper attaches them to its own), alternating `runs` times: what the
/// programs add to every connect and send of an app, before any queue. `None` when the
/// programs cannot be attached here.
pub fn ebpf_hook_cost(
    arm: &Arm,
    runs: usize,
    lat: (usize, usize),
    storm: (u64, usize, usize),
) -> anyhow::Result<Option<HookCost>> {
    let mut cost = HookCost::default();
    let cgroup = arm.client().cgroup().to_path_buf();
    for _ in 0..runs {
        cost.base_latency
            .extend(connect_latency(arm, lat.0, lat.1)?);
        let st = udp_storm(arm, storm.0, storm.1, storm.2)?;
        cost.base_sends.push(st.sent as f64 / st.send_secs);
        let hooked = arm
            .client()
            .in_ns(|| -> anyhow::Result<Option<(Vec<f64>, f64)>> {
                let config = AttributionConfig {
                    ebpf_cgroup: Some(cgroup.clone()),
                    ..AttributionConfig::default()
                };
                let Ok(_attributor) = Attributor::new(config) else {
                    return Ok(None);
                };
                let l = connect_latency(arm, lat.0, lat.1)?;
                let st = udp_storm(arm, storm.0, storm.1, storm.2)?;
                Ok(Some((l, st.sent as f64 / st.send_secs)))
            })?;
        let Some((l, sends)) = hooked else {
            return Ok(None);
        };
        cost.hooked_latency.extend(l);
        cost.hooked_sends.push(sends);
    }
    Ok(Some(cost))
}

/// A JSON object's member, or `null`.
fn field<'a>(v: &'a Value, key: &str) -> &'a Value {
    v.get(key).unwrap_or(&Value::Null)
}

/// Per-lookup cost of `portcullis_attribution::Attributor::attribute`, measured in this process.
#[derive(Debug, Clone)]
pub struct Lookups {
    /// First lookup of each new process's socket, µs.
    pub first: Vec<f64>,
    /// The same lookup again right after (cached), µs.
    pub again: Vec<f64>,
    /// A second socket of the same process, opened after the first lookup: a known process
    /// with a new socket, as for every connection of an app already seen, µs.
    pub known: Vec<f64>,
    /// Lookups that named the right executable.
    pub found: usize,
    /// Lookups done.
    pub total: usize,
    /// How the attributor worked (with eBPF on the lab's cgroup, as the helper does, or
    /// without when the programs could not be attached).
    pub mode: String,
}

/// For each of `n` new processes (each connects to the hold server twice and keeps both
/// connections a moment), times `Attributor::attribute` on their live sockets: the first
/// socket as it comes (a new pid and a new socket for the attributor), the same again
/// (cached), and the second socket, which the process opens only after that lookup (a known
/// process with a new socket). One attributor, made inside the
/// client namespace and warmed by `warmup` lookups that are not counted.
pub fn attribution_lookups(arm: &Arm, n: usize, warmup: usize) -> anyhow::Result<Lookups> {
    let app = arm.new_app("lookup")?;
    let server_ip: IpAddr = arm.lab.server().ipv4().into();
    let remote = SocketAddr::new(server_ip, HOLD_PORT);
    let ip = server_ip.to_string();
    let port = HOLD_PORT.to_string();
    let result = arm.client().in_ns(|| -> anyhow::Result<Lookups> {
        // As the helper in the lab does: eBPF on the lab's cgroup (where every probe runs),
        // then sock_diag and /proc; without eBPF if the programs cannot be attached.
        let cgroup = arm.client().cgroup().to_path_buf();
        let with_ebpf = AttributionConfig {
            ebpf_cgroup: Some(cgroup.clone()),
            ..AttributionConfig::default()
        };
        let (mut attributor, mode) = match Attributor::new(with_ebpf) {
            Ok(a) => (
                a,
                format!(
                    "eBPF on the lab cgroup {}, then sock_diag and /proc",
                    cgroup.display()
                ),
            ),
            Err(e) => (
                Attributor::new(AttributionConfig::default()).context("starting an attributor")?,
                format!("sock_diag and /proc (eBPF unavailable: {e})"),
            ),
        };
        let mut children = Vec::new();
        let mut out = Lookups {
            first: Vec::with_capacity(n),
            again: Vec::with_capacity(n),
            known: Vec::with_capacity(n),
            found: 0,
            total: 0,
            mode,
        };
        for i in 0..n + warmup {
            let child = arm
                .client()
                .cmd(&app, ["hold", ip.as_str(), port.as_str(), "300", "2"])
                .stdout(std::process::Stdio::null())
                .spawn()
                .context("starting a probe")?;
            children.push(child);
            let flow = |local| Flow {
                protocol: Protocol::Tcp,
                direction: Direction::Outbound,
                local,
                remote,
            };
            let Some(local) = arm.servers.next_held(Duration::from_secs(3)) else {
                bail!("a probe did not connect to the hold server within 3 s");
            };
            let t0 = Instant::now();
            let first = attributor.attribute(&flow(local));
            let t1 = Instant::now();
            let _again = attributor.attribute(&flow(local));
            let t2 = Instant::now();
            if !arm.servers.poke_held(local) {
                bail!("cannot give a probe its go-ahead");
            }
            let Some(second) = arm.servers.next_held(Duration::from_secs(3)) else {
                bail!("a probe did not open its second connection within 3 s");
            };
            let t3 = Instant::now();
            let _known = attributor.attribute(&flow(second));
            let t4 = Instant::now();
            if i < warmup {
                continue;
            }
            out.total += 1;
            out.first.push((t1 - t0).as_secs_f64() * 1e6);
            out.again.push((t2 - t1).as_secs_f64() * 1e6);
            out.known.push((t4 - t3).as_secs_f64() * 1e6);
            if let Attribution::Process(p) = first
                && p.exe == app
            {
                out.found += 1;
            }
        }
        for mut c in children {
            let _ignored = c.wait();
        }
        Ok(out)
    });
    arm.servers.release_held();
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arms::Kind;

    #[test]
    fn probe_lines_parse() {
        assert_eq!(numbers("lat 1 2 3", "lat").unwrap(), [1, 2, 3]);
        assert!(numbers("rate 1 2", "lat").is_err());
        assert!(numbers("lat 1 x", "lat").is_err());
    }

    #[test]
    fn queue_deltas_wrap() {
        let s = |packets| QueueStats {
            queue_num: 1,
            portid: 1,
            waiting: 0,
            copy_mode: 2,
            copy_range: 256,
            dropped: 0,
            user_dropped: 0,
            packets,
        };
        assert_eq!(queued_between(Some(s(10)), Some(s(15))), Some(5));
        assert_eq!(queued_between(Some(s(u32::MAX)), Some(s(4))), Some(5));
        assert_eq!(queued_between(None, Some(s(4))), None);
    }

    #[test]
    fn kinds_without_a_queue() {
        assert_eq!(Kind::NoFirewall.queue_num(), None);
        assert_eq!(Kind::OpenSnitch.queue_num(), Some(0));
    }
}

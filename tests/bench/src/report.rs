//! Turns a run's raw figures into the report: one table per benchmark with every arm beside the
//! no-firewall baseline of the same run (Δ and ratio), the targets for Portcullis marked
//! MET or MISSED (and by how much), and the short profile's checks. Pure: text in, text out.

use std::fmt::Write as _;

use crate::arms::Kind;
use crate::measure::{HookCost, Lookups, Storm, StormAttribution, Throughput};
use crate::monitor::Load;
use crate::stats::{delta_us, median, mib, pct, percentile, thousands, us};
use crate::sys::Machine;

/// What one arm measured over all rounds.
#[derive(Debug, Default, Clone)]
pub struct ArmResults {
    /// Cached connect latencies, µs, pooled over rounds.
    pub latency: Vec<f64>,
    /// The same with client and decider pinned to one CPU.
    pub latency_same_cpu: Vec<f64>,
    /// The same with client and decider pinned to different CPUs.
    pub latency_split: Vec<f64>,
    /// Connections per second with 1 client thread, per round.
    pub rate1: Vec<f64>,
    /// Connections per second with 2 client threads, per round.
    pub rate2: Vec<f64>,
    /// First connect of a new process, µs, pooled.
    pub first: Vec<f64>,
    /// iperf3 with 1 stream, per round.
    pub tput1: Vec<Throughput>,
    /// iperf3 with 4 streams, per round.
    pub tput4: Vec<Throughput>,
    /// UDP storms, per round.
    pub storms: Vec<Storm>,
}

/// Sizes of a profile, for the report's headings.
#[derive(Debug, Clone)]
pub struct Sizes {
    /// "full" or "quick".
    pub profile: &'static str,
    /// Interleaved rounds.
    pub rounds: usize,
    /// Timed connects per round.
    pub lat_count: usize,
    /// Milliseconds per connect-rate run.
    pub rate_ms: u64,
    /// New processes per round.
    pub first_n: usize,
    /// Seconds per iperf3 run.
    pub iperf_secs: u64,
    /// Milliseconds per UDP storm.
    pub storm_ms: u64,
}

/// Everything a run produced.
#[derive(Debug)]
pub struct Run {
    /// Profile sizes.
    pub sizes: Sizes,
    /// The machine.
    pub machine: Machine,
    /// What `opensnitchd -version` said, if the arm ran.
    pub opensnitch: Option<String>,
    /// What the Portcullis helper said about itself (version, attribution).
    pub portcullis: Option<String>,
    /// Per arm, in the order they were set up.
    pub arms: Vec<(Kind, ArmResults)>,
    /// The fork–connect–exit storm (Portcullis).
    pub storm: Option<StormAttribution>,
    /// Per-lookup attribution cost (in-process).
    pub lookups: Option<Lookups>,
    /// What the eBPF programs alone cost.
    pub hooks: Option<HookCost>,
    /// Whether the root namespace's firewall was the same at the end as at the start.
    pub root_unchanged: bool,
    /// Other work on the machine during the run.
    pub load: Load,
    /// Wall time of the run in seconds.
    pub wall_secs: f64,
}

/// One of the targets, or one of the quick profile's checks.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// What is checked.
    pub what: String,
    /// Whether it holds.
    pub ok: bool,
    /// The figure and the margin (`+3.1 µs, 6.9 µs to spare`).
    pub detail: String,
}

impl Verdict {
    fn line(&self, ok_word: &str, bad_word: &str) -> String {
        let word = if self.ok { ok_word } else { bad_word };
        format!("  {word:<6}  {}: {}", self.what, self.detail)
    }
}

fn arm(run: &Run, kind: Kind) -> Option<&ArmResults> {
    run.arms.iter().find(|(k, _)| *k == kind).map(|(_, r)| r)
}

fn p(v: &[f64], q: f64) -> f64 {
    percentile(v, q).unwrap_or(f64::NAN)
}

fn med(v: &[f64]) -> f64 {
    median(v).unwrap_or(f64::NAN)
}

fn med_bps(v: &[Throughput]) -> f64 {
    med(&v.iter().map(|t| t.bps).collect::<Vec<_>>())
}

fn best_bps(v: &[Throughput]) -> f64 {
    v.iter().map(|t| t.bps).fold(f64::NAN, f64::max)
}

/// `22.4 [19.8–23.1]`: the median and range of per-round throughputs in Gbit/s.
fn spread(v: &[Throughput]) -> String {
    let min = v.iter().map(|t| t.bps).fold(f64::NAN, f64::min);
    format!(
        "{:.1} [{:.1}–{:.1}]",
        med_bps(v) / 1e9,
        min / 1e9,
        best_bps(v) / 1e9
    )
}

/// A "no more than `limit`" target on a value where less is better (e.g. a latency delta).
fn at_most(what: &str, value: f64, limit: f64, show: impl Fn(f64) -> String) -> Verdict {
    let ok = value <= limit;
    let margin = if ok {
        format!("{} to spare", show(limit - value))
    } else {
        format!("MISSED by {}", show(value - limit))
    };
    Verdict {
        what: what.to_owned(),
        ok,
        detail: format!("{} ({margin})", show(value)),
    }
}

/// An "at least `limit`" target on a ratio.
fn ratio_at_least(what: &str, ratio: f64, limit: f64) -> Verdict {
    let ok = ratio >= limit;
    let margin = if ok {
        format!("{:.1} points to spare", (ratio - limit) * 100.0)
    } else {
        format!("MISSED by {:.1} points", (limit - ratio) * 100.0)
    };
    Verdict {
        what: what.to_owned(),
        ok,
        detail: format!("{} ({margin})", pct(ratio)),
    }
}

fn plain_us(v: f64) -> String {
    us(v)
}

/// The tables, as printed and as stored in `docs/performance.md`.
pub fn tables(run: &Run) -> String {
    let mut o = String::new();
    let s = &run.sizes;
    let base = arm(run, Kind::NoFirewall);
    let _ = writeln!(
        o,
        "Portcullis enforcement benchmarks ({} profile): {} round(s), arms interleaved (order \
         rotated each round), medians and ratios against the same run's no-firewall arm",
        s.profile, s.rounds
    );
    let _ = writeln!(
        o,
        "machine: {} × {}, Linux {}, {}; run took {:.0} s",
        run.machine.cpus,
        run.machine.cpu_model,
        run.machine.kernel,
        run.machine.date,
        run.wall_secs
    );
    if let Some(v) = &run.opensnitch {
        let _ = writeln!(
            o,
            "OpenSnitch: {v} (Debian package opensnitch 1.5.8.1-1+b3)"
        );
    }
    if let Some(v) = &run.portcullis {
        let _ = writeln!(o, "Portcullis: {v}");
    }
    let _ = writeln!(
        o,
        "background: processes outside the run were runnable in {} of {} samples (at most {} at \
         once){}",
        pct(run.load.busy_share()),
        run.load.samples,
        run.load.max_running,
        if run.load.busy_share() > 0.05 {
            "; the machine was shared, expect noise"
        } else {
            ""
        }
    );

    // Latency.
    let _ = writeln!(
        o,
        "\nnew TCP connect, decision cached ({} connects × {} round(s) from one process each, \
         pooled)",
        thousands(s.lat_count as f64),
        s.rounds
    );
    let _ = writeln!(
        o,
        "  {:<20}{:>10}{:>10}{:>12}{:>12}{:>10}",
        "arm", "p50", "p99", "Δp50", "Δp99", "p50 ×"
    );
    let (b50, b99) = base.map_or((f64::NAN, f64::NAN), |b| {
        (p(&b.latency, 0.5), p(&b.latency, 0.99))
    });
    for (kind, r) in &run.arms {
        let (p50, p99) = (p(&r.latency, 0.5), p(&r.latency, 0.99));
        let (d50, d99, ratio) = if *kind == Kind::NoFirewall {
            ("—".to_owned(), "—".to_owned(), "—".to_owned())
        } else {
            (
                delta_us(p50 - b50),
                delta_us(p99 - b99),
                format!("{:.2}", p50 / b50),
            )
        };
        let _ = writeln!(
            o,
            "  {:<20}{:>10}{:>10}{:>12}{:>12}{:>10}",
            kind.label(),
            us(p50),
            us(p99),
            d50,
            d99,
            ratio
        );
    }

    if run.arms.iter().any(|(_, r)| !r.latency_same_cpu.is_empty()) {
        let _ = writeln!(
            o,
            "  placement (p50 / p99 with client and deciding process pinned; {} connects per \
             round):",
            thousands(s.lat_count as f64 / 4.0)
        );
        let (sb, xb) = base.map_or((f64::NAN, f64::NAN), |b| {
            (p(&b.latency_same_cpu, 0.5), p(&b.latency_split, 0.5))
        });
        for (kind, r) in run.arms.iter().filter(|(k, _)| k.every_figure()) {
            let (s50, s99) = (p(&r.latency_same_cpu, 0.5), p(&r.latency_same_cpu, 0.99));
            let (x50, x99) = (p(&r.latency_split, 0.5), p(&r.latency_split, 0.99));
            let _ = writeln!(
                o,
                "    {:<20} same CPU {:>9} / {:>9} (Δp50 {:>9})   different CPUs {:>9} / {:>9} \
                 (Δp50 {:>9})",
                kind.label(),
                us(s50),
                us(s99),
                delta_us(s50 - sb),
                us(x50),
                us(x99),
                delta_us(x50 - xb),
            );
        }
    }

    // Connection rate.
    let _ = writeln!(
        o,
        "\nnew connections per second (connect + close in a tight loop, {} ms per run, median of {} rounds)",
        s.rate_ms, s.rounds
    );
    let _ = writeln!(
        o,
        "  {:<20}{:>12}{:>10}{:>12}{:>10}",
        "arm", "1 thread", "vs no-fw", "2 threads", "vs no-fw"
    );
    let (b1, b2) = base.map_or((f64::NAN, f64::NAN), |b| (med(&b.rate1), med(&b.rate2)));
    for (kind, r) in &run.arms {
        let (r1, r2) = (med(&r.rate1), med(&r.rate2));
        let _ = writeln!(
            o,
            "  {:<20}{:>12}{:>10}{:>12}{:>10}",
            kind.label(),
            thousands(r1),
            pct(r1 / b1),
            thousands(r2),
            pct(r2 / b2)
        );
    }

    // First connection of a new process.
    let _ = writeln!(
        o,
        "\nfirst connect of a new process, a new app each (attribution and decision uncached; {} \
         processes × {} rounds, each timing its own connect)",
        s.first_n, s.rounds
    );
    let _ = writeln!(
        o,
        "  {:<20}{:>10}{:>10}{:>12}{:>12}",
        "arm", "p50", "p99", "Δp50", "Δp99"
    );
    let (f50, f99) = base.map_or((f64::NAN, f64::NAN), |b| {
        (p(&b.first, 0.5), p(&b.first, 0.99))
    });
    for (kind, r) in run.arms.iter().filter(|(k, _)| k.every_figure()) {
        let (p50, p99) = (p(&r.first, 0.5), p(&r.first, 0.99));
        let (d50, d99) = if *kind == Kind::NoFirewall {
            ("—".to_owned(), "—".to_owned())
        } else {
            (delta_us(p50 - f50), delta_us(p99 - f99))
        };
        let _ = writeln!(
            o,
            "  {:<20}{:>10}{:>10}{:>12}{:>12}",
            kind.label(),
            us(p50),
            us(p99),
            d50,
            d99
        );
    }

    // Throughput.
    let _ = writeln!(
        o,
        "\nestablished throughput (iperf3, {} s per run; median [min–max] of {} rounds, Gbit/s) \
         and what reached the queue meanwhile (over all runs)",
        s.iperf_secs, s.rounds
    );
    let _ = writeln!(
        o,
        "  {:<20}{:>20}{:>10}{:>20}{:>10}{:>30}",
        "arm", "1 stream", "vs no-fw", "4 streams", "vs no-fw", "queued / conns / packets"
    );
    let (t1, t4) = base.map_or((f64::NAN, f64::NAN), |b| {
        (med_bps(&b.tput1), med_bps(&b.tput4))
    });
    for (kind, r) in run.arms.iter().filter(|(k, _)| k.every_figure()) {
        let (v1, v4) = (med_bps(&r.tput1), med_bps(&r.tput4));
        let all: Vec<&Throughput> = r.tput1.iter().chain(&r.tput4).collect();
        let conns: u64 = all.iter().map(|t| t.connections).sum();
        let packets: u64 = all.iter().map(|t| t.packets).sum();
        let queued = if kind.queue_num().is_some() {
            all.iter().filter_map(|t| t.queued).sum::<u64>().to_string()
        } else {
            "—".to_owned()
        };
        let _ = writeln!(
            o,
            "  {:<20}{:>20}{:>10}{:>20}{:>10}{:>30}",
            kind.label(),
            spread(&r.tput1),
            pct(v1 / t1),
            spread(&r.tput4),
            pct(v4 / t4),
            format!("{queued} / {conns} / {}", thousands(packets as f64))
        );
    }

    let cpu: Vec<String> = run
        .arms
        .iter()
        .filter_map(|(kind, r)| {
            let all: Vec<f64> = r
                .tput1
                .iter()
                .chain(&r.tput4)
                .filter_map(|t| t.decider_cpu)
                .collect();
            (!all.is_empty()).then(|| format!("{} {:.2} s", kind.label(), all.iter().sum::<f64>()))
        })
        .collect();
    if !cpu.is_empty() {
        let _ = writeln!(
            o,
            "  CPU time of the deciding process during all iperf3 runs: {}",
            cpu.join(", ")
        );
    }

    // UDP storm.
    let floor = arm(run, Kind::Floor);
    let _ = writeln!(
        o,
        "\nstorm of new UDP flows (one datagram per new socket, {} ms per run, fail-open; median of \
         {} rounds; drops summed)",
        s.storm_ms, s.rounds
    );
    let _ = writeln!(
        o,
        "  {:<20}{:>11}{:>11}{:>12}{:>10}{:>12}{:>10}{:>22}",
        "arm",
        "sent/s",
        "arrived/s",
        "verdicts/s",
        "vs floor",
        "dropped",
        "sink-drop",
        "RSS first→last storm"
    );
    let verdict_rate = |r: &ArmResults| {
        med(&r
            .storms
            .iter()
            .filter_map(|st| st.verdicts.map(|v| v as f64 / st.verdict_secs))
            .collect::<Vec<_>>())
    };
    let fv = floor.map_or(f64::NAN, verdict_rate);
    for (kind, r) in run.arms.iter().filter(|(k, _)| k.every_figure()) {
        let sent = med(&r
            .storms
            .iter()
            .map(|st| st.sent as f64 / st.send_secs)
            .collect::<Vec<_>>());
        let arrived = med(&r
            .storms
            .iter()
            .map(|st| st.arrived as f64 / st.send_secs)
            .collect::<Vec<_>>());
        let v = verdict_rate(r);
        let dropped: u64 = r
            .storms
            .iter()
            .map(|st| st.sent.saturating_sub(st.arrived))
            .sum();
        let sink: u64 = r.storms.iter().map(|st| st.sink_drops).sum();
        let (vtext, vs) = if kind.queue_num().is_some() {
            let vs = if fv.is_nan() {
                "—".to_owned()
            } else {
                pct(v / fv)
            };
            (thousands(v), vs)
        } else {
            ("—".to_owned(), "—".to_owned())
        };
        let rss = match (
            r.storms.first().and_then(|s| s.rss),
            r.storms.last().and_then(|s| s.rss),
        ) {
            (Some((before, _)), Some((_, after))) => format!("{} → {}", mib(before), mib(after)),
            _ => "—".to_owned(),
        };
        let _ = writeln!(
            o,
            "  {:<20}{:>11}{:>11}{:>12}{:>10}{:>12}{:>10}{:>22}",
            kind.label(),
            thousands(sent),
            thousands(arrived),
            vtext,
            vs,
            thousands(dropped as f64),
            thousands(sink as f64),
            rss
        );
    }

    // Attribution.
    if run.storm.is_some() || run.lookups.is_some() || run.hooks.is_some() {
        let _ = writeln!(o, "\nattribution (Portcullis)");
    }
    if let Some(st) = &run.storm {
        let _ = writeln!(
            o,
            "  fork–connect–exit storm: {} processes ({} connected) in {:.1} s; the helper recorded \
             {} of their connections: {} attributed to the storm's app ({}), {} to system:kernel, \
             {} to another app; {} events lost  [from `portcullisctl --json events`]",
            st.processes,
            st.connected,
            st.secs,
            st.recorded,
            st.attributed,
            pct(st.attributed as f64 / st.processes.max(1) as f64),
            st.unattributed,
            st.other,
            st.missed_events
        );
    }
    if let Some(h) = &run.hooks {
        let (b50, b99) = (p(&h.base_latency, 0.5), p(&h.base_latency, 0.99));
        let (h50, h99) = (p(&h.hooked_latency, 0.5), p(&h.hooked_latency, 0.99));
        let (bs, hs) = (med(&h.base_sends), med(&h.hooked_sends));
        let _ = writeln!(
            o,
            "  the eBPF programs alone (attached to the no-firewall lab's cgroup, no rules, no \
             queue; alternated with runs without them): cached connect p50 {} → {} ({}), p99 {} \
             → {} ({}); UDP storm sends/s {} → {} ({})",
            us(b50),
            us(h50),
            delta_us(h50 - b50),
            us(b99),
            us(h99),
            delta_us(h99 - b99),
            thousands(bs),
            thousands(hs),
            pct(hs / bs)
        );
    }
    if let Some(l) = &run.lookups {
        let _ = writeln!(
            o,
            "  per lookup, Attributor::attribute measured in-process in a client namespace (the \
             helper does not expose its own timings; {}): {} new processes' live sockets, {} \
             found the right executable",
            l.mode, l.total, l.found
        );
        let _ = writeln!(
            o,
            "    new process (first socket): p50 {}, p99 {}; known process, new socket: p50 {}, \
             p99 {}; same socket again: p50 {}, p99 {}",
            us(p(&l.first, 0.5)),
            us(p(&l.first, 0.99)),
            us(p(&l.known, 0.5)),
            us(p(&l.known, 0.99)),
            us(p(&l.again, 0.5)),
            us(p(&l.again, 0.99))
        );
    }
    o
}

/// The targets for Portcullis, judged on this run.
pub fn targets(run: &Run) -> Vec<Verdict> {
    let mut v = Vec::new();
    let (Some(base), Some(pcl)) = (arm(run, Kind::NoFirewall), arm(run, Kind::Portcullis)) else {
        return v;
    };
    let d50 = p(&pcl.latency, 0.5) - p(&base.latency, 0.5);
    let d99 = p(&pcl.latency, 0.99) - p(&base.latency, 0.99);
    let signed = |x: f64| delta_us(x);
    v.push(at_most("cached connect Δp50 ≤ +10 µs", d50, 10.0, signed));
    v.push(at_most("cached connect Δp99 ≤ +50 µs", d99, 50.0, signed));
    v.push(ratio_at_least(
        "connections/s, 1 thread ≥ 80% of no firewall",
        med(&pcl.rate1) / med(&base.rate1),
        0.80,
    ));
    v.push(ratio_at_least(
        "connections/s, 2 threads ≥ 80% of no firewall",
        med(&pcl.rate2) / med(&base.rate2),
        0.80,
    ));
    if let Some(quiet) = arm(run, Kind::PortcullisNoHistory) {
        let (on, off) = (p(&pcl.latency, 0.99), p(&quiet.latency, 0.99));
        let (d_on, d_off) = (on - p(&base.latency, 0.99), off - p(&base.latency, 0.99));
        v.push(at_most(
            &format!(
                "history on: cached connect Δp99 ≤ 5% above history off ({} on, {} off)",
                delta_us(d_on),
                delta_us(d_off)
            ),
            (d_on - d_off) / d_off.abs().max(1.0) * 100.0,
            5.0,
            |x| format!("{x:+.1}%"),
        ));
    }
    let f99 = p(&pcl.first, 0.99) - p(&base.first, 0.99);
    v.push(at_most(
        "first connect of a new process Δp99 ≤ +200 µs",
        f99,
        200.0,
        signed,
    ));
    v.push(ratio_at_least(
        "throughput, 1 stream ≥ 98% of no firewall",
        med_bps(&pcl.tput1) / med_bps(&base.tput1),
        0.98,
    ));
    v.push(ratio_at_least(
        "throughput, 4 streams ≥ 98% of no firewall",
        med_bps(&pcl.tput4) / med_bps(&base.tput4),
        0.98,
    ));
    v.push(established_not_queued(pcl));
    if let Some(floor) = arm(run, Kind::Floor) {
        let rate = |r: &ArmResults| {
            med(&r
                .storms
                .iter()
                .filter_map(|s| s.verdicts.map(|n| n as f64 / s.verdict_secs))
                .collect::<Vec<_>>())
        };
        v.push(ratio_at_least(
            "UDP storm verdicts/s ≥ 95% of the floor handler",
            rate(pcl) / rate(floor),
            0.95,
        ));
    }
    v.push(no_storm_drops(pcl));
    v.push(memory_bounded(pcl));
    if let Some(st) = &run.storm {
        v.push(ratio_at_least(
            "fork–connect–exit storm attributed ≥ 99.9%",
            st.attributed as f64 / st.processes.max(1) as f64,
            0.999,
        ));
    }
    if let Some(l) = &run.lookups {
        v.push(at_most(
            "attribution per lookup p99 ≤ 20 µs (new process)",
            p(&l.first, 0.99),
            20.0,
            plain_us,
        ));
        v.push(at_most(
            "attribution per lookup p99 ≤ 20 µs (known process, new socket)",
            p(&l.known, 0.99),
            20.0,
            plain_us,
        ));
    }
    v
}

fn established_not_queued(pcl: &ArmResults) -> Verdict {
    let runs: Vec<&Throughput> = pcl.tput1.iter().chain(&pcl.tput4).collect();
    let excess = runs
        .iter()
        .map(|t| t.queued.unwrap_or(u64::MAX).saturating_sub(t.connections))
        .max()
        .unwrap_or(u64::MAX);
    let packets: u64 = runs.iter().map(|t| t.packets).sum();
    let queued: u64 = runs.iter().filter_map(|t| t.queued).sum();
    let conns: u64 = runs.iter().map(|t| t.connections).sum();
    Verdict {
        what: "no packet of an established connection reaches userspace (iperf3 runs)".to_owned(),
        ok: excess == 0,
        detail: format!(
            "{queued} packets queued for {conns} connections over {} packets sent",
            thousands(packets as f64)
        ),
    }
}

fn no_storm_drops(pcl: &ArmResults) -> Verdict {
    let sent: u64 = pcl.storms.iter().map(|s| s.sent).sum();
    let arrived: u64 = pcl.storms.iter().map(|s| s.arrived).sum();
    let sink: u64 = pcl.storms.iter().map(|s| s.sink_drops).sum();
    let conntrack: u64 = pcl.storms.iter().map(|s| s.conntrack_drops).sum();
    let lost = sent.saturating_sub(arrived);
    Verdict {
        what: "no UDP datagram dropped while fail-open".to_owned(),
        ok: lost == 0,
        detail: format!(
            "{} sent, {} arrived, {lost} lost ({sink} of them in the sink's socket buffer, \
             {conntrack} conntrack drops)",
            thousands(sent as f64),
            thousands(arrived as f64)
        ),
    }
}

/// Memory is bounded when storms leave no growth behind: the helper's RSS after the last storm
/// is within 16 MiB of its RSS after the first one.
fn memory_bounded(pcl: &ArmResults) -> Verdict {
    let first = pcl.storms.first().and_then(|s| s.rss);
    let last = pcl.storms.last().and_then(|s| s.rss);
    match (first, last) {
        (Some((start, after_first)), Some((_, after_last))) => {
            let growth = after_last.saturating_sub(after_first);
            Verdict {
                what: "memory bounded (RSS after the last storm ≤ after the first + 16 MiB)"
                    .to_owned(),
                ok: growth <= 16 * 1024 * 1024,
                detail: format!(
                    "{} before, {} after the first storm, {} after the last",
                    mib(start),
                    mib(after_first),
                    mib(after_last)
                ),
            }
        }
        _ => Verdict {
            what: "memory bounded".to_owned(),
            ok: false,
            detail: "helper RSS not readable".to_owned(),
        },
    }
}

/// The short profile's checks: the same quantities with generous slack, for CI.
pub fn quick_checks(run: &Run) -> Vec<Verdict> {
    let mut v = Vec::new();
    v.push(Verdict {
        what: "root namespace firewall untouched".to_owned(),
        ok: run.root_unchanged,
        detail: if run.root_unchanged {
            "same rules at the end as at the start".to_owned()
        } else {
            "CHANGED during the run".to_owned()
        },
    });
    let (Some(base), Some(pcl)) = (arm(run, Kind::NoFirewall), arm(run, Kind::Portcullis)) else {
        v.push(Verdict {
            what: "arms ran".to_owned(),
            ok: false,
            detail: "no-firewall or Portcullis arm missing".to_owned(),
        });
        return v;
    };
    // Every new connection waits in the queue, and on two cores the floor alone costs about
    // half the connection rate of no firewall: checks on connections are taken against the
    // floor, which shares that cost, so they catch what Portcullis adds on top of it.
    match arm(run, Kind::Floor) {
        Some(floor) => {
            let over = p(&pcl.latency, 0.5) - p(&floor.latency, 0.5);
            v.push(at_most(
                "cached connect p50 ≤ the floor's + 40 µs",
                over,
                40.0,
                delta_us,
            ));
            v.push(ratio_at_least(
                "connections/s, 1 thread ≥ 60% of the floor handler",
                med(&pcl.rate1) / med(&floor.rate1),
                0.60,
            ));
            let rate = |r: &ArmResults| {
                med(&r
                    .storms
                    .iter()
                    .filter_map(|s| s.verdicts.map(|n| n as f64 / s.verdict_secs))
                    .collect::<Vec<_>>())
            };
            v.push(ratio_at_least(
                "UDP storm verdicts/s ≥ 40% of the floor handler",
                rate(pcl) / rate(floor),
                0.40,
            ));
        }
        None => v.push(Verdict {
            what: "floor arm ran".to_owned(),
            ok: false,
            detail: "the connection checks compare with the floor handler".to_owned(),
        }),
    }
    v.push(ratio_at_least(
        "connections/s, 1 thread ≥ 25% of no firewall",
        med(&pcl.rate1) / med(&base.rate1),
        0.25,
    ));
    // Short iperf3 runs are noisy, and noise only ever lowers a run: compare the best rounds.
    v.push(ratio_at_least(
        "throughput, 1 stream ≥ 90% of no firewall (best rounds)",
        best_bps(&pcl.tput1) / best_bps(&base.tput1),
        0.90,
    ));
    v.push(ratio_at_least(
        "throughput, 4 streams ≥ 90% of no firewall (best rounds)",
        best_bps(&pcl.tput4) / best_bps(&base.tput4),
        0.90,
    ));
    v.push(established_not_queued(pcl));
    v.push(no_storm_drops(pcl));
    if let Some(st) = &run.storm {
        v.push(ratio_at_least(
            "fork–connect–exit storm attributed ≥ 99%",
            st.attributed as f64 / st.processes.max(1) as f64,
            0.99,
        ));
    }
    v
}

/// Whether the quick profile's throughput checks hold (best rounds ≥ 90% of no firewall).
pub fn throughput_ok_for_quick(base: &ArmResults, pcl: &ArmResults) -> bool {
    best_bps(&pcl.tput1) >= 0.9 * best_bps(&base.tput1)
        && best_bps(&pcl.tput4) >= 0.9 * best_bps(&base.tput4)
}

/// Target lines for the report.
pub fn target_lines(targets: &[Verdict]) -> String {
    let mut o = String::from("\ntargets (issue 4, Portcullis against the same run's baselines)\n");
    for t in targets {
        o.push_str(&t.line("MET", "MISSED"));
        o.push('\n');
    }
    o
}

/// Check lines for the quick profile.
pub fn check_lines(checks: &[Verdict]) -> String {
    let mut o = String::from("\nchecks (quick profile, generous slack)\n");
    for c in checks {
        o.push_str(&c.line("PASS", "FAIL"));
        o.push('\n');
    }
    o
}

//! `pcl-dnsbench`: the DNS resolver's cache-hit latency and throughput beside same-run
//! baselines (issue 5, "Performance"). One lab client namespace holds everything, on loopback
//! addresses, so every arm has the same path: a UDP echo (the floor any resolver pays: two
//! socket hops), dnsmasq answering a record of its own, unbound answering `local-data` (both
//! like a cache hit), and Portcullis' resolver in the real helper (interception on, redirect
//! off so the other arms are not handed to it, the shipped filter lists in force and history
//! recording every query) answering from its cache. Arms alternate in rounds; each round runs
//! the probe (`pcl-probe dns`) once per arm; medians and p99s are pooled over the rounds.
//! Throughput: `dnsperf` (one thread, one socket, up to 100 queries in flight) against
//! dnsmasq, unbound (one thread) and Portcullis, alternated in rounds; medians.
//!
//! Misses through an encrypted upstream: unbound in the lab's server namespace serves DoT and
//! DoH (a test CA), behind a proxy in that namespace that holds every chunk 5 ms each way (a
//! 10 ms round trip: this kernel has no `sch_netem`). Every query asks a new name. The
//! upstream's own latency is a DNS-over-TCP client on one warm connection through the same
//! proxy to unbound's plain port; Portcullis (DoT, then DoH, one warm connection each) is
//! asked over UDP. Added latency = Portcullis − the upstream's own.
//!
//! ```text
//! sudo pcl-dnsbench [--rounds N] [--queries N] [--seconds N] [--misses N] [--intel-dir DIR]
//! ```
//!
//! Root only; everything lives in namespaces the lab makes and removes.

use std::net::{IpAddr, Ipv4Addr};
use std::process::ExitCode;

use anyhow::{Context, bail};
use portcullis_lab::dns::{TestPki, UnboundConfig, start_dnsmasq_logging, start_unbound};
use portcullis_lab::{HelperOpts, Lab, lab_bin};

const NAME: &str = "bench.test";
const ANSWER: &str = "192.0.2.1";

/// One measured resolver.
struct Arm {
    label: &'static str,
    host: &'static str,
    port: u16,
}

const ARMS: [Arm; 4] = [
    Arm {
        label: "UDP echo (floor)",
        host: "127.0.0.1",
        port: 5300,
    },
    Arm {
        label: "dnsmasq",
        host: "127.0.0.2",
        port: 53,
    },
    Arm {
        label: "unbound",
        host: "127.0.0.3",
        port: 53,
    },
    Arm {
        label: "Portcullis",
        host: "127.0.0.153",
        port: 53,
    },
];

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pcl-dnsbench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn arg(args: &[String], name: &str, default: usize) -> anyhow::Result<usize> {
    match args.iter().position(|a| a == name) {
        None => Ok(default),
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("{name} needs a number")),
    }
}

fn run() -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("needs root (network namespaces, the helper)");
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rounds = arg(&args, "--rounds", 5)?;
    let queries = arg(&args, "--queries", 5_000)?;
    let seconds = arg(&args, "--seconds", 5)?;
    let misses = arg(&args, "--misses", 200)?;
    let intel_dir = match args.iter().position(|a| a == "--intel-dir") {
        Some(i) => args
            .get(i + 1)
            .map(std::path::PathBuf::from)
            .context("--intel-dir needs a directory")?,
        None => std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/intel/dist"),
    };
    if !intel_dir.join("lists").is_dir() {
        bail!(
            "no filter lists in {} (run `make intel-data`, or give --intel-dir)",
            intel_dir.display()
        );
    }
    let dnsperf = std::path::Path::new("/usr/bin/dnsperf");
    if !dnsperf.is_file() {
        bail!("dnsperf is missing: run `sudo scripts/install-deps --bench`");
    }

    let lab = Lab::new("dnsbench");
    let c = lab.client();
    for addr in ["127.0.0.2/8", "127.0.0.3/8"] {
        c.add_address_on("lo", addr);
    }
    let _echo = c.spawn(c.cmd(lab_bin("lab-echo"), ["udp", "5300"]));
    // The baselines log nothing per query: logging would cost them throughput.
    let _dnsmasq = start_dnsmasq_logging(
        c,
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
        53,
        "test",
        &[&format!("{NAME},{ANSWER}")],
        &[],
        false,
    );
    let pki = TestPki::new(
        c,
        "dns.bench.test",
        &[IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3))],
    );
    let _unbound = start_unbound(
        c,
        &pki,
        &UnboundConfig {
            addrs: vec![IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3))],
            plain_port: Some(53),
            tls_port: None,
            https_port: None,
            zone: "test.".into(),
            records: vec![format!("{NAME}. 3600 IN A {ANSWER}")],
            log_queries: false,
        },
    );
    // dnsmasq answers with TTL 0: min_ttl keeps the answer in Portcullis' cache for the run.
    let config = "[dns]\nenabled = true\nredirect = false\n[dns.resolver]\n\
                  listen = [\"127.0.0.153:53\"]\nupstreams = [\"plain://127.0.0.2\"]\n\
                  local_zones = [{ zone = \"test\", servers = [\"plain://127.0.0.2\"] }]\n\
                  [dns.resolver.cache]\nmin_ttl = 3600\n";
    let helper = c.start_helper(HelperOpts {
        config_toml: Some(config.to_owned()),
        args: vec!["--intel-dir".into(), intel_dir.display().to_string()],
        ..HelperOpts::default()
    });

    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); ARMS.len()];
    for round in 0..rounds {
        for k in 0..ARMS.len() {
            // Rotate the order each round so no arm always runs first.
            let i = (k + round) % ARMS.len();
            let Some(arm) = ARMS.get(i) else { continue };
            let v = probe_latencies(c, "dns", arm.host, arm.port, NAME, queries, 200)
                .with_context(|| format!("{} in round {round}", arm.label))?;
            if let Some(s) = samples.get_mut(i) {
                s.extend(v);
            }
        }
    }
    // The helper answered every query from its cache (one upstream query at most).
    let status = helper.ctl_json(["dns", "status"]);
    println!(
        "DNS cache-hit latency, sequential queries from one socket on loopback ({rounds} rounds × {queries} queries per arm, pooled; µs)"
    );
    println!(
        "  {:<20} {:>9} {:>9} {:>11} {:>11}",
        "arm", "p50", "p99", "Δp50", "Δp99"
    );
    let floor = samples.first().map(|s| (pct(s, 0.50), pct(s, 0.99)));
    for (arm, s) in ARMS.iter().zip(&samples) {
        let (p50, p99) = (pct(s, 0.50), pct(s, 0.99));
        let (d50, d99) = match (floor, arm.label) {
            (_, "UDP echo (floor)") | (None, _) => ("—".to_string(), "—".to_string()),
            (Some((f50, f99)), _) => (format!("{:+.1}", p50 - f50), format!("{:+.1}", p99 - f99)),
        };
        println!(
            "  {:<20} {:>9.1} {:>9.1} {:>11} {:>11}",
            arm.label, p50, p99, d50, d99
        );
    }
    let answered: u64 = status
        .get("upstreams")
        .and_then(|u| u.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|u| u.get("answered").and_then(serde_json::Value::as_u64))
                .sum()
        })
        .unwrap_or(0);
    let cached = status
        .get("cache_entries")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0);
    println!(
        "  Portcullis asked its upstream {answered} time(s) during the run; cache: {cached} answers"
    );
    println!(
        "  targets (issue 5): cache hit p50 ≤ 11.5 µs and p99 ≤ 15 µs here, within ~1.8 µs of the floor"
    );
    println!(
        "  Portcullis ran with the filter lists of {} in force and history on",
        intel_dir.display()
    );

    // Throughput with dnsperf: the same cached name, as fast as one socket with 100 queries
    // in flight gets answers, for `seconds` per run.
    let data = lab.dir().join("dnsperf-queries");
    std::fs::write(&data, format!("{NAME} A\n")).context("writing dnsperf's query file")?;
    let throughput_arms: Vec<&Arm> = ARMS.iter().skip(1).collect();
    let mut qps: Vec<Vec<f64>> = vec![Vec::new(); throughput_arms.len()];
    let mut lost: Vec<u64> = vec![0; throughput_arms.len()];
    for round in 0..rounds {
        for k in 0..throughput_arms.len() {
            let i = (k + round) % throughput_arms.len();
            let Some(arm) = throughput_arms.get(i) else {
                continue;
            };
            let (port, secs) = (arm.port.to_string(), seconds.to_string());
            let out = c.output(c.cmd(
                dnsperf,
                [
                    "-s",
                    arm.host,
                    "-p",
                    port.as_str(),
                    "-d",
                    data.to_str().context("query file path")?,
                    "-l",
                    secs.as_str(),
                    "-c",
                    "1",
                    "-T",
                    "1",
                    "-q",
                    "100",
                    "-t",
                    "2",
                ],
            ));
            if !out.success() {
                bail!("dnsperf against {} in round {round}: {out}", arm.label);
            }
            let (q, l) = parse_dnsperf(&out.stdout)
                .with_context(|| format!("dnsperf's output for {}: {}", arm.label, out.stdout))?;
            if let Some(v) = qps.get_mut(i) {
                v.push(q);
            }
            if let Some(v) = lost.get_mut(i) {
                *v += l;
            }
        }
    }
    println!(
        "DNS cache-hit throughput with dnsperf (1 thread, 1 socket, ≤ 100 in flight, {seconds} s per run, median of {rounds} rounds)"
    );
    println!(
        "  {:<20} {:>12} {:>10} {:>8}",
        "arm", "queries/s", "vs unbound", "lost"
    );
    let unbound = qps
        .iter()
        .zip(&throughput_arms)
        .find(|(_, a)| a.label == "unbound")
        .map_or(0.0, |(v, _)| pct(v, 0.5));
    for ((arm, v), l) in throughput_arms.iter().zip(&qps).zip(&lost) {
        let median = pct(v, 0.5);
        let ratio = if unbound > 0.0 {
            format!("{:.1}%", 100.0 * median / unbound)
        } else {
            "—".into()
        };
        println!(
            "  {:<20} {:>12.0} {:>10} {:>8}",
            arm.label, median, ratio, l
        );
    }
    println!("  target (issue 5): Portcullis ≥ unbound's queries/s (one unbound thread)");
    drop(helper);
    drop(lab);
    encrypted_misses(rounds, misses, &intel_dir)
}

/// Each direction's delay in the proxy: a 10 ms round trip.
const ONE_WAY: std::time::Duration = std::time::Duration::from_millis(5);

/// Forwards every connection to `listener` on to `target`, holding each chunk [`ONE_WAY`]
/// in each direction. Runs until the process ends; its sockets live in the namespace they were
/// made in (call it from a thread inside it).
fn delaying_proxy(listener: std::net::TcpListener, target: std::net::SocketAddr) {
    fn pipe(mut from: std::net::TcpStream, mut to: std::net::TcpStream) {
        use std::io::{Read as _, Write as _};
        let (tx, rx) = std::sync::mpsc::channel::<(std::time::Instant, Vec<u8>)>();
        std::thread::spawn(move || {
            for (due, chunk) in rx {
                let now = std::time::Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                if to.write_all(&chunk).is_err() {
                    break;
                }
            }
            let _ = to.shutdown(std::net::Shutdown::Write);
        });
        let mut buf = vec![0_u8; 64 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let chunk = buf.get(..n).map(<[u8]>::to_vec).unwrap_or_default();
                    if tx
                        .send((std::time::Instant::now() + ONE_WAY, chunk))
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
    }
    for client in listener.incoming().flatten() {
        let Ok(server) = std::net::TcpStream::connect(target) else {
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
            continue;
        };
        std::thread::spawn(move || pipe(client, server));
        std::thread::spawn(move || pipe(s2, c2));
    }
}

/// Latencies (µs) of `count` sequential queries for `name` (after `warmup` untimed ones),
/// from `pcl-probe MODE` (`dns` or `dns-tcp`).
fn probe_latencies(
    ns: &portcullis_lab::Ns,
    mode: &str,
    host: &str,
    port: u16,
    name: &str,
    count: usize,
    warmup: usize,
) -> anyhow::Result<Vec<f64>> {
    let (port, count, warmup) = (port.to_string(), count.to_string(), warmup.to_string());
    let out = ns.output(ns.cmd(
        lab_bin("pcl-probe"),
        [
            mode,
            host,
            port.as_str(),
            name,
            count.as_str(),
            warmup.as_str(),
        ],
    ));
    if !out.success() {
        bail!("pcl-probe {mode} {host}:{port}: {out}");
    }
    let Some(rest) = out.stdout.trim().strip_prefix("lat") else {
        bail!("unexpected probe output {:?}", out.stdout);
    };
    Ok(rest
        .split_whitespace()
        .filter_map(|n| n.parse::<f64>().ok())
        .map(|ns| ns / 1000.0)
        .collect())
}

/// The encrypted-miss phase (see the module's docs).
fn encrypted_misses(
    rounds: usize,
    misses: usize,
    intel_dir: &std::path::Path,
) -> anyhow::Result<()> {
    const TLS_NAME: &str = "dns.bench.test";
    let lab = Lab::new("dnsmiss");
    let (c, s) = (lab.client(), lab.server());
    let server_ip = IpAddr::V4(s.ipv4());
    let pki = TestPki::new(s, TLS_NAME, &[IpAddr::V4(Ipv4Addr::LOCALHOST), server_ip]);
    let _unbound = start_unbound(
        s,
        &pki,
        &UnboundConfig {
            addrs: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
            plain_port: Some(53),
            tls_port: Some(853),
            https_port: Some(443),
            zone: "miss.test.".into(),
            records: vec![],
            log_queries: false,
        },
    );
    // The WAN: proxies on the server's lab address to unbound on its loopback.
    for (port, target) in [(5053_u16, 53_u16), (5853, 853), (5443, 443)] {
        let ns = s.clone();
        let listener = s
            .in_ns(|| std::net::TcpListener::bind((server_ip, port)))
            .with_context(|| format!("binding the delaying proxy on port {port}"))?;
        let target = std::net::SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), target);
        std::thread::spawn(move || ns.in_ns(|| delaying_proxy(listener, target)));
    }
    let ca = pki.ca.display().to_string();
    let helper_for = |upstream: String| {
        let config = format!(
            "[dns]\nenabled = true\nredirect = false\n[dns.resolver]\n\
             listen = [\"127.0.0.153:53\"]\nupstreams = [\"{upstream}\"]\n\
             trust = {{ ca_file = \"{ca}\" }}\n"
        );
        c.start_helper(HelperOpts {
            config_toml: Some(config),
            args: vec!["--intel-dir".into(), intel_dir.display().to_string()],
            ..HelperOpts::default()
        })
    };
    let mut upstream = Vec::new();
    let mut dot = Vec::new();
    let mut doh = Vec::new();
    let server = server_ip.to_string();
    for round in 0..rounds {
        upstream.extend(probe_latencies(
            c,
            "dns-tcp",
            &server,
            5053,
            &format!("u{round}-{{n}}.miss.test"),
            misses,
            20,
        )?);
        for (arm, spec) in [
            (&mut dot, format!("tls://{TLS_NAME}:5853#{server}")),
            (
                &mut doh,
                format!("https://{TLS_NAME}:5443/dns-query#{server}"),
            ),
        ] {
            let mut helper = helper_for(spec);
            arm.extend(probe_latencies(
                c,
                "dns",
                "127.0.0.153",
                53,
                &format!("p{round}-{{n}}.miss.test"),
                misses,
                20,
            )?);
            helper.stop();
        }
    }
    let (u50, u99) = (pct(&upstream, 0.5), pct(&upstream, 0.99));
    println!(
        "DNS misses through an encrypted upstream with a 10 ms round trip ({rounds} rounds × {misses} new names per arm, pooled; µs; warm connections)"
    );
    println!(
        "  {:<34} {:>9} {:>9} {:>11} {:>11}",
        "arm", "p50", "p99", "Δp50", "Δp99"
    );
    println!(
        "  {:<34} {:>9.0} {:>9.0} {:>11} {:>11}",
        "upstream alone (DNS over TCP)", u50, u99, "—", "—"
    );
    for (label, v) in [
        ("Portcullis, DoT upstream", &dot),
        ("Portcullis, DoH upstream", &doh),
    ] {
        let (p50, p99) = (pct(v, 0.5), pct(v, 0.99));
        println!(
            "  {:<34} {:>9.0} {:>9.0} {:>+11.0} {:>+11.0}",
            label,
            p50,
            p99,
            p50 - u50,
            p99 - u99
        );
    }
    println!(
        "  targets (issue 5): added latency over the upstream's own p50 ≤ 50 µs warm, p99 ≤ 300 µs"
    );
    Ok(())
}

/// Queries per second and queries lost from dnsperf's report.
fn parse_dnsperf(out: &str) -> Option<(f64, u64)> {
    let qps = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Queries per second:"))?
        .trim()
        .parse()
        .ok()?;
    let lost = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Queries lost:"))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    Some((qps, lost))
}

/// The `q` quantile of `v` (nearest rank); 0 for no samples.
fn pct(v: &[f64], q: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return 0.0;
    }
    let last = s.len() - 1;
    let i = ((last as f64) * q).round() as usize;
    s.get(i.min(last)).copied().unwrap_or(0.0)
}

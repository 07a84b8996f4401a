//! `pcl-bench`: Portcullis' enforcement benchmarks (issue 4, "Performance").
//!
//! Four arms, each in a lab of its own (client and server namespaces joined by a veth pair),
//! measured in one run with interleaved rounds (the arm order rotates each round, so drift and
//! order effects spread over all arms): no firewall; the floor (Portcullis' rule layout answered
//! "allow" by a minimal NFQUEUE handler); OpenSnitch 1.5.8 headless; the real `portcullisd`.
//! Each figure is printed beside the same run's no-firewall baseline with Δ and ratio, and the
//! issue's targets are judged MET or MISSED (by how much).
//!
//! ```text
//! pcl-bench --full  [--doc FILE] [--no-opensnitch]   the full run (~6 min), optionally written to FILE
//! pcl-bench --quick [--with-opensnitch]              ≤ 60 s, checks ratios with slack, exit 1 on a failure
//! pcl-bench floor                                    (internal) the floor handler, run in a lab namespace
//! ```
//!
//! Needs root (namespaces, iptables). It must never touch the machine's own (root) network
//! namespace: every rule, queue and firewall daemon lives in a lab namespace and goes with it;
//! the root namespace's rule set is read at the start and at the end and compared. SIGINT and
//! SIGTERM stop the run between steps, with everything torn down.

mod arms;
mod floor;
mod measure;
mod monitor;
mod report;
mod servers;
mod stats;
mod sys;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use nix::sys::signal::{SigSet, Signal};

use crate::arms::{Arm, Kind, OpenSnitch};
use crate::report::{ArmResults, Run, Sizes};

/// Set by the signal thread; checked between measurements.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// How much of everything a profile measures.
#[derive(Debug, Clone)]
struct Profile {
    sizes: Sizes,
    lat_warmup: usize,
    storm_ring: usize,
    storm_threads: usize,
    /// iperf3 warm-up seconds that do not count (`-O`).
    iperf_omit: u64,
    /// Extra interleaved throughput rounds the quick checks may take when noise makes a
    /// throughput ratio fail (a real regression fails them all).
    throughput_retries: usize,
    /// Wait up to this long for the machine to be quiet before measuring.
    quiet_wait_secs: u64,
    /// Also measure what the eBPF programs alone cost (no-firewall arm with them attached).
    hook_cost: bool,
    /// Also measure cached connect latency with client and decider pinned (same CPU, and
    /// different CPUs): cross-CPU wake-ups dominate latency on two cores.
    placement: bool,
    attr_storm: usize,
    attr_parallel: usize,
    lookups: usize,
    lookup_warmup: usize,
    opensnitch: bool,
    /// Arms to run (`--arms`); all when empty.
    only: Vec<Kind>,
    /// Print every measurement as it is made (on unless `-q`).
    verbose: bool,
}

impl Profile {
    fn full() -> Profile {
        Profile {
            sizes: Sizes {
                profile: "full",
                rounds: 5,
                lat_count: 2000,
                rate_ms: 2000,
                first_n: 60,
                iperf_secs: 3,
                storm_ms: 2000,
            },
            lat_warmup: 200,
            storm_ring: 256,
            storm_threads: 2,
            iperf_omit: 1,
            throughput_retries: 0,
            quiet_wait_secs: 60,
            placement: true,
            hook_cost: true,
            attr_storm: 1000,
            attr_parallel: 8,
            lookups: 300,
            lookup_warmup: 10,
            opensnitch: true,
            only: Vec::new(),
            verbose: false,
        }
    }

    fn quick() -> Profile {
        Profile {
            sizes: Sizes {
                profile: "quick",
                rounds: 2,
                lat_count: 500,
                rate_ms: 400,
                first_n: 15,
                iperf_secs: 2,
                storm_ms: 400,
            },
            lat_warmup: 100,
            storm_ring: 256,
            storm_threads: 2,
            iperf_omit: 0,
            throughput_retries: 2,
            quiet_wait_secs: 0,
            placement: false,
            hook_cost: false,
            attr_storm: 200,
            attr_parallel: 8,
            lookups: 60,
            lookup_warmup: 10,
            opensnitch: false,
            only: Vec::new(),
            verbose: false,
        }
    }
}

#[derive(Debug)]
enum Mode {
    Bench {
        profile: Box<Profile>,
        doc: Option<PathBuf>,
        quick: bool,
    },
    Floor,
}

const USAGE: &str = "usage: pcl-bench --full [--doc FILE] [--no-opensnitch] [OPTIONS]\n       \
                     pcl-bench --quick [--with-opensnitch] [OPTIONS]\n\
                     options: --rounds N, --arms nofw,floor,osnitch,pcl (a subset, for \
                     development), -q (do not print each measurement as it is made)";

fn parse_args(args: &[String]) -> anyhow::Result<Mode> {
    let mut it = args.iter().map(String::as_str);
    let mut profile = None;
    let mut doc = None;
    let mut opensnitch = None;
    let mut rounds = None;
    let mut only = Vec::new();
    let mut verbose = true;
    while let Some(a) = it.next() {
        match a {
            "floor" if args.len() == 1 => return Ok(Mode::Floor),
            "--full" => profile = Some((Profile::full(), false)),
            "--quick" => profile = Some((Profile::quick(), true)),
            "--doc" => {
                doc = Some(PathBuf::from(it.next().context("--doc needs a file")?));
            }
            "--no-opensnitch" => opensnitch = Some(false),
            "--with-opensnitch" => opensnitch = Some(true),
            "--rounds" => {
                let n = it.next().context("--rounds needs a number")?;
                rounds = Some(
                    n.parse::<usize>()
                        .context("--rounds needs a number")?
                        .max(1),
                );
            }
            "--arms" => {
                for name in it.next().context("--arms needs a list")?.split(',') {
                    only.push(match name {
                        "nofw" => Kind::NoFirewall,
                        "floor" => Kind::Floor,
                        "osnitch" => Kind::OpenSnitch,
                        "pcl" => Kind::Portcullis,
                        "pcl-nohist" => Kind::PortcullisNoHistory,
                        other => {
                            bail!("unknown arm {other:?} (nofw, floor, osnitch, pcl, pcl-nohist)")
                        }
                    });
                }
            }
            "-q" | "--quiet" => verbose = false,
            "-h" | "--help" => bail!("{USAGE}"),
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    let Some((mut profile, quick)) = profile else {
        bail!("choose --full or --quick\n{USAGE}");
    };
    if let Some(o) = opensnitch {
        profile.opensnitch = o;
    }
    if !only.is_empty() {
        profile.opensnitch = only.contains(&Kind::OpenSnitch);
    }
    if let Some(r) = rounds {
        profile.sizes.rounds = r;
    }
    profile.only = only;
    profile.verbose = verbose;
    Ok(Mode::Bench {
        profile: Box::new(profile),
        doc,
        quick,
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = parse_args(&args).and_then(|mode| match mode {
        Mode::Floor => floor::run().map(|()| true),
        Mode::Bench {
            profile,
            doc,
            quick,
        } => bench(&profile, doc.as_deref(), quick),
    });
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            let chain: Vec<String> = e.chain().map(ToString::to_string).collect();
            eprintln!("pcl-bench: error: {}", chain.join(": "));
            ExitCode::from(2)
        }
    }
}

/// Returns an error once SIGINT or SIGTERM came.
fn check_interrupted() -> anyhow::Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

/// Blocks SIGINT/SIGTERM in every thread and notes them on a thread of their own, so that a
/// stop request ends the run between steps with every lab torn down. (Children get a clean
/// signal mask: the standard library resets it before exec.)
fn catch_stop_signals() -> anyhow::Result<()> {
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGINT);
    signals.thread_block().context("blocking SIGINT/SIGTERM")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if signals.wait().is_ok() {
                eprintln!("pcl-bench: stopping after the current step");
                INTERRUPTED.store(true, Ordering::SeqCst);
            }
        })
        .context("starting the signal thread")?;
    Ok(())
}

/// Raises the open-file limit to its hard maximum (storms hold many sockets).
fn raise_nofile() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ignored = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

fn pctl(v: &[f64], q: f64) -> f64 {
    stats::percentile(v, q).unwrap_or(f64::NAN)
}

fn progress(msg: &str) {
    eprintln!("pcl-bench: {msg}");
}

fn bench(profile: &Profile, doc: Option<&Path>, quick: bool) -> anyhow::Result<bool> {
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "the benchmarks need root (network namespaces, iptables and NFQUEUE inside them); \
             run `sudo scripts/bench {}`",
            if quick { "--quick" } else { "--full" }
        );
    }
    for tool in ["iperf3", "iptables-save", "conntrack", "unshare", "taskset"] {
        if sys::tool_output("sh", &["-c", &format!("command -v {tool}")]).is_none() {
            bail!("`{tool}` is missing; run `sudo scripts/install-deps --bench`");
        }
    }
    let opensnitch: Option<OpenSnitch> = if profile.opensnitch {
        Some(arms::find_opensnitchd().context(
            "opensnitchd not found (run `sudo scripts/install-deps --bench`, set PCL_OPENSNITCHD, \
             or pass --no-opensnitch)",
        )?)
    } else {
        None
    };
    catch_stop_signals()?;
    raise_nofile();
    let started = Instant::now();
    let machine = sys::Machine::read();
    let root_before = sys::root_firewall();

    wait_for_quiet(profile.quiet_wait_secs);
    let monitor = monitor::Monitor::start();
    let outcome = measure_all(profile, opensnitch.as_ref());
    let load = monitor.stop();
    // The labs are gone by now (dropped inside `measure_all`, also on error).
    let root_unchanged = sys::root_firewall() == root_before;
    if !root_unchanged {
        eprintln!(
            "pcl-bench: WARNING: the root namespace's firewall changed during the run (not by \
             these benchmarks' design: check what else runs on this machine)"
        );
    }
    let (portcullis, arms, storm, lookups, hooks) = outcome?;
    let run = Run {
        sizes: profile.sizes.clone(),
        machine,
        opensnitch: opensnitch.map(|o| o.version),
        portcullis,
        arms,
        storm,
        lookups,
        hooks,
        root_unchanged,
        load,
        wall_secs: started.elapsed().as_secs_f64(),
    };
    let tables = report::tables(&run);
    let targets = report::targets(&run);
    let mut text = tables;
    text.push_str(&report::target_lines(&targets));
    let mut ok = run.root_unchanged;
    if quick {
        let checks = report::quick_checks(&run);
        text.push_str(&report::check_lines(&checks));
        ok &= checks.iter().all(|c| c.ok);
    }
    println!("{text}");
    if let Some(path) = doc {
        write_doc(path, &run, &text)?;
        progress(&format!("wrote {}", path.display()));
    }
    Ok(ok)
}

type Measured = (
    Option<String>,
    Vec<(Kind, ArmResults)>,
    Option<measure::StormAttribution>,
    Option<measure::Lookups>,
    Option<measure::HookCost>,
);

fn measure_all(profile: &Profile, opensnitch: Option<&OpenSnitch>) -> anyhow::Result<Measured> {
    let mut kinds = vec![Kind::NoFirewall, Kind::Floor];
    if opensnitch.is_some() {
        kinds.push(Kind::OpenSnitch);
    }
    kinds.push(Kind::Portcullis);
    if profile.hook_cost {
        // The full profile: what history costs, beside Portcullis with it on.
        kinds.push(Kind::PortcullisNoHistory);
    }
    if !profile.only.is_empty() {
        kinds.retain(|k| profile.only.contains(k));
    }
    let mut arms: Vec<Arm> = Vec::new();
    for kind in &kinds {
        check_interrupted()?;
        progress(&format!("setting up: {}", kind.label()));
        arms.push(Arm::start(*kind, opensnitch)?);
    }
    // Warm every arm up (first connections, profile creation, caches) before measuring.
    for arm in &arms {
        measure::connect_latency(arm, 100, 100)?;
    }
    let s = &profile.sizes;
    let mut results: Vec<ArmResults> = vec![ArmResults::default(); arms.len()];
    for round in 0..s.rounds {
        let order: Vec<usize> = (0..arms.len()).map(|i| (i + round) % arms.len()).collect();
        let label: Vec<&str> = order
            .iter()
            .filter_map(|&i| arms.get(i))
            .map(|a| a.kind.label())
            .collect();
        progress(&format!(
            "round {}/{}: {}",
            round + 1,
            s.rounds,
            label.join(", ")
        ));
        let each = |what: &str,
                    results: &mut Vec<ArmResults>,
                    f: &dyn Fn(&Arm, &mut ArmResults) -> anyhow::Result<()>|
         -> anyhow::Result<()> {
            for &i in &order {
                check_interrupted()?;
                let (Some(arm), Some(r)) = (arms.get(i), results.get_mut(i)) else {
                    continue;
                };
                let figure_for_all = what.starts_with("connect latency")
                    && !what.contains("pinned")
                    || what.starts_with("connect rate");
                if !arm.kind.every_figure() && !figure_for_all {
                    continue;
                }
                f(arm, r).with_context(|| format!("{what} of {}", arm.kind.label()))?;
            }
            Ok(())
        };
        let say = |a: &Arm, what: &str| {
            if profile.verbose {
                progress(&format!("  {:<20} {what}", a.kind.label()));
            }
        };
        each("connect latency", &mut results, &|a, r| {
            let v = measure::connect_latency(a, s.lat_count, profile.lat_warmup)?;
            let (p50, p99) = (pctl(&v, 0.5), pctl(&v, 0.99));
            say(a, &format!("latency p50 {p50:.1} µs p99 {p99:.1} µs"));
            r.latency.extend(v);
            Ok(())
        })?;
        if profile.placement && measure::num_cpus() >= 2 {
            each("connect latency, pinned", &mut results, &|a, r| {
                let n = s.lat_count / 4;
                let w = profile.lat_warmup / 2;
                let same = measure::connect_latency_placed(a, n, w, measure::Placement::SameCpu)?;
                let split = measure::connect_latency_placed(a, n, w, measure::Placement::Split)?;
                say(
                    a,
                    &format!(
                        "latency p50 same CPU {:.1} µs, different CPUs {:.1} µs",
                        pctl(&same, 0.5),
                        pctl(&split, 0.5)
                    ),
                );
                r.latency_same_cpu.extend(same);
                r.latency_split.extend(split);
                Ok(())
            })?;
        }
        each("connect rate (1 thread)", &mut results, &|a, r| {
            let v = measure::connect_rate(a, s.rate_ms, 1)?;
            say(a, &format!("conn/s 1 thread {v:.0}"));
            r.rate1.push(v);
            Ok(())
        })?;
        each("connect rate (2 threads)", &mut results, &|a, r| {
            let v = measure::connect_rate(a, s.rate_ms, 2)?;
            say(a, &format!("conn/s 2 threads {v:.0}"));
            r.rate2.push(v);
            Ok(())
        })?;
        each("first connect", &mut results, &|a, r| {
            let v = measure::first_connect(a, s.first_n)?;
            let (p50, p99) = (pctl(&v, 0.5), pctl(&v, 0.99));
            say(a, &format!("first connect p50 {p50:.1} µs p99 {p99:.1} µs"));
            r.first.extend(v);
            Ok(())
        })?;
        each("throughput (1 stream)", &mut results, &|a, r| {
            let v = measure::throughput(a, 1, s.iperf_secs, profile.iperf_omit)?;
            say(a, &format!("iperf3 1 stream {v:?}"));
            r.tput1.push(v);
            Ok(())
        })?;
        each("throughput (4 streams)", &mut results, &|a, r| {
            let v = measure::throughput(a, 4, s.iperf_secs, profile.iperf_omit)?;
            say(a, &format!("iperf3 4 streams {v:?}"));
            r.tput4.push(v);
            Ok(())
        })?;
        each("UDP storm", &mut results, &|a, r| {
            let v = measure::udp_storm(a, s.storm_ms, profile.storm_threads, profile.storm_ring)?;
            say(a, &format!("UDP storm {v:?}"));
            r.storms.push(v);
            Ok(())
        })?;
    }
    retry_throughput(profile, &arms, &mut results)?;
    check_interrupted()?;
    let pcl = arms.iter().find(|a| a.kind == Kind::Portcullis);
    let storm = match pcl {
        Some(a) => {
            progress(&format!(
                "fork–connect–exit storm: {} processes",
                profile.attr_storm
            ));
            Some(measure::attribution_storm(
                a,
                profile.attr_storm,
                profile.attr_parallel,
            )?)
        }
        None => None,
    };
    check_interrupted()?;
    let nofw = arms.iter().find(|a| a.kind == Kind::NoFirewall);
    let lookups = match nofw {
        Some(a) => {
            progress(&format!(
                "attribution lookups: {} processes",
                profile.lookups
            ));
            Some(measure::attribution_lookups(
                a,
                profile.lookups,
                profile.lookup_warmup,
            )?)
        }
        None => None,
    };
    check_interrupted()?;
    let hooks = match nofw {
        Some(a) if profile.hook_cost => {
            progress("eBPF programs alone, in the no-firewall arm");
            measure::ebpf_hook_cost(
                a,
                2,
                (s.lat_count, profile.lat_warmup),
                (s.storm_ms, profile.storm_threads, profile.storm_ring),
            )?
        }
        _ => None,
    };
    progress("tearing down");
    let kinds_done: Vec<Kind> = arms.iter().map(|a| a.kind).collect();
    let about = arms.iter().find_map(|a| a.about.clone());
    drop(arms);
    Ok((
        about,
        kinds_done.into_iter().zip(results).collect(),
        storm,
        lookups,
        hooks,
    ))
}

/// The quick checks compare the best throughput rounds; when noise (a busy machine) makes one
/// fall short, more interleaved rounds of the no-firewall and Portcullis arms are measured, up
/// to `throughput_retries`. A real regression (e.g. every packet queued) fails them all.
fn retry_throughput(
    profile: &Profile,
    arms: &[Arm],
    results: &mut [ArmResults],
) -> anyhow::Result<()> {
    let find = |k: Kind| arms.iter().position(|a| a.kind == k);
    let (Some(b), Some(p)) = (find(Kind::NoFirewall), find(Kind::Portcullis)) else {
        return Ok(());
    };
    for retry in 0..profile.throughput_retries {
        let (Some(base), Some(pcl)) = (results.get(b), results.get(p)) else {
            return Ok(());
        };
        if report::throughput_ok_for_quick(base, pcl) {
            return Ok(());
        }
        progress(&format!(
            "throughput below the quick check's bound: extra round {} of at most {}",
            retry + 1,
            profile.throughput_retries
        ));
        for i in [p, b] {
            check_interrupted()?;
            let (Some(arm), Some(r)) = (arms.get(i), results.get_mut(i)) else {
                continue;
            };
            let s = &profile.sizes;
            r.tput1.push(measure::throughput(
                arm,
                1,
                s.iperf_secs,
                profile.iperf_omit,
            )?);
            r.tput4.push(measure::throughput(
                arm,
                4,
                s.iperf_secs,
                profile.iperf_omit,
            )?);
        }
    }
    Ok(())
}

/// Waits (at most `secs`) until no foreign process has been runnable for 3 s in a row.
fn wait_for_quiet(secs: u64) {
    if secs == 0 {
        return;
    }
    let deadline = Instant::now() + std::time::Duration::from_secs(secs);
    let mut quiet_since = Instant::now();
    let mut said = false;
    while Instant::now() < deadline && !INTERRUPTED.load(Ordering::SeqCst) {
        if monitor::foreign_running() > 0 {
            quiet_since = Instant::now();
            if !said {
                progress(&format!(
                    "other processes are busy; waiting up to {secs} s for quiet"
                ));
                said = true;
            }
        } else if quiet_since.elapsed() >= std::time::Duration::from_secs(3) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    if said {
        progress("measuring anyway (the report says how busy the machine was)");
    }
}

const BEGIN: &str = "<!-- bench:begin -->";
const END: &str = "<!-- bench:end -->";

/// Writes the run into `path`: the part between the markers is replaced; the rest of the file
/// (method and analysis, written by people) stays. A missing file gets a skeleton.
fn write_doc(path: &Path, run: &Run, text: &str) -> anyhow::Result<()> {
    let generated = format!(
        "{BEGIN}\n<!-- Generated by `sudo scripts/bench --full` (or `sudo make bench`); do not \
         edit by hand between these markers. -->\n\nLast full run: {} on {} × {} (Linux {}), \
         {:.0} s.\n\n```text\n{}\n```\n{END}",
        run.machine.date,
        run.machine.cpus,
        run.machine.cpu_model,
        run.machine.kernel,
        run.wall_secs,
        text.trim_end()
    );
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let new = match (old.find(BEGIN), old.find(END)) {
        (Some(b), Some(e)) if b < e => {
            let (head, rest) = old.split_at(b);
            let tail = rest.get(e - b + END.len()..).unwrap_or_default();
            format!("{head}{generated}{tail}")
        }
        _ => format!(
            "# Performance\n\nReproduce with `sudo scripts/bench --full` (or `sudo make bench`).\
             \n\n{generated}\n"
        ),
    };
    std::fs::write(path, new).with_context(|| format!("writing {}", path.display()))
}

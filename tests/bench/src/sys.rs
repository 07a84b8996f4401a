//! What the benchmark reads from the system: the machine's description for the report, a
//! read-only snapshot of the root namespace's firewall (to prove the run never touched it),
//! a process's resident memory, and per-namespace counters (`/proc/thread-self/net/…`, read
//! from a thread that has joined the namespace). Nothing here changes the system.

use std::process::Command;

/// The machine a run happened on.
#[derive(Debug, Clone)]
pub struct Machine {
    /// `nproc`: CPUs this process may use.
    pub cpus: usize,
    /// CPU model name from `/proc/cpuinfo`.
    pub cpu_model: String,
    /// Kernel release (`uname -r`).
    pub kernel: String,
    /// The date and time of the run, UTC.
    pub date: String,
}

impl Machine {
    /// Reads the description of this machine.
    pub fn read() -> Machine {
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown CPU".to_owned());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "unknown".to_owned());
        let date = tool_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"])
            .unwrap_or_else(|| "unknown date".to_owned());
        Machine {
            cpus,
            cpu_model,
            kernel,
            date,
        }
    }
}

/// The trimmed stdout of a tool, if it ran and succeeded.
pub fn tool_output(tool: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(tool).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The root namespace's firewall as its tools print it (read only), without the lines that
/// change by themselves (comments with times, counters). Compared at the start and at the end
/// of a run: the benchmarks must never touch it.
pub fn root_firewall() -> String {
    let mut all = String::new();
    for tool in [
        "iptables-save",
        "ip6tables-save",
        "iptables-legacy-save",
        "ip6tables-legacy-save",
    ] {
        let text = tool_output(tool, &[]).unwrap_or_else(|| "(not available)".to_owned());
        all.push_str(&format!("## {tool}\n"));
        for line in text.lines() {
            if line.starts_with('#') {
                continue;
            }
            let line = match line.split_once(" [") {
                Some((chain, _counters)) if line.starts_with(':') => chain,
                _ => line,
            };
            all.push_str(line);
            all.push('\n');
        }
    }
    let nft =
        tool_output("nft", &["list", "ruleset"]).unwrap_or_else(|| "(nft not available)".into());
    all.push_str("## nft list ruleset\n");
    all.push_str(&nft);
    all.push('\n');
    all
}

/// Resident memory of process `pid` in bytes (`VmRSS`), if it runs.
pub fn rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// CPU time (user + system) process `pid` has used so far, in seconds.
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    // `rest` starts at field 3 (state): utime and stime are fields 14 and 15.
    let mut it = rest.split_whitespace().skip(11);
    let utime: u64 = it.next()?.parse().ok()?;
    let stime: u64 = it.next()?.parse().ok()?;
    // In clock ticks of USER_HZ, which Linux fixes at 100 for userspace on every architecture
    // this runs on.
    Some((utime + stime) as f64 / 100.0)
}

/// Packets sent by interface `iface` in the calling thread's network namespace.
pub fn tx_packets(iface: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/net/dev").ok()?;
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{iface}:")))?;
    let (_, counters) = line.split_once(':')?;
    // rx: bytes packets errs drop fifo frame compressed multicast; tx: bytes packets …
    counters.split_whitespace().nth(9)?.parse().ok()
}

/// UDP receive-buffer drops (`Udp: RcvbufErrors`) in the calling thread's network namespace.
pub fn udp_rcvbuf_errors() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/net/snmp").ok()?;
    let mut udp = text.lines().filter(|l| l.starts_with("Udp:"));
    let names = udp.next()?;
    let values = udp.next()?;
    let at = names.split_whitespace().position(|n| n == "RcvbufErrors")?;
    values.split_whitespace().nth(at)?.parse().ok()
}

/// Packets conntrack dropped because its table was full (and nothing could be evicted), in the
/// calling thread's namespace (sum over CPUs of `drop`; `early_drop` evictions drop nothing).
pub fn conntrack_drops() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/net/stat/nf_conntrack").ok()?;
    let mut lines = text.lines();
    let names: Vec<&str> = lines.next()?.split_whitespace().collect();
    let cols: Vec<usize> = names
        .iter()
        .enumerate()
        .filter(|(_, n)| **n == "drop")
        .map(|(i, _)| i)
        .collect();
    let mut total = 0_u64;
    for line in lines {
        let values: Vec<&str> = line.split_whitespace().collect();
        for &c in &cols {
            total += values
                .get(c)
                .and_then(|v| u64::from_str_radix(v, 16).ok())
                .unwrap_or(0);
        }
    }
    Some(total)
}

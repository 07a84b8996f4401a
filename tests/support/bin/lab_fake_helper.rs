//! `lab-fake-helper`: a stand-in for `portcullisd` and `portcullisctl` that tests the lab's
//! `Helper` plumbing (start, readiness, ctl, stop, kill, restart, persistent state) without the
//! real binaries. It speaks the same command lines, not the real protocol, and enforces nothing.
//!
//! ```text
//! lab-fake-helper run --state-dir DIR --socket PATH [--config FILE] [--ebpf-cgroup PATH]
//!                     [--no-ebpf] [--fake-exit-code N]
//!     creates DIR, appends a line to DIR/starts.log (with the config and the eBPF choice: it
//!     attaches nothing), listens on PATH; on SIGTERM removes PATH and exits with N (default
//!     0). Each connection gets one JSON line back.
//! lab-fake-helper --socket PATH [--json] ARGS...
//!     the ctl side: sends ARGS to the daemon and prints its answer (JSON with --json).
//! ```

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::ExitCode;

use nix::sys::signal::{SigSet, Signal};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = if args.first().map(String::as_str) == Some("run") {
        daemon(args.get(1..).unwrap_or_default())
    } else {
        ctl(&args)
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("lab-fake-helper: {e}");
            ExitCode::FAILURE
        }
    }
}

fn daemon(args: &[String]) -> Result<u8, String> {
    let mut state = None;
    let mut socket = None;
    let mut config = None;
    let mut ebpf_cgroup = None;
    let mut no_ebpf = false;
    let mut exit_code = 0_u8;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().cloned().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--state-dir" => state = Some(PathBuf::from(value()?)),
            "--socket" => socket = Some(PathBuf::from(value()?)),
            "--config" => config = Some(value()?),
            "--ebpf-cgroup" => ebpf_cgroup = Some(value()?),
            "--no-ebpf" => no_ebpf = true,
            "--fake-exit-code" => exit_code = value()?.parse().map_err(|e| format!("{e}"))?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let state = state.ok_or("--state-dir is required")?;
    let socket = socket.ok_or("--socket is required")?;
    std::fs::create_dir_all(&state).map_err(|e| format!("create {}: {e}", state.display()))?;
    let log = state.join("starts.log");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .map_err(|e| format!("open {}: {e}", log.display()))?;
    writeln!(
        f,
        "start pid={} config={config:?} ebpf_cgroup={ebpf_cgroup:?} no_ebpf={no_ebpf}",
        std::process::id()
    )
    .map_err(|e| e.to_string())?;
    let starts = std::fs::read_to_string(&log)
        .map_err(|e| e.to_string())?
        .lines()
        .count();

    // Block the signals before any thread exists so that only sigwait below receives them.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGINT);
    signals
        .thread_block()
        .map_err(|e| format!("block signals: {e}"))?;

    if socket.exists() {
        std::fs::remove_file(&socket).map_err(|e| format!("remove stale socket: {e}"))?;
    }
    let listener = UnixListener::bind(&socket).map_err(|e| format!("bind: {e}"))?;
    println!(
        "fake helper ready socket={} starts={starts}",
        socket.display()
    );
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            answer(conn, starts);
        }
    });
    let sig = signals.wait().map_err(|e| format!("sigwait: {e}"))?;
    println!("fake helper got {sig:?}, stopping");
    std::fs::remove_file(&socket).map_err(|e| format!("remove socket: {e}"))?;
    Ok(exit_code)
}

fn answer(conn: UnixStream, starts: usize) {
    let mut line = String::new();
    let mut reader = BufReader::new(&conn);
    if reader.read_line(&mut line).is_err() || line.is_empty() {
        return; // a readiness probe: connect and close
    }
    let args: Vec<&str> = line.split_whitespace().collect();
    let reply = serde_json::json!({ "ok": true, "args": args, "starts": starts });
    println!("fake helper request args={args:?}");
    let mut w = &conn;
    let _ignored = writeln!(w, "{reply}");
}

fn ctl(args: &[String]) -> Result<u8, String> {
    let mut socket = None;
    let mut json = false;
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--socket" => socket = it.next().cloned(),
            "--json" => json = true,
            _ => rest.push(a.clone()),
        }
    }
    let socket = socket.ok_or("--socket is required")?;
    let mut conn = UnixStream::connect(&socket).map_err(|e| format!("connect {socket}: {e}"))?;
    writeln!(conn, "{}", rest.join(" ")).map_err(|e| e.to_string())?;
    let mut reply = String::new();
    BufReader::new(&conn)
        .read_line(&mut reply)
        .map_err(|e| e.to_string())?;
    if json {
        print!("{reply}");
    } else {
        println!("ok {}", rest.join(" "));
    }
    Ok(0)
}

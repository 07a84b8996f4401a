//! `pcl-probe`: the tiny client that plays the measured "app" in the benchmark lab.
//!
//! `pcl-bench` starts it inside a lab's client namespace (copied or hard-linked to distinct
//! paths when each process must look like a new app) and reads one line from its stdout. The
//! probe times its own `connect()` calls, so process start-up never counts. It only ever talks
//! to the address it is given and ends on its own: every loop is bounded by a count or a
//! deadline.
//!
//! ```text
//! pcl-probe latency   HOST PORT COUNT WARMUP     → "lat NS NS …"  (COUNT timed connects)
//! pcl-probe rate      HOST PORT MILLIS THREADS   → "rate CONNECTS ELAPSED_NS ERRORS"
//! pcl-probe once      HOST PORT                  → "once NS"      (one timed connect)
//! pcl-probe exit      HOST PORT                  → "ok"           (connect, then exit at once)
//! pcl-probe hold      HOST PORT MILLIS COUNT     → "held LOCAL…"  (COUNT connects, kept MILLIS)
//! pcl-probe udp-storm HOST PORT MILLIS RING THREADS → "udp SENT ELAPSED_NS ERRORS"
//! pcl-probe dns       HOST PORT NAME COUNT WARMUP → "lat NS NS …"  (COUNT timed A queries, UDP)
//! pcl-probe dns-tcp   HOST PORT NAME COUNT WARMUP → "lat NS NS …"  (the same over one TCP connection)
//! ```
//!
//! In NAME, `{n}` becomes the query's number, so that every query asks a new name (a cache
//! miss).
//!
//! TCP connections are closed with a reset (`SO_LINGER` 0) so that tens of thousands of them
//! leave no TIME_WAIT sockets behind to exhaust the ephemeral ports. `udp-storm` sends one
//! datagram from each new socket (a new source port, so a new flow for the firewall) and keeps
//! the last RING sockets open, as an app waiting for answers would.

use std::collections::VecDeque;
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use nix::sys::socket::{setsockopt, sockopt};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(line) => {
            let mut out = std::io::stdout().lock();
            if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pcl-probe: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<String, String> {
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    match a.as_slice() {
        ["latency", host, port, count, warmup] => {
            latency(addr(host, port)?, num(count)?, num(warmup)?)
        }
        ["rate", host, port, ms, threads] => rate(addr(host, port)?, millis(ms)?, num(threads)?),
        ["once", host, port] => {
            let peer = addr(host, port)?;
            warm_up_calls();
            let (ns, _stream) = timed_connect(peer)?;
            Ok(format!("once {ns}"))
        }
        ["exit", host, port] => {
            TcpStream::connect(addr(host, port)?).map_err(|e| format!("connect: {e}"))?;
            Ok("ok".to_owned())
        }
        ["hold", host, port, ms, count] => hold(addr(host, port)?, millis(ms)?, num(count)?),
        ["udp-storm", host, port, ms, ring, threads] => {
            udp_storm(addr(host, port)?, millis(ms)?, num(ring)?, num(threads)?)
        }
        ["dns", host, port, name, count, warmup] => {
            dns_latency(addr(host, port)?, name, num(count)?, num(warmup)?)
        }
        ["dns-tcp", host, port, name, count, warmup] => {
            dns_tcp_latency(addr(host, port)?, name, num(count)?, num(warmup)?)
        }
        _ => Err(format!("usage: see the module docs; got {a:?}")),
    }
}

fn addr(host: &str, port: &str) -> Result<SocketAddr, String> {
    let ip: Ipv4Addr = host
        .parse()
        .map_err(|_| format!("bad IPv4 address {host:?}"))?;
    let port: u16 = port.parse().map_err(|_| format!("bad port {port:?}"))?;
    Ok(SocketAddr::new(ip.into(), port))
}

/// `count` DNS queries for `name`'s A records (after `warmup` untimed ones), one after the
/// other from one connected UDP socket, each timed from send to the reply with its id. A
/// UDP echo server answers with the query itself, which counts as a reply: the floor.
/// An A query for `name` (with `{n}` replaced by `i`) with id `id`.
fn dns_query(name: &str, i: usize, id: u16) -> Result<Vec<u8>, String> {
    let name = name.replace("{n}", &i.to_string());
    let mut query = vec![0, 0, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    if let [a, b, ..] = query.as_mut_slice() {
        [*a, *b] = id.to_be_bytes();
    }
    for label in name.trim_end_matches('.').split('.') {
        let len = u8::try_from(label.len()).map_err(|_| format!("label too long: {label}"))?;
        query.push(len);
        query.extend_from_slice(label.as_bytes());
    }
    query.extend_from_slice(&[0, 0, 1, 0, 1]);
    Ok(query)
}

/// `count` DNS queries for `name`'s A records (after `warmup` untimed ones), one after the
/// other from one connected UDP socket, each timed from send to the reply with its id. A
/// UDP echo server answers with the query itself, which counts as a reply: the floor.
fn dns_latency(
    peer: SocketAddr,
    name: &str,
    count: usize,
    warmup: usize,
) -> Result<String, String> {
    let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).map_err(|e| format!("bind: {e}"))?;
    sock.connect(peer)
        .map_err(|e| format!("connect {peer}: {e}"))?;
    sock.set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| format!("timeout: {e}"))?;
    let mut buf = [0_u8; 1500];
    let mut line = String::from("lat");
    for i in 0..(warmup + count) {
        let id = u16::try_from(i % 65_536).unwrap_or(0);
        let query = dns_query(name, i, id)?;
        let start = Instant::now();
        sock.send(&query).map_err(|e| format!("send: {e}"))?;
        loop {
            let n = sock.recv(&mut buf).map_err(|e| format!("query {i}: {e}"))?;
            if buf.get(..2) == Some(&id.to_be_bytes()[..]) && n >= 12 {
                break;
            }
        }
        let ns = start.elapsed().as_nanos();
        if i >= warmup {
            line.push_str(&format!(" {ns}"));
        }
    }
    Ok(line)
}

/// As [`dns_latency`], over one TCP connection (two-byte length prefixes, RFC 1035 4.2.2).
fn dns_tcp_latency(
    peer: SocketAddr,
    name: &str,
    count: usize,
    warmup: usize,
) -> Result<String, String> {
    use std::io::Read as _;
    let mut stream = TcpStream::connect_timeout(&peer, Duration::from_secs(2))
        .map_err(|e| format!("connect {peer}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| format!("timeout: {e}"))?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("nodelay: {e}"))?;
    let mut line = String::from("lat");
    let mut reply = vec![0_u8; 65_535];
    for i in 0..(warmup + count) {
        let id = u16::try_from(i % 65_536).unwrap_or(0);
        let query = dns_query(name, i, id)?;
        let len = u16::try_from(query.len()).map_err(|_| "query too long".to_owned())?;
        let mut framed = len.to_be_bytes().to_vec();
        framed.extend_from_slice(&query);
        let start = Instant::now();
        stream
            .write_all(&framed)
            .map_err(|e| format!("send: {e}"))?;
        loop {
            let mut prefix = [0_u8; 2];
            stream
                .read_exact(&mut prefix)
                .map_err(|e| format!("query {i}: {e}"))?;
            let n = usize::from(u16::from_be_bytes(prefix));
            let body = reply.get_mut(..n).ok_or("reply too long")?;
            stream
                .read_exact(body)
                .map_err(|e| format!("query {i}: {e}"))?;
            if body.get(..2) == Some(&id.to_be_bytes()[..]) && n >= 12 {
                break;
            }
        }
        let ns = start.elapsed().as_nanos();
        if i >= warmup {
            line.push_str(&format!(" {ns}"));
        }
    }
    Ok(line)
}

fn num(s: &str) -> Result<usize, String> {
    s.parse().map_err(|_| format!("bad number {s:?}"))
}

fn millis(s: &str) -> Result<Duration, String> {
    s.parse()
        .map(Duration::from_millis)
        .map_err(|_| format!("bad milliseconds {s:?}"))
}

/// Runs the calls a connect makes once, on a UDP socket that sends nothing, so that the timed
/// connect of a fresh process measures the network path, not the dynamic linker resolving
/// `socket`/`connect` or first-touch page faults.
fn warm_up_calls() {
    if let Ok(sock) = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)) {
        let _ignored = sock.connect((Ipv4Addr::LOCALHOST, 9));
    }
    let _ignored = Instant::now().elapsed();
}

/// One connect, timed on its own; the stream is returned so the caller decides when it closes.
fn timed_connect(peer: SocketAddr) -> Result<(u128, TcpStream), String> {
    let start = Instant::now();
    let stream = TcpStream::connect(peer).map_err(|e| format!("connect {peer}: {e}"))?;
    let ns = start.elapsed().as_nanos();
    reset_on_close(&stream)?;
    Ok((ns, stream))
}

/// `SO_LINGER` 0: closing sends a reset and leaves no TIME_WAIT socket.
fn reset_on_close(stream: &TcpStream) -> Result<(), String> {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    setsockopt(stream, sockopt::Linger, &linger).map_err(|e| format!("SO_LINGER: {e}"))
}

/// Opens `count` connections one after the other and keeps them for `hold`. Before opening
/// the next one it waits (at most 3 s) for a byte from the server on the previous one: the
/// benchmark sends it once it has looked at that socket, so each new socket is made after
/// the attributor has seen this process.
fn hold(peer: SocketAddr, hold: Duration, count: usize) -> Result<String, String> {
    let mut streams = Vec::with_capacity(count);
    let mut line = "held".to_owned();
    for i in 0..count {
        let mut stream = TcpStream::connect(peer).map_err(|e| format!("connect: {e}"))?;
        let local = stream
            .local_addr()
            .map_err(|e| format!("local_addr: {e}"))?;
        line.push_str(&format!(" {local}"));
        if i + 1 < count {
            stream
                .set_read_timeout(Some(Duration::from_secs(3)))
                .map_err(|e| format!("read timeout: {e}"))?;
            let mut byte = [0_u8; 1];
            std::io::Read::read_exact(&mut stream, &mut byte)
                .map_err(|e| format!("waiting for the go-ahead: {e}"))?;
        }
        streams.push(stream);
    }
    std::thread::sleep(hold);
    Ok(line)
}

fn latency(peer: SocketAddr, count: usize, warmup: usize) -> Result<String, String> {
    for _ in 0..warmup {
        timed_connect(peer)?;
    }
    let mut line = String::with_capacity(count * 8 + 4);
    line.push_str("lat");
    for _ in 0..count {
        let (ns, stream) = timed_connect(peer)?;
        drop(stream);
        line.push(' ');
        line.push_str(&ns.to_string());
    }
    Ok(line)
}

fn rate(peer: SocketAddr, duration: Duration, threads: usize) -> Result<String, String> {
    let start = Instant::now();
    let deadline = start + duration;
    let results: Vec<(u64, u64)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads.max(1))
            .map(|_| {
                s.spawn(move || {
                    let (mut ok, mut errors) = (0_u64, 0_u64);
                    while Instant::now() < deadline {
                        match timed_connect(peer) {
                            Ok(_) => ok += 1,
                            Err(_) => errors += 1,
                        }
                    }
                    (ok, errors)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or((0, u64::MAX)))
            .collect()
    });
    let elapsed = start.elapsed().as_nanos();
    let ok: u64 = results.iter().map(|r| r.0).sum();
    let errors = results.iter().fold(0_u64, |acc, r| acc.saturating_add(r.1));
    Ok(format!("rate {ok} {elapsed} {errors}"))
}

fn udp_storm(
    peer: SocketAddr,
    duration: Duration,
    ring: usize,
    threads: usize,
) -> Result<String, String> {
    let start = Instant::now();
    let deadline = start + duration;
    let results: Vec<Result<(u64, u64), String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads.max(1))
            .map(|_| s.spawn(move || udp_sender(peer, deadline, ring)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("sender panicked".to_owned()))
            })
            .collect()
    });
    let elapsed = start.elapsed().as_nanos();
    let (mut sent, mut errors) = (0_u64, 0_u64);
    for r in results {
        let (s, e) = r?;
        sent += s;
        errors += e;
    }
    Ok(format!("udp {sent} {elapsed} {errors}"))
}

/// One sending thread of [`udp_storm`]: returns (sent, errors).
fn udp_sender(peer: SocketAddr, deadline: Instant, ring: usize) -> Result<(u64, u64), String> {
    let mut open: VecDeque<UdpSocket> = VecDeque::with_capacity(ring + 1);
    let payload = [0x5a_u8; 32];
    let (mut sent, mut errors, mut tries) = (0_u64, 0_u64, 0_u64);
    loop {
        // Checking the clock every 64 datagrams keeps it out of the measured loop.
        tries += 1;
        if tries.is_multiple_of(64) && Instant::now() >= deadline {
            break;
        }
        let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).map_err(|e| format!("bind: {e}"))?;
        match sock.send_to(&payload, peer) {
            Ok(_) => sent += 1,
            Err(_) => {
                errors += 1;
                if errors > 1_000_000 {
                    return Err("too many send errors".to_owned());
                }
                continue;
            }
        }
        open.push_back(sock);
        if open.len() > ring {
            open.pop_front();
        }
    }
    Ok((sent, errors))
}

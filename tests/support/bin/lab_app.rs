//! `lab-app`: the tiny client program that plays an "application" in the lab.
//!
//! The lab copies this binary to a distinct path per app (the firewall tells apps apart by
//! executable path) and runs it inside the client namespace. It makes exactly one attempt,
//! prints one `ok …` or `error …` line on stdout and exits with a code from `app_codes`, so a
//! test can tell a reset from a drop from a local EPERM. Standard library only; it must not
//! retry, fork or linger beyond `--hold-ms`.
//!
//! ```text
//! lab-app connect tcp HOST PORT [--send TEXT] [--timeout-ms N] [--hold-ms N] [--echo-every-ms N] [--ready] [--repeat N [--pause-ms N]]
//! lab-app connect udp HOST PORT [--send TEXT] [--no-reply] [--timeout-ms N]   (connect() + send())
//! lab-app send    udp HOST PORT [--send TEXT] [--no-reply] [--timeout-ms N]   (unconnected sendto())
//! lab-app resolve NAME
//! lab-app query SERVER NAME [--tcp]   (one DNS query for NAME's A records to SERVER:53, UDP or TCP)
//! ```
//! HOST is an IP literal or a name resolved by the system resolver. UDP sends `lab-app` unless
//! `--send` says otherwise and waits for the echo unless `--no-reply`. With `--ready`, a line
//! `ready STEP peer=ADDR local=ADDR pid=PID` comes first, as soon as the socket has its local
//! address (TCP: connected; UDP: first datagram sent), so a test can look at the socket while
//! `--hold-ms` keeps it open. `--repeat N` (TCP) makes N attempts one after the other from this
//! one process, each a new socket: every attempt but the last prints `attempt K ok …` or
//! `attempt K error … code=C` (and only connects: `--hold-ms`, `--echo-every-ms` and
//! `--ready` apply to the last); the last prints and exits as a single attempt would. `--pause-ms`
//! waits that long between attempts. `--mark HEX` (TCP) sets the socket's mark (SO_MARK, as
//! root) before it connects, as software with CAP_NET_ADMIN can.

#[path = "../app_codes.rs"]
mod app_codes;

use std::io::{self, ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::process::ExitCode;
use std::time::Duration;

const USAGE_TEXT: &str = "usage: lab-app connect tcp|udp HOST PORT [--send TEXT] [--timeout-ms N] \
[--hold-ms N] [--no-reply] [--ready]\n       lab-app send udp HOST PORT [...]\n       lab-app resolve NAME";

/// Options after the positional arguments.
struct Opts {
    send: Option<String>,
    timeout: Duration,
    hold: Duration,
    /// With `--echo-every-ms`: during the hold, echo a small message this often, so a
    /// connection cut while open is noticed (and reported with its error).
    every: Option<Duration>,
    reply: bool,
    ready: bool,
    repeat: u32,
    pause: Duration,
    mark: Option<u32>,
}

/// A failure with the exit code it maps to.
struct Failure {
    code: i32,
    what: String,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match run(&args) {
        Ok(line) => {
            println!("ok {line} pid={}", std::process::id());
            app_codes::OK
        }
        Err(f) => {
            println!(
                "error {} code={} pid={}",
                f.what,
                f.code,
                std::process::id()
            );
            if f.code == app_codes::USAGE {
                eprintln!("{USAGE_TEXT}");
            }
            f.code
        }
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

fn usage(msg: &str) -> Failure {
    Failure {
        code: app_codes::USAGE,
        what: format!("usage msg={msg:?}"),
    }
}

fn run(args: &[String]) -> Result<String, Failure> {
    let strs: Vec<&str> = args.iter().map(String::as_str).collect();
    match strs.as_slice() {
        ["resolve", name] => resolve(name),
        ["query", server, name] => query(server, name, false),
        ["query", server, name, "--tcp"] => query(server, name, true),
        [
            verb @ ("connect" | "send"),
            proto @ ("tcp" | "udp"),
            host,
            port,
            rest @ ..,
        ] => {
            let opts = parse_opts(rest)?;
            let port: u16 = port.parse().map_err(|_| usage("bad port"))?;
            let addr = target(host, port)?;
            match (*verb, *proto) {
                ("connect", "tcp") => {
                    // Attempts before the last only connect (and echo with `--send`).
                    let quick = Opts {
                        send: opts.send.clone(),
                        hold: Duration::ZERO,
                        every: None,
                        ready: false,
                        ..opts
                    };
                    for k in 1..opts.repeat {
                        match tcp(addr, &quick) {
                            Ok(line) => println!("attempt {k} ok {line}"),
                            Err(f) => println!("attempt {k} error {} code={}", f.what, f.code),
                        }
                        let _ignored = io::stdout().flush();
                        std::thread::sleep(opts.pause);
                    }
                    tcp(addr, &opts)
                }
                ("connect", "udp") => udp(addr, &opts, true),
                ("send", "udp") => udp(addr, &opts, false),
                _ => Err(usage("`send` is for udp; use `connect tcp`")),
            }
        }
        _ => Err(usage("unknown command")),
    }
}

fn parse_opts(mut rest: &[&str]) -> Result<Opts, Failure> {
    let mut opts = Opts {
        send: None,
        timeout: Duration::from_secs(3),
        hold: Duration::ZERO,
        every: None,
        reply: true,
        ready: false,
        repeat: 1,
        pause: Duration::ZERO,
        mark: None,
    };
    loop {
        match rest {
            [] => return Ok(opts),
            ["--send", text, tail @ ..] => {
                opts.send = Some((*text).to_owned());
                rest = tail;
            }
            ["--timeout-ms", ms, tail @ ..] => {
                opts.timeout = Duration::from_millis(ms.parse().map_err(|_| usage("bad ms"))?);
                rest = tail;
            }
            ["--hold-ms", ms, tail @ ..] => {
                opts.hold = Duration::from_millis(ms.parse().map_err(|_| usage("bad ms"))?);
                rest = tail;
            }
            ["--echo-every-ms", ms, tail @ ..] => {
                let ms: u64 = ms.parse().map_err(|_| usage("bad ms"))?;
                opts.every = Some(Duration::from_millis(ms.max(1)));
                rest = tail;
            }
            ["--no-reply", tail @ ..] => {
                opts.reply = false;
                rest = tail;
            }
            ["--ready", tail @ ..] => {
                opts.ready = true;
                rest = tail;
            }
            ["--repeat", n, tail @ ..] => {
                let n: u32 = n.parse().map_err(|_| usage("bad count"))?;
                opts.repeat = n.clamp(1, 10_000);
                rest = tail;
            }
            ["--mark", hex, tail @ ..] => {
                let hex = hex.trim_start_matches("0x");
                opts.mark = Some(u32::from_str_radix(hex, 16).map_err(|_| usage("bad mark"))?);
                rest = tail;
            }
            ["--pause-ms", ms, tail @ ..] => {
                opts.pause = Duration::from_millis(ms.parse().map_err(|_| usage("bad ms"))?);
                rest = tail;
            }
            _ => return Err(usage("unknown option")),
        }
    }
}

fn target(host: &str, port: u16) -> Result<SocketAddr, Failure> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let resolved = (host, port).to_socket_addrs().map_err(|e| Failure {
        code: app_codes::RESOLVE,
        what: format!("resolve name={host} msg={:?}", e.to_string()),
    })?;
    resolved.into_iter().next().ok_or_else(|| Failure {
        code: app_codes::RESOLVE,
        what: format!("resolve name={host} msg=\"no addresses\""),
    })
}

fn resolve(name: &str) -> Result<String, Failure> {
    let addrs = (name, 0).to_socket_addrs().map_err(|e| Failure {
        code: app_codes::RESOLVE,
        what: format!("resolve name={name} msg={:?}", e.to_string()),
    })?;
    let ips: Vec<String> = addrs.map(|a| a.ip().to_string()).collect();
    Ok(format!("resolve name={name} addrs={}", ips.join(",")))
}

/// Asks `server`:53 over UDP for `name`'s A records (no system resolver involved): `ok` with
/// the addresses on NOERROR with answers, `RESOLVE` with the rcode otherwise.
fn query(server: &str, name: &str, tcp: bool) -> Result<String, Failure> {
    let ip: IpAddr = server.parse().map_err(|_| usage("bad server address"))?;
    let peer = SocketAddr::new(ip, 53);
    let id = u16::try_from(std::process::id() & 0xffff).unwrap_or(1);
    let mut q = Vec::with_capacity(64);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]); // RD; one question
    for label in name.trim_end_matches('.').split('.') {
        let len = u8::try_from(label.len()).map_err(|_| usage("label too long"))?;
        q.push(len);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]); // root, type A, class IN
    let bind = match ip {
        IpAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        IpAddr::V6(_) => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
    };
    let mut buf = [0_u8; 1500];
    let n = if tcp {
        // RFC 1035 4.2.2: a two-byte length, then the message.
        let mut s = TcpStream::connect_timeout(&peer, Duration::from_secs(3))
            .map_err(|e| fail("connect", peer, &e, false))?;
        s.set_read_timeout(Some(Duration::from_secs(3)))
            .map_err(|e| fail("timeout", peer, &e, false))?;
        let len = u16::try_from(q.len()).map_err(|_| usage("query too long"))?;
        let mut framed = len.to_be_bytes().to_vec();
        framed.extend_from_slice(&q);
        s.write_all(&framed)
            .map_err(|e| fail("send", peer, &e, false))?;
        let mut len = [0_u8; 2];
        s.read_exact(&mut len)
            .map_err(|e| fail("recv", peer, &e, true))?;
        let n = usize::from(u16::from_be_bytes(len)).min(buf.len());
        let body = buf.get_mut(..n).ok_or_else(|| usage("reply too long"))?;
        s.read_exact(body)
            .map_err(|e| fail("recv", peer, &e, true))?;
        n
    } else {
        let sock = UdpSocket::bind(bind).map_err(|e| fail("bind", peer, &e, false))?;
        sock.set_read_timeout(Some(Duration::from_secs(3)))
            .map_err(|e| fail("timeout", peer, &e, false))?;
        sock.connect(peer)
            .map_err(|e| fail("connect", peer, &e, false))?;
        sock.send(&q).map_err(|e| fail("send", peer, &e, false))?;
        sock.recv(&mut buf)
            .map_err(|e| fail("recv", peer, &e, true))?
    };
    let reply = buf.get(..n).unwrap_or_default();
    let bad = || Failure {
        code: app_codes::FAILED,
        what: format!("query name={name} msg=\"malformed reply\""),
    };
    let (Some(head), Some(counts)) = (reply.get(..4), reply.get(4..12)) else {
        return Err(bad());
    };
    if head.get(..2) != Some(&id.to_be_bytes()[..]) {
        return Err(bad());
    }
    let rcode = head.get(3).copied().unwrap_or(0) & 0x0f;
    let count = |i: usize| {
        u16::from_be_bytes([
            counts.get(i).copied().unwrap_or(0),
            counts.get(i + 1).copied().unwrap_or(0),
        ])
    };
    let (questions, answers) = (count(0), count(2));
    // Skips a (possibly compressed) name at `pos`; returns the position after it.
    let skip_name = |mut pos: usize| -> Option<usize> {
        loop {
            let len = *reply.get(pos)?;
            if len & 0xc0 == 0xc0 {
                return Some(pos + 2);
            }
            pos += 1 + usize::from(len);
            if len == 0 {
                return Some(pos);
            }
        }
    };
    let mut pos = 12;
    for _ in 0..questions {
        pos = skip_name(pos).ok_or_else(bad)? + 4;
    }
    let mut addrs = Vec::new();
    for _ in 0..answers {
        pos = skip_name(pos).ok_or_else(bad)?;
        let Some(&[t0, t1, _, _, _, _, _, _, l0, l1]) = reply.get(pos..pos + 10) else {
            return Err(bad());
        };
        let rtype = u16::from_be_bytes([t0, t1]);
        let len = usize::from(u16::from_be_bytes([l0, l1]));
        let data = reply.get(pos + 10..pos + 10 + len).ok_or_else(bad)?;
        if let (1, [a, b, c, d]) = (rtype, data) {
            addrs.push(Ipv4Addr::new(*a, *b, *c, *d).to_string());
        }
        pos += 10 + len;
    }
    if rcode != 0 || addrs.is_empty() {
        return Err(Failure {
            code: app_codes::RESOLVE,
            what: format!("query name={name} rcode={rcode} addrs=0"),
        });
    }
    Ok(format!(
        "query name={name} rcode=0 addrs={}",
        addrs.join(",")
    ))
}

/// Maps an I/O error to an exit code; `reading` marks errors while waiting for the echo.
fn fail(step: &str, peer: SocketAddr, e: &io::Error, reading: bool) -> Failure {
    let code = match e.kind() {
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionReset => app_codes::REFUSED,
        ErrorKind::PermissionDenied => app_codes::DENIED,
        ErrorKind::NetworkUnreachable | ErrorKind::HostUnreachable => app_codes::UNREACHABLE,
        ErrorKind::TimedOut | ErrorKind::WouldBlock if reading => app_codes::NO_REPLY,
        ErrorKind::TimedOut | ErrorKind::WouldBlock => app_codes::TIMEOUT,
        _ => app_codes::FAILED,
    };
    let errno = e.raw_os_error().unwrap_or(0);
    Failure {
        code,
        what: format!("{step} peer={peer} errno={errno} msg={:?}", e.to_string()),
    }
}

/// A TCP connection from a socket whose mark is set before it connects.
fn connect_marked(peer: SocketAddr, mark: u32, timeout: Duration) -> io::Result<TcpStream> {
    use std::os::fd::FromRawFd as _;
    let family = if peer.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: socket(2) with constant arguments; the result is checked.
    let fd = unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh socket nothing else owns; the stream closes it.
    let stream = unsafe { TcpStream::from_raw_fd(fd) };
    let len = libc::socklen_t::try_from(std::mem::size_of::<u32>()).unwrap_or(4);
    // SAFETY: `mark` lives for the call and is `len` bytes.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_MARK,
            std::ptr::from_ref(&mark).cast(),
            len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    stream.set_write_timeout(Some(timeout))?;
    let (addr, addr_len) = match peer {
        SocketAddr::V4(v4) => {
            // SAFETY: zeroed sockaddr_in is a valid value.
            let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
            sa.sin_family = libc::sa_family_t::try_from(libc::AF_INET).unwrap_or(2);
            sa.sin_port = v4.port().to_be();
            sa.sin_addr.s_addr = u32::from_ne_bytes(v4.ip().octets());
            let mut storage: libc::sockaddr_storage =
                // SAFETY: zeroed sockaddr_storage is a valid value.
                unsafe { std::mem::zeroed() };
            // SAFETY: sockaddr_in fits in sockaddr_storage.
            unsafe { std::ptr::write(std::ptr::from_mut(&mut storage).cast(), sa) };
            (storage, std::mem::size_of::<libc::sockaddr_in>())
        }
        SocketAddr::V6(v6) => {
            // SAFETY: zeroed sockaddr_in6 is a valid value.
            let mut sa: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
            sa.sin6_family = libc::sa_family_t::try_from(libc::AF_INET6).unwrap_or(10);
            sa.sin6_port = v6.port().to_be();
            sa.sin6_addr.s6_addr = v6.ip().octets();
            let mut storage: libc::sockaddr_storage =
                // SAFETY: zeroed sockaddr_storage is a valid value.
                unsafe { std::mem::zeroed() };
            // SAFETY: sockaddr_in6 fits in sockaddr_storage.
            unsafe { std::ptr::write(std::ptr::from_mut(&mut storage).cast(), sa) };
            (storage, std::mem::size_of::<libc::sockaddr_in6>())
        }
    };
    let addr_len = libc::socklen_t::try_from(addr_len).unwrap_or(0);
    // SAFETY: `addr` holds a valid address of `addr_len` bytes for the call.
    let rc = unsafe { libc::connect(fd, std::ptr::from_ref(&addr).cast(), addr_len) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(stream)
}

/// With `--ready`: the `ready …` line, flushed at once (stdout may be a file).
fn announce(opts: &Opts, step: &str, peer: SocketAddr, local: SocketAddr) {
    if opts.ready {
        let mut out = io::stdout().lock();
        let _ignored = writeln!(
            out,
            "ready {step} peer={peer} local={local} pid={}",
            std::process::id()
        )
        .and_then(|()| out.flush());
    }
}

fn tcp(peer: SocketAddr, opts: &Opts) -> Result<String, Failure> {
    let step = "connect tcp";
    let mut s = match opts.mark {
        None => TcpStream::connect_timeout(&peer, opts.timeout),
        Some(mark) => connect_marked(peer, mark, opts.timeout),
    }
    .map_err(|e| fail(step, peer, &e, false))?;
    let local = s.local_addr().map_err(|e| fail(step, peer, &e, false))?;
    announce(opts, step, peer, local);
    let mut line = format!("{step} peer={peer} local={local}");
    if let Some(text) = &opts.send {
        s.set_read_timeout(Some(opts.timeout))
            .map_err(|e| fail(step, peer, &e, false))?;
        s.write_all(text.as_bytes())
            .map_err(|e| fail(step, peer, &e, false))?;
        let mut got = vec![0_u8; text.len()];
        s.read_exact(&mut got).map_err(|e| {
            if e.kind() == ErrorKind::UnexpectedEof {
                Failure {
                    code: app_codes::NO_REPLY,
                    what: format!("{step} peer={peer} msg=eof"),
                }
            } else {
                fail(step, peer, &e, true)
            }
        })?;
        line.push_str(&format!(" reply={:?}", String::from_utf8_lossy(&got)));
    }
    match opts.every {
        None => std::thread::sleep(opts.hold),
        Some(every) => {
            let end = std::time::Instant::now() + opts.hold;
            let mut echoes = 0_u32;
            s.set_read_timeout(Some(opts.timeout))
                .map_err(|e| fail(step, peer, &e, false))?;
            while std::time::Instant::now() < end {
                let mut got = [0_u8; 4];
                let step = format!("echo tcp after={echoes}");
                s.write_all(b"ping")
                    .and_then(|()| s.read_exact(&mut got))
                    .map_err(|e| {
                        if e.kind() == ErrorKind::UnexpectedEof {
                            Failure {
                                code: app_codes::REFUSED,
                                what: format!("{step} peer={peer} msg=eof"),
                            }
                        } else {
                            fail(&step, peer, &e, true)
                        }
                    })?;
                echoes += 1;
                std::thread::sleep(every);
            }
            line.push_str(&format!(" echoes={echoes}"));
        }
    }
    Ok(line)
}

fn udp(peer: SocketAddr, opts: &Opts, connected: bool) -> Result<String, Failure> {
    let step = if connected { "connect udp" } else { "send udp" };
    let any: IpAddr = if peer.is_ipv4() {
        Ipv4Addr::UNSPECIFIED.into()
    } else {
        Ipv6Addr::UNSPECIFIED.into()
    };
    let sock = UdpSocket::bind((any, 0)).map_err(|e| fail(step, peer, &e, false))?;
    let text = opts.send.clone().unwrap_or_else(|| "lab-app".to_owned());
    if connected {
        sock.connect(peer)
            .map_err(|e| fail(step, peer, &e, false))?;
        sock.send(text.as_bytes())
            .map_err(|e| fail(step, peer, &e, false))?;
    } else {
        sock.send_to(text.as_bytes(), peer)
            .map_err(|e| fail(step, peer, &e, false))?;
    }
    let local = sock.local_addr().map_err(|e| fail(step, peer, &e, false))?;
    announce(opts, step, peer, local);
    let mut line = format!("{step} peer={peer} local={local}");
    if opts.reply {
        sock.set_read_timeout(Some(opts.timeout))
            .map_err(|e| fail(step, peer, &e, false))?;
        let mut buf = [0_u8; 2048];
        let n = if connected {
            sock.recv(&mut buf)
                .map_err(|e| fail(step, peer, &e, true))?
        } else {
            sock.recv_from(&mut buf)
                .map_err(|e| fail(step, peer, &e, true))?
                .0
        };
        let got = buf.get(..n).unwrap_or_default();
        line.push_str(&format!(" reply={:?}", String::from_utf8_lossy(got)));
    }
    std::thread::sleep(opts.hold);
    Ok(line)
}

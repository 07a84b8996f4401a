//! The DNS redirect in a lab: queries to port 53 anywhere else (an "Internet" server, the lab's
//! server, systemd-resolved's stub addresses) arrive at a listener on the resolver's address
//! in the client namespace; a socket marked with `exclude_socket` still reaches the real
//! server; IPv6 goes to its own resolver address or is refused; and removal, also after a
//! simulated crash, gives back the rule sets as they were.
//!
//! No helper runs here: the listeners are plain sockets of the test, opened inside the lab's
//! namespaces, and the filter chains pass everything (fail-open, no queue bound).

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd as _, AsRawFd as _, FromRawFd as _, OwnedFd};
use std::time::{Duration, Instant};

use portcullis_intercept::{
    DnsRedirect, InstalledRules, InterceptConfig, RemovedKind, exclude_socket, recover,
};
use portcullis_lab::{Lab, Ns};

use crate::common::{ipt, save, snapshot};

/// How long a query may take to arrive.
const WAIT: Duration = Duration::from_secs(3);
/// The "Internet" DNS server the apps ask, added to the server namespace.
const OUTSIDE_V4: &str = "192.0.2.1:53";
const OUTSIDE_V6: &str = "[2001:db8::53]:53";

fn config(v6: Option<&str>) -> InterceptConfig {
    InterceptConfig {
        dns_redirect: Some(DnsRedirect {
            v6: v6.map(|a| a.parse().expect("a socket address")),
            ..DnsRedirect::default()
        }),
        ..InterceptConfig::default()
    }
}

fn addr(text: &str) -> SocketAddr {
    text.parse().expect("a socket address")
}

/// A DNS-ish server: a UDP socket and a TCP listener on one address, opened in `ns`.
struct Listener {
    at: SocketAddr,
    udp: UdpSocket,
    tcp: TcpListener,
}

impl Listener {
    fn bind(ns: &Ns, at: SocketAddr) -> Listener {
        let (udp, tcp) = ns.in_ns(|| {
            (
                UdpSocket::bind(at).expect("bind"),
                TcpListener::bind(at).expect("bind"),
            )
        });
        udp.set_read_timeout(Some(WAIT)).expect("set a timeout");
        tcp.set_nonblocking(true).expect("set_nonblocking");
        Listener { at, udp, tcp }
    }

    /// Receives one datagram, checks it is `query` and answers it; returns its source.
    fn answer_udp(&self, query: &[u8]) -> Option<SocketAddr> {
        let mut buf = [0_u8; 512];
        let (n, from) = match self.udp.recv_from(&mut buf) {
            Ok(got) => got,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return None;
            }
            Err(e) => panic!("recv at {}: {e}", self.at),
        };
        assert_eq!(buf.get(..n), Some(query), "at {}", self.at);
        self.udp.send_to(b"answer", from).expect("send_to");
        Some(from)
    }

    /// Accepts one connection, reads `query` from it and answers; returns its source.
    fn answer_tcp(&self, query: &[u8]) -> Option<SocketAddr> {
        let deadline = Instant::now() + WAIT;
        let (mut conn, from) = loop {
            match self.tcp.accept() {
                Ok(got) => break got,
                Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return None,
                Err(e) => panic!("accept at {}: {e}", self.at),
            }
        };
        conn.set_nonblocking(false).expect("set_nonblocking");
        conn.set_read_timeout(Some(WAIT)).expect("set a timeout");
        let mut buf = vec![0_u8; query.len()];
        conn.read_exact(&mut buf).expect("read_exact");
        assert_eq!(buf, query, "at {}", self.at);
        conn.write_all(b"answer").expect("write_all");
        Some(from)
    }

    /// Whether nothing is waiting (no datagram, no connection).
    fn is_idle(&self) -> bool {
        self.udp.set_nonblocking(true).expect("set_nonblocking");
        let mut buf = [0_u8; 512];
        let udp_idle =
            matches!(self.udp.recv_from(&mut buf), Err(e) if e.kind() == ErrorKind::WouldBlock);
        self.udp.set_nonblocking(false).expect("set_nonblocking");
        let tcp_idle = matches!(self.tcp.accept(), Err(e) if e.kind() == ErrorKind::WouldBlock);
        udp_idle && tcp_idle
    }
}

/// A UDP socket of an "app" in `ns`, marked as the helper marks its own when `marked`.
fn udp_socket(ns: &Ns, to: SocketAddr, marked: bool) -> UdpSocket {
    let any = if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
    let sock = ns.in_ns(|| UdpSocket::bind(any).expect("bind"));
    if marked {
        exclude_socket(sock.as_fd(), &InterceptConfig::default())
            .expect("mark the socket as the helper's own");
    }
    sock.set_read_timeout(Some(WAIT)).expect("set a timeout");
    sock
}

/// Sends `query` over UDP from `ns` to `to`; returns where the answer came from.
fn ask_udp(ns: &Ns, to: SocketAddr, marked: bool, query: &[u8], server: &Listener) -> SocketAddr {
    let sock = udp_socket(ns, to, marked);
    sock.send_to(query, to).expect("send_to");
    let from = server.answer_udp(query);
    assert!(
        from.is_some(),
        "{query:?} to {to} did not arrive at {}",
        server.at
    );
    let mut buf = [0_u8; 64];
    let (n, answered_by) = sock.recv_from(&mut buf).expect("recv_from");
    assert_eq!(buf.get(..n), Some(&b"answer"[..]));
    answered_by
}

/// A TCP socket of an "app" in `ns` (marked like the helper's own when `marked`), connected
/// to `to`.
fn tcp_connect(ns: &Ns, to: SocketAddr, marked: bool) -> std::io::Result<TcpStream> {
    let fd = ns.in_ns(|| {
        let domain = if to.is_ipv4() {
            libc::AF_INET
        } else {
            libc::AF_INET6
        };
        // SAFETY: socket(2) with constant arguments; the result is checked below.
        let raw = unsafe { libc::socket(domain, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
        assert!(raw >= 0, "socket: {}", std::io::Error::last_os_error());
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        unsafe { OwnedFd::from_raw_fd(raw) }
    });
    if marked {
        exclude_socket(fd.as_fd(), &InterceptConfig::default())
            .expect("mark the socket as the helper's own");
    }
    let stream = TcpStream::from(fd);
    // SO_SNDTIMEO bounds connect(2) too.
    stream.set_write_timeout(Some(WAIT)).expect("set a timeout");
    stream.set_read_timeout(Some(WAIT)).expect("set a timeout");
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match to {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*a.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is large enough and suitably aligned for sockaddr_in.
            unsafe { std::ptr::write(std::ptr::from_mut(&mut storage).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: 0,
            };
            // SAFETY: sockaddr_storage is large enough and suitably aligned for sockaddr_in6.
            unsafe { std::ptr::write(std::ptr::from_mut(&mut storage).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    // SAFETY: `storage` holds a valid address of `len` bytes; the descriptor is live.
    let rc = unsafe {
        libc::connect(
            stream.as_raw_fd(),
            std::ptr::from_ref(&storage).cast(),
            libc::socklen_t::try_from(len).expect("a sockaddr length"),
        )
    };
    if rc == 0 {
        Ok(stream)
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Asks `query` over TCP from `ns` to `to`; returns the peer the app sees.
fn ask_tcp(ns: &Ns, to: SocketAddr, marked: bool, query: &[u8], server: &Listener) -> SocketAddr {
    let mut conn = tcp_connect(ns, to, marked).unwrap_or_else(|e| panic!("connect {to}: {e}"));
    conn.write_all(query).expect("write_all");
    let from = server.answer_tcp(query);
    assert!(
        from.is_some(),
        "{query:?} to {to} did not arrive at {}",
        server.at
    );
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer).expect("read_to_end");
    assert_eq!(answer, b"answer");
    conn.peer_addr().expect("peer_addr")
}

/// Rules that Docker puts into `nat` (and a wg-quick-like one into `filter`): they must stay
/// exactly as they are.
fn add_docker_like_rules(ns: &Ns) {
    for (tool, net) in [
        ("iptables", "172.17.0.0/16"),
        ("ip6tables", "fd00:d0c::/64"),
    ] {
        ipt(ns, tool, "-A OUTPUT -m mark --mark 0xca6c -j ACCEPT");
        ipt(ns, tool, "-t nat -N DOCKER");
        ipt(
            ns,
            tool,
            "-t nat -A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER",
        );
        ipt(
            ns,
            tool,
            "-t nat -A OUTPUT -m addrtype --dst-type LOCAL -p tcp --dport 8080 -j DOCKER",
        );
        ipt(
            ns,
            tool,
            &format!("-t nat -A POSTROUTING -s {net} ! -o docker0 -j MASQUERADE"),
        );
        ipt(ns, tool, "-t nat -A DOCKER -i docker0 -j RETURN");
    }
}

/// The lines of `chain` in the `nat` table of a normalized save.
fn nat_rules<'a>(saved: &'a str, chain: &str) -> Vec<&'a str> {
    let nat = saved.split("*nat\n").nth(1).expect("a nat table");
    let nat = nat.split("COMMIT\n").next().unwrap_or_default();
    let prefix = format!("-A {chain} ");
    nat.lines().filter(|l| l.starts_with(&prefix)).collect()
}

#[test]
fn astray_dns_reaches_the_resolver_marked_dns_does_not_and_removal_is_exact() {
    portcullis_lab::require_root!();
    let lab = Lab::new("icpt-dns");
    let (c, s) = (lab.client(), lab.server());
    s.add_address("192.0.2.1/32");
    s.add_address("2001:db8::53/128");
    add_docker_like_rules(c);
    let before = snapshot(c);

    let resolver_v4 = Listener::bind(c, addr("127.0.0.153:53"));
    let resolver_v6 = Listener::bind(c, addr("[::1]:53"));
    let outside_v4 = Listener::bind(s, addr(OUTSIDE_V4));
    let outside_v6 = Listener::bind(s, addr(OUTSIDE_V6));
    let server_v4 = SocketAddr::new(s.ipv4().into(), 53);
    let server_v6 = SocketAddr::new(s.ipv6().into(), 53);

    // Without our rules the outside server answers: the lab routes there.
    assert_eq!(
        ask_udp(c, addr(OUTSIDE_V4), false, b"plain", &outside_v4),
        addr(OUTSIDE_V4)
    );

    let cfg = config(Some("[::1]:53"));
    let mut rules = c.in_ns(|| InstalledRules::install(&cfg)).unwrap();
    let v4 = save(c, "iptables-save");
    assert_eq!(
        nat_rules(&v4, "PORTCULLIS-DNS"),
        [
            "-A PORTCULLIS-DNS -m mark --mark 0x10000000/0x90000000 -j RETURN",
            "-A PORTCULLIS-DNS -d 127.0.0.153/32 -j RETURN",
            "-A PORTCULLIS-DNS -p udp -m udp --dport 53 -j DNAT --to-destination 127.0.0.153:53",
            "-A PORTCULLIS-DNS -p tcp -m tcp --dport 53 -j DNAT --to-destination 127.0.0.153:53",
        ],
        "{v4}"
    );
    assert_eq!(
        nat_rules(&v4, "OUTPUT"),
        [
            "-A OUTPUT -j PORTCULLIS-DNS",
            "-A OUTPUT -p tcp -m addrtype --dst-type LOCAL -m tcp --dport 8080 -j DOCKER",
        ],
        "ours first, Docker's kept: {v4}"
    );
    let v6 = save(c, "ip6tables-save");
    assert!(
        v6.contains(
            "-A PORTCULLIS-DNS -p udp -m udp --dport 53 -j DNAT --to-destination [::1]:53\n"
        ),
        "{v6}"
    );
    // Redirecting needs no sysctl: route_localnet stays off.
    let localnet = c.output({
        let mut cmd = std::process::Command::new("sysctl");
        cmd.args(["-n", "net.ipv4.conf.all.route_localnet"]);
        cmd
    });
    assert_eq!(localnet.stdout.trim(), "0");

    // UDP and TCP to an Internet server, the lab's server and resolved's stubs all land on the
    // resolver, from the app's own address; the app sees the answer come from where it asked.
    let client_v4 = std::net::IpAddr::from(c.ipv4());
    for to in [
        addr(OUTSIDE_V4),
        server_v4,
        addr("127.0.0.53:53"),
        addr("127.0.0.54:53"),
    ] {
        assert_eq!(ask_udp(c, to, false, b"udp-q", &resolver_v4), to);
        assert_eq!(ask_tcp(c, to, false, b"tcp-q", &resolver_v4), to);
    }
    let sock = udp_socket(c, addr(OUTSIDE_V4), false);
    sock.send_to(b"from?", addr(OUTSIDE_V4)).unwrap();
    let from = resolver_v4.answer_udp(b"from?").unwrap();
    assert_eq!(from.ip(), client_v4, "the source address stays the app's");
    assert_eq!(from.port(), sock.local_addr().unwrap().port());
    // Straight to the resolver: untouched.
    let direct = addr("127.0.0.153:53");
    assert_eq!(ask_udp(c, direct, false, b"direct", &resolver_v4), direct);
    // The helper's own (marked) queries go where they were sent.
    assert_eq!(
        ask_udp(c, addr(OUTSIDE_V4), true, b"own-udp", &outside_v4),
        addr(OUTSIDE_V4)
    );
    assert_eq!(
        ask_tcp(c, addr(OUTSIDE_V4), true, b"own-tcp", &outside_v4),
        addr(OUTSIDE_V4)
    );
    // IPv6: to the IPv6 resolver, marked ones outside.
    for to in [addr(OUTSIDE_V6), server_v6] {
        assert_eq!(ask_udp(c, to, false, b"udp6-q", &resolver_v6), to);
        assert_eq!(ask_tcp(c, to, false, b"tcp6-q", &resolver_v6), to);
    }
    assert_eq!(
        ask_udp(c, addr(OUTSIDE_V6), true, b"own6", &outside_v6),
        addr(OUTSIDE_V6)
    );
    assert_eq!(
        ask_tcp(c, addr(OUTSIDE_V6), true, b"own6t", &outside_v6),
        addr(OUTSIDE_V6)
    );
    for l in [&resolver_v4, &resolver_v6, &outside_v4, &outside_v6] {
        assert!(l.is_idle(), "nothing else arrived at {}", l.at);
    }

    // Removal: both tables of both families, exactly as before (nat existed: Docker's).
    let removed = rules.remove().unwrap();
    let nat: Vec<_> = removed.items.iter().filter(|i| i.table == "nat").collect();
    assert_eq!(nat.len(), 4, "a jump and a chain per family: {removed}");
    assert!(nat.iter().any(|i| matches!(
        &i.kind,
        RemovedKind::Chain { name, rules: 4 } if name == "PORTCULLIS-DNS"
    )));
    assert_eq!(snapshot(c), before);
    // Now the outside server answers again.
    assert_eq!(
        ask_udp(c, addr(OUTSIDE_V4), false, b"after", &outside_v4),
        addr(OUTSIDE_V4)
    );

    // A crash: the rules stay behind until recover takes them out, byte for byte.
    let crashed = c.in_ns(|| InstalledRules::install(&cfg)).unwrap();
    std::mem::forget(crashed);
    assert!(save(c, "iptables-save").contains(":PORTCULLIS-DNS"));
    assert_eq!(
        ask_udp(c, addr(OUTSIDE_V4), false, b"crashed", &resolver_v4),
        addr(OUTSIDE_V4)
    );
    let removed = c.in_ns(recover).unwrap();
    assert_eq!(removed.items.len(), 12, "{removed}");
    assert_eq!(snapshot(c), before);
    assert!(c.in_ns(recover).unwrap().is_empty());
    drop(rules);
    assert_eq!(snapshot(c), before);
}

/// What iptables leaves of a `nat` table it created for us (it cannot delete tables).
const EMPTY_NAT: &str =
    "*nat\n:PREROUTING ACCEPT\n:INPUT ACCEPT\n:OUTPUT ACCEPT\n:POSTROUTING ACCEPT\nCOMMIT\n";
/// And of a `filter` table.
const EMPTY_FILTER: &str = "*filter\n:INPUT ACCEPT\n:FORWARD ACCEPT\n:OUTPUT ACCEPT\nCOMMIT\n";

#[test]
fn without_an_ipv6_resolver_ipv6_dns_is_refused_and_created_tables_stay_empty() {
    portcullis_lab::require_root!();
    let lab = Lab::new("icpt-dns6");
    let (c, s) = (lab.client(), lab.server());
    s.add_address("192.0.2.1/32");
    s.add_address("2001:db8::53/128");
    let before = snapshot(c);
    assert!(
        !before.contains('*'),
        "a fresh namespace has no tables:\n{before}"
    );
    let resolver_v4 = Listener::bind(c, addr("127.0.0.153:53"));
    let outside_v6 = Listener::bind(s, addr(OUTSIDE_V6));

    let mut rules = c.in_ns(|| InstalledRules::install(&config(None))).unwrap();
    assert!(
        !save(c, "ip6tables-save").contains("*nat"),
        "no IPv6 nat chain"
    );
    assert_eq!(
        ask_udp(c, addr(OUTSIDE_V4), false, b"v4", &resolver_v4),
        addr(OUTSIDE_V4)
    );

    // IPv6 DNS fails at once (EPERM from the send, or the ICMPv6 error / reset), never waits.
    let to = addr(OUTSIDE_V6);
    let sock = udp_socket(c, to, false);
    sock.connect(to).unwrap();
    let started = Instant::now();
    let refused = match sock.send(b"leak?") {
        Err(e) => e,
        Ok(_) => sock.recv(&mut [0_u8; 64]).unwrap_err(),
    };
    assert!(
        matches!(
            refused.kind(),
            ErrorKind::ConnectionRefused | ErrorKind::PermissionDenied
        ),
        "{refused}"
    );
    let err = tcp_connect(c, to, false).unwrap_err();
    assert!(
        matches!(
            err.kind(),
            ErrorKind::ConnectionRefused | ErrorKind::PermissionDenied
        ),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "refused at once"
    );
    assert!(outside_v6.is_idle(), "no IPv6 query leaked");
    // The helper's own IPv6 queries pass.
    assert_eq!(ask_udp(c, to, true, b"own6", &outside_v6), to);
    assert_eq!(ask_tcp(c, to, true, b"own6t", &outside_v6), to);

    // The tables iptables had to create stay, empty (as for filter): nothing of ours is left.
    let removed = rules.remove().unwrap();
    assert_eq!(removed.items.len(), 10, "{removed}");
    let after = snapshot(c);
    assert_eq!(
        save(c, "iptables-save"),
        format!("{EMPTY_FILTER}{EMPTY_NAT}")
    );
    assert_eq!(save(c, "ip6tables-save"), EMPTY_FILTER);
    assert!(!after.contains("PORTCULLIS"));

    // After a crash, recover gives back exactly that.
    std::mem::forget(c.in_ns(|| InstalledRules::install(&config(None))).unwrap());
    assert_eq!(c.in_ns(recover).unwrap().items.len(), 10);
    assert_eq!(snapshot(c), after);
    drop(rules);
}

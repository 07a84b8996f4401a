//! `forget_connections` against the kernel's real conntrack table, over netlink, inside lab
//! network namespaces: entries made with `conntrack -I` (IPv4 and IPv6; TCP, UDP, ICMP and
//! ICMPv6; our allow mark, our block and drop marks, foreign marks, no mark, another zone), each
//! filter called from a thread that joined the namespace, and `conntrack -L` afterwards showing
//! that exactly the right entries went.
//!
//! Nothing here touches the machine's own network namespace: every entry lives in a namespace
//! a lab created, and goes with it (also on panic).
#![expect(
    clippy::panic,
    reason = "test code: a failed step must fail the test at once, with its message"
)]

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

use portcullis_intercept::{ForgetFilter, InterceptConfig, InterceptError, forget_connections};
use portcullis_lab::{Lab, Ns};
use portcullis_protocol::Protocol;

/// Inserts one entry into `ns`'s conntrack table; `key` is its source port (TCP, UDP) or echo
/// id (ICMP), unique in the test, so that listings can name it.
fn insert(ns: &Ns, proto: &str, src: &str, dst: &str, key: u16, extra: &[&str]) {
    let key = key.to_string();
    let key = key.as_str();
    let mut args = vec!["-I", "-p", proto, "-s", src, "-d", dst, "-t", "600"];
    match proto {
        "tcp" => args.extend(["--sport", key, "--dport", "80", "--state", "ESTABLISHED"]),
        "udp" => args.extend(["--sport", key, "--dport", "53"]),
        "icmp" => args.extend(["--icmp-type", "8", "--icmp-code", "0", "--icmp-id", key]),
        "icmpv6" => args.extend([
            "--icmpv6-type",
            "128",
            "--icmpv6-code",
            "0",
            "--icmpv6-id",
            key,
        ]),
        other => panic!("no such protocol in this test: {other}"),
    }
    args.extend(extra);
    ns.run("conntrack", &args);
}

/// The keys (source port or echo id of the original direction) of every entry in `ns`, both
/// families, every zone.
fn keys(ns: &Ns) -> BTreeSet<u16> {
    let mut all = BTreeSet::new();
    for family in ["ipv4", "ipv6"] {
        let out = ns.output(ns.cmd("conntrack", ["-L", "-f", family]));
        assert!(out.success(), "conntrack -L -f {family}: {out}");
        for line in out.stdout.lines() {
            let key = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("sport=").or_else(|| w.strip_prefix("id=")))
                .and_then(|k| k.parse().ok())
                .unwrap_or_else(|| panic!("no key in {line:?}"));
            all.insert(key);
        }
    }
    all
}

fn set(keys: &[u16]) -> BTreeSet<u16> {
    keys.iter().copied().collect()
}

/// Calls `forget_connections` with the default marks on a thread inside `ns`.
fn forget(ns: &Ns, filter: ForgetFilter) -> Result<usize, InterceptError> {
    ns.in_ns(|| forget_connections(&InterceptConfig::default(), filter))
}

fn flow(protocol: Protocol, src: &str, dst: &str) -> ForgetFilter {
    let src: SocketAddr = src.parse().unwrap_or_else(|e| panic!("{src}: {e}"));
    let dst: SocketAddr = dst.parse().unwrap_or_else(|e| panic!("{dst}: {e}"));
    ForgetFilter::AllowedFlow { protocol, src, dst }
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// Our marks with the default mask 0x9000_0000: allow 0x1000_0000, block 0x8000_0000, drop both.
const ALLOW: &str = "0x10000000";

#[test]
fn each_filter_deletes_exactly_our_allowed_entries() {
    portcullis_lab::require_root!();
    let lab = Lab::new("icpt-ct");
    let c = lab.client();
    let (a4, b4, x4) = ("10.88.0.1", "10.88.0.2", "10.88.0.3");
    let (a6, b6, x6) = ("fd88::1", "fd88::2", "fd88::3");
    // Ours: the allow bit within our mask, whatever the bits outside it.
    insert(c, "tcp", a4, b4, 1001, &["-m", ALLOW]);
    insert(c, "tcp", a4, x4, 1002, &["-m", "0x10004000"]);
    insert(c, "udp", a4, b4, 1003, &["-m", "0x30000000"]);
    insert(c, "tcp", a4, b4, 1008, &["-m", ALLOW, "-w", "7"]);
    insert(c, "icmp", a4, b4, 3001, &["-m", ALLOW]);
    insert(c, "tcp", a6, b6, 2001, &["-m", ALLOW]);
    insert(c, "tcp", a6, x6, 2002, &["-m", ALLOW]);
    insert(c, "udp", a6, b6, 2003, &["-m", "0x1000ca6c"]);
    insert(c, "icmpv6", a6, b6, 3002, &["-m", ALLOW]);
    // Not ours: drop, block, foreign bits only, no mark.
    insert(c, "tcp", a4, b4, 1004, &["-m", "0x90000000"]);
    insert(c, "tcp", a4, b4, 1005, &["-m", "0x80000000"]);
    insert(c, "udp", a4, b4, 1006, &["-m", "0x4000"]);
    insert(c, "tcp", a4, b4, 1007, &[]);
    insert(c, "tcp", a6, b6, 2004, &["-m", "0x90000000"]);
    insert(c, "udp", a6, b6, 2005, &[]);
    let not_ours = [1004, 1005, 1006, 1007, 2004, 2005];
    let mut left = set(&[
        1001, 1002, 1003, 1008, 3001, 2001, 2002, 2003, 3002, 1004, 1005, 1006, 1007, 2004, 2005,
    ]);
    assert_eq!(keys(c), left, "every entry is in place");

    // One flow: only its original direction, its protocol, and only with our mark.
    for (filter, why) in [
        (
            flow(Protocol::Tcp, "10.88.0.2:80", "10.88.0.1:1001"),
            "the reply direction",
        ),
        (
            flow(Protocol::Udp, "10.88.0.1:1001", "10.88.0.2:80"),
            "another protocol",
        ),
        (
            flow(Protocol::Tcp, "10.88.0.1:1004", "10.88.0.2:80"),
            "a dropped flow",
        ),
        (
            flow(Protocol::Tcp, "10.88.0.1:1007", "10.88.0.2:80"),
            "an unmarked flow",
        ),
        (
            flow(Protocol::Tcp, "10.88.0.1:1999", "10.88.0.2:80"),
            "no such flow",
        ),
        (
            flow(Protocol::Tcp, "[fd88::1]:2004", "[fd88::2]:80"),
            "a dropped IPv6 flow",
        ),
        (
            flow(Protocol::Icmp, "10.88.0.1:0", "10.88.0.2:0"),
            "ICMP has no flow ports",
        ),
        // A lookup searches the default zone only; forgetting everything reaches other zones.
        (
            flow(Protocol::Tcp, "10.88.0.1:1008", "10.88.0.2:80"),
            "another zone",
        ),
    ] {
        assert_eq!(
            forget(c, filter).unwrap_or_else(|e| panic!("{why}: {e}")),
            0,
            "{why}"
        );
    }
    assert_eq!(keys(c), left, "nothing went");

    let tcp4 = flow(Protocol::Tcp, "10.88.0.1:1001", "10.88.0.2:80");
    assert_eq!(forget(c, tcp4).unwrap_or_else(|e| panic!("{e}")), 1);
    left.remove(&1001);
    assert_eq!(keys(c), left);
    assert_eq!(
        forget(c, tcp4).unwrap_or_else(|e| panic!("{e}")),
        0,
        "already gone"
    );

    let tcp6 = flow(Protocol::Tcp, "[fd88::1]:2001", "[fd88::2]:80");
    assert_eq!(forget(c, tcp6).unwrap_or_else(|e| panic!("{e}")), 1);
    left.remove(&2001);
    assert_eq!(keys(c), left);

    // One destination, each family.
    let to = |addr| forget(c, ForgetFilter::AllowedTo(ip(addr))).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(to("10.99.0.1"), 0, "nothing there");
    assert_eq!(to(x4), 1);
    left.remove(&1002);
    assert_eq!(keys(c), left);
    // UDP and ICMPv6 to fd88::2; the entry to fd88::3 stays (the kernel's own IPv6
    // destination filter would have picked it instead).
    assert_eq!(to(b6), 2);
    left.remove(&2003);
    left.remove(&3002);
    assert_eq!(keys(c), left);

    // Everything else of ours: UDP, ICMP, another zone, and the IPv6 entry to fd88::3.
    let all = forget(c, ForgetFilter::AllAllowed).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(all, 4);
    assert_eq!(keys(c), set(&not_ours));
    let again = forget(c, ForgetFilter::AllAllowed).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again, 0, "nothing left is not an error");
    assert_eq!(keys(c), set(&not_ours));
}

#[test]
fn only_the_calling_threads_namespace_is_touched() {
    portcullis_lab::require_root!();
    let lab = Lab::new("icpt-ct-ns");
    let (c, s) = (lab.client(), lab.server());
    insert(c, "tcp", "10.88.0.1", "10.88.0.2", 1001, &["-m", ALLOW]);
    insert(s, "udp", "fd88::1", "fd88::2", 2001, &["-m", ALLOW]);
    let forgot = forget(s, ForgetFilter::AllAllowed).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(forgot, 1);
    assert_eq!(keys(s), set(&[]));
    assert_eq!(keys(c), set(&[1001]), "the other namespace keeps its entry");
    let forgot = forget(c, ForgetFilter::AllAllowed).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(forgot, 1);
    assert_eq!(keys(c), set(&[]));
}

#[test]
fn many_entries_span_several_dump_parts() {
    portcullis_lab::require_root!();
    let lab = Lab::new("icpt-ct-many");
    let c = lab.client();
    // Dump parts are at most 32 KiB and an entry takes ~200 bytes: several parts.
    for key in 1000..1300 {
        insert(c, "udp", "10.88.0.1", "10.88.0.2", key, &["-m", ALLOW]);
        insert(c, "udp", "fd88::1", "fd88::2", key + 1000, &["-m", ALLOW]);
    }
    for key in 5000..5020 {
        insert(c, "tcp", "10.88.0.1", "10.88.0.2", key, &["-m", "0x4000"]);
    }
    assert_eq!(keys(c).len(), 620);
    let forgot = forget(c, ForgetFilter::AllAllowed).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(forgot, 600);
    assert_eq!(keys(c), (5000..5020).collect());
}

#[test]
fn without_cap_net_admin_the_error_says_so() {
    portcullis_lab::require_root!();
    let lab = Lab::new("icpt-ct-perm");
    let c = lab.client();
    insert(c, "tcp", "10.88.0.1", "10.88.0.2", 1001, &["-m", ALLOW]);
    let result = c.in_ns(|| {
        // The raw system call changes this thread's credentials only (glibc's wrapper would
        // change every thread's); the thread ends with the closure. A uid other than 0 has no
        // effective capabilities.
        // SAFETY: setresuid(2) with constant arguments; it touches no memory of ours.
        let rc = unsafe { libc::syscall(libc::SYS_setresuid, 65534, 65534, 65534) };
        assert_eq!(rc, 0, "setresuid: {}", std::io::Error::last_os_error());
        forget_connections(&InterceptConfig::default(), ForgetFilter::AllAllowed)
    });
    match result {
        Err(e @ InterceptError::Conntrack { .. }) => {
            let text = e.to_string();
            assert!(text.contains("Operation not permitted"), "{text}");
        }
        other => panic!("expected a permission error, got {other:?}"),
    }
    assert_eq!(keys(c), set(&[1001]));
}

//! Real DNS servers for the lab: a throwaway PKI made with `openssl` ([`TestPki`]), `unbound`
//! serving plain DNS, DNS-over-TLS and DNS-over-HTTPS from a local zone ([`start_unbound`]),
//! and `dnsmasq` as a LAN resolver for a private zone ([`start_dnsmasq`]).
//!
//! Everything runs inside a lab namespace, with files in the lab's directory, and is stopped
//! with the lab. Neither server resolves anything outside its configured zone (unbound refuses
//! other names, dnsmasq has no upstream), and the machine's own DNS configuration is never
//! read or touched. A missing tool is a loud failure naming the package to install (the lab
//! tests run as root in CI, where they must never be skipped silently).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::lab::Ns;
use crate::process::LabProcess;

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A fresh directory under the lab's directory for one server or PKI.
fn work_dir(ns: &Ns, what: &str) -> PathBuf {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let dir = ns.lab_dir().join(format!("dns-{what}-{n}"));
    crate::lab::make_dir(&dir);
    dir
}

/// Finds `tool` on PATH (or in /usr/sbin, where Debian puts unbound and dnsmasq); panics
/// with the package that provides it.
pub fn require_tool(tool: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    dirs.extend(["/usr/sbin", "/sbin", "/usr/bin"].map(PathBuf::from));
    dirs.into_iter()
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{tool}` is not installed: the DNS lab tests need it (apt-get install {package}, \
                 or run scripts/install-deps as root)"
            )
        })
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    if !out.status.success() {
        panic!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A test CA, a server certificate it signed, and two CAs that signed nothing the servers
/// use: one with the real CA's name (trusting it plays a forged chain) and one with another
/// name (an unrelated trust anchor). Files live in the lab's directory.
#[derive(Debug, Clone)]
pub struct TestPki {
    /// The CA that signed the server certificate (PEM).
    pub ca: PathBuf,
    /// A CA with the same name as [`TestPki::ca`] but its own key (PEM).
    pub forged_ca: PathBuf,
    /// A CA with another name (PEM).
    pub other_ca: PathBuf,
    /// The server certificate (PEM), for `name` and the given IPs.
    pub cert: PathBuf,
    /// The server certificate's private key (PEM).
    pub key: PathBuf,
    /// The DNS name in the certificate.
    pub name: String,
}

fn make_ca(openssl: &Path, dir: &Path, stem: &str, cn: &str) -> (PathBuf, PathBuf) {
    let (key, pem) = (
        dir.join(format!("{stem}.key")),
        dir.join(format!("{stem}.pem")),
    );
    run(
        Command::new(openssl)
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&pem)
            .args(["-subj", &format!("/CN={cn}")])
            .args(["-addext", "basicConstraints=critical,CA:TRUE"])
            .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]),
        "openssl req (CA)",
    );
    (key, pem)
}

impl TestPki {
    /// Makes the CAs and a server certificate for `name` and `ips` in a new directory of the
    /// lab `ns` belongs to.
    pub fn new(ns: &Ns, name: &str, ips: &[IpAddr]) -> TestPki {
        let openssl = require_tool("openssl", "openssl");
        let dir = work_dir(ns, "pki");
        let (ca_key, ca) = make_ca(&openssl, &dir, "ca", "Portcullis lab CA");
        let (_, forged_ca) = make_ca(&openssl, &dir, "forged-ca", "Portcullis lab CA");
        let (_, other_ca) = make_ca(&openssl, &dir, "other-ca", "Some other CA");
        let key = dir.join("server.key");
        let csr = dir.join("server.csr");
        let cert = dir.join("server.pem");
        run(
            Command::new(&openssl)
                .args(["req", "-new", "-newkey", "ec", "-pkeyopt"])
                .args(["ec_paramgen_curve:prime256v1", "-nodes"])
                .arg("-keyout")
                .arg(&key)
                .arg("-out")
                .arg(&csr)
                .args(["-subj", &format!("/CN={name}")]),
            "openssl req (server)",
        );
        let mut san = format!("DNS:{name}");
        for ip in ips {
            san.push_str(&format!(",IP:{ip}"));
        }
        let ext = dir.join("server.ext");
        std::fs::write(
            &ext,
            format!(
                "subjectAltName={san}\nbasicConstraints=critical,CA:FALSE\n\
                 keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
            ),
        )
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", ext.display()));
        run(
            Command::new(&openssl)
                .args(["x509", "-req", "-days", "2", "-in"])
                .arg(&csr)
                .arg("-CA")
                .arg(&ca)
                .arg("-CAkey")
                .arg(&ca_key)
                .arg("-CAcreateserial")
                .arg("-out")
                .arg(&cert)
                .arg("-extfile")
                .arg(&ext),
            "openssl x509 (sign server certificate)",
        );
        TestPki {
            ca,
            forged_ca,
            other_ca,
            cert,
            key,
            name: name.to_owned(),
        }
    }
}

/// What an unbound instance serves.
#[derive(Debug, Clone)]
pub struct UnboundConfig {
    /// Addresses to listen on.
    pub addrs: Vec<IpAddr>,
    /// Plain DNS port (UDP and TCP), if any.
    pub plain_port: Option<u16>,
    /// DNS-over-TLS port, if any.
    pub tls_port: Option<u16>,
    /// DNS-over-HTTPS port (path `/dns-query`), if any.
    pub https_port: Option<u16>,
    /// The zone it is authoritative-like for (`local-zone: ZONE static`), e.g. `test.`.
    pub zone: String,
    /// Records of the zone, in zone-file syntax (`www.test. 300 IN A 192.0.2.10`). A SOA with
    /// a 60 s negative TTL is added.
    pub records: Vec<String>,
    /// Log every query (tests read the log); benchmarks turn it off, as it costs throughput.
    pub log_queries: bool,
}

/// Starts `unbound` in `ns` with `config`, certificates from `pki`, and waits until every
/// configured port listens. Names outside the zone are REFUSED (nothing is recursed). Every
/// query is logged to its stderr (see [`LabProcess::stderr`]).
pub fn start_unbound(ns: &Ns, pki: &TestPki, config: &UnboundConfig) -> LabProcess {
    let unbound = require_tool("unbound", "unbound");
    let dir = work_dir(ns, "unbound");
    let mut conf = String::from("server:\n");
    let mut line = |s: String| {
        conf.push_str("  ");
        conf.push_str(&s);
        conf.push('\n');
    };
    let ports: Vec<u16> = [config.plain_port, config.tls_port, config.https_port]
        .into_iter()
        .flatten()
        .collect();
    for addr in &config.addrs {
        for port in &ports {
            line(format!("interface: {addr}@{port}"));
        }
    }
    if let Some(p) = config.tls_port {
        line(format!("tls-port: {p}"));
    }
    if let Some(p) = config.https_port {
        line(format!("https-port: {p}"));
        line("http-endpoint: \"/dns-query\"".to_owned());
        line("http-notls-downstream: no".to_owned());
    }
    for s in [
        format!("tls-service-key: \"{}\"", pki.key.display()),
        format!("tls-service-pem: \"{}\"", pki.cert.display()),
        format!("directory: \"{}\"", dir.display()),
        "chroot: \"\"".to_owned(),
        "username: \"\"".to_owned(),
        "pidfile: \"\"".to_owned(),
        "do-daemonize: no".to_owned(),
        "use-syslog: no".to_owned(),
        "logfile: \"\"".to_owned(),
        format!(
            "log-queries: {}",
            if config.log_queries { "yes" } else { "no" }
        ),
        "verbosity: 1".to_owned(),
        "num-threads: 1".to_owned(),
        "so-reuseport: no".to_owned(),
        "do-ip6: yes".to_owned(),
        "module-config: \"iterator\"".to_owned(),
        "access-control: 0.0.0.0/0 allow".to_owned(),
        "access-control: ::/0 allow".to_owned(),
        "local-zone: \".\" refuse".to_owned(),
        format!("local-zone: \"{}\" static", config.zone),
        format!(
            "local-data: \"{} 3600 IN SOA ns.{} admin.{} 1 3600 600 86400 60\"",
            config.zone, config.zone, config.zone
        ),
    ] {
        line(s);
    }
    for r in &config.records {
        // Single quotes keep a TXT record's own double quotes.
        line(format!("local-data: '{r}'"));
    }
    line("remote-control:".to_owned());
    conf.push_str("  control-enable: no\n");
    let conf_path = dir.join("unbound.conf");
    std::fs::write(&conf_path, &conf)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", conf_path.display()));
    let mut check = Command::new(require_tool("unbound-checkconf", "unbound"));
    check.arg(&conf_path);
    run(
        &mut check,
        &format!("unbound-checkconf {}\n{conf}", conf_path.display()),
    );

    let mut cmd = Command::new(unbound);
    cmd.arg("-d").arg("-c").arg(&conf_path);
    let process = ns.spawn(cmd);
    for port in ports {
        wait_listening(ns, &process, port);
    }
    process
}

/// Polls (up to 5 s) until `process` listens on TCP `port` in `ns`; panics with its logs if
/// it exits first or never does.
fn wait_listening(ns: &Ns, process: &LabProcess, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if ns.in_ns(|| tcp_listening(port)) {
            return;
        }
        if let Some(status) = process.try_status() {
            panic!(
                "{} exited ({status}) before listening on TCP {port}\n{}",
                process.label(),
                process.logs()
            );
        }
        if Instant::now() >= deadline {
            panic!(
                "{} does not listen on TCP {port} after 5 s\n{}",
                process.label(),
                process.logs()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether the calling thread's namespace has a TCP socket listening on `port`.
fn tcp_listening(port: u16) -> bool {
    let port_hex = format!(":{port:04X}");
    ["tcp", "tcp6"].iter().any(|f| {
        let text =
            std::fs::read_to_string(format!("/proc/thread-self/net/{f}")).unwrap_or_default();
        text.lines().skip(1).any(|line| {
            let mut cols = line.split_whitespace();
            let local = cols.nth(1).unwrap_or_default();
            let state = cols.nth(1).unwrap_or_default();
            local.ends_with(&port_hex) && state == "0A"
        })
    })
}

/// Starts `dnsmasq` in `ns` as the LAN resolver: it listens on `addr:port` (UDP and TCP),
/// answers `hosts` (`name,address` host records) and `txts` (`name,text[,text…]` TXT
/// records), NXDOMAIN for other names under `zone`, logs every query to stderr, and has no
/// upstream.
pub fn start_dnsmasq(
    ns: &Ns,
    addr: IpAddr,
    port: u16,
    zone: &str,
    hosts: &[&str],
    txts: &[String],
) -> LabProcess {
    start_dnsmasq_logging(ns, addr, port, zone, hosts, txts, true)
}

/// [`start_dnsmasq`], logging every query or not (benchmarks: not, it costs throughput).
pub fn start_dnsmasq_logging(
    ns: &Ns,
    addr: IpAddr,
    port: u16,
    zone: &str,
    hosts: &[&str],
    txts: &[String],
    log_queries: bool,
) -> LabProcess {
    let dnsmasq = require_tool("dnsmasq", "dnsmasq-base");
    let dir = work_dir(ns, "dnsmasq");
    let mut cmd = Command::new(dnsmasq);
    cmd.current_dir(&dir)
        .args([
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
        ])
        .args([
            "--bind-interfaces",
            "--user=root",
            "--pid-file",
            "--log-facility=-",
        ])
        .args(log_queries.then_some("--log-queries"))
        .arg(format!("--listen-address={addr}"))
        .arg(format!("--port={port}"))
        .arg(format!("--local=/{}/", zone.trim_end_matches('.')));
    for r in hosts {
        cmd.arg(format!("--host-record={r}"));
    }
    for r in txts {
        cmd.arg(format!("--txt-record={r}"));
    }
    let process = ns.spawn(cmd);
    wait_listening(ns, &process, port);
    process
}

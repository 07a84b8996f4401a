//! No DNS leaks, by capture: the real `portcullisd` with a DNS-over-TLS upstream (a real
//! unbound with a test CA), apps asking every way a program asks (the configured resolver,
//! another resolver directly, over UDP and TCP), and tcpdump on the client's link: the only
//! DNS that leaves is TLS to the upstream's port 853, never plain port 53.

use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use portcullis_lab::app_codes::OK;
use portcullis_lab::dns::{TestPki, UnboundConfig, start_unbound};
use portcullis_lab::{HelperOpts, Lab, require_root};

const RESOLVER: &str = "127.0.0.153";
const TLS_NAME: &str = "dns.test";

#[test]
fn dns_leaves_the_machine_only_encrypted() {
    require_root!();
    let tcpdump = portcullis_lab::dns::require_tool("tcpdump", "tcpdump");
    let lab = Lab::new("dns-leaks");
    let server = lab.server();
    let ips = [IpAddr::V4(server.ipv4())];
    let pki = TestPki::new(server, TLS_NAME, &ips);
    let _unbound = start_unbound(
        server,
        &pki,
        &UnboundConfig {
            addrs: ips.to_vec(),
            plain_port: Some(53),
            tls_port: Some(853),
            https_port: None,
            zone: "test.".into(),
            records: vec!["shop.test. 60 IN A 198.51.100.7".into()],
            log_queries: true,
        },
    );
    let config = format!(
        "[dns]\nenabled = true\n[dns.resolver]\nlisten = [\"{RESOLVER}:53\"]\n\
         upstreams = [\"tls://{TLS_NAME}#{ip}\"]\ntrust = {{ ca_file = \"{ca}\" }}\n\
         [dns.links]\nenabled = false\n",
        ip = server.ipv4(),
        ca = pki.ca.display()
    );
    let helper = lab.client().start_helper(HelperOpts {
        config_toml: Some(config),
        ..HelperOpts::default()
    });

    // Capture everything on the client's link while apps ask.
    let pcap = tempfile::NamedTempFile::new().unwrap();
    let mut capture = lab.client().cmd(
        &tcpdump,
        [
            "-i",
            lab.client().iface(),
            "-n",
            "-U",
            "-w",
            pcap.path().to_str().unwrap(),
        ],
    );
    capture.stdout(Stdio::null()).stderr(Stdio::piped());
    let mut capture = capture.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(800));

    let app = lab.app("browser");
    let upstream = server.ipv4().to_string();
    let asks: Vec<Vec<&str>> = vec![
        vec!["query", RESOLVER, "shop.test"],
        // Straight to another resolver, as programs with their own DNS settings do.
        vec!["query", &upstream, "shop.test"],
        vec!["query", &upstream, "shop.test", "--tcp"],
    ];
    for args in &asks {
        let out = lab.client().run_app(&app, args);
        assert_eq!(out.code(), Some(OK), "{args:?}: {out}");
        assert!(out.stdout.contains("198.51.100.7"), "{args:?}: {out}");
    }
    std::thread::sleep(Duration::from_millis(500));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(capture.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let _ = capture.wait();

    let read = Command::new(&tcpdump)
        .args(["-r", pcap.path().to_str().unwrap(), "-n", "-q"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&read.stdout);
    let lines: Vec<&str> = text.lines().collect();
    let plain: Vec<&&str> = lines
        .iter()
        .filter(|l| l.contains(".53:") || l.contains(".53 >"))
        .collect();
    let tls: Vec<&&str> = lines.iter().filter(|l| l.contains(".853")).collect();
    assert!(
        plain.is_empty(),
        "plain DNS left the client:\n{}",
        plain.iter().map(|l| **l).collect::<Vec<_>>().join("\n")
    );
    assert!(
        !tls.is_empty(),
        "no DNS-over-TLS seen either (the capture saw nothing?):\n{text}"
    );
    // The upstream was reached over one connection (at most one TLS handshake).
    let status = helper.ctl_json(["dns", "status"]);
    let up = &status["upstreams"][0];
    assert!(up["answered"].as_u64().unwrap() >= 1, "{status}");
    assert_eq!(up["connections"], 1, "{status}");
}

//! The rule sets as iptables shows them inside a lab namespace, and their undo.

use std::io::Write as _;
use std::time::Duration;

use portcullis_intercept::{
    Backend, InstalledRules, InterceptConfig, InterceptError, Queue, RemovedKind, recover,
};
use portcullis_lab::Lab;

use crate::common::{config, ipt, normalize, root_snapshot, save, snapshot, wait_until};

/// Set in the environment of the re-executed test binary that plays a crashed helper.
const CHILD_ENV: &str = "PCL_INTERCEPT_CHILD";

/// What `iptables-save` shows after install in a fresh namespace (IPv4, defaults).
const INSTALLED_V4: &str = "\
*filter
:INPUT ACCEPT
:FORWARD ACCEPT
:OUTPUT ACCEPT
:PORTCULLIS-IN -
:PORTCULLIS-OUT -
-A INPUT -j PORTCULLIS-IN
-A OUTPUT -j PORTCULLIS-OUT
-A PORTCULLIS-IN -i lo -j RETURN
-A PORTCULLIS-IN -m mark --mark 0x10000000/0x90000000 -j CONNMARK --save-mark --nfmask 0x90000000 --ctmask 0x90000000
-A PORTCULLIS-IN -m mark --mark 0x10000000/0x90000000 -j ACCEPT
-A PORTCULLIS-IN -m mark --mark 0x90000000/0x90000000 -j DROP
-A PORTCULLIS-IN -p tcp -m mark --mark 0x80000000/0x90000000 -j REJECT --reject-with tcp-reset
-A PORTCULLIS-IN -m mark --mark 0x80000000/0x90000000 -j REJECT --reject-with icmp-port-unreachable
-A PORTCULLIS-IN -m conntrack --ctstate NEW -j NFQUEUE --queue-num 4200 --queue-bypass
-A PORTCULLIS-OUT -m mark --mark 0x10000000/0x90000000 -j CONNMARK --save-mark --nfmask 0x90000000 --ctmask 0x90000000
-A PORTCULLIS-OUT -m mark --mark 0x10000000/0x90000000 -j ACCEPT
-A PORTCULLIS-OUT -m mark --mark 0x90000000/0x90000000 -j DROP
-A PORTCULLIS-OUT -p tcp -m mark --mark 0x80000000/0x90000000 -j REJECT --reject-with tcp-reset
-A PORTCULLIS-OUT -m mark --mark 0x80000000/0x90000000 -j REJECT --reject-with icmp-port-unreachable
-A PORTCULLIS-OUT -m conntrack --ctstate NEW -j NFQUEUE --queue-num 4200 --queue-bypass
COMMIT
";

/// An empty filter table: what iptables leaves once it has been used (it cannot delete tables).
const EMPTY_FILTER: &str = "*filter\n:INPUT ACCEPT\n:FORWARD ACCEPT\n:OUTPUT ACCEPT\nCOMMIT\n";

/// Foreign rules other software might have: a wg-quick-like fwmark accept in filter and a
/// kube-proxy-like mark in mangle, plus a connmark.
fn add_foreign_rules(lab: &Lab, tool: &str) {
    let c = lab.client();
    ipt(c, tool, "-A OUTPUT -m mark --mark 0xca6c -j ACCEPT");
    ipt(
        c,
        tool,
        "-t mangle -A OUTPUT -j MARK --set-xmark 0x4000/0x4000",
    );
    ipt(
        c,
        tool,
        "-t mangle -A OUTPUT -j CONNMARK --set-xmark 0x100/0x100",
    );
}

#[test]
fn install_shows_exactly_our_chains_and_remove_takes_them_out() {
    portcullis_lab::require_root!();
    let lab = Lab::new("icpt-install");
    let c = lab.client();
    let before = snapshot(c);
    assert!(
        !before.contains("*filter"),
        "a fresh namespace has no tables:\n{before}"
    );

    let mut rules = c.in_ns(|| InstalledRules::install(&config(true))).unwrap();
    assert_eq!(rules.backend(), Backend::Nft);
    assert_eq!(save(c, "iptables-save"), INSTALLED_V4);
    let v6 = INSTALLED_V4.replace("icmp-port-unreachable", "icmp6-port-unreachable");
    assert_eq!(save(c, "ip6tables-save"), v6);

    let removed = rules.remove().unwrap();
    // Two jumps and two chains per family.
    assert_eq!(removed.items.len(), 8, "{removed}");
    assert!(removed.items.iter().any(|i| matches!(
        &i.kind,
        RemovedKind::Chain { name, rules: 6 } if name == "PORTCULLIS-OUT"
    )));
    assert!(removed.items.iter().any(|i| matches!(
        &i.kind,
        RemovedKind::Chain { name, rules: 7 } if name == "PORTCULLIS-IN"
    )));
    // iptables cannot delete the table it created: it stays, empty, with ACCEPT policies.
    assert_eq!(save(c, "iptables-save"), EMPTY_FILTER);
    assert_eq!(save(c, "ip6tables-save"), EMPTY_FILTER);
    // Removing again finds nothing.
    assert!(rules.remove().unwrap().is_empty());
    drop(rules);
    assert_eq!(save(c, "iptables-save"), EMPTY_FILTER);
}

#[test]
fn fail_closed_and_excluded_cgroup_render_as_configured() {
    portcullis_lab::require_root!();
    let lab = Lab::new("icpt-closed");
    let c = lab.client();
    let cfg = InterceptConfig {
        queue_num: 77,
        fail_open: false,
        // The root cgroup always exists; its traffic is everything, which is fine here.
        exclude_cgroup: Some("/".to_owned()),
        ..InterceptConfig::default()
    };
    let _rules = c.in_ns(|| InstalledRules::install(&cfg)).unwrap();
    let v4 = save(c, "iptables-save");
    assert!(
        v4.contains("-A PORTCULLIS-OUT -m conntrack --ctstate NEW -j NFQUEUE --queue-num 77\n")
    );
    assert!(!v4.contains("--queue-bypass"));
    assert!(
        v4.contains("-A PORTCULLIS-OUT -m cgroup --path \"/\" -j RETURN\n"),
        "{v4}"
    );
    assert!(v4.contains("-A PORTCULLIS-IN -m cgroup --path \"/\" -j RETURN\n"));

    let missing = InterceptConfig {
        exclude_cgroup: Some("/pcl-no-such-cgroup".to_owned()),
        ..InterceptConfig::default()
    };
    let err = c.in_ns(|| InstalledRules::install(&missing)).unwrap_err();
    assert!(matches!(err, InterceptError::CgroupMissing { .. }), "{err}");
    // The failed install changed nothing.
    assert_eq!(save(c, "iptables-save"), v4);
}

#[test]
fn install_twice_leaves_one_copy_and_foreign_rules_survive_byte_for_byte() {
    portcullis_lab::require_root!();
    let lab = Lab::new("icpt-twice");
    let c = lab.client();
    add_foreign_rules(&lab, "iptables");
    add_foreign_rules(&lab, "ip6tables");
    let before = snapshot(c);

    let first = c.in_ns(|| InstalledRules::install(&config(true))).unwrap();
    let mut second = c.in_ns(|| InstalledRules::install(&config(true))).unwrap();
    let v4 = save(c, "iptables-save");
    assert_eq!(v4.matches("-j PORTCULLIS-OUT").count(), 1, "{v4}");
    assert_eq!(v4.matches("-j PORTCULLIS-IN").count(), 1);
    assert_eq!(v4.matches(":PORTCULLIS-OUT").count(), 1);
    assert_eq!(v4.matches("--queue-num 4200").count(), 2);
    // Ours comes first in OUTPUT; the foreign rules are all still there, unchanged.
    let filter = v4.split("*filter\n").nth(1).expect("filter table");
    let output: Vec<&str> = filter
        .lines()
        .filter(|l| l.starts_with("-A OUTPUT "))
        .collect();
    assert_eq!(
        output,
        [
            "-A OUTPUT -j PORTCULLIS-OUT",
            "-A OUTPUT -m mark --mark 0xca6c -j ACCEPT"
        ]
    );
    assert!(v4.contains("-A OUTPUT -j MARK --set-xmark 0x4000/0x4000\n"));
    assert!(v4.contains("-A OUTPUT -j CONNMARK --set-xmark 0x100/0x100\n"));

    assert!(!second.remove().unwrap().is_empty());
    assert_eq!(snapshot(c), before);
    // The first handle finds nothing left to remove.
    drop(first);
    assert_eq!(snapshot(c), before);
}

#[test]
fn recover_removes_every_copy_and_is_idempotent() {
    portcullis_lab::require_root!();
    let lab = Lab::new("icpt-recover");
    let c = lab.client();
    add_foreign_rules(&lab, "iptables");
    add_foreign_rules(&lab, "ip6tables");
    let before = snapshot(c);
    assert!(
        c.in_ns(recover).unwrap().is_empty(),
        "nothing to recover yet"
    );

    let rules = c.in_ns(|| InstalledRules::install(&config(true))).unwrap();
    // Extra copies of the jumps, as repeated crashes of an older version might leave.
    ipt(c, "iptables", "-A OUTPUT -j PORTCULLIS-OUT");
    ipt(c, "iptables", "-I INPUT 2 -j PORTCULLIS-IN");
    ipt(c, "ip6tables", "-A OUTPUT -j PORTCULLIS-OUT");
    let removed = c.in_ns(recover).unwrap();
    let jumps = removed
        .items
        .iter()
        .filter(|i| matches!(i.kind, RemovedKind::Jump { .. }))
        .count();
    assert_eq!(jumps, 7, "{removed}");
    assert_eq!(snapshot(c), before);
    assert!(c.in_ns(recover).unwrap().is_empty());
    assert!(c.in_ns(recover).unwrap().is_empty());
    drop(rules);
    assert_eq!(snapshot(c), before);
}

/// Plays a helper that crashes: installs the rules and binds the queue, says so, and waits to
/// be killed. Runs only in the child process that `recover_after_sigkill_…` starts.
#[test]
fn child_installs_then_waits() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let rules = InstalledRules::install(&config(true)).expect("install");
    let queue = Queue::open(&config(true)).expect("open the queue");
    println!("installed");
    let _ = std::io::stdout().flush();
    std::thread::sleep(Duration::from_secs(60));
    drop((rules, queue));
}

#[test]
fn recover_after_sigkill_restores_byte_for_byte() {
    portcullis_lab::require_root!();
    let lab = Lab::new("icpt-sigkill");
    let c = lab.client();
    add_foreign_rules(&lab, "iptables");
    add_foreign_rules(&lab, "ip6tables");
    let before = snapshot(c);

    let exe = std::env::current_exe().unwrap();
    let mut cmd = c.cmd(
        exe,
        [
            "--exact",
            "rules::child_installs_then_waits",
            "--nocapture",
            "--test-threads=1",
        ],
    );
    cmd.env(CHILD_ENV, "1");
    let child = c.spawn(cmd);
    assert!(
        wait_until(Duration::from_secs(10), || child
            .stdout()
            .contains("installed")),
        "the child did not install\n{}",
        child.logs()
    );
    child.kill();
    let left = save(c, "iptables-save");
    assert!(
        left.contains(":PORTCULLIS-OUT"),
        "SIGKILL leaves the rules: {left}"
    );

    let removed = c.in_ns(recover).unwrap();
    assert_eq!(removed.items.len(), 8, "{removed}");
    assert_eq!(snapshot(c), before);
    assert!(c.in_ns(recover).unwrap().is_empty());
    assert_eq!(snapshot(c), before);
}

#[test]
fn legacy_host_gets_legacy_rules_only() {
    portcullis_lab::require_root!();
    let lab = Lab::new("icpt-legacy");
    let c = lab.client();
    ipt(
        c,
        "iptables-legacy",
        "-A OUTPUT -m mark --mark 0xca6c -j ACCEPT",
    );
    let before = snapshot(c);

    let mut rules = c.in_ns(|| InstalledRules::install(&config(true))).unwrap();
    assert_eq!(rules.backend(), Backend::Legacy);
    let legacy = save(c, "iptables-legacy-save");
    assert!(legacy.contains("-A OUTPUT -j PORTCULLIS-OUT\n"), "{legacy}");
    assert!(save(c, "ip6tables-legacy-save").contains(":PORTCULLIS-IN"));
    for nft in ["iptables-nft-save", "ip6tables-nft-save"] {
        let text = save(c, nft);
        assert!(
            !text.contains("PORTCULLIS"),
            "{nft} must hold nothing of ours:\n{text}"
        );
    }
    rules.remove().unwrap();
    let after = snapshot(c);
    // The IPv6 legacy table was created by our install (iptables cannot delete it).
    assert_eq!(
        after.replace(
            "=== ip6tables-legacy-save\n*filter\n:INPUT ACCEPT\n:FORWARD ACCEPT\n:OUTPUT ACCEPT\nCOMMIT\n",
            "=== ip6tables-legacy-save\n"
        ),
        before
    );
}

#[test]
fn normalize_strips_comments_and_counters() {
    let saved = "# Generated by iptables-save v1.8.9\n*filter\n:INPUT ACCEPT [12:345]\n\
                 :X - [0:0]\n-A INPUT -m comment --comment \"[1:2]\" -j X\nCOMMIT\n# Completed\n";
    assert_eq!(
        normalize(saved),
        "*filter\n:INPUT ACCEPT\n:X -\n-A INPUT -m comment --comment \"[1:2]\" -j X\nCOMMIT\n"
    );
}

#[test]
fn root_namespace_is_untouched() {
    portcullis_lab::require_root!();
    let root_before = root_snapshot();
    {
        let lab = Lab::new("icpt-root");
        let c = lab.client();
        let rules = c.in_ns(|| InstalledRules::install(&config(false))).unwrap();
        let queue = c.in_ns(|| Queue::open(&config(false))).unwrap();
        assert_eq!(
            root_snapshot(),
            root_before,
            "install must not touch the root namespace"
        );
        assert!(
            portcullis_intercept::queue_stats(4200).is_none(),
            "the queue must not be bound in the root namespace"
        );
        drop((queue, rules));
        // recover() from the test thread acts on the root namespace: it must find nothing.
        assert!(recover().unwrap().is_empty());
    }
    assert_eq!(root_snapshot(), root_before);
}

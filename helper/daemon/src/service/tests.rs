use portcullis_protocol::{SettingKey, SettingSource, SettingValue};

use super::*;

fn service() -> (tempfile::TempDir, Service, broadcast::Receiver<Event>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("settings.db")).unwrap();
    let (tx, rx) = broadcast::channel(64);
    let svc = Service::start(
        store,
        tx,
        EnforcementState::Off {
            reason: "test".into(),
        },
        1_000,
    )
    .unwrap();
    (dir, svc, rx)
}

fn add(svc: &mut Service, owner: RuleOwner, text: &str) -> Result<Response, ErrorFrame> {
    svc.handle(
        Request::AddRule {
            owner,
            text: text.into(),
            position: None,
            lifetime: RuleLifetime::Forever,
        },
        2_000,
        1,
    )
}

const CURL: &str = "/usr/bin/curl";

#[test]
fn an_invalid_rule_is_refused_with_its_token_and_nothing_is_stored() {
    let (_d, mut svc, mut rx) = service();
    let err = add(&mut svc, RuleOwner::App(CURL.into()), "- 10.0.0.0/33").unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidInput);
    assert!(err.message.contains("10.0.0.0/33"), "{}", err.message);
    // Not even the app's profile was made, and nobody was told of a change.
    assert!(svc.app_info(CURL).is_none());
    assert!(rx.try_recv().is_err());
    assert_eq!(svc.store.load().unwrap(), *svc.snapshot());
}

#[test]
fn a_rule_for_a_new_app_makes_its_profile_and_tells_subscribers() {
    let (_d, mut svc, mut rx) = service();
    let Response::Rule(r) = add(
        &mut svc,
        RuleOwner::App(CURL.into()),
        "-   *.Example.COM.  tcp/443",
    )
    .unwrap() else {
        panic!("expected a rule")
    };
    assert_eq!(r.text, "- *.example.com tcp/443");
    assert_eq!(r.position, 1);
    assert_eq!(svc.app_info(CURL).unwrap().name, "curl");
    assert!(matches!(rx.try_recv().unwrap(), Event::AppAdded { .. }));
    assert!(matches!(
        rx.try_recv().unwrap(),
        Event::RulesChanged {
            owner: RuleOwner::App(_)
        }
    ));
    assert_eq!(
        svc.store.load().unwrap(),
        *svc.snapshot(),
        "memory mirrors the database"
    );
}

#[test]
fn settings_resolve_app_then_global_then_default() {
    let (_d, mut svc, _rx) = service();
    let set = |svc: &mut Service, app: Option<&str>, key: SettingKey, text: Option<&str>| {
        svc.handle(
            Request::SetSetting {
                app: app.map(str::to_string),
                key,
                value: text.map(|t| SettingValue::parse(key, t).unwrap()),
            },
            2_000,
            1,
        )
    };
    set(&mut svc, None, SettingKey::DefaultAction, Some("block")).unwrap();
    let Response::Settings(view) = set(
        &mut svc,
        Some(CURL),
        SettingKey::BlockScopes,
        Some("Internet"),
    )
    .unwrap() else {
        panic!()
    };
    let source =
        |view: &SettingsView, key| view.entries.iter().find(|e| e.key == key).unwrap().source;
    assert_eq!(source(&view, SettingKey::BlockScopes), SettingSource::App);
    assert_eq!(
        source(&view, SettingKey::DefaultAction),
        SettingSource::Global
    );
    assert_eq!(
        source(&view, SettingKey::PromptTimeoutSecs),
        SettingSource::Default
    );
    let Response::Settings(view) =
        set(&mut svc, Some(CURL), SettingKey::BlockScopes, None).unwrap()
    else {
        panic!()
    };
    assert_eq!(
        source(&view, SettingKey::BlockScopes),
        SettingSource::Default
    );
}

#[test]
fn a_global_only_setting_cannot_be_set_per_app() {
    let (_d, mut svc, _rx) = service();
    let err = svc
        .handle(
            Request::SetSetting {
                app: Some(CURL.into()),
                key: SettingKey::FailOpen,
                value: Some(SettingValue::Bool(false)),
            },
            2_000,
            1,
        )
        .unwrap_err();
    assert!(err.message.contains("fail_open"), "{}", err.message);
    assert!(svc.app_info(CURL).is_none());
}

#[test]
fn a_value_of_the_wrong_type_is_refused() {
    let (_d, mut svc, _rx) = service();
    let err = svc
        .handle(
            Request::SetSetting {
                app: None,
                key: SettingKey::DefaultAction,
                value: Some(SettingValue::Seconds(3)),
            },
            2_000,
            1,
        )
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidInput);
}

#[test]
fn relative_or_empty_app_paths_are_refused() {
    let (_d, mut svc, _rx) = service();
    for app in [
        "curl",
        "",
        "./curl",
        "/usr/bin/\0x",
        "/usr//bin/curl",
        "/usr/bin/./curl",
        "/usr/lib/../bin/curl",
        "/usr/bin/curl/",
        "/usr/bin/\u{1b}[31mcurl",
    ] {
        let err = add(&mut svc, RuleOwner::App(app.into()), "- *").unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidInput, "{app:?}");
    }
}

#[test]
fn unknown_apps_and_rules_are_not_found() {
    let (_d, mut svc, _rx) = service();
    let err = svc
        .handle(Request::ShowApp { app: CURL.into() }, 2_000, 1)
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);
    let err = svc
        .handle(Request::RemoveRule { id: 42 }, 2_000, 1)
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);
    let err = svc
        .handle(
            Request::MoveRule {
                id: 42,
                position: 1,
            },
            2_000,
            1,
        )
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);
}

#[test]
fn temporary_rules_end_on_time_and_at_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("settings.db");
    let (tx, mut rx) = broadcast::channel(64);
    let off = || EnforcementState::Off {
        reason: "test".into(),
    };
    let mut svc = Service::start(Store::open(&path).unwrap(), tx.clone(), off(), 1_000).unwrap();
    for (text, lifetime) in [
        ("- a.example.com", RuleLifetime::Until { unix_ms: 5_000 }),
        ("- b.example.com", RuleLifetime::UntilRestart),
        ("- c.example.com", RuleLifetime::Forever),
    ] {
        svc.handle(
            Request::AddRule {
                owner: RuleOwner::Global,
                text: text.into(),
                position: None,
                lifetime,
            },
            2_000,
            1,
        )
        .unwrap();
    }
    assert_eq!(svc.next_expiry(), Some(5_000));
    while rx.try_recv().is_ok() {}
    svc.expire(4_999).unwrap();
    assert!(rx.try_recv().is_err());
    svc.expire(5_000).unwrap();
    assert!(matches!(
        rx.try_recv().unwrap(),
        Event::RulesChanged {
            owner: RuleOwner::Global
        }
    ));
    assert_eq!(svc.snapshot().global.rules.len(), 2);
    drop(svc);
    let svc = Service::start(Store::open(&path).unwrap(), tx, off(), 6_000).unwrap();
    let texts: Vec<&str> = svc
        .snapshot()
        .global
        .rules
        .iter()
        .map(|r| r.text.as_str())
        .collect();
    assert_eq!(texts, ["- c.example.com"]);
}

#[test]
fn an_end_time_in_the_past_is_refused() {
    let (_d, mut svc, _rx) = service();
    let err = svc
        .handle(
            Request::AddRule {
                owner: RuleOwner::Global,
                text: "- *".into(),
                position: None,
                lifetime: RuleLifetime::Until { unix_ms: 1_999 },
            },
            2_000,
            1,
        )
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidInput);
}

#[test]
fn status_counts_apps_rules_and_clients() {
    let (_d, mut svc, _rx) = service();
    add(&mut svc, RuleOwner::Global, "- *").unwrap();
    add(&mut svc, RuleOwner::App(CURL.into()), "+ LAN").unwrap();
    let Response::Status(s) = svc.handle(Request::Status, 2_000, 3).unwrap() else {
        panic!()
    };
    assert_eq!((s.apps, s.rules, s.clients), (3, 2, 3));
    assert_eq!(s.protocol_version, portcullis_protocol::PROTOCOL_VERSION);
}

fn explain(svc: &mut Service, app: Option<&str>, query: ConnectionQuery) -> Explanation {
    let Response::Explanation(e) = svc
        .handle(
            Request::Explain {
                app: app.map(str::to_string),
                connection: query,
            },
            2_000,
            1,
        )
        .unwrap()
    else {
        panic!("expected an explanation")
    };
    e
}

fn tcp_to(ip: &str, port: u16) -> ConnectionQuery {
    ConnectionQuery {
        direction: portcullis_protocol::Direction::Outbound,
        protocol: portcullis_protocol::Protocol::Tcp,
        remote: ip.parse().unwrap(),
        remote_port: Some(port),
        local_port: None,
        domain: None,
    }
}

#[test]
fn explain_decides_with_the_rules_in_force_and_changes_nothing() {
    use portcullis_protocol::{DecidedBy, Verdict};
    let (_d, mut svc, _rx) = service();
    add(&mut svc, RuleOwner::App(CURL.into()), "- 10.0.0.0/8").unwrap();
    add(&mut svc, RuleOwner::Global, "- tcp/25").unwrap();
    let before = svc.store.load().unwrap();

    let e = explain(&mut svc, Some(CURL), tcp_to("10.1.2.3", 443));
    assert_eq!(e.verdict, Verdict::Block);
    assert!(
        matches!(&e.decided_by, DecidedBy::Rule { profile: ProfileLabel::App(a), text, .. }
        if a == CURL && text == "- 10.0.0.0/8"),
        "{e:?}"
    );
    assert!(e.summary.contains("- 10.0.0.0/8"), "{}", e.summary);

    // Another app (no profile at all) only meets the global rules and defaults.
    let e = explain(&mut svc, Some("/usr/bin/wget"), tcp_to("10.1.2.3", 443));
    assert_eq!(e.verdict, Verdict::Allow);
    let e = explain(&mut svc, Some("/usr/bin/wget"), tcp_to("192.0.2.1", 25));
    assert!(
        matches!(
            &e.decided_by,
            DecidedBy::Rule {
                profile: ProfileLabel::Global,
                ..
            }
        ),
        "{e:?}"
    );

    // Inbound connections are refused by the built-in default.
    let mut inbound = tcp_to("192.0.2.1", 40000);
    inbound.direction = portcullis_protocol::Direction::Inbound;
    inbound.local_port = Some(22);
    let e = explain(&mut svc, Some(CURL), inbound);
    assert_eq!(e.verdict, Verdict::Block);
    assert!(matches!(
        e.decided_by,
        DecidedBy::Setting {
            key: SettingKey::BlockInbound,
            source: SettingSource::Default,
            ..
        }
    ));

    assert_eq!(
        svc.store.load().unwrap(),
        before,
        "explain changed the database"
    );
    assert!(
        svc.app_info("/usr/bin/wget").is_none(),
        "explain made a profile"
    );
}

#[test]
fn clearing_a_setting_of_an_unknown_app_is_not_found_and_makes_no_profile() {
    let (_d, mut svc, _rx) = service();
    let err = svc
        .handle(
            Request::SetSetting {
                app: Some(CURL.into()),
                key: SettingKey::BlockScopes,
                value: None,
            },
            2_000,
            1,
        )
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);
    assert!(svc.app_info(CURL).is_none());
}

fn open_prompt(direction: Direction, domain: Option<&str>) -> OpenPrompt {
    OpenPrompt {
        info: portcullis_protocol::PromptInfo {
            id: 1,
            app: CURL.into(),
            app_name: "curl".into(),
            pid: Some(99),
            direction,
            protocol: Protocol::Tcp,
            remote: "192.0.2.7".parse().unwrap(),
            remote_port: Some(443),
            local_port: Some(22),
            domain: domain.map(str::to_string),
            scope: portcullis_protocol::Scope::Internet,
            created_unix_ms: 1,
            expires_unix_ms: 2,
            fallback: portcullis_protocol::Verdict::Block,
            waiting: 1,
        },
        start_time: Some(5),
    }
}

#[test]
fn prompt_answers_become_the_rules_they_name() {
    let out = open_prompt(Direction::Outbound, Some("example.com"));
    let ans = |allow, target, duration| PromptAnswer {
        allow,
        target,
        duration,
    };
    let rule = |p: &OpenPrompt, a| prompt_rule(p, &a, 1_000).unwrap().unwrap();
    assert_eq!(
        rule(&out, ans(true, PromptTarget::Ip, PromptDuration::Always)).0,
        "+ 192.0.2.7"
    );
    assert_eq!(
        rule(
            &out,
            ans(false, PromptTarget::IpPort, PromptDuration::Always)
        )
        .0,
        "- 192.0.2.7 tcp/443"
    );
    assert_eq!(
        rule(&out, ans(true, PromptTarget::Port, PromptDuration::Always)).0,
        "+ tcp/443"
    );
    assert_eq!(
        rule(
            &out,
            ans(true, PromptTarget::Domain, PromptDuration::Always)
        )
        .0,
        "+ example.com"
    );
    assert_eq!(
        rule(
            &out,
            ans(true, PromptTarget::Subdomains, PromptDuration::Always)
        )
        .0,
        "+ .example.com"
    );
    let inbound = open_prompt(Direction::Inbound, None);
    assert_eq!(
        rule(
            &inbound,
            ans(true, PromptTarget::IpPort, PromptDuration::Always)
        )
        .0,
        "+ Inbound 192.0.2.7 tcp/22"
    );
    // Every generated text parses as a rule.
    for target in [
        PromptTarget::Ip,
        PromptTarget::IpPort,
        PromptTarget::Port,
        PromptTarget::Domain,
    ] {
        let (text, _) = rule(&out, ans(true, target, PromptDuration::Always));
        text.parse::<portcullis_policy::Rule>().unwrap();
    }
    assert_eq!(
        rule(
            &out,
            ans(
                true,
                PromptTarget::Ip,
                PromptDuration::Minutes { minutes: 2 }
            )
        )
        .1,
        RuleLifetime::Until { unix_ms: 121_000 }
    );
    assert_eq!(
        rule(
            &out,
            ans(true, PromptTarget::Ip, PromptDuration::UntilAppQuits)
        )
        .1,
        RuleLifetime::UntilExit {
            pid: 99,
            start_time: 5
        }
    );
    assert!(
        prompt_rule(&out, &ans(true, PromptTarget::Ip, PromptDuration::Once), 1)
            .unwrap()
            .is_none()
    );
    // Answers that cannot be made are refused, naming why.
    let no_domain = open_prompt(Direction::Outbound, None);
    let err = prompt_rule(
        &no_domain,
        &ans(true, PromptTarget::Domain, PromptDuration::Always),
        1,
    )
    .unwrap_err();
    assert!(err.message.contains("no domain"), "{}", err.message);
    let err = prompt_rule(
        &out,
        &ans(
            true,
            PromptTarget::Ip,
            PromptDuration::Minutes { minutes: 0 },
        ),
        1,
    )
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidInput);
}

#[test]
fn answering_an_unknown_prompt_is_not_found() {
    let (_d, mut svc, _rx) = service();
    let answer = PromptAnswer {
        allow: true,
        target: PromptTarget::Ip,
        duration: PromptDuration::Always,
    };
    let err = svc
        .handle(Request::AnswerPrompt { id: 9, answer }, 2_000, 1)
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);
}

#[test]
fn at_the_profile_limit_unconfigured_profiles_make_room_and_configured_ones_stay() {
    let (_d, mut svc, _rx) = service();
    // The special profiles (kernel, system DNS) count too.
    let base = svc.snapshot.apps.len();
    svc.set_max_apps(base + 3);
    add(&mut svc, RuleOwner::App(CURL.into()), "- 10.0.0.0/8").unwrap();
    svc.app_seen("/usr/bin/a", AppKind::Executable, "a", 10);
    svc.app_seen("/usr/bin/b", AppKind::Executable, "b", 20);
    assert_eq!(svc.snapshot.apps.len(), base + 3);
    // Full: the oldest unconfigured profile (a) goes, the configured one (curl) stays.
    svc.app_seen("/usr/bin/c", AppKind::Executable, "c", 30);
    let keys: Vec<&str> = svc.snapshot.apps.keys().map(String::as_str).collect();
    assert!(
        keys.contains(&CURL) && keys.contains(&"/usr/bin/c"),
        "{keys:?}"
    );
    assert!(!keys.contains(&"/usr/bin/a"), "{keys:?}");
    assert!(
        !svc.policy().load().apps.contains_key("/usr/bin/a"),
        "the decision path's snapshot follows"
    );
    // A client configuring a new app also makes room.
    add(&mut svc, RuleOwner::App("/usr/bin/d".into()), "+ 10.0.0.1").unwrap();
    add(&mut svc, RuleOwner::App("/usr/bin/e".into()), "+ 10.0.0.1").unwrap();
    // Now every app profile is configured: no room, and nothing configured is lost.
    let err = add(&mut svc, RuleOwner::App("/usr/bin/f".into()), "+ 10.0.0.1").unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidInput);
    assert!(err.message.contains("configured apps"), "{}", err.message);
    svc.app_seen("/usr/bin/g", AppKind::Executable, "g", 40);
    assert!(!svc.snapshot.apps.contains_key("/usr/bin/g"));
    for key in [CURL, "/usr/bin/d", "/usr/bin/e"] {
        assert!(svc.snapshot.apps.contains_key(key), "{key} stays");
    }
}

#[test]
fn new_intel_data_retires_cached_verdicts_and_wakes_the_re_decision() {
    let (_dir, svc, _events) = service();
    let mut changes = svc.policy_changes();
    changes.borrow_and_update();
    let (_, before) = svc.policy().load_with_generation();
    svc.intel_changed();
    let (_, after) = svc.policy().load_with_generation();
    assert!(
        after > before,
        "the fast path generation moves: {before} -> {after}"
    );
    assert!(
        changes.has_changed().unwrap(),
        "live connections are decided again"
    );
}

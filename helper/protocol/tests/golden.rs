//! Golden wire fixtures: each frame below is serialized and compared byte for byte with its
//! file in `tests/golden/`, then the file is parsed back and compared with the value. An
//! accidental change of the wire format fails here. To accept a deliberate, additive change,
//! run with `UPDATE_GOLDEN=1` and review the diff of the fixtures.

use std::path::PathBuf;

use portcullis_protocol::frames::Reply;
use portcullis_protocol::*;

fn fixtures() -> Vec<(&'static str, serde_json::Value)> {
    let rule = RuleInfo {
        id: 7,
        owner: RuleOwner::App("/usr/bin/curl".into()),
        position: 1,
        text: "- *.example.com tcp/443".into(),
        lifetime: RuleLifetime::Until {
            unix_ms: 1_790_000_000_000,
        },
        created_unix_ms: 1_780_000_000_000,
    };
    let app = AppInfo {
        key: "/usr/bin/curl".into(),
        kind: AppKind::Executable,
        name: "curl".into(),
        created_unix_ms: 1_780_000_000_000,
        last_seen_unix_ms: 1_780_000_100_000,
        overrides: 1,
        rules: 1,
    };
    let view = SettingsView {
        app: Some("/usr/bin/curl".into()),
        entries: vec![
            SettingEntry {
                key: SettingKey::DefaultAction,
                value: SettingValue::Action(Action::Ask),
                source: SettingSource::App,
            },
            SettingEntry {
                key: SettingKey::BlockScopes,
                value: SettingValue::Scopes(vec![Scope::Internet, Scope::P2p]),
                source: SettingSource::Global,
            },
            SettingEntry {
                key: SettingKey::PromptTimeoutSecs,
                value: SettingValue::Seconds(30),
                source: SettingSource::Default,
            },
        ],
    };
    let status = Status {
        version: "0.1.0".into(),
        protocol_version: 1,
        uptime_secs: 12,
        pid: 4321,
        enforcement: EnforcementState::Off {
            reason: "interception is not configured".into(),
        },
        apps: 3,
        rules: 2,
        clients: 1,
        attribution: Some("eBPF on cgroup /sys/fs/cgroup, then sock_diag and /proc".into()),
    };
    let explanation = Explanation {
        verdict: Verdict::Block,
        decided_by: DecidedBy::Rule {
            profile: ProfileLabel::App("/usr/bin/curl".into()),
            rule_id: Some(7),
            text: "- 10.0.0.0/8".into(),
        },
        summary: "blocked by rule `- 10.0.0.0/8` of app /usr/bin/curl".into(),
    };
    let connection = ConnectionInfo {
        id: 9,
        unix_ms: 1_780_000_200_000,
        app: "/usr/bin/curl".into(),
        pid: Some(4242),
        direction: Direction::Outbound,
        protocol: Protocol::Tcp,
        local: std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 77, 1, 1)),
        local_port: Some(40000),
        remote: std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 77, 1, 2)),
        remote_port: Some(443),
        domain: None,
        country: None,
        asn: None,
        scope: Scope::Lan,
        explanation: explanation.clone(),
        decided_in_kernel: false,
    };
    let prompt = PromptInfo {
        id: 3,
        app: "/usr/bin/curl".into(),
        app_name: "curl".into(),
        pid: Some(4242),
        direction: Direction::Outbound,
        protocol: Protocol::Tcp,
        remote: std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 77, 1, 2)),
        remote_port: Some(443),
        local_port: Some(40000),
        domain: None,
        scope: Scope::Lan,
        created_unix_ms: 1_780_000_200_000,
        expires_unix_ms: 1_780_000_230_000,
        fallback: Verdict::Block,
        waiting: 2,
    };
    let v = |x: &dyn erased::Ser| x.value();
    vec![
        (
            "client_hello",
            v(&ClientFrame::Hello {
                protocol_version: 1,
                client: "portcullisctl 0.1.0".into(),
            }),
        ),
        (
            "server_hello",
            v(&ServerFrame::Hello {
                protocol_version: 1,
                version: "0.1.0".into(),
            }),
        ),
        (
            "req_status",
            v(&ClientFrame::Request {
                id: 1,
                request: Request::Status,
            }),
        ),
        (
            "req_get_settings",
            v(&ClientFrame::Request {
                id: 2,
                request: Request::GetSettings { app: None },
            }),
        ),
        (
            "req_set_setting",
            v(&ClientFrame::Request {
                id: 3,
                request: Request::SetSetting {
                    app: Some("/usr/bin/curl".into()),
                    key: SettingKey::BlockScopes,
                    value: Some(SettingValue::Scopes(vec![Scope::Lan])),
                },
            }),
        ),
        (
            "req_unset_setting",
            v(&ClientFrame::Request {
                id: 4,
                request: Request::SetSetting {
                    app: None,
                    key: SettingKey::DefaultAction,
                    value: None,
                },
            }),
        ),
        (
            "req_list_apps",
            v(&ClientFrame::Request {
                id: 5,
                request: Request::ListApps,
            }),
        ),
        (
            "req_show_app",
            v(&ClientFrame::Request {
                id: 6,
                request: Request::ShowApp {
                    app: "/usr/bin/curl".into(),
                },
            }),
        ),
        (
            "req_list_rules",
            v(&ClientFrame::Request {
                id: 7,
                request: Request::ListRules {
                    owner: RuleOwner::Global,
                },
            }),
        ),
        (
            "req_add_rule",
            v(&ClientFrame::Request {
                id: 8,
                request: Request::AddRule {
                    owner: RuleOwner::App("/usr/bin/curl".into()),
                    text: "- 10.0.0.0/8".into(),
                    position: Some(1),
                    lifetime: RuleLifetime::UntilRestart,
                },
            }),
        ),
        (
            "req_remove_rule",
            v(&ClientFrame::Request {
                id: 9,
                request: Request::RemoveRule { id: 7 },
            }),
        ),
        (
            "req_move_rule",
            v(&ClientFrame::Request {
                id: 10,
                request: Request::MoveRule { id: 7, position: 2 },
            }),
        ),
        (
            "req_subscribe",
            v(&ClientFrame::Request {
                id: 11,
                request: Request::Subscribe,
            }),
        ),
        (
            "resp_status",
            v(&ServerFrame::Response {
                id: 1,
                reply: Reply::Ok(Response::Status(status)),
            }),
        ),
        (
            "resp_settings",
            v(&ServerFrame::Response {
                id: 2,
                reply: Reply::Ok(Response::Settings(view.clone())),
            }),
        ),
        (
            "resp_apps",
            v(&ServerFrame::Response {
                id: 5,
                reply: Reply::Ok(Response::Apps(vec![app.clone()])),
            }),
        ),
        (
            "resp_app",
            v(&ServerFrame::Response {
                id: 6,
                reply: Reply::Ok(Response::App {
                    app: app.clone(),
                    settings: view,
                    rules: vec![rule.clone()],
                }),
            }),
        ),
        (
            "resp_rules",
            v(&ServerFrame::Response {
                id: 7,
                reply: Reply::Ok(Response::Rules(vec![rule.clone()])),
            }),
        ),
        (
            "resp_rule",
            v(&ServerFrame::Response {
                id: 8,
                reply: Reply::Ok(Response::Rule(rule)),
            }),
        ),
        (
            "resp_subscribed",
            v(&ServerFrame::Response {
                id: 11,
                reply: Reply::Ok(Response::Subscribed),
            }),
        ),
        (
            "resp_error",
            v(&ServerFrame::Response {
                id: 8,
                reply: Reply::Err(ErrorFrame::new(
                    ErrorCode::InvalidInput,
                    "invalid rule at column 3: `10.0.0.0/33`: prefix length 33 is larger than 32",
                )),
            }),
        ),
        (
            "event_setting_changed",
            v(&ServerFrame::Event {
                event: Event::SettingChanged {
                    app: None,
                    key: SettingKey::FailOpen,
                },
            }),
        ),
        (
            "event_rules_changed",
            v(&ServerFrame::Event {
                event: Event::RulesChanged {
                    owner: RuleOwner::Global,
                },
            }),
        ),
        (
            "event_app_added",
            v(&ServerFrame::Event {
                event: Event::AppAdded { app },
            }),
        ),
        (
            "event_lagged",
            v(&ServerFrame::Event {
                event: Event::Lagged { missed: 3 },
            }),
        ),
        (
            "error_refused",
            v(&ServerFrame::Error(ErrorFrame::new(
                ErrorCode::PermissionDenied,
                "permission denied",
            ))),
        ),
        (
            "req_explain",
            v(&ClientFrame::Request {
                id: 12,
                request: Request::Explain {
                    app: Some("/usr/bin/curl".into()),
                    connection: ConnectionQuery {
                        direction: Direction::Outbound,
                        protocol: Protocol::Tcp,
                        remote: std::net::IpAddr::V6(std::net::Ipv6Addr::new(
                            0x2001, 0xdb8, 0, 0, 0, 0, 0, 1,
                        )),
                        remote_port: Some(443),
                        local_port: None,
                        domain: Some("example.com".into()),
                    },
                },
            }),
        ),
        (
            "resp_explanation",
            v(&ServerFrame::Response {
                id: 12,
                reply: Reply::Ok(Response::Explanation(explanation.clone())),
            }),
        ),
        (
            "req_list_connections",
            v(&ClientFrame::Request {
                id: 13,
                request: Request::ListConnections,
            }),
        ),
        (
            "resp_connections",
            v(&ServerFrame::Response {
                id: 13,
                reply: Reply::Ok(Response::Connections(vec![connection.clone()])),
            }),
        ),
        (
            "event_connection",
            v(&ServerFrame::Event {
                event: Event::Connection {
                    connection: Box::new(connection),
                },
            }),
        ),
        (
            "req_watch_prompts",
            v(&ClientFrame::Request {
                id: 14,
                request: Request::WatchPrompts,
            }),
        ),
        (
            "req_list_prompts",
            v(&ClientFrame::Request {
                id: 15,
                request: Request::ListPrompts,
            }),
        ),
        (
            "req_answer_prompt",
            v(&ClientFrame::Request {
                id: 16,
                request: Request::AnswerPrompt {
                    id: 3,
                    answer: PromptAnswer {
                        allow: true,
                        target: PromptTarget::IpPort,
                        duration: PromptDuration::Minutes { minutes: 15 },
                    },
                },
            }),
        ),
        (
            "resp_prompts",
            v(&ServerFrame::Response {
                id: 15,
                reply: Reply::Ok(Response::Prompts(vec![prompt.clone()])),
            }),
        ),
        (
            "resp_answered",
            v(&ServerFrame::Response {
                id: 16,
                reply: Reply::Ok(Response::Answered(Answered {
                    id: 3,
                    rule: Some(RuleInfo {
                        id: 8,
                        owner: RuleOwner::App("/usr/bin/curl".into()),
                        position: 1,
                        text: "+ 10.77.1.2 tcp/443".into(),
                        lifetime: RuleLifetime::UntilExit {
                            pid: 4242,
                            start_time: 123_456,
                        },
                        created_unix_ms: 1_780_000_300_000,
                    }),
                })),
            }),
        ),
        (
            "req_pause",
            v(&ClientFrame::Request {
                id: 20,
                request: Request::Pause { minutes: 15 },
            }),
        ),
        (
            "req_resume",
            v(&ClientFrame::Request {
                id: 21,
                request: Request::Resume,
            }),
        ),
        (
            "req_history_query",
            v(&ClientFrame::Request {
                id: 22,
                request: Request::HistoryQuery {
                    filter: HistoryFilter {
                        app: Some("/usr/bin/curl".into()),
                        verdict: Some(Verdict::Block),
                        kind: Some(HistoryKind::Connection),
                        since_ms: Some(1_780_000_000_000),
                        search: Some("exam".into()),
                        ..HistoryFilter::default()
                    },
                    after: Some(HistoryCursor {
                        unix_ms: 1_780_000_200_000,
                        id: 41,
                    }),
                    limit: 100,
                },
            }),
        ),
        (
            "req_history_top",
            v(&ClientFrame::Request {
                id: 23,
                request: Request::HistoryTop {
                    by: HistoryTopBy::Domain,
                    filter: HistoryFilter::default(),
                    by_bytes: true,
                    limit: 10,
                },
            }),
        ),
        (
            "req_history_clear",
            v(&ClientFrame::Request {
                id: 24,
                request: Request::HistoryClear {
                    app: Some("/usr/bin/curl".into()),
                },
            }),
        ),
        (
            "resp_history",
            v(&ServerFrame::Response {
                id: 22,
                reply: Reply::Ok(Response::History(HistoryPage {
                    rows: vec![HistoryRow {
                        id: 40,
                        kind: HistoryKind::Connection,
                        unix_ms: 1_780_000_190_000,
                        app: "/usr/bin/curl".into(),
                        pid: Some(4242),
                        exe: Some("/usr/bin/curl".into()),
                        direction: Direction::Outbound,
                        protocol: Protocol::Tcp,
                        local: std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 77, 1, 1)),
                        local_port: Some(40_000),
                        remote: std::net::IpAddr::V4(std::net::Ipv4Addr::new(93, 184, 215, 14)),
                        remote_port: Some(443),
                        domain: Some("example.com".into()),
                        country: Some("US".into()),
                        asn: Some(15_133),
                        scope: Scope::Internet,
                        verdict: Verdict::Block,
                        explanation: "blocked by rule `- example.com` of app /usr/bin/curl".into(),
                        bytes_out: 0,
                        bytes_in: 0,
                        packets_out: 0,
                        packets_in: 0,
                        end_ms: None,
                    }],
                    next: Some(HistoryCursor {
                        unix_ms: 1_780_000_190_000,
                        id: 40,
                    }),
                })),
            }),
        ),
        (
            "resp_history_top",
            v(&ServerFrame::Response {
                id: 23,
                reply: Reply::Ok(Response::HistoryTop(vec![HistoryTopEntry {
                    key: "example.com".into(),
                    rows: 12,
                    blocked: 3,
                    bytes_out: 1200,
                    bytes_in: 54_000,
                }])),
            }),
        ),
        (
            "req_history_bandwidth",
            v(&ClientFrame::Request {
                id: 25,
                request: Request::HistoryBandwidth {
                    app: Some("/usr/bin/curl".into()),
                    since_ms: 1_780_000_000_000,
                    until_ms: 1_780_003_600_000,
                    bucket: HistoryBucket::Minute,
                },
            }),
        ),
        (
            "resp_bandwidth",
            v(&ServerFrame::Response {
                id: 25,
                reply: Reply::Ok(Response::Bandwidth(vec![BandwidthPoint {
                    app: "/usr/bin/curl".into(),
                    start_ms: 1_780_000_060_000,
                    bytes_out: 1_200,
                    bytes_in: 54_000,
                    packets_out: 20,
                    packets_in: 45,
                    connections: 3,
                }])),
            }),
        ),
        (
            "req_live_rates",
            v(&ClientFrame::Request {
                id: 26,
                request: Request::LiveRates,
            }),
        ),
        (
            "resp_rates",
            v(&ServerFrame::Response {
                id: 26,
                reply: Reply::Ok(Response::Rates(vec![AppRate {
                    app: "/usr/bin/curl".into(),
                    bytes_out_per_sec: 1_200,
                    bytes_in_per_sec: 5_400_000,
                }])),
            }),
        ),
        (
            "resp_history_cleared",
            v(&ServerFrame::Response {
                id: 24,
                reply: Reply::Ok(Response::HistoryCleared { rows: 12 }),
            }),
        ),
        (
            "req_dns_status",
            v(&ClientFrame::Request {
                id: 17,
                request: Request::DnsStatus,
            }),
        ),
        (
            "req_dns_query",
            v(&ClientFrame::Request {
                id: 18,
                request: Request::DnsQuery {
                    name: "tracker.example".into(),
                    app: Some("/usr/bin/curl".into()),
                },
            }),
        ),
        (
            "req_dns_flush",
            v(&ClientFrame::Request {
                id: 19,
                request: Request::DnsFlush,
            }),
        ),
        (
            "resp_dns_status",
            v(&ServerFrame::Response {
                id: 17,
                reply: Reply::Ok(Response::DnsStatus(Box::new(
                    portcullis_protocol::DnsStatus {
                        enabled: true,
                        redirect: true,
                        listen: vec![std::net::SocketAddr::from(([127, 0, 0, 153], 53))],
                        upstreams: vec![portcullis_protocol::DnsUpstreamStatus {
                            label: "tls://dns.quad9.net#9.9.9.9:853".into(),
                            zone: None,
                            connections: 1,
                            answered: 40,
                            failed: 0,
                            backing_off: false,
                        }],
                        cache_entries: 12,
                        cache_bytes: 3_400,
                    },
                ))),
            }),
        ),
        (
            "resp_dns_answer",
            v(&ServerFrame::Response {
                id: 18,
                reply: Reply::Ok(Response::DnsAnswer(Box::new(
                    portcullis_protocol::DnsAnswer {
                        name: "tracker.example".into(),
                        app: Some("/usr/bin/curl".into()),
                        outcome: "blocked".into(),
                        rcode: "NXDOMAIN".into(),
                        addresses: Vec::new(),
                        explanation: Some(explanation.clone()),
                        detail: "tracker.example is blocked: blocked by rule `- tracker.example`"
                            .into(),
                    },
                ))),
            }),
        ),
        (
            "resp_dns_flushed",
            v(&ServerFrame::Response {
                id: 19,
                reply: Reply::Ok(Response::DnsFlushed { entries: 12 }),
            }),
        ),
        (
            "req_update_check",
            v(&ClientFrame::Request {
                id: 20,
                request: Request::UpdateCheck,
            }),
        ),
        (
            "req_update_status",
            v(&ClientFrame::Request {
                id: 21,
                request: Request::UpdateStatus,
            }),
        ),
        (
            "resp_updates",
            v(&ServerFrame::Response {
                id: 20,
                reply: Reply::Ok(Response::Updates(Box::new(
                    portcullis_protocol::UpdateStatus {
                        enabled: true,
                        url: Some("https://updates.example/portcullis/".to_owned()),
                        interval_hours: 24,
                        installed_version: 2026061900,
                        last_check_ms: Some(1_750_000_000_000),
                        last: Some(portcullis_protocol::UpdateOutcome::Refused {
                            reason: "bundle version 3 is not newer than the installed version 2026061900 (rollback refused)".to_owned(),
                        }),
                    },
                ))),
            }),
        ),
        (
            "req_intel_lookup",
            v(&ClientFrame::Request {
                id: 22,
                request: Request::IntelLookup {
                    ip: std::net::IpAddr::V4(std::net::Ipv4Addr::new(1, 1, 1, 1)),
                },
            }),
        ),
        (
            "resp_intel",
            v(&ServerFrame::Response {
                id: 22,
                reply: Reply::Ok(Response::Intel(Box::new(portcullis_protocol::IntelInfo {
                    ip: std::net::IpAddr::V4(std::net::Ipv4Addr::new(1, 1, 1, 1)),
                    geo_loaded: true,
                    country: Some("AU".to_owned()),
                    continent: Some("OC".to_owned()),
                    continent_name: Some("Oceania".to_owned()),
                    asn: Some(13335),
                    as_org: Some("Cloudflare, Inc.".to_owned()),
                }))),
            }),
        ),
        (
            "req_lists_status",
            v(&ClientFrame::Request {
                id: 23,
                request: Request::ListsStatus,
            }),
        ),
        (
            "resp_lists",
            v(&ServerFrame::Response {
                id: 23,
                reply: Reply::Ok(Response::Lists(Box::new(portcullis_protocol::ListsStatus {
                    lists: vec![
                        portcullis_protocol::ListState {
                            id: "easyprivacy".to_owned(),
                            name: "EasyPrivacy".to_owned(),
                            category: portcullis_protocol::ListCategory::Trackers,
                            shipped: true,
                            source: "/usr/share/portcullis/intel/lists/easyprivacy.txt".to_owned(),
                            domains: 41_230,
                            networks: 0,
                            skipped: 12_004,
                            bad_lines: 3,
                            error: None,
                        },
                        portcullis_protocol::ListState {
                            id: "drop".to_owned(),
                            name: "Spamhaus DROP".to_owned(),
                            category: portcullis_protocol::ListCategory::Malware,
                            shipped: false,
                            source: "/etc/portcullis/lists/drop.txt".to_owned(),
                            domains: 0,
                            networks: 0,
                            skipped: 0,
                            bad_lines: 0,
                            error: Some("/etc/portcullis/lists/drop.txt: No such file or directory (os error 2)".to_owned()),
                        },
                    ],
                    enabled: vec![
                        portcullis_protocol::ListCategory::Ads,
                        portcullis_protocol::ListCategory::Trackers,
                    ],
                }))),
            }),
        ),
        (
            "event_prompt_added",
            v(&ServerFrame::Event {
                event: Event::PromptAdded { prompt },
            }),
        ),
        (
            "event_prompt_closed",
            v(&ServerFrame::Event {
                event: Event::PromptClosed {
                    id: 3,
                    outcome: PromptOutcome::TimedOut { allow: false },
                },
            }),
        ),
        ("explanation", v(&explanation)),
    ]
}

/// Serializes any fixture value to JSON without caring about its type.
mod erased {
    pub trait Ser {
        fn value(&self) -> serde_json::Value;
    }
    impl<T: serde::Serialize> Ser for T {
        #[expect(
            clippy::expect_used,
            reason = "a fixture that cannot serialize is a test bug"
        )]
        fn value(&self) -> serde_json::Value {
            serde_json::to_value(self).expect("fixture serializes")
        }
    }
}

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

#[test]
fn wire_format_matches_the_golden_fixtures() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut mismatches = Vec::new();
    for (name, value) in fixtures() {
        let path = dir().join(format!("{name}.json"));
        let text = serde_json::to_string_pretty(&value).unwrap() + "\n";
        if update {
            std::fs::write(&path, &text).unwrap();
            continue;
        }
        let stored = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("missing fixture {path:?} ({e}); run with UPDATE_GOLDEN=1"));
        if stored != text {
            mismatches.push(format!("{name}:\n--- stored\n{stored}--- now\n{text}"));
        }
    }
    assert!(
        mismatches.is_empty(),
        "wire format changed:\n{}",
        mismatches.join("\n")
    );
}

#[test]
fn golden_fixtures_parse_back_into_the_same_frames() {
    for (name, value) in fixtures() {
        let text = std::fs::read_to_string(dir().join(format!("{name}.json"))).unwrap();
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        let round = if name.starts_with("client") || name.starts_with("req") {
            serde_json::to_value(serde_json::from_value::<ClientFrame>(parsed).unwrap()).unwrap()
        } else if name == "explanation" {
            serde_json::to_value(serde_json::from_value::<Explanation>(parsed).unwrap()).unwrap()
        } else {
            serde_json::to_value(serde_json::from_value::<ServerFrame>(parsed).unwrap()).unwrap()
        };
        assert_eq!(round, value, "{name} does not parse back");
    }
}

#[test]
fn unknown_events_and_error_codes_from_a_newer_helper_are_tolerated() {
    let ev: ServerFrame =
        serde_json::from_str(r#"{"type":"event","event":{"event":"from_the_future","x":1}}"#)
            .unwrap();
    assert_eq!(
        ev,
        ServerFrame::Event {
            event: Event::Unknown
        }
    );
    let err: ErrorFrame = serde_json::from_str(r#"{"code":"new_code","message":"m"}"#).unwrap();
    assert_eq!(err.code, ErrorCode::Unknown);
}

#[test]
fn optional_fields_may_be_left_out_by_older_clients() {
    let req: ClientFrame = serde_json::from_str(
        r#"{"type":"request","id":1,"request":{"method":"add_rule","params":{"owner":{"kind":"global"},"text":"- 10.0.0.0/8"}}}"#,
    )
    .unwrap();
    assert_eq!(
        req,
        ClientFrame::Request {
            id: 1,
            request: Request::AddRule {
                owner: RuleOwner::Global,
                text: "- 10.0.0.0/8".into(),
                position: None,
                lifetime: RuleLifetime::Forever,
            }
        }
    );
}

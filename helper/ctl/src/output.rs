//! How `portcullisctl` prints answers: aligned text for people, the answer's data as JSON with
//! `--json`. Printing only; no requests are made here.

use std::fmt::Write as _;

use portcullis_protocol::{
    AppInfo, AppKind, ConnectionInfo, Direction, EnforcementState, Event, PromptInfo,
    PromptOutcome, Response, RuleInfo, RuleLifetime, RuleOwner, SettingKey, SettingsView,
    UpdateOutcome,
};
use serde_json::Value;

/// Makes text from the helper safe for a terminal: executable paths come from the system
/// and may hold control characters that would otherwise drive the terminal.
pub fn clean(text: &str) -> std::borrow::Cow<'_, str> {
    // Control characters, and the bidirectional overrides and isolates that could make a
    // path read as another on screen.
    let bad =
        |c: char| c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    if text.chars().any(bad) {
        std::borrow::Cow::Owned(
            text.chars()
                .flat_map(|c| {
                    if c.is_control() {
                        c.escape_default().collect::<Vec<_>>()
                    } else if bad(c) {
                        c.escape_unicode().collect::<Vec<_>>()
                    } else {
                        vec![c]
                    }
                })
                .collect(),
        )
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// The data of an answer (`{"kind": …, "data": …}` → the data).
fn data(resp: &Response) -> Value {
    match serde_json::to_value(resp) {
        Ok(Value::Object(mut map)) => map.remove("data").unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| "null".into())
    );
}

/// Prints rows as columns separated by two spaces, the last column unpadded.
fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut out = String::new();
        let cells: Vec<&str> = cells.collect();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                let _ = write!(out, "{cell:<w$}  ");
            }
        }
        println!("{}", out.trim_end());
    };
    line(&mut header.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
}

fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

fn ago(unix_ms: u64) -> String {
    if unix_ms == 0 {
        return "never".into();
    }
    let now = crate::now_ms();
    format!("{} ago", duration(now.saturating_sub(unix_ms) / 1000))
}

fn lifetime(l: RuleLifetime) -> String {
    match l {
        RuleLifetime::Forever => "forever".into(),
        RuleLifetime::UntilRestart => "until restart".into(),
        RuleLifetime::UntilExit { pid, .. } => format!("until process {pid} exits"),
        RuleLifetime::Until { unix_ms } => {
            format!(
                "{} left",
                duration(unix_ms.saturating_sub(crate::now_ms()) / 1000)
            )
        }
    }
}

/// `status`.
pub fn status(resp: &Response, json: bool) {
    if json {
        return print_json(&data(resp));
    }
    let Response::Status(s) = resp else {
        return unexpected(resp);
    };
    println!(
        "Portcullis helper {} (protocol {}), pid {}, up {}",
        s.version,
        s.protocol_version,
        s.pid,
        duration(s.uptime_secs)
    );
    match &s.enforcement {
        EnforcementState::Enforcing => println!("Enforcement: on"),
        EnforcementState::Paused { until_unix_ms } => println!(
            "Enforcement: paused for {} more",
            duration(until_unix_ms.saturating_sub(crate::now_ms()) / 1000)
        ),
        EnforcementState::Off { reason } => println!("Enforcement: off ({reason})"),
    }
    if let Some(how) = &s.attribution {
        println!("Attribution: {}", clean(how));
    }
    println!(
        "Apps: {}  Rules: {}  Clients: {}",
        s.apps, s.rules, s.clients
    );
}

fn settings_rows(view: &SettingsView, only: Option<SettingKey>) -> Vec<Vec<String>> {
    view.entries
        .iter()
        .filter(|e| only.is_none_or(|k| k == e.key))
        .map(|e| vec![e.key.to_string(), e.value.to_string(), e.source.to_string()])
        .collect()
}

/// `settings get|set`.
pub fn settings(resp: &Response, only: Option<SettingKey>, json: bool) {
    let Response::Settings(view) = resp else {
        return unexpected(resp);
    };
    if json {
        let mut view = view.clone();
        view.entries.retain(|e| only.is_none_or(|k| k == e.key));
        return print_json(&serde_json::to_value(&view).unwrap_or(Value::Null));
    }
    table(&["KEY", "VALUE", "FROM"], &settings_rows(view, only));
}

/// `settings keys`.
pub fn keys(json: bool) {
    if json {
        let keys: Vec<Value> = SettingKey::ALL
            .iter()
            .map(|k| serde_json::json!({ "key": k.as_str(), "per_app": k.per_app(), "help": k.help() }))
            .collect();
        return print_json(&Value::Array(keys));
    }
    let rows: Vec<Vec<String>> = SettingKey::ALL
        .iter()
        .map(|k| vec![k.as_str().to_string(), k.help().to_string()])
        .collect();
    table(&["KEY", "MEANING"], &rows);
}

fn kind(k: AppKind) -> &'static str {
    match k {
        AppKind::Executable => "app",
        AppKind::Kernel => "kernel",
        AppKind::SystemDns => "system dns",
    }
}

fn app_row(a: &AppInfo) -> Vec<String> {
    vec![
        clean(&a.name).into_owned(),
        kind(a.kind).into(),
        a.rules.to_string(),
        a.overrides.to_string(),
        ago(a.last_seen_unix_ms),
        clean(&a.key).into_owned(),
    ]
}

/// `apps list`.
pub fn apps(resp: &Response, json: bool) {
    if json {
        return print_json(&data(resp));
    }
    let Response::Apps(apps) = resp else {
        return unexpected(resp);
    };
    let rows: Vec<Vec<String>> = apps.iter().map(app_row).collect();
    table(
        &["NAME", "KIND", "RULES", "OVERRIDES", "LAST SEEN", "APP"],
        &rows,
    );
}

fn rule_rows(rules: &[RuleInfo]) -> Vec<Vec<String>> {
    rules
        .iter()
        .map(|r| {
            vec![
                r.position.to_string(),
                r.id.to_string(),
                lifetime(r.lifetime),
                r.text.clone(),
            ]
        })
        .collect()
}

/// `apps show`.
pub fn app(resp: &Response, json: bool) {
    if json {
        return print_json(&data(resp));
    }
    let Response::App {
        app,
        settings,
        rules,
    } = resp
    else {
        return unexpected(resp);
    };
    println!("{} ({})", clean(&app.name), kind(app.kind));
    println!("App:        {}", clean(&app.key));
    println!("First seen: {}", ago(app.created_unix_ms));
    println!("Last seen:  {}", ago(app.last_seen_unix_ms));
    println!();
    table(&["KEY", "VALUE", "FROM"], &settings_rows(settings, None));
    println!();
    if rules.is_empty() {
        println!("No rules of its own; global rules apply.");
    } else {
        table(&["#", "ID", "LIFETIME", "RULE"], &rule_rows(rules));
    }
}

/// `rules list|move`.
pub fn rules(resp: &Response, json: bool) {
    if json {
        return print_json(&data(resp));
    }
    let Response::Rules(rules) = resp else {
        return unexpected(resp);
    };
    if rules.is_empty() {
        println!("No rules.");
        return;
    }
    table(&["#", "ID", "LIFETIME", "RULE"], &rule_rows(rules));
}

fn owner_text(o: &RuleOwner) -> String {
    match o {
        RuleOwner::Global => "global rules".into(),
        RuleOwner::App(a) => format!("rules of {}", clean(a)),
    }
}

/// `rules add|remove`.
pub fn rule(resp: &Response, verb: &str, json: bool) {
    if json {
        return print_json(&data(resp));
    }
    let Response::Rule(r) = resp else {
        return unexpected(resp);
    };
    println!(
        "{verb} rule {} `{}` ({}, position {}, {})",
        r.id,
        r.text,
        owner_text(&r.owner),
        r.position,
        lifetime(r.lifetime)
    );
}

/// `explain`: the verdict, then why.
pub fn explanation(resp: &Response, json: bool) {
    if json {
        return print_json(&data(resp));
    }
    let Response::Explanation(e) = resp else {
        return unexpected(resp);
    };
    println!("{}: {}", e.verdict, clean(&e.summary));
}

fn endpoint(ip: std::net::IpAddr, port: Option<u16>) -> String {
    match (ip, port) {
        (std::net::IpAddr::V6(v6), Some(p)) => format!("[{v6}]:{p}"),
        (ip, Some(p)) => format!("{ip}:{p}"),
        (ip, None) => ip.to_string(),
    }
}

fn connection_line(c: &ConnectionInfo) {
    let arrow = match c.direction {
        Direction::Outbound => "->",
        Direction::Inbound => "<-",
    };
    let pid = c.pid.map(|p| format!(" [{p}]")).unwrap_or_default();
    println!(
        "{} {}{pid} {} {arrow} {} {} {}: {}",
        c.id,
        clean(&c.app),
        c.protocol,
        endpoint(c.remote, c.remote_port),
        c.scope,
        c.explanation.verdict,
        clean(&c.explanation.summary),
    );
}

fn prompt_line(p: &PromptInfo) {
    let pid = p.pid.map(|pid| format!(" [{pid}]")).unwrap_or_default();
    let (arrow, port) = match p.direction {
        Direction::Outbound => ("->", p.remote_port),
        Direction::Inbound => ("<-", p.local_port),
    };
    let left = p.expires_unix_ms.saturating_sub(crate::now_ms()) / 1000;
    let domain = p
        .domain
        .as_deref()
        .map(|d| format!(" ({})", clean(d)))
        .unwrap_or_default();
    println!(
        "prompt {}: {}{pid} {} {arrow} {}{domain} {}; {} waiting; {} in {left}s unless answered",
        p.id,
        clean(&p.app),
        p.protocol,
        endpoint(p.remote, port),
        p.scope,
        p.waiting,
        p.fallback,
    );
}

/// `prompts watch`: one more prompt.
pub fn prompt(p: &PromptInfo, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string(p).unwrap_or_else(|_| "null".into())
        );
    } else {
        prompt_line(p);
    }
}

/// `prompts list`.
pub fn prompts(resp: &Response, json: bool) {
    if json {
        return print_json(&data(resp));
    }
    let Response::Prompts(list) = resp else {
        return unexpected(resp);
    };
    if list.is_empty() {
        println!("No prompts waiting.");
    }
    for p in list {
        prompt_line(p);
    }
}

/// `prompts answer`.
pub fn answered(resp: &Response, json: bool) {
    if json {
        return print_json(&data(resp));
    }
    let Response::Answered(a) = resp else {
        return unexpected(resp);
    };
    match &a.rule {
        Some(r) => println!(
            "answered prompt {}; rule {} `{}` ({})",
            a.id,
            r.id,
            r.text,
            lifetime(r.lifetime)
        ),
        None => println!("answered prompt {} for this connection only", a.id),
    }
}

/// `connections --follow`: one more connection.
pub fn connection(c: &ConnectionInfo, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string(c).unwrap_or_else(|_| "null".into())
        );
    } else {
        connection_line(c);
    }
}

/// `connections`.
pub fn connections(resp: &Response, json: bool) {
    if json {
        return print_json(&data(resp));
    }
    let Response::Connections(list) = resp else {
        return unexpected(resp);
    };
    if list.is_empty() {
        println!("No connections decided yet.");
    }
    for c in list {
        connection_line(c);
    }
}

/// `events`: one line (or one JSON object) per event.
pub fn event(e: &Event, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string(e).unwrap_or_else(|_| "null".into())
        );
        return;
    }
    match e {
        Event::SettingChanged { app: Some(a), key } => {
            println!("setting {key} of {} changed", clean(a));
        }
        Event::SettingChanged { app: None, key } => println!("global setting {key} changed"),
        Event::RulesChanged { owner } => println!("{} changed", owner_text(owner)),
        Event::AppAdded { app } => println!("new app {} ({})", clean(&app.name), clean(&app.key)),
        Event::Connection { connection } => connection_line(connection),
        Event::PromptAdded { prompt } => prompt_line(prompt),
        Event::PromptClosed { id, outcome } => {
            let (how, allow) = match outcome {
                PromptOutcome::Answered { allow } => ("answered", allow),
                PromptOutcome::DecidedByPolicy { allow } => ("decided by a rule", allow),
                PromptOutcome::TimedOut { allow } => ("timed out", allow),
            };
            let verdict = if *allow { "allowed" } else { "blocked" };
            println!("prompt {id} {how}: {verdict}");
        }
        Event::Lagged { missed } => println!("missed {missed} events"),
        Event::Unknown => println!("(an event this portcullisctl does not know)"),
    }
}

fn unexpected(resp: &Response) {
    eprintln!("portcullisctl: the helper answered with an unexpected {resp:?}");
}

/// `dns status`, `dns query`, `dns flush`.
/// Prints the signed-updates state (`updates status|check`).
pub fn updates(resp: &Response, json: bool) {
    if json {
        return print_json(&data(resp));
    }
    let Response::Updates(s) = resp else {
        return print_json(&data(resp));
    };
    match &s.url {
        Some(url) if s.enabled => println!("updates:   on, from {}", clean(url)),
        _ => println!("updates:   off (no [updates] url in the helper's configuration)"),
    }
    if s.enabled {
        if s.interval_hours == 0 {
            println!("schedule:  on demand only");
        } else {
            println!("schedule:  every {} h", s.interval_hours);
        }
    }
    if s.installed_version == 0 {
        println!("data:      as shipped with the package");
    } else {
        println!("data:      version {}", s.installed_version);
    }
    let last = match &s.last {
        None => "never checked".to_owned(),
        Some(UpdateOutcome::Installed { version }) => format!("installed version {version}"),
        Some(UpdateOutcome::UpToDate { version }) => format!("up to date (version {version})"),
        Some(UpdateOutcome::Refused { reason }) => {
            format!("refused: {}; the data in force is kept", clean(reason))
        }
        Some(UpdateOutcome::Failed { reason }) => {
            format!("failed: {}; the data in force is kept", clean(reason))
        }
    };
    println!("last check: {last}");
}

pub fn lists(resp: &Response, updates: &Response, json: bool) {
    let (Response::Lists(l), Response::Updates(u)) = (resp, updates) else {
        return print_json(&data(resp));
    };
    if json {
        let mut value = data(resp);
        if let Some(obj) = value.as_object_mut() {
            obj.insert("data_version".into(), u.installed_version.into());
            obj.insert(
                "last_check_ms".into(),
                u.last_check_ms.map_or(serde_json::Value::Null, Into::into),
            );
        }
        return print_json(&value);
    }
    let enabled: Vec<&str> = l.enabled.iter().map(|c| c.as_str()).collect();
    println!(
        "in force for every app: {}",
        if enabled.is_empty() {
            "no category".to_owned()
        } else {
            enabled.join(", ")
        }
    );
    if u.installed_version == 0 {
        println!("data: as shipped with the package");
    } else {
        println!("data: signed update version {}", u.installed_version);
    }
    println!(
        "{:<18} {:<10} {:>9} {:>9} {:>9} {:>5}  STATE",
        "LIST", "CATEGORY", "DOMAINS", "NETWORKS", "SKIPPED", "BAD"
    );
    for list in &l.lists {
        let state = match &list.error {
            Some(e) => format!("not in force: {}", clean(e)),
            None if l.enabled.contains(&list.category) => "in force".to_owned(),
            None => "loaded; category off".to_owned(),
        };
        println!(
            "{:<18} {:<10} {:>9} {:>9} {:>9} {:>5}  {}",
            clean(&list.id),
            list.category.as_str(),
            list.domains,
            list.networks,
            list.skipped,
            list.bad_lines,
            state
        );
    }
}

pub fn intel(resp: &Response, json: bool) {
    if json {
        return print_json(&data(resp));
    }
    let Response::Intel(i) = resp else {
        return print_json(&data(resp));
    };
    println!("address:   {}", i.ip);
    if !i.geo_loaded {
        println!("geo-IP:    no data loaded (see the helper's [intel] data_dir)");
        return;
    }
    match (&i.country, &i.continent, &i.continent_name) {
        (Some(c), Some(code), Some(name)) => {
            println!("country:   {}", clean(c));
            println!("continent: {} ({})", clean(code), clean(name));
        }
        (Some(c), _, _) => println!("country:   {}", clean(c)),
        _ => println!("country:   unknown (private, reserved or not in the data)"),
    }
    match (i.asn, &i.as_org) {
        (Some(n), Some(org)) if !org.is_empty() => println!("network:   AS{n} {}", clean(org)),
        (Some(n), _) => println!("network:   AS{n}"),
        _ => println!("network:   unknown"),
    }
}

pub fn dns(resp: &Response, json: bool) {
    if json {
        return print_json(&data(resp));
    }
    match resp {
        Response::DnsStatus(s) if !s.enabled => {
            println!("DNS resolver: off ([dns] enabled = false in the helper's configuration)");
        }
        Response::DnsStatus(s) => {
            let listen: Vec<String> = s.listen.iter().map(ToString::to_string).collect();
            println!("DNS resolver: on, listening on {}", listen.join(", "));
            println!(
                "redirect:     {}",
                if s.redirect {
                    "queries to other resolvers come here"
                } else {
                    "off"
                }
            );
            println!(
                "cache:        {} answers, {} bytes",
                s.cache_entries, s.cache_bytes
            );
            println!("upstreams:");
            for u in &s.upstreams {
                let zone = u
                    .zone
                    .as_deref()
                    .map(|z| format!(" (zone {z})"))
                    .unwrap_or_default();
                let state = if u.backing_off { ", backing off" } else { "" };
                println!(
                    "  {}{zone}: {} answered, {} failed, {} connections{state}",
                    u.label, u.answered, u.failed, u.connections
                );
            }
        }
        Response::DnsAnswer(a) => {
            let who = a.app.as_deref().unwrap_or("an app without a profile");
            let addrs: Vec<String> = a.addresses.iter().map(ToString::to_string).collect();
            match a.outcome.as_str() {
                "answered" => println!(
                    "{} for {who}: {} ({}; {})",
                    a.name,
                    if addrs.is_empty() {
                        "no addresses".to_string()
                    } else {
                        addrs.join(", ")
                    },
                    a.rcode,
                    a.detail
                ),
                _ => println!(
                    "{} for {who}: {} ({}): {}",
                    a.name, a.outcome, a.rcode, a.detail
                ),
            }
            if let Some(e) = &a.explanation {
                println!("  why: {}", e.summary);
            }
        }
        Response::DnsFlushed { entries } => println!("emptied the DNS cache ({entries} answers)"),
        other => unexpected(other),
    }
}

//! Answers IPC requests against the settings database. It owns the in-memory mirror of the
//! database (what the decision path reads) and keeps it equal to what was committed: every
//! change is written in one transaction first, then the affected profile is read back.
//! It knows nothing of sockets: the connection layer hands it a `Request` and sends back what
//! it returns, so every request can be tested without a socket.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use portcullis_policy::{Facts, ProfileRules, Rule, decide, settings_view};
use portcullis_protocol::{
    Answered, AppKind, ConnectionQuery, Direction, EnforcementState, ErrorCode, ErrorFrame, Event,
    Explanation, ProfileLabel, PromptAnswer, PromptDuration, PromptTarget, Protocol, Request,
    Response, RuleInfo, RuleLifetime, RuleOwner, SettingsView, Status,
};
use tokio::sync::broadcast;

use crate::live::{ConnectionLog, OpenPrompt, PromptBoard, PromptReply, SharedPolicy};
use crate::store::{KERNEL_KEY, NewApp, ProfileRow, SYSTEM_DNS_KEY, Snapshot, Store, StoreError};

/// Connections kept for `connections` (and re-decided after a change); the list must fit in
/// one answer frame.
const CONNECTION_LOG: usize = 1024;
/// Longest app key accepted (Linux PATH_MAX).
const MAX_APP_KEY: usize = 4096;
/// Longest rule text accepted; real rules are a few dozen bytes.
const MAX_RULE_TEXT: usize = 1024;
/// Most rules one list may hold; a list must also fit in one answer frame.
const MAX_RULES_PER_LIST: u32 = 2_000;
/// Most rules in all lists together, so a client cannot grow the database without bound.
const MAX_RULES_TOTAL: u32 = 20_000;
/// Most app profiles; the verdict path stops making new ones beyond it (their connections
/// are decided with the global settings).
const MAX_APPS: usize = 2_000;

/// The helper's request handler and its view of the settings.
#[derive(Debug)]
pub struct Service {
    store: Store,
    snapshot: Snapshot,
    policy: Arc<SharedPolicy>,
    connections: Arc<ConnectionLog>,
    prompts: Arc<PromptBoard>,
    prompt_replies: Option<std::sync::mpsc::Receiver<PromptReply>>,
    started: Instant,
    events: broadcast::Sender<Event>,
    changes: tokio::sync::watch::Sender<u64>,
    enforcement: EnforcementState,
    attribution: Option<String>,
    /// Most app profiles (`MAX_APPS`; smaller in tests).
    max_apps: usize,
    /// Geo data and filter lists, so that `explain` answers as the verdict path decides.
    intel: Option<(
        Arc<portcullis_intel::geo::LiveGeo>,
        Arc<crate::lists::Lists>,
    )>,
}

fn invalid(message: impl Into<String>) -> ErrorFrame {
    ErrorFrame::new(ErrorCode::InvalidInput, message)
}

fn internal(e: &StoreError) -> ErrorFrame {
    // The error can name rules and app paths: details only at DEBUG (see SECURITY.md).
    tracing::error!("settings database change failed; nothing was changed");
    tracing::debug!(error = %e, "settings database change failed");
    ErrorFrame::new(ErrorCode::Internal, format!("nothing was changed: {e}"))
}

/// Checks an app key from a client: a special profile or an absolute, normalised executable
/// path without control characters (a path written two ways would make two profiles, and
/// control characters could drive the terminal that prints it).
pub(crate) fn check_app_key(key: &str) -> Result<(), ErrorFrame> {
    if key == KERNEL_KEY || key == SYSTEM_DNS_KEY {
        return Ok(());
    }
    // Sandboxed apps are named by their id, which survives updates: `flatpak:org.mozilla.firefox`,
    // `snap:firefox`.
    if let Some(id) = key
        .strip_prefix("flatpak:")
        .or_else(|| key.strip_prefix("snap:"))
    {
        let fine = !id.is_empty()
            && id.len() <= 255
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        return if fine {
            Ok(())
        } else {
            Err(invalid(format!(
                "invalid app `{}`: a Flatpak or Snap id has only letters, digits, `.`, `_` and `-`",
                key.chars().take(200).collect::<String>().escape_debug()
            )))
        };
    }
    // AppImages are named by their file, in a key space of their own (see attribution).
    if let Some(path) = key.strip_prefix("appimage:") {
        return check_app_key(path)
            .map_err(|e| invalid(format!("invalid AppImage app: {}", e.message)));
    }
    let bad = |why: &str| {
        invalid(format!(
            "invalid app `{}`: {why}",
            key.chars().take(200).collect::<String>().escape_debug()
        ))
    };
    if key.is_empty() || key.len() > MAX_APP_KEY {
        return Err(bad(&format!(
            "expected an absolute executable path of at most {MAX_APP_KEY} bytes"
        )));
    }
    if key.chars().any(char::is_control) {
        return Err(bad("control characters are not allowed"));
    }
    let path = Path::new(key);
    if !path.is_absolute() {
        return Err(bad(
            "expected an absolute executable path (e.g. /usr/bin/curl)",
        ));
    }
    let normal: std::path::PathBuf = path.components().collect();
    let has_dots = path.components().any(|c| {
        matches!(
            c,
            std::path::Component::CurDir | std::path::Component::ParentDir
        )
    });
    if has_dots || normal.as_os_str() != path.as_os_str() {
        return Err(bad(&format!(
            "write the path without `.`, `..`, `//` or a trailing `/` (e.g. {})",
            normal.display()
        )));
    }
    Ok(())
}

fn app_name(key: &str) -> String {
    Path::new(key)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| key.to_string())
}

impl Service {
    /// Loads the database, drops the rules that lived until a restart or whose time is up,
    /// and is ready to answer.
    pub fn start(
        mut store: Store,
        events: broadcast::Sender<Event>,
        enforcement: EnforcementState,
        now_ms: u64,
    ) -> Result<Service, StoreError> {
        // Validate everything first: a bad database stops us before we change anything.
        store.load()?;
        let ended = store.remove_ended_rules(now_ms, true, &process_exited)?;
        if !ended.is_empty() {
            tracing::info!(
                lists = ended.len(),
                "removed rules that lived until restart or expired"
            );
        }
        let snapshot = store.load()?;
        let (board, replies) = PromptBoard::new();
        Ok(Service {
            store,
            policy: Arc::new(SharedPolicy::new(snapshot.clone())),
            snapshot,
            connections: Arc::new(ConnectionLog::new(CONNECTION_LOG)),
            prompts: Arc::new(board),
            prompt_replies: Some(replies),
            started: Instant::now(),
            events,
            changes: tokio::sync::watch::Sender::new(0),
            enforcement,
            attribution: None,
            max_apps: MAX_APPS,
            intel: None,
        })
    }

    /// What the decision path reads.
    #[cfg(test)]
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// The policy the verdict path reads; updated after every committed change.
    pub fn policy(&self) -> Arc<SharedPolicy> {
        self.policy.clone()
    }

    /// The log of recent connections, written by the verdict path.
    pub fn connections(&self) -> Arc<ConnectionLog> {
        self.connections.clone()
    }

    /// The prompts waiting for an answer.
    pub fn prompts(&self) -> Arc<PromptBoard> {
        self.prompts.clone()
    }

    /// The answers channel's receiving end, for the verdict thread (once).
    pub fn take_prompt_replies(&mut self) -> Option<std::sync::mpsc::Receiver<PromptReply>> {
        self.prompt_replies.take()
    }

    /// Records how connections are attributed, for `status`.
    pub fn set_attribution(&mut self, how: String) {
        self.attribution = Some(how);
    }

    /// Records the enforcement state that `status` reports.
    pub fn set_enforcement(&mut self, state: EnforcementState) {
        self.enforcement = state;
    }

    /// Makes a profile for an app the verdict path met for the first time. Errors are logged:
    /// the connection was decided already, with the global settings.
    pub fn app_seen(&mut self, key: &str, kind: AppKind, name: &str, now_ms: u64) {
        if self.snapshot.apps.contains_key(key) {
            return;
        }
        if check_app_key(key).is_err() {
            // A path no client could name (control characters, `..`): its connections are
            // decided with the global settings, and no profile is made.
            tracing::warn!("an app with an unusable path connected; no profile made");
            return;
        }
        if !self.make_room() {
            tracing::warn!("too many configured app profiles; new apps get the global settings");
            return;
        }
        let owner = RuleOwner::App(key.to_string());
        let made = self
            .store
            .ensure_app(key, kind, name, now_ms)
            .and_then(|created| {
                self.refresh(&owner)?;
                Ok(created)
            });
        match made {
            Ok(true) => {
                tracing::info!("new app profile");
                if let Some(row) = self.snapshot.apps.get(key) {
                    self.emit(Event::AppAdded {
                        app: row.info.clone(),
                    });
                }
            }
            Ok(false) => {}
            Err(e) => {
                // The error can name the app's path: details only at DEBUG.
                tracing::error!("cannot store a new app profile");
                tracing::debug!(error = %e, "cannot store a new app profile");
            }
        }
    }

    fn emit(&self, event: Event) {
        if matches!(
            event,
            Event::RulesChanged { .. } | Event::SettingChanged { .. }
        ) {
            // The control plane (expiry timer, live re-decision, fail_open) follows this
            // counter, never the event stream, which can lag under connection load.
            self.changes.send_modify(|generation| *generation += 1);
        }
        // No subscribers is fine: events are for UIs that happen to listen.
        let _ = self.events.send(event);
    }

    /// A receiver that sees every committed change of rules or settings (coalesced).
    pub fn policy_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn refresh(&mut self, owner: &RuleOwner) -> Result<(), StoreError> {
        let row = self.store.load_owner(owner)?;
        match (owner, row) {
            (RuleOwner::Global, Some(row)) => self.snapshot.global = row,
            (RuleOwner::App(key), Some(row)) => {
                self.snapshot.apps.insert(key.clone(), row);
            }
            (RuleOwner::App(key), None) => {
                self.snapshot.apps.remove(key);
            }
            (RuleOwner::Global, None) => {}
        }
        self.policy.store(self.snapshot.clone());
        Ok(())
    }

    fn profile(&self, owner: &RuleOwner) -> Option<&ProfileRow> {
        match owner {
            RuleOwner::Global => Some(&self.snapshot.global),
            RuleOwner::App(key) => self.snapshot.apps.get(key),
        }
    }

    fn view(&self, app: Option<&str>) -> SettingsView {
        let app_overrides = app
            .and_then(|k| self.snapshot.apps.get(k))
            .map(|p| &p.overrides);
        settings_view(app, app_overrides, &self.snapshot.global.overrides)
    }

    /// For a change to `owner`: `Some(name)` when it is an app without a profile yet (the
    /// change then creates it in the same transaction), after checking the app key and the
    /// limit on profiles.
    fn new_app_for(&mut self, owner: &RuleOwner) -> Result<Option<String>, ErrorFrame> {
        let RuleOwner::App(key) = owner else {
            return Ok(None);
        };
        check_app_key(key)?;
        if self.snapshot.apps.contains_key(key) {
            return Ok(None);
        }
        if !self.make_room() {
            return Err(invalid(format!(
                "the helper already knows {} configured apps, the most allowed; remove some first",
                self.max_apps
            )));
        }
        Ok(Some(app_name(key)))
    }

    /// Whether there is room for one more app profile, after forgetting, if the limit is
    /// reached, the least recently created or changed profile that nobody configured (no rules,
    /// no settings: the verdict path made it, and it decides nothing the global settings would
    /// not). So any local user who runs thousands of programs can only push out such profiles,
    /// never a configured one; a forgotten app gets a new profile at its next connection.
    fn make_room(&mut self) -> bool {
        if self.snapshot.apps.len() < self.max_apps {
            return true;
        }
        match self.store.evict_unconfigured() {
            Ok(Some(key)) => {
                tracing::info!("app profile limit reached; an unconfigured profile was forgotten");
                self.snapshot.apps.remove(&key);
                self.policy.store(self.snapshot.clone());
                self.snapshot.apps.len() < self.max_apps
            }
            Ok(None) => false,
            Err(e) => {
                tracing::error!("cannot forget an unconfigured app profile");
                tracing::debug!(error = %e, "cannot forget an unconfigured app profile");
                false
            }
        }
    }

    /// Sets a smaller profile limit (tests).
    #[cfg(test)]
    pub fn set_max_apps(&mut self, max: usize) {
        self.max_apps = max;
    }

    /// After a committed change of `owner`: reloads it (or everything, if that fails) and
    /// tells subscribers of a new profile. An error here means the change IS stored.
    fn after_commit(&mut self, owner: &RuleOwner, created: bool) -> Result<(), ErrorFrame> {
        if let Err(e) = self.refresh(owner) {
            tracing::error!("cannot reload a changed profile; reloading everything");
            tracing::debug!(error = %e, "reload failed");
            match self.store.load() {
                Ok(snapshot) => {
                    self.snapshot = snapshot;
                    self.policy.store(self.snapshot.clone());
                }
                Err(e) => {
                    return Err(ErrorFrame::new(
                        ErrorCode::Internal,
                        format!("the change was stored, but the helper cannot read it back: {e}"),
                    ));
                }
            }
        }
        if created && let RuleOwner::App(key) = owner {
            tracing::info!("new app profile");
            if let Some(row) = self.snapshot.apps.get(key) {
                self.emit(Event::AppAdded {
                    app: row.info.clone(),
                });
            }
        }
        Ok(())
    }

    /// The global profile, then every app's.
    fn all_profiles(&self) -> impl Iterator<Item = &ProfileRow> {
        std::iter::once(&self.snapshot.global).chain(self.snapshot.apps.values())
    }

    fn not_found_app(key: &str) -> ErrorFrame {
        ErrorFrame::new(
            ErrorCode::NotFound,
            format!(
                "no app `{}` (see `portcullisctl apps list`)",
                key.escape_debug()
            ),
        )
    }

    fn rules_of(&self, owner: &RuleOwner) -> Result<Vec<RuleInfo>, ErrorFrame> {
        match self.profile(owner) {
            Some(p) => Ok(p.rules.clone()),
            None => match owner {
                RuleOwner::App(key) => {
                    check_app_key(key)?;
                    Err(Self::not_found_app(key))
                }
                RuleOwner::Global => Ok(Vec::new()),
            },
        }
    }

    /// Answers one request. `clients` is the number of connected clients, for `Status`.
    /// `Subscribe` is the connection layer's business and never reaches here.
    pub fn handle(
        &mut self,
        request: Request,
        now_ms: u64,
        clients: u32,
    ) -> Result<Response, ErrorFrame> {
        match request {
            Request::Status => Ok(Response::Status(self.status(clients))),
            Request::Pause { minutes } => {
                if !matches!(self.enforcement, EnforcementState::Enforcing) {
                    return Err(invalid(
                        "the helper is not enforcing: there is nothing to pause",
                    ));
                }
                if !(1..=1440).contains(&minutes) {
                    return Err(invalid(format!(
                        "pause for 1 to 1440 minutes, not {minutes}"
                    )));
                }
                let until = now_ms.saturating_add(u64::from(minutes) * 60_000);
                self.policy.pause(until);
                tracing::info!(minutes, "protection paused");
                // Wakes the timer that ends it.
                self.changes.send_modify(|generation| *generation += 1);
                Ok(Response::Status(self.status(clients)))
            }
            Request::Resume => {
                self.end_pause();
                Ok(Response::Status(self.status(clients)))
            }
            // The connection layer answers this itself.
            Request::LiveRates => Ok(Response::Rates(Vec::new())),
            // With history kept, the connection layer answers these itself.
            Request::HistoryQuery { .. }
            | Request::HistoryTop { .. }
            | Request::HistoryBandwidth { .. }
            | Request::HistoryClear { .. } => Err(ErrorFrame::new(
                ErrorCode::NotFound,
                "the network history is off (see [history] in the configuration, and the helper's log)",
            )),
            // With a resolver running, the connection layer answers these itself.
            Request::DnsStatus => Ok(Response::DnsStatus(Box::new(
                portcullis_protocol::DnsStatus {
                    enabled: false,
                    redirect: false,
                    listen: Vec::new(),
                    upstreams: Vec::new(),
                    cache_entries: 0,
                    cache_bytes: 0,
                },
            ))),
            Request::IntelLookup { ip } => Ok(Response::Intel(Box::new(self.intel_lookup(ip)))),
            Request::ListsStatus => Ok(Response::Lists(Box::new(
                portcullis_protocol::ListsStatus {
                    lists: self
                        .intel
                        .as_ref()
                        .map(|(_, lists)| lists.states())
                        .unwrap_or_default(),
                    enabled: crate::lists::enabled(None, &self.snapshot.global.overrides)
                        .unwrap_or_default(),
                },
            ))),
            // The connection layer answers these (the updater lives there).
            Request::UpdateStatus | Request::UpdateCheck => Err(ErrorFrame::new(
                ErrorCode::Internal,
                "update requests are answered by the connection layer",
            )),
            Request::DnsQuery { .. } | Request::DnsFlush => Err(ErrorFrame::new(
                ErrorCode::NotFound,
                "the helper's DNS resolver is off ([dns] enabled = false in its configuration)",
            )),
            Request::GetSettings { app } => {
                if let Some(key) = &app {
                    check_app_key(key)?;
                    if !self.snapshot.apps.contains_key(key) {
                        return Err(Self::not_found_app(key));
                    }
                }
                Ok(Response::Settings(self.view(app.as_deref())))
            }
            Request::SetSetting { app, key, value } => {
                if let Some(v) = &value {
                    v.check(key).map_err(|e| invalid(e.message))?;
                }
                let owner = match &app {
                    Some(k) if !key.per_app() => {
                        check_app_key(k)?;
                        return Err(invalid(format!(
                            "{key} is a global setting; it cannot be set for one app"
                        )));
                    }
                    Some(k) => RuleOwner::App(k.clone()),
                    None => RuleOwner::Global,
                };
                if let (RuleOwner::App(k), None) = (&owner, &value) {
                    // Clearing a setting of an app we never saw is a mistake, not a new app.
                    check_app_key(k)?;
                    if !self.snapshot.apps.contains_key(k) {
                        return Err(Self::not_found_app(k));
                    }
                }
                let name = self.new_app_for(&owner)?;
                let create = name.as_deref().map(|name| NewApp {
                    kind: AppKind::Executable,
                    name,
                    now_ms,
                });
                let found = self
                    .store
                    .set_setting_creating(&owner, key, value.as_ref(), create.as_ref())
                    .map_err(|e| internal(&e))?;
                if !found {
                    return Err(internal_missing(&owner));
                }
                self.after_commit(&owner, create.is_some())?;
                tracing::info!(setting = %key, per_app = app.is_some(), "setting changed");
                self.emit(Event::SettingChanged {
                    app: app.clone(),
                    key,
                });
                Ok(Response::Settings(self.view(app.as_deref())))
            }
            Request::ListApps => Ok(Response::Apps(
                self.snapshot
                    .apps
                    .values()
                    .map(|p| p.info.clone())
                    .collect(),
            )),
            Request::ShowApp { app } => {
                check_app_key(&app)?;
                let row = self
                    .snapshot
                    .apps
                    .get(&app)
                    .ok_or_else(|| Self::not_found_app(&app))?;
                Ok(Response::App {
                    app: row.info.clone(),
                    settings: self.view(Some(&app)),
                    rules: row.rules.clone(),
                })
            }
            Request::ListRules { owner } => Ok(Response::Rules(self.rules_of(&owner)?)),
            Request::AddRule {
                owner,
                text,
                position,
                lifetime,
            } => {
                if text.len() > MAX_RULE_TEXT {
                    return Err(invalid(format!(
                        "rule text is {} bytes long; at most {MAX_RULE_TEXT} are accepted",
                        text.len()
                    )));
                }
                let rule: Rule = text
                    .parse()
                    .map_err(|e: portcullis_policy::RuleError| invalid(e.to_string()))?;
                if position == Some(0) {
                    return Err(invalid("rule positions start at 1"));
                }
                if let RuleLifetime::Until { unix_ms } = lifetime
                    && unix_ms <= now_ms
                {
                    return Err(invalid("the rule's end time has already passed"));
                }
                let name = self.new_app_for(&owner)?;
                let count = self.profile(&owner).map_or(0, |p| p.info.rules);
                if count >= MAX_RULES_PER_LIST {
                    return Err(invalid(format!(
                        "this rule list already holds {count} rules, the most allowed"
                    )));
                }
                let total: u32 = self.all_profiles().map(|p| p.info.rules).sum();
                if total >= MAX_RULES_TOTAL {
                    return Err(invalid(format!(
                        "the helper already holds {total} rules, the most allowed"
                    )));
                }
                let create = name.as_deref().map(|name| NewApp {
                    kind: AppKind::Executable,
                    name,
                    now_ms,
                });
                let id = self
                    .store
                    .add_rule_creating(&owner, &rule, position, lifetime, now_ms, create.as_ref())
                    .map_err(|e| internal(&e))?
                    .ok_or_else(|| internal_missing(&owner))?;
                self.after_commit(&owner, create.is_some())?;
                tracing::info!(
                    rule_id = id,
                    per_app = matches!(owner, RuleOwner::App(_)),
                    "rule added"
                );
                self.emit(Event::RulesChanged {
                    owner: owner.clone(),
                });
                self.find_rule(&owner, id)
            }
            Request::RemoveRule { id } => {
                let before = self.find_rule_anywhere(id)?;
                let owner = self
                    .store
                    .remove_rule(id)
                    .map_err(|e| internal(&e))?
                    .ok_or_else(|| no_rule(id))?;
                self.after_commit(&owner, false)?;
                tracing::info!(rule_id = id, "rule removed");
                self.emit(Event::RulesChanged { owner });
                Ok(Response::Rule(before))
            }
            Request::MoveRule { id, position } => {
                if position == 0 {
                    return Err(invalid("rule positions start at 1"));
                }
                let owner = self
                    .store
                    .move_rule(id, position)
                    .map_err(|e| internal(&e))?
                    .ok_or_else(|| no_rule(id))?;
                self.after_commit(&owner, false)?;
                tracing::info!(rule_id = id, position, "rule moved");
                self.emit(Event::RulesChanged {
                    owner: owner.clone(),
                });
                Ok(Response::Rules(self.rules_of(&owner)?))
            }
            Request::Subscribe => Ok(Response::Subscribed),
            Request::ListConnections => Ok(Response::Connections(self.connections.recent())),
            Request::WatchPrompts => Ok(Response::Subscribed),
            Request::ListPrompts => Ok(Response::Prompts(self.prompts.list())),
            Request::AnswerPrompt { id, answer } => self.answer_prompt(id, answer, now_ms, clients),
            Request::Explain { app, connection } => {
                if let Some(key) = &app {
                    check_app_key(key)?;
                }
                Ok(Response::Explanation(
                    self.explain(app.as_deref(), &connection)?,
                ))
            }
        }
    }

    fn find_rule(&self, owner: &RuleOwner, id: i64) -> Result<Response, ErrorFrame> {
        self.profile(owner)
            .and_then(|p| p.rules.iter().find(|r| r.id == id))
            .map(|r| Response::Rule(r.clone()))
            .ok_or_else(|| no_rule(id))
    }

    fn find_rule_anywhere(&self, id: i64) -> Result<RuleInfo, ErrorFrame> {
        self.all_profiles()
            .flat_map(|p| p.rules.iter())
            .find(|r| r.id == id)
            .cloned()
            .ok_or_else(|| no_rule(id))
    }

    /// Answers a prompt: stores the rule the answer asks for (first in the app's list, so it
    /// decides from now on), then releases the waiting connection with the verdict.
    fn answer_prompt(
        &mut self,
        id: u64,
        answer: PromptAnswer,
        now_ms: u64,
        clients: u32,
    ) -> Result<Response, ErrorFrame> {
        // Claimed off the board first, so two answers racing cannot both make rules.
        let open = self.prompts.claim(id).ok_or_else(|| {
            ErrorFrame::new(
                ErrorCode::NotFound,
                format!("no prompt {id} waits (it may have been answered or timed out)"),
            )
        })?;
        let wanted = match prompt_rule(&open, &answer, now_ms) {
            Ok(w) => w,
            Err(e) => {
                self.prompts.put(open);
                return Err(e);
            }
        };
        let rule = match wanted {
            None => None,
            Some((text, lifetime)) => {
                let request = Request::AddRule {
                    owner: RuleOwner::App(open.info.app.clone()),
                    text,
                    position: Some(1),
                    lifetime,
                };
                match self.handle(request, now_ms, clients) {
                    Ok(Response::Rule(rule)) => Some(rule),
                    Ok(_) => None,
                    Err(e) => {
                        // Nothing was stored: the prompt stays open for another answer.
                        self.prompts.put(open);
                        return Err(e);
                    }
                }
            }
        };
        self.prompts.reply(PromptReply {
            id,
            allow: answer.allow,
        });
        tracing::info!(prompt = id, allow = answer.allow, "prompt answered");
        Ok(Response::Answered(Answered { id, rule }))
    }

    /// The geo data and filter lists `explain` consults, the same ones the verdict path uses
    /// (so `explain` finds country, ASN and list entries, by name and by address, as a live
    /// connection would).
    /// The filter lists or geo data in force changed (a signed update): the kernel's cached
    /// verdicts are retired and live connections decided again, as after a rule change.
    pub fn intel_changed(&self) {
        self.policy.retire_cached();
        self.changes.send_modify(|generation| *generation += 1);
    }

    pub fn set_intel(
        &mut self,
        geo: Arc<portcullis_intel::geo::LiveGeo>,
        lists: Arc<crate::lists::Lists>,
    ) {
        self.intel = Some((geo, lists));
    }

    /// What the geo-IP and ASN data in force say of `ip`.
    fn intel_lookup(&self, ip: std::net::IpAddr) -> portcullis_protocol::IntelInfo {
        let mut info = portcullis_protocol::IntelInfo {
            ip,
            geo_loaded: false,
            country: None,
            continent: None,
            continent_name: None,
            asn: None,
            as_org: None,
        };
        if let Some((geo, _)) = &self.intel {
            let db = geo.load();
            let stats = db.stats();
            info.geo_loaded = stats.country_v4 + stats.country_v6 + stats.asn_v4 + stats.asn_v6 > 0;
            let found = db.lookup(ip);
            info.country = found.country.map(|c| c.as_str().to_owned());
            if let Some(continent) = found.continent() {
                info.continent = Some(continent.code().to_owned());
                info.continent_name = Some(continent.name().to_owned());
            }
            if let Some(asn) = found.asn {
                info.asn = Some(asn.number);
                info.as_org = Some(asn.org.to_owned());
            }
        }
        info
    }

    fn explain(
        &self,
        app: Option<&str>,
        query: &ConnectionQuery,
    ) -> Result<Explanation, ErrorFrame> {
        let domain = match &query.domain {
            Some(d) => {
                let d = d.trim_end_matches('.').to_ascii_lowercase();
                if d.is_empty() || d.len() > 253 || !d.is_ascii() {
                    return Err(invalid(format!(
                        "invalid domain `{}`: expected an ASCII name of at most 253 bytes",
                        d.escape_debug()
                    )));
                }
                Some(d)
            }
            None => None,
        };
        let (place, listed) = match &self.intel {
            Some((geo, lists)) => (
                crate::verdict::Place::of(&geo.load(), query.remote),
                lists.check_connection(
                    app.and_then(|k| self.snapshot.apps.get(k))
                        .map(|p| &p.overrides),
                    &self.snapshot.global.overrides,
                    domain.as_deref(),
                    query.remote,
                ),
            ),
            None => (crate::verdict::Place::default(), None),
        };
        let facts = Facts {
            direction: query.direction,
            protocol: query.protocol,
            remote: query.remote,
            remote_port: query.remote_port,
            local_port: query.local_port,
            domain: domain.as_deref(),
            looked_up: domain.is_some(),
            country: place.country,
            asn: place.asn,
            continent: place.continent,
            listed: listed.as_ref().map(crate::lists::Listed::hit),
        };
        let app_rules = app.and_then(|key| {
            self.snapshot.apps.get(key).map(|p| ProfileRules {
                label: ProfileLabel::App(key.to_string()),
                settings: &p.overrides,
                rules: &p.compiled,
            })
        });
        let global = ProfileRules {
            label: ProfileLabel::Global,
            settings: &self.snapshot.global.overrides,
            rules: &self.snapshot.global.compiled,
        };
        Ok(decide(app_rules.as_ref(), &global, &facts))
    }

    /// The helper's status.
    pub fn status(&self, clients: u32) -> Status {
        let rules = self.all_profiles().map(|p| p.info.rules).sum();
        let enforcement = match (&self.enforcement, self.policy.paused_at(crate::now_ms())) {
            (EnforcementState::Enforcing, Some(until)) => EnforcementState::Paused {
                until_unix_ms: until,
            },
            (state, _) => state.clone(),
        };
        Status {
            version: portcullis_protocol::RELEASE_VERSION.to_string(),
            protocol_version: portcullis_protocol::PROTOCOL_VERSION,
            uptime_secs: self.started.elapsed().as_secs(),
            pid: std::process::id(),
            enforcement,
            attribution: self.attribution.clone(),
            apps: u32::try_from(self.snapshot.apps.len()).unwrap_or(u32::MAX),
            rules,
            clients,
        }
    }

    /// The earliest time a rule or a pause ends, if any has an end time.
    pub fn next_expiry(&self) -> Option<u64> {
        self.all_profiles()
            .flat_map(|p| p.rules.iter())
            .filter_map(|r| match r.lifetime {
                RuleLifetime::Until { unix_ms } => Some(unix_ms),
                _ => None,
            })
            .chain(self.policy.pause_end())
            .min()
    }

    /// Ends a pause (asked for, or its time is up): protection resumes, and the connections
    /// opened during the pause are decided again (the live re-decision follows this change).
    fn end_pause(&mut self) {
        if self.policy.pause_end().is_some() {
            self.policy.resume();
            tracing::info!("protection resumed");
            self.changes.send_modify(|generation| *generation += 1);
        }
    }

    /// Whether some rule lives until a process exits (the timer then looks every few seconds).
    pub fn has_process_rules(&self) -> bool {
        self.all_profiles()
            .flat_map(|p| p.rules.iter())
            .any(|r| matches!(r.lifetime, RuleLifetime::UntilExit { .. }))
    }

    /// Removes the rules whose time is up or whose process exited, and tells subscribers.
    pub fn expire(&mut self, now_ms: u64) -> Result<(), StoreError> {
        if self.policy.pause_end().is_some_and(|t| t <= now_ms) {
            self.end_pause();
        }
        let due = self.next_expiry().is_some_and(|t| t <= now_ms);
        if !due && !self.has_process_rules() {
            return Ok(());
        }
        let owners = self
            .store
            .remove_ended_rules(now_ms, false, &process_exited)?;
        if owners.is_empty() {
            if due {
                // Memory says a rule ended but the database had none to remove: it changed
                // under us. Reload, or the timer would fire again at once, forever.
                self.snapshot = self.store.load()?;
                self.policy.store(self.snapshot.clone());
            }
            return Ok(());
        }
        for owner in owners {
            self.refresh(&owner)?;
            tracing::info!("temporary rule ended");
            self.emit(Event::RulesChanged { owner });
        }
        Ok(())
    }

    /// An app's profile as clients see it.
    #[cfg(test)]
    pub fn app_info(&self, key: &str) -> Option<&portcullis_protocol::AppInfo> {
        self.snapshot.apps.get(key).map(|p| &p.info)
    }
}

/// The rule text and lifetime an answer asks for; `None` for `Once`.
fn prompt_rule(
    open: &OpenPrompt,
    answer: &PromptAnswer,
    now_ms: u64,
) -> Result<Option<(String, RuleLifetime)>, ErrorFrame> {
    let p = &open.info;
    let lifetime = match answer.duration {
        PromptDuration::Once => return Ok(None),
        PromptDuration::Minutes { minutes } if (1..=10_080).contains(&minutes) => {
            RuleLifetime::Until {
                unix_ms: now_ms.saturating_add(u64::from(minutes) * 60_000),
            }
        }
        PromptDuration::Minutes { minutes } => {
            return Err(invalid(format!(
                "{minutes} minutes: answer for 1 to 10080 minutes"
            )));
        }
        PromptDuration::UntilAppQuits => match (p.pid, open.start_time) {
            (Some(pid), Some(start_time)) => RuleLifetime::UntilExit { pid, start_time },
            _ => {
                return Err(invalid(
                    "the process behind this prompt is not known; pick another duration",
                ));
            }
        },
        PromptDuration::UntilRestart => RuleLifetime::UntilRestart,
        PromptDuration::Always => RuleLifetime::Forever,
    };
    let port = match p.direction {
        Direction::Outbound => p.remote_port,
        Direction::Inbound => p.local_port,
    };
    let portspec = || match port {
        Some(port) if p.protocol != Protocol::Icmp => Ok(format!("{}/{port}", p.protocol)),
        _ => Err(invalid("this connection has no port; answer for its IP")),
    };
    let domain = || {
        p.domain
            .clone()
            .ok_or_else(|| invalid("this connection has no domain; answer for its IP"))
    };
    let target = match answer.target {
        PromptTarget::Domain => domain()?,
        PromptTarget::Subdomains => format!(".{}", domain()?),
        PromptTarget::Ip => p.remote.to_string(),
        PromptTarget::IpPort => format!("{} {}", p.remote, portspec()?),
        PromptTarget::Port => portspec()?,
    };
    let action = if answer.allow { "+" } else { "-" };
    let direction = match p.direction {
        Direction::Outbound => "",
        Direction::Inbound => " Inbound",
    };
    Ok(Some((format!("{action}{direction} {target}"), lifetime)))
}

/// Whether process `pid`, started at `start_time` (clock ticks after boot), is gone: no such
/// process, or the pid now belongs to a later one.
pub fn process_exited(pid: u32, start_time: u64) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    // Field 22; the command name (field 2) may hold spaces and parentheses.
    let started = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(19))
        .and_then(|f| f.parse::<u64>().ok());
    started != Some(start_time)
}

fn no_rule(id: i64) -> ErrorFrame {
    ErrorFrame::new(
        ErrorCode::NotFound,
        format!("no rule with id {id} (see `portcullisctl rules list`)"),
    )
}

fn internal_missing(owner: &RuleOwner) -> ErrorFrame {
    ErrorFrame::new(
        ErrorCode::Internal,
        format!("profile {owner:?} vanished during the change"),
    )
}

#[cfg(test)]
mod tests;

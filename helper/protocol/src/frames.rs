//! Frames: what travels on the socket. Each frame is one JSON document behind a 4-byte
//! big-endian length (see the `ipc` crate). The server speaks first: `Hello` (or an `Error`
//! frame when it refuses the peer, then it closes); the client answers with its `Hello`, then
//! sends `Request`s with ids of its choosing. Responses carry the request's id and may come in
//! any order; `Event`s arrive after `Subscribe`.

use serde::{Deserialize, Serialize};

use crate::apps::{AppInfo, AppRef};
use crate::connection::{ConnectionInfo, ConnectionQuery};
use crate::dns::{DnsAnswer, DnsStatus};
use crate::explain::Explanation;
use crate::history::{
    AppRate, BandwidthPoint, HistoryBucket, HistoryCursor, HistoryFilter, HistoryPage,
    HistoryTopBy, HistoryTopEntry,
};
use crate::prompts::{Answered, PromptAnswer, PromptInfo, PromptOutcome};
use crate::rules::{RuleInfo, RuleLifetime, RuleOwner};
use crate::settings::{SettingKey, SettingValue, SettingsView};
use crate::status::Status;
use crate::updates::UpdateStatus;

/// A frame from a client to the helper.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// The client's greeting, sent once, after the server's.
    Hello {
        /// The client's `PROTOCOL_VERSION`.
        protocol_version: u32,
        /// Who is speaking, for logs (e.g. `portcullisctl 0.1.0`).
        client: String,
    },
    /// A request; the response carries the same id.
    Request {
        /// Chosen by the client; unique among its requests in flight.
        id: u64,
        /// What is asked.
        request: Request,
    },
}

/// A frame from the helper to a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// The helper's greeting, sent first once the peer is accepted.
    Hello {
        /// The helper's `PROTOCOL_VERSION`.
        protocol_version: u32,
        /// The helper's release version.
        version: String,
    },
    /// The answer to request `id`.
    Response {
        /// The request's id.
        id: u64,
        /// The result.
        reply: Reply,
    },
    /// Something happened (only after `Subscribe`).
    Event {
        /// What happened.
        event: Event,
    },
    /// The connection is refused or broken; the helper closes it after this frame.
    Error(ErrorFrame),
}

/// A response's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    /// It worked.
    Ok(Response),
    /// It did not; nothing was changed.
    Err(ErrorFrame),
}

/// Everything a client can ask.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(tag = "method", content = "params", rename_all = "snake_case")]
pub enum Request {
    /// Version, uptime, enforcement state. Answer: `Response::Status`.
    Status,
    /// Settings in force for the global profile (`app: None`) or an app. Answer: `Settings`.
    GetSettings {
        /// The app, or `None` for global settings.
        #[serde(default)]
        app: Option<AppRef>,
    },
    /// Sets (`value: Some`) or clears (`value: None`, back to inherited) one setting.
    /// Answer: `Settings` after the change.
    SetSetting {
        /// The app, or `None` for global settings.
        #[serde(default)]
        app: Option<AppRef>,
        /// Which setting.
        key: SettingKey,
        /// The new value, or `None` to inherit.
        #[serde(default)]
        value: Option<SettingValue>,
    },
    /// Every app profile. Answer: `Apps`.
    ListApps,
    /// One app: profile, settings, rules. Answer: `App`.
    ShowApp {
        /// The app.
        app: AppRef,
    },
    /// A rule list. Answer: `Rules`.
    ListRules {
        /// Whose list.
        owner: RuleOwner,
    },
    /// Parses `text` and adds it at `position` (1-based; `None`: at the end). Invalid text is
    /// refused with the bad token named, and nothing is stored. Answer: `Rule`.
    AddRule {
        /// Whose list.
        owner: RuleOwner,
        /// The rule text, e.g. `- *.example.com`.
        text: String,
        /// Where to insert it; `None` appends.
        #[serde(default)]
        position: Option<u32>,
        /// How long it lives; default forever.
        #[serde(default = "forever")]
        lifetime: RuleLifetime,
    },
    /// Removes a rule by id. Answer: `Rule` (the removed one).
    RemoveRule {
        /// The rule's id.
        id: i64,
    },
    /// Moves a rule to a 1-based position within its list. Answer: `Rules` (the list after).
    MoveRule {
        /// The rule's id.
        id: i64,
        /// The new position; past the end means last.
        position: u32,
    },
    /// Starts sending `Event` frames on this connection. Answer: `Subscribed`.
    Subscribe,
    /// Decides a hypothetical connection of `app` (or of an app without a profile) with the
    /// settings and rules in force, changing nothing. Answer: `Explanation`.
    Explain {
        /// The app, or `None` for an app that has no profile of its own.
        #[serde(default)]
        app: Option<AppRef>,
        /// The connection.
        connection: ConnectionQuery,
    },
    /// The connections decided most recently (newest last; the helper keeps a bounded
    /// number). Answer: `Connections`.
    ListConnections,
    /// Like `Subscribe`, and this client will answer prompts: while at least one such client
    /// is connected, connections whose policy says `ask` wait for an answer. Answer:
    /// `Subscribed`.
    WatchPrompts,
    /// Prompts waiting for an answer. Answer: `Prompts`.
    ListPrompts,
    /// Answers a prompt; the waiting connection (and any merged with it) gets the verdict,
    /// and unless `Once`, a rule in the app's list makes it stick. Answer: `Answered`.
    AnswerPrompt {
        /// The prompt's id.
        id: u64,
        /// The answer.
        answer: PromptAnswer,
    },
    /// The resolver's state. Answer: `DnsStatus`.
    DnsStatus,
    /// Resolves `name` (A and AAAA) as `app` would be answered, without recording the lookup
    /// for the app's connections. Answer: `DnsAnswer`.
    DnsQuery {
        /// The name.
        name: String,
        /// The app, or `None` for an app that has no profile of its own.
        #[serde(default)]
        app: Option<AppRef>,
    },
    /// Empties the resolver's cache. Answer: `DnsFlushed`.
    DnsFlush,
    /// Lets every new connection pass, undecided, for `minutes` (1–1440); protection resumes
    /// by itself then. Answer: `Status`.
    Pause {
        /// How long.
        minutes: u32,
    },
    /// Ends a pause now; connections opened during it are decided again. Answer: `Status`.
    Resume,
    /// A page of history matching `filter`, newest first, after `after` (the previous
    /// page's `next`). Answer: `History`.
    HistoryQuery {
        /// Which rows.
        #[serde(default)]
        filter: HistoryFilter,
        /// Where the page starts; `None` for the newest.
        #[serde(default)]
        after: Option<HistoryCursor>,
        /// Most rows (1 to `HISTORY_PAGE_MAX`).
        limit: u32,
    },
    /// The top apps, domains or countries among rows matching `filter`, by number of rows
    /// (or by bytes with `by_bytes`). Answer: `HistoryTop`.
    HistoryTop {
        /// What to count by.
        by: HistoryTopBy,
        /// Which rows.
        #[serde(default)]
        filter: HistoryFilter,
        /// Order by bytes instead of rows.
        #[serde(default)]
        by_bytes: bool,
        /// Most lines (1 to `HISTORY_PAGE_MAX`).
        limit: u32,
    },
    /// Bytes, packets and connections per app per bucket in `[since_ms, until_ms)`, oldest
    /// first; one app or all. Answer: `Bandwidth`.
    HistoryBandwidth {
        /// The app, or `None` for every app.
        #[serde(default)]
        app: Option<AppRef>,
        /// Start of the range, ms since the epoch.
        since_ms: u64,
        /// End of the range, ms since the epoch.
        until_ms: u64,
        /// Bucket width.
        bucket: HistoryBucket,
    },
    /// Each app's traffic in the last second (open TCP connections), busiest first. Answer:
    /// `Rates`.
    LiveRates,
    /// Removes one app's history, or all of it. Answer: `HistoryCleared`.
    HistoryClear {
        /// The app, or `None` for everything.
        #[serde(default)]
        app: Option<AppRef>,
    },
    /// The signed-updates state. Answer: `Updates`.
    UpdateStatus,
    /// Checks for a newer signed data bundle now, and installs it if it passes every check.
    /// Answer: `Updates`, whose `last` is this check's outcome.
    UpdateCheck,
    /// The filter lists: what each holds and whether it is in force. Answer: `Lists`.
    ListsStatus,
    /// What the geo-IP and ASN data in force say of an address. Answer: `Intel`.
    IntelLookup {
        /// The address.
        #[cfg_attr(feature = "ts", ts(type = "string"))]
        ip: std::net::IpAddr,
    },
}

fn forever() -> RuleLifetime {
    RuleLifetime::Forever
}

impl Request {
    /// Whether sending the request twice has the same effect as once; only these are resent
    /// automatically after a reconnect.
    pub fn is_idempotent(&self) -> bool {
        match self {
            Request::Status
            | Request::GetSettings { .. }
            | Request::SetSetting { .. }
            | Request::ListApps
            | Request::ShowApp { .. }
            | Request::ListRules { .. }
            | Request::MoveRule { .. }
            | Request::Subscribe
            | Request::Explain { .. }
            | Request::ListConnections
            | Request::WatchPrompts
            | Request::ListPrompts
            | Request::DnsStatus
            | Request::DnsQuery { .. }
            | Request::DnsFlush
            | Request::Pause { .. }
            | Request::Resume
            | Request::HistoryQuery { .. }
            | Request::HistoryTop { .. }
            | Request::HistoryBandwidth { .. }
            | Request::LiveRates
            | Request::UpdateStatus
            | Request::UpdateCheck
            | Request::IntelLookup { .. }
            | Request::ListsStatus => true,
            // Clearing again after a reconnect would remove what was recorded meanwhile.
            Request::AddRule { .. }
            | Request::RemoveRule { .. }
            | Request::AnswerPrompt { .. }
            | Request::HistoryClear { .. } => false,
        }
    }
}

/// Answers to requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(tag = "kind", content = "data", rename_all = "snake_case")]
pub enum Response {
    /// For `Status`.
    Status(Status),
    /// For `GetSettings` and `SetSetting`.
    Settings(SettingsView),
    /// For `ListApps`.
    Apps(Vec<AppInfo>),
    /// For `ShowApp`.
    App {
        /// The profile.
        app: AppInfo,
        /// Its settings, resolved.
        settings: SettingsView,
        /// Its own rules, in order.
        rules: Vec<RuleInfo>,
    },
    /// For `ListRules` and `MoveRule`.
    Rules(Vec<RuleInfo>),
    /// For `AddRule` and `RemoveRule`.
    Rule(RuleInfo),
    /// For `Subscribe`.
    Subscribed,
    /// For `Explain`.
    Explanation(Explanation),
    /// For `ListConnections`.
    Connections(Vec<ConnectionInfo>),
    /// For `ListPrompts`.
    Prompts(Vec<PromptInfo>),
    /// For `AnswerPrompt`.
    Answered(Answered),
    /// For `DnsStatus` (boxed: much larger than the other answers).
    DnsStatus(Box<DnsStatus>),
    /// For `DnsQuery`.
    DnsAnswer(Box<DnsAnswer>),
    /// For `DnsFlush`: how many answers the cache held.
    DnsFlushed {
        /// Answers removed.
        entries: u64,
    },
    /// For `HistoryQuery`.
    History(HistoryPage),
    /// For `HistoryTop`.
    HistoryTop(Vec<HistoryTopEntry>),
    /// For `HistoryBandwidth`.
    Bandwidth(Vec<BandwidthPoint>),
    /// For `LiveRates`.
    Rates(Vec<AppRate>),
    /// For `HistoryClear`: how many rows were removed.
    HistoryCleared {
        /// Rows removed.
        rows: u64,
    },
    /// For `UpdateStatus` and `UpdateCheck`.
    Updates(Box<UpdateStatus>),
    /// For `IntelLookup`.
    Intel(Box<crate::intel::IntelInfo>),
    /// For `ListsStatus`.
    Lists(Box<crate::intel::ListsStatus>),
}

/// Something that happened in the helper, sent to subscribers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A setting changed.
    SettingChanged {
        /// The app, or `None` for global.
        app: Option<AppRef>,
        /// Which key.
        key: SettingKey,
    },
    /// A rule list changed (add, remove, move, expiry).
    RulesChanged {
        /// Whose list.
        owner: RuleOwner,
    },
    /// A new app profile was made.
    AppAdded {
        /// The new profile.
        app: AppInfo,
    },
    /// A connection was decided.
    Connection {
        /// It, with its verdict and explanation (boxed: by far the largest event).
        connection: Box<ConnectionInfo>,
    },
    /// A connection waits for an answer.
    PromptAdded {
        /// The prompt.
        prompt: PromptInfo,
    },
    /// A prompt ended (answered, decided by a new rule, or timed out).
    PromptClosed {
        /// Its id.
        id: u64,
        /// How.
        outcome: PromptOutcome,
    },
    /// Events lost because this client read too slowly; reload what you show.
    Lagged {
        /// How many.
        missed: u64,
    },
    /// An event this client does not know (sent by a newer helper).
    #[serde(other)]
    Unknown,
}

/// Why something failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The peer is not allowed to talk to the helper.
    PermissionDenied,
    /// The two sides speak different protocol versions.
    VersionMismatch,
    /// A frame was not valid JSON of the expected shape.
    BadFrame,
    /// A frame was larger than `MAX_FRAME_LEN`.
    FrameTooLarge,
    /// The request's input was invalid (e.g. rule text); nothing was changed.
    InvalidInput,
    /// The app or rule named does not exist.
    NotFound,
    /// The helper failed to do it (e.g. storage error); nothing was changed.
    Internal,
    /// A code this client does not know.
    #[serde(other)]
    Unknown,
}

/// An error: a code for programs and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ErrorFrame {
    /// For programs.
    pub code: ErrorCode,
    /// For people: one line naming what was wrong.
    pub message: String,
}

impl ErrorFrame {
    /// Makes an error frame.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ErrorFrame {
        ErrorFrame {
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ErrorFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ErrorFrame {}

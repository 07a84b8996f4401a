//! The contract between `portcullisd` and every client (the desktop app, the browser bridge,
//! `portcullisctl`). It owns the wire types and `PROTOCOL_VERSION`, nothing else: serde only,
//! no I/O, no policy. Changes are additive (`#[serde(default)]` on new fields, new enum
//! variants only where old peers never receive them); the golden fixtures in `tests/golden`
//! fail on any accidental change of the wire format.

pub mod apps;
pub mod connection;
pub mod dns;
pub mod explain;
pub mod frames;
pub mod history;
pub mod intel;
pub mod prompts;
pub mod rules;
pub mod settings;
pub mod status;
pub mod updates;

pub use apps::{AppInfo, AppKind, AppRef};
pub use connection::{ConnectionInfo, ConnectionQuery, Direction, Protocol};
pub use dns::{DnsAnswer, DnsStatus, DnsUpstreamStatus};
pub use explain::{DecidedBy, Explanation, ProfileLabel, Verdict};
pub use frames::{
    ClientFrame, ErrorCode, ErrorFrame, Event, Reply, Request, Response, ServerFrame,
};
pub use history::{
    AppRate, BANDWIDTH_POINTS_MAX, BandwidthPoint, HISTORY_PAGE_MAX, HistoryBucket, HistoryCursor,
    HistoryFilter, HistoryKind, HistoryPage, HistoryRow, HistoryTopBy, HistoryTopEntry,
};
pub use intel::{IntelInfo, ListState, ListsStatus};
pub use prompts::{
    Answered, PromptAnswer, PromptDuration, PromptInfo, PromptOutcome, PromptTarget,
};
pub use rules::{RuleInfo, RuleLifetime, RuleOwner};
pub use settings::{
    Action, ListCategory, Scope, SettingEntry, SettingKey, SettingParseError, SettingSource,
    SettingValue, SettingsView,
};
pub use status::{EnforcementState, Status};
pub use updates::{UpdateOutcome, UpdateStatus};

/// The version of this protocol. Both ends send it in `Hello`; a peer with another version
/// is refused with a clear error, so an app and a helper from different releases never
/// misread each other. Bump it only for incompatible changes.
///
/// 3: settings `record_history` and `filter_lists` (a new value type) and list decisions
/// reach every client that lists settings or watches connections, which v2 clients cannot
/// read.
pub const PROTOCOL_VERSION: u32 = 3;

/// Largest frame either side accepts, in bytes (length prefix excluded). Larger frames close
/// the connection: no legitimate request or response comes near it.
pub const MAX_FRAME_LEN: u32 = 1 << 20;

/// The version of the Portcullis release this crate belongs to.
pub const RELEASE_VERSION: &str = env!("CARGO_PKG_VERSION");

//! Portcullis' decision engine: endpoint rules (text grammar, canonical text, matching),
//! address scopes, setting resolution (app → global → built-in default) and the decision
//! function that turns the facts of one connection into a verdict with an explanation. It is
//! sans-IO: no files, no clock, no globals, no threads, no logging; the daemon gathers the
//! facts and profiles, calls [`decide()`], and enforces the result. It depends on
//! `portcullis-protocol` for the types it shares with clients and on nothing of the daemon.

#![warn(missing_docs)]

pub mod decide;
pub mod rule;
pub mod scope;
pub mod settings;

pub mod doh;
pub use decide::{Facts, ListHit, ListTarget, ProfileRules, StoredRule, decide, decide_name};
pub use rule::{Direction, Entity, PortSpec, Protocol, Rule, RuleAction, RuleError};
pub use scope::{AddressClass, classify_ip};
pub use settings::{Overrides, builtin_default, resolve, settings_view};

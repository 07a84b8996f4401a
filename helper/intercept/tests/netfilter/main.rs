//! Real netfilter, inside lab network namespaces: the rule sets as iptables shows them, their
//! undo (also after the installing process was SIGKILLed), the queue end to end with real
//! connections between the lab's two namespaces, and the DNS redirect.
//!
//! Nothing here touches the machine's own network namespace: every rule and every queue lives
//! in a namespace a lab created (and deletes, also on panic); `root_namespace_is_untouched`
//! checks the root's rule sets around a full cycle. One binary, so the child process that plays
//! a crashed helper is this binary re-executed (see `rules::child_installs_then_waits`).
#![expect(
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step must fail the test at once, with its message"
)]

mod common;
mod dns;
mod queue;
mod rules;

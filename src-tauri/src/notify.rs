//! The secondary way to ask (Linux): a desktop notification with Allow and Block for a
//! prompt, for when the main window is hidden in the tray or minimized, or the prompt window
//! could not be shown. Spoken directly over the session bus
//! (`org.freedesktop.Notifications`, through `gio`, which Tauri already brings), so no
//! notification library is needed.
//!
//! An answer from a notification is "once": the prompt window is where longer-lived rules are
//! made. The notification closes when its prompt closes (answered anywhere, or timed out).
//! Without a notification server on the bus the notification is skipped with a log line; the
//! prompt window and the helper's timeout still apply. This module decides nothing: it shows
//! and passes the user's click on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use gio::glib::{self, ToVariant as _, VariantTy};
use portcullis_protocol::{Direction, PromptInfo, Protocol, Scope, Verdict};

const DEST: &str = "org.freedesktop.Notifications";
const PATH: &str = "/org/freedesktop/Notifications";
const IFACE: &str = "org.freedesktop.Notifications";
/// How long a call to the notification server may take.
const CALL_TIMEOUT_MS: i32 = 3000;

/// What a notification says and offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Note {
    pub summary: String,
    pub body: String,
    /// (action key, label); `default` is a click on the notification itself.
    pub actions: Vec<(&'static str, &'static str)>,
    /// Milliseconds until the server may drop it (the prompt's time left).
    pub expire_ms: i32,
}

/// What the user chose in a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Choice {
    Allow,
    Block,
    /// Clicked the notification itself: show the app.
    Open,
}

/// The notification for a prompt: who wants what, what happens without an answer, and the
/// actions. `name` is the app's name for people (its `.desktop` entry's, else the helper's).
pub(crate) fn prompt_note(prompt: &PromptInfo, name: &str, now_unix_ms: u64) -> Note {
    let host = prompt
        .domain
        .clone()
        .unwrap_or_else(|| prompt.remote.to_string());
    let host = match prompt.remote_port {
        Some(p) if prompt.remote.is_ipv6() && prompt.domain.is_none() => format!("[{host}]:{p}"),
        Some(p) => format!("{host}:{p}"),
        None => host,
    };
    let protocol = match prompt.protocol {
        Protocol::Tcp => "TCP",
        Protocol::Udp => "UDP",
        Protocol::Icmp => "ICMP",
    };
    let scope = match prompt.scope {
        Scope::Localhost => "this computer",
        Scope::Lan => "local network",
        Scope::Internet => "Internet",
        Scope::P2p => "peer-to-peer",
        Scope::Inbound => "incoming",
    };
    let (summary, line) = match prompt.direction {
        Direction::Outbound => (
            format!("{name} wants to connect"),
            format!("to {host} ({protocol}, {scope})"),
        ),
        Direction::Inbound => (
            format!("{name} accepts a connection"),
            match prompt.local_port {
                Some(port) => format!("from {} on port {port} ({protocol})", prompt.remote),
                None => format!("from {} ({protocol})", prompt.remote),
            },
        ),
    };
    let left_ms = prompt.expires_unix_ms.saturating_sub(now_unix_ms);
    let fallback = match prompt.fallback {
        Verdict::Allow => "Allowed",
        _ => "Blocked",
    };
    let body = format!(
        "{line}\n{fallback} in {} s without an answer.",
        left_ms.div_ceil(1000)
    );
    Note {
        summary,
        // Servers may read the body as markup.
        body: escape(&body),
        actions: vec![
            ("allow", "Allow"),
            ("block", "Block"),
            ("default", "Open Portcullis"),
        ],
        expire_ms: i32::try_from(left_ms).unwrap_or(i32::MAX).max(1000),
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The `Notify` call's arguments, `(susssasa{sv}i)`.
pub(crate) fn notify_args(note: &Note) -> glib::Variant {
    let actions: Vec<String> = note
        .actions
        .iter()
        .flat_map(|(k, l)| [(*k).to_owned(), (*l).to_owned()])
        .collect();
    let mut hints: HashMap<String, glib::Variant> = HashMap::new();
    hints.insert("urgency".into(), 2u8.to_variant()); // critical: stays until answered
    hints.insert("category".into(), "network".to_variant());
    hints.insert("desktop-entry".into(), "portcullis".to_variant());
    (
        "Portcullis",
        0u32,
        "portcullis",
        note.summary.as_str(),
        note.body.as_str(),
        actions,
        hints,
        note.expire_ms,
    )
        .to_variant()
}

type OnChoice = dyn Fn(u64, Choice) + Send + Sync;

/// Shows and closes prompt notifications on one session bus connection.
pub(crate) struct Notifier {
    bus: gio::DBusConnection,
    /// Notification id → prompt id.
    shown: Mutex<HashMap<u32, u64>>,
    on_choice: Box<OnChoice>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier").finish_non_exhaustive()
    }
}

impl Notifier {
    /// On the session bus; `None` (logged) without one. Call on the thread whose main context
    /// runs (the app's main thread): clicks arrive there.
    pub(crate) fn session(on_choice: Box<OnChoice>) -> Option<Arc<Notifier>> {
        match gio::bus_get_sync(gio::BusType::Session, gio::Cancellable::NONE) {
            Ok(bus) => Some(Notifier::on_bus(bus, on_choice)),
            Err(e) => {
                tracing::info!("no session bus, so no prompt notifications: {e}");
                None
            }
        }
    }

    /// On a given connection (tests use a private bus).
    pub(crate) fn on_bus(bus: gio::DBusConnection, on_choice: Box<OnChoice>) -> Arc<Notifier> {
        let notifier = Arc::new(Notifier {
            bus: bus.clone(),
            shown: Mutex::new(HashMap::new()),
            on_choice,
        });
        let weak = Arc::downgrade(&notifier);
        bus.signal_subscribe(
            None,
            Some(IFACE),
            None,
            Some(PATH),
            None,
            gio::DBusSignalFlags::NONE,
            move |_bus, _sender, _path, _iface, signal, params| {
                let Some(n) = weak.upgrade() else { return };
                match signal {
                    "ActionInvoked" => {
                        if let Some((id, key)) = params.get::<(u32, String)>() {
                            n.invoked(id, &key);
                        }
                    }
                    "NotificationClosed" => {
                        if let Some((id, _reason)) = params.get::<(u32, u32)>() {
                            n.shown().remove(&id);
                        }
                    }
                    _ => {}
                }
            },
        );
        notifier
    }

    fn shown(&self) -> MutexGuard<'_, HashMap<u32, u64>> {
        self.shown.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn invoked(&self, id: u32, key: &str) {
        let Some(prompt) = self.shown().get(&id).copied() else {
            return; // not ours (another app's notification) or already closed
        };
        let choice = match key {
            "allow" => Choice::Allow,
            "block" => Choice::Block,
            "default" => Choice::Open,
            _ => return,
        };
        (self.on_choice)(prompt, choice);
    }

    /// Shows a notification for a prompt (blocking: a bus round trip). Quietly does nothing
    /// but log when no notification server answers.
    pub(crate) fn show(&self, prompt_id: u64, note: &Note) {
        let reply = self.bus.call_sync(
            Some(DEST),
            PATH,
            IFACE,
            "Notify",
            Some(&notify_args(note)),
            Some(VariantTy::new("(u)").unwrap_or(VariantTy::TUPLE)),
            gio::DBusCallFlags::NO_AUTO_START,
            CALL_TIMEOUT_MS,
            gio::Cancellable::NONE,
        );
        match reply.map(|r| r.get::<(u32,)>()) {
            Ok(Some((id,))) => {
                self.shown().insert(id, prompt_id);
            }
            Ok(None) => tracing::info!("the notification server gave no id"),
            Err(e) => tracing::info!("no prompt notification (no notification server?): {e}"),
        }
    }

    /// Closes the notification of a prompt, if one is shown (blocking).
    pub(crate) fn close(&self, prompt_id: u64) {
        let ids: Vec<u32> = {
            let mut shown = self.shown();
            let ids = shown
                .iter()
                .filter(|(_, p)| **p == prompt_id)
                .map(|(id, _)| *id)
                .collect::<Vec<_>>();
            for id in &ids {
                shown.remove(id);
            }
            ids
        };
        for id in ids {
            let _ignored = self.bus.call_sync(
                Some(DEST),
                PATH,
                IFACE,
                "CloseNotification",
                Some(&(id,).to_variant()),
                None,
                gio::DBusCallFlags::NO_AUTO_START,
                CALL_TIMEOUT_MS,
                gio::Cancellable::NONE,
            );
        }
    }

    /// Closes every notification shown (the link to the helper went down, its prompts with
    /// it). Blocking.
    pub(crate) fn close_all(&self) {
        let prompts: Vec<u64> = self.shown().values().copied().collect();
        for p in prompts {
            self.close(p);
        }
    }

    /// Whether a prompt has a notification up.
    pub(crate) fn showing(&self, prompt_id: u64) -> bool {
        self.shown().values().any(|p| *p == prompt_id)
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;

    fn prompt() -> PromptInfo {
        PromptInfo {
            id: 9,
            app: "/usr/bin/curl".into(),
            app_name: "curl".into(),
            pid: Some(42),
            direction: Direction::Outbound,
            protocol: Protocol::Tcp,
            remote: "192.0.2.7".parse::<IpAddr>().unwrap(),
            remote_port: Some(443),
            local_port: None,
            domain: Some("example.com".into()),
            scope: Scope::Internet,
            created_unix_ms: 1_000,
            expires_unix_ms: 31_000,
            fallback: Verdict::Block,
            waiting: 1,
        }
    }

    #[test]
    fn a_prompt_becomes_a_notification_with_allow_and_block() {
        let note = prompt_note(&prompt(), "cURL", 1_500);
        assert_eq!(note.summary, "cURL wants to connect");
        assert_eq!(
            note.body,
            "to example.com:443 (TCP, Internet)\nBlocked in 30 s without an answer."
        );
        assert_eq!(
            note.actions,
            [
                ("allow", "Allow"),
                ("block", "Block"),
                ("default", "Open Portcullis")
            ]
        );
        assert_eq!(note.expire_ms, 29_500);
        let args = notify_args(&note);
        assert_eq!(args.type_().as_str(), "(susssasa{sv}i)");
        let (app, replaces, _icon, summary, _body, actions, _hints, expire) = args
            .get::<(
                String,
                u32,
                String,
                String,
                String,
                Vec<String>,
                HashMap<String, glib::Variant>,
                i32,
            )>()
            .unwrap();
        assert_eq!((app.as_str(), replaces, expire), ("Portcullis", 0, 29_500));
        assert_eq!(summary, "cURL wants to connect");
        assert_eq!(
            actions,
            [
                "allow",
                "Allow",
                "block",
                "Block",
                "default",
                "Open Portcullis"
            ]
        );
    }

    #[test]
    fn inbound_ipv6_without_a_domain_and_markup_in_names() {
        let mut p = prompt();
        p.direction = Direction::Inbound;
        p.domain = None;
        p.remote = "2001:db8::1".parse().unwrap();
        p.local_port = Some(22);
        p.fallback = Verdict::Allow;
        p.expires_unix_ms = 0;
        let note = prompt_note(&p, "<b>ssh</b>", 5_000);
        assert_eq!(note.summary, "<b>ssh</b> accepts a connection");
        assert_eq!(
            note.body,
            "from 2001:db8::1 on port 22 (TCP)\nAllowed in 0 s without an answer."
        );
        assert_eq!(
            note.expire_ms, 1000,
            "never 0 (which means: server's default)"
        );
        let mut q = prompt();
        q.domain = Some("a&b<c>.test".into());
        assert!(
            prompt_note(&q, "x", 0)
                .body
                .starts_with("to a&amp;b&lt;c&gt;.test:443")
        );
    }
}

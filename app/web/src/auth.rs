//! Who may use browser mode: only the browser that opened the printed link.
//!
//! - **Token**: 32 random bytes, printed once in the URL. It can be exchanged once; the
//!   exchange sets a session cookie (`HttpOnly`, `SameSite=Strict`, `Path=/`) holding a second,
//!   unrelated random value. A wrong or reused token is refused.
//! - **Host**: must be `127.0.0.1:PORT` (or `[::1]:PORT`) or `localhost:PORT` of this very
//!   server, so a DNS-rebinding page (`evil.example` resolving to 127.0.0.1) is refused.
//! - **Origin**: when present it must be this server's own origin; requests that change
//!   something (every method but GET and HEAD) must carry it. `Sec-Fetch-Site`, when the
//!   browser sends it, must be `same-origin` or `none` (a typed or pasted URL).
//!
//! This module holds the secrets and the pure checks; it never logs a token or session id.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Mutex;

use crate::error::WebError;

/// Most sessions kept at once (a session is made only by a token exchange, and there is one
/// token, so this bounds nothing a client controls; it keeps the set obviously finite).
const MAX_SESSIONS: usize = 8;

/// The secrets and the address they protect.
#[derive(Debug)]
pub struct Auth {
    addr: SocketAddr,
    /// `None` once exchanged.
    token: Mutex<Option<String>>,
    sessions: Mutex<HashSet<String>>,
}

/// What a token exchange gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Exchange {
    /// The token was right: the new session id for the cookie.
    Session(String),
    /// Wrong, or already used.
    Refused,
}

impl Auth {
    /// Makes a fresh token for a server listening on `addr`.
    pub fn new(addr: SocketAddr) -> Result<Auth, WebError> {
        Ok(Auth {
            addr,
            token: Mutex::new(Some(random_hex()?)),
            sessions: Mutex::new(HashSet::new()),
        })
    }

    /// The token, while it has not been exchanged (for printing the URL once at start).
    pub fn token(&self) -> Option<String> {
        self.token.lock().ok().and_then(|t| t.clone())
    }

    /// The URL that logs a browser in: `http://127.0.0.1:PORT/?token=…`.
    pub fn login_url(&self) -> Option<String> {
        self.token()
            .map(|t| format!("http://{}/?token={t}", self.addr))
    }

    /// The session cookie's name; it carries the port because browsers share cookies between
    /// all ports of a host, and two servers must not overwrite each other's.
    pub fn cookie_name(&self) -> String {
        format!("portcullis_session_{}", self.addr.port())
    }

    /// Exchanges the one-time token for a session id (constant-time comparison).
    pub fn exchange(&self, offered: &str) -> Result<Exchange, WebError> {
        let Ok(mut token) = self.token.lock() else {
            return Ok(Exchange::Refused);
        };
        let matches = token
            .as_deref()
            .is_some_and(|t| constant_time_eq(t.as_bytes(), offered.as_bytes()));
        if !matches {
            return Ok(Exchange::Refused);
        }
        *token = None;
        let session = random_hex()?;
        if let Ok(mut sessions) = self.sessions.lock() {
            if sessions.len() >= MAX_SESSIONS {
                sessions.clear();
            }
            sessions.insert(session.clone());
        }
        Ok(Exchange::Session(session))
    }

    /// The `Set-Cookie` value for a session.
    pub fn set_cookie(&self, session: &str) -> String {
        format!(
            "{}={session}; HttpOnly; SameSite=Strict; Path=/",
            self.cookie_name()
        )
    }

    /// Whether a `Cookie` header carries a live session of this server.
    pub fn has_session(&self, cookie_header: Option<&str>) -> bool {
        let Some(header) = cookie_header else {
            return false;
        };
        let name = self.cookie_name();
        let Ok(sessions) = self.sessions.lock() else {
            return false;
        };
        header
            .split(';')
            .filter_map(|pair| pair.trim().split_once('='))
            .filter(|(k, _)| *k == name)
            .any(|(_, v)| {
                sessions
                    .iter()
                    .any(|s| constant_time_eq(s.as_bytes(), v.as_bytes()))
            })
    }

    /// Whether `host` (the Host header) names this server.
    pub fn host_allowed(&self, host: &str) -> bool {
        let port = self.addr.port();
        host == self.addr.to_string() || host == format!("localhost:{port}")
    }

    /// Whether `origin` (the Origin header) is this server's own origin as reached through
    /// `host` (already checked by [`Auth::host_allowed`]).
    pub fn origin_allowed(&self, origin: &str, host: &str) -> bool {
        self.host_allowed(host) && origin == format!("http://{host}")
    }
}

/// Whether a `Sec-Fetch-Site` value is acceptable: the page itself, or a URL the user typed.
pub fn fetch_site_allowed(value: &str) -> bool {
    matches!(value, "same-origin" | "none")
}

/// 32 random bytes as 64 lowercase hex digits.
fn random_hex() -> Result<String, WebError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| WebError::Random(e.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Compares without an early exit, so timing tells nothing about how much of a guess matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Auth {
        Auth::new("127.0.0.1:4321".parse().unwrap()).unwrap()
    }

    #[test]
    fn the_token_is_exchanged_once_for_a_session() {
        let a = auth();
        let token = a.token().unwrap();
        assert_eq!(token.len(), 64);
        assert_eq!(a.exchange("nope").unwrap(), Exchange::Refused);
        let Exchange::Session(s) = a.exchange(&token).unwrap() else {
            panic!("the right token must be accepted");
        };
        assert_eq!(
            a.exchange(&token).unwrap(),
            Exchange::Refused,
            "one time only"
        );
        assert!(a.token().is_none());
        let cookie = format!("other=1; {}={s}", a.cookie_name());
        assert!(a.has_session(Some(&cookie)));
        assert!(!a.has_session(Some("portcullis_session_4321=abc")));
        assert!(!a.has_session(None));
        let set = a.set_cookie(&s);
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict"),
            "{set}"
        );
    }

    #[test]
    fn only_this_servers_host_and_origin_pass() {
        let a = auth();
        assert!(a.host_allowed("127.0.0.1:4321"));
        assert!(a.host_allowed("localhost:4321"));
        assert!(!a.host_allowed("127.0.0.1:4322"));
        assert!(!a.host_allowed("evil.example:4321"));
        assert!(!a.host_allowed("127.0.0.1"));
        assert!(a.origin_allowed("http://127.0.0.1:4321", "127.0.0.1:4321"));
        assert!(a.origin_allowed("http://localhost:4321", "localhost:4321"));
        assert!(!a.origin_allowed("http://localhost:4321", "127.0.0.1:4321"));
        assert!(!a.origin_allowed("http://evil.example", "127.0.0.1:4321"));
        assert!(!a.origin_allowed("null", "127.0.0.1:4321"));
        assert!(fetch_site_allowed("same-origin") && fetch_site_allowed("none"));
        assert!(!fetch_site_allowed("same-site") && !fetch_site_allowed("cross-site"));
    }

    #[test]
    fn comparison_needs_equal_lengths_and_bytes() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}

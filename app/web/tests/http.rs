//! Browser mode over real HTTP on 127.0.0.1, bridged to a helper stand-in served by the real
//! `ipc` server (so the bridge's client, framing and handshake are the real ones): who is
//! refused (wrong token, missing cookie, foreign Origin, bad Host), and that requests and
//! events cross the bridge. The end-to-end test against the real `portcullisd` in a lab
//! namespace is tests/tests/browser.rs.

#![cfg(unix)]
#![expect(
    clippy::unwrap_used,
    reason = "test code: a failure stops the test with its message"
)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use portcullis_ipc::{ClientConfig, Server, ServerConfig};
use portcullis_protocol::{
    ClientFrame, EnforcementState, ErrorCode, ErrorFrame, Event, Reply, Request, Response,
    RuleOwner, ServerFrame, Status,
};
use portcullis_web::{ServeConfig, WebError, WebServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A stand-in helper: answers `status`, `subscribe`/`watch_prompts` (then one event), and
/// refuses everything else with `not_found`.
fn fake_helper(socket: &Path) -> Server {
    let mut config = ServerConfig::new(socket);
    // Our own group may connect, so the test also runs as a user other than root.
    config.group = Some(nix::unistd::getegid().as_raw());
    Server::bind(config).unwrap()
}

async fn run_fake_helper(server: Server) {
    loop {
        let Ok(mut conn) = server.accept().await else {
            return;
        };
        tokio::spawn(async move {
            while let Ok(Some(frame)) = conn.recv().await {
                let ClientFrame::Request { id, request } = frame else {
                    continue;
                };
                let (reply, then) = match request {
                    Request::Status => (Reply::Ok(Response::Status(status())), None),
                    Request::Subscribe | Request::WatchPrompts => (
                        Reply::Ok(Response::Subscribed),
                        Some(Event::RulesChanged {
                            owner: RuleOwner::Global,
                        }),
                    ),
                    _ => (
                        Reply::Err(ErrorFrame::new(ErrorCode::NotFound, "no such app `/x`")),
                        None,
                    ),
                };
                if conn
                    .send(&ServerFrame::Response { id, reply })
                    .await
                    .is_err()
                {
                    return;
                }
                if let Some(event) = then {
                    let _ = conn.send(&ServerFrame::Event { event }).await;
                }
            }
        });
    }
}

fn status() -> Status {
    Status {
        version: "9.9.9".into(),
        protocol_version: portcullis_protocol::PROTOCOL_VERSION,
        uptime_secs: 1,
        pid: 1,
        enforcement: EnforcementState::Enforcing,
        apps: 0,
        rules: 0,
        clients: 1,
        attribution: None,
    }
}

struct Setup {
    addr: SocketAddr,
    url: String,
    dir: tempfile::TempDir,
}

/// A web root, a stand-in helper (unless `helper` is false: then nothing listens on the
/// socket), and a running browser-mode server.
async fn setup(helper: bool) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let web = dir.path().join("web");
    std::fs::create_dir_all(web.join("assets")).unwrap();
    std::fs::write(web.join("index.html"), "<!doctype html><title>P</title>").unwrap();
    std::fs::write(web.join("assets/app.js"), "console.log(1)").unwrap();
    let socket = dir.path().join("helper.sock");
    if helper {
        let server = fake_helper(&socket);
        tokio::spawn(run_fake_helper(server));
    }
    let mut client = ClientConfig::new(&socket, "web test");
    client.require_root_owner = false;
    let mut config = ServeConfig::new(client, &web);
    config.entries = Arc::new(desktop_entries(dir.path()));
    let server = WebServer::bind(config).await.unwrap();
    let addr = server.local_addr();
    let url = server.login_url().unwrap();
    tokio::spawn(server.serve(std::future::pending()));
    Setup { addr, url, dir }
}

/// `.desktop` entries of the test's own: `DIR/bin/editor` is "Lab Editor" with a PNG icon.
fn desktop_entries(dir: &Path) -> portcullis_desktop_entries::Cache {
    use std::os::unix::fs::PermissionsExt as _;
    let exe = dir.join("bin/editor");
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::write(&exe, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let share = dir.join("share");
    std::fs::create_dir_all(share.join("applications")).unwrap();
    std::fs::create_dir_all(share.join("icons/hicolor/48x48/apps")).unwrap();
    std::fs::write(
        share.join("applications/editor.desktop"),
        format!(
            "[Desktop Entry]\nType=Application\nName=Lab Editor\nIcon=lab-editor\nExec={} %F\n",
            exe.display()
        ),
    )
    .unwrap();
    std::fs::write(share.join("icons/hicolor/48x48/apps/lab-editor.png"), PNG).unwrap();
    let dirs = portcullis_desktop_entries::Dirs {
        applications: vec![share.join("applications")],
        icons: vec![share.join("icons")],
        ..Default::default()
    };
    portcullis_desktop_entries::Cache::new(dirs)
}

const PNG: &[u8] = b"\x89PNG\r\n\x1a\nlab";

/// A parsed HTTP answer.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one raw HTTP/1.1 request (`Connection: close`) and reads the whole answer.
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body);
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .unwrap()
        .unwrap();
    parse(&String::from_utf8_lossy(&raw))
}

fn parse(raw: &str) -> Answer {
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_owned(),
    }
}

fn path_of(url: &str) -> &str {
    &url[url.find("/?").unwrap()..]
}

/// Signs in with the token; returns the `Cookie` header value.
async fn sign_in(s: &Setup) -> String {
    let a = http(s.addr, "GET", path_of(&s.url), &[], "").await;
    assert_eq!(a.status, 200, "{a:?}");
    let set = a.header("set-cookie").unwrap();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    set.split(';').next().unwrap().to_owned()
}

fn origin(s: &Setup) -> String {
    format!("http://{}", s.addr)
}

#[tokio::test]
async fn a_wrong_token_is_refused_and_the_right_one_works_once() {
    let s = setup(true).await;
    let a = http(s.addr, "GET", "/?token=0000", &[], "").await;
    assert_eq!(a.status, 403, "{a:?}");
    assert!(a.header("set-cookie").is_none());
    let cookie = sign_in(&s).await;
    let again = http(s.addr, "GET", path_of(&s.url), &[], "").await;
    assert_eq!(again.status, 403, "the token is one-time: {again:?}");
    let page = http(s.addr, "GET", "/", &[("Cookie", &cookie)], "").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<title>P</title>"));
    assert!(
        page.header("content-security-policy")
            .unwrap()
            .contains("default-src 'self'")
    );
}

#[tokio::test]
async fn without_the_session_cookie_nothing_is_served() {
    let s = setup(true).await;
    let _cookie = sign_in(&s).await;
    for path in ["/", "/assets/app.js", "/api/events"] {
        let a = http(s.addr, "GET", path, &[], "").await;
        assert_eq!(a.status, 401, "{path}: {a:?}");
    }
    let wrong = format!("portcullis_session_{}=feed", s.addr.port());
    let a = http(s.addr, "GET", "/assets/app.js", &[("Cookie", &wrong)], "").await;
    assert_eq!(a.status, 401);
    let o = origin(&s);
    let a = http(
        s.addr,
        "POST",
        "/api/request",
        &[("Origin", &o)],
        r#"{"method":"status"}"#,
    )
    .await;
    assert_eq!(a.status, 401, "{a:?}");
}

#[tokio::test]
async fn a_foreign_origin_is_refused_even_with_the_cookie() {
    let s = setup(true).await;
    let cookie = sign_in(&s).await;
    let body = r#"{"method":"status"}"#;
    let cases: [&[(&str, &str)]; 4] = [
        &[("Cookie", &cookie), ("Origin", "http://evil.example")],
        &[("Cookie", &cookie), ("Origin", "null")],
        // A change without any Origin (not what a browser sends).
        &[("Cookie", &cookie)],
        &[
            ("Cookie", &cookie),
            ("Origin", &origin(&s)),
            ("Sec-Fetch-Site", "cross-site"),
        ],
    ];
    for headers in cases {
        let a = http(s.addr, "POST", "/api/request", headers, body).await;
        assert_eq!(a.status, 403, "{headers:?}: {a:?}");
    }
    let other_port = format!("http://127.0.0.1:{}", s.addr.port() + 1);
    let a = http(
        s.addr,
        "GET",
        "/api/events",
        &[("Cookie", &cookie), ("Origin", &other_port)],
        "",
    )
    .await;
    assert_eq!(a.status, 403, "{a:?}");
}

#[tokio::test]
async fn a_foreign_host_header_is_refused() {
    let s = setup(true).await;
    let cookie = sign_in(&s).await;
    let port = s.addr.port();
    for host in [
        format!("evil.example:{port}"),
        "127.0.0.1".to_owned(),
        format!("127.0.0.1:{}", port + 1),
        String::new(),
    ] {
        let a = http(
            s.addr,
            "GET",
            "/",
            &[("Host", &host), ("Cookie", &cookie)],
            "",
        )
        .await;
        assert_eq!(a.status, 403, "Host {host:?}: {a:?}");
    }
    // Before sign-in, a rebinding page cannot even spend the token.
    let s = setup(true).await;
    let a = http(
        s.addr,
        "GET",
        path_of(&s.url),
        &[("Host", &format!("evil.example:{}", s.addr.port()))],
        "",
    )
    .await;
    assert_eq!(a.status, 403);
    assert_eq!(
        http(s.addr, "GET", path_of(&s.url), &[], "").await.status,
        200
    );
    // localhost:PORT is the same server.
    let s = setup(true).await;
    let host = format!("localhost:{}", s.addr.port());
    let a = http(s.addr, "GET", path_of(&s.url), &[("Host", &host)], "").await;
    assert_eq!(a.status, 200, "{a:?}");
}

#[tokio::test]
async fn requests_and_errors_cross_the_bridge() {
    let s = setup(true).await;
    let cookie = sign_in(&s).await;
    let o = origin(&s);
    let headers = [("Cookie", cookie.as_str()), ("Origin", o.as_str())];
    let a = http(
        s.addr,
        "POST",
        "/api/request",
        &headers,
        r#"{"method":"status"}"#,
    )
    .await;
    assert_eq!(a.status, 200, "{a:?}");
    let reply: Reply = serde_json::from_str(&a.body).unwrap();
    assert_eq!(reply, Reply::Ok(Response::Status(status())));

    let show = r#"{"method":"show_app","params":{"app":"/x"}}"#;
    let a = http(s.addr, "POST", "/api/request", &headers, show).await;
    let reply: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(reply["err"]["code"], "not_found", "{reply}");
    assert_eq!(reply["err"]["message"], "no such app `/x`");

    let a = http(
        s.addr,
        "POST",
        "/api/request",
        &headers,
        r#"{"method":"fly"}"#,
    )
    .await;
    assert_eq!(a.status, 400, "{a:?}");
    let a = http(
        s.addr,
        "POST",
        "/api/request",
        &headers,
        r#"{"method":"subscribe"}"#,
    )
    .await;
    assert_eq!(a.status, 400, "{a:?}");
}

#[tokio::test]
async fn a_helper_that_is_down_is_reported_with_what_to_do() {
    let s = setup(false).await;
    let cookie = sign_in(&s).await;
    let o = origin(&s);
    let headers = [("Cookie", cookie.as_str()), ("Origin", o.as_str())];
    let a = http(
        s.addr,
        "POST",
        "/api/request",
        &headers,
        r#"{"method":"status"}"#,
    )
    .await;
    assert_eq!(a.status, 502, "{a:?}");
    let e: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(e["kind"], "not_running", "{e}");
    assert!(
        e["message"].as_str().unwrap().contains("not running"),
        "{e}"
    );
}

#[tokio::test]
async fn the_event_stream_reports_the_link_then_forwards_events() {
    let s = setup(true).await;
    let cookie = sign_in(&s).await;
    let mut stream = TcpStream::connect(s.addr).await.unwrap();
    let req = format!(
        "GET /api/events HTTP/1.1\r\nHost: {}\r\nCookie: {cookie}\r\nAccept: text/event-stream\r\n\r\n",
        s.addr
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    let read = async {
        while !seen.contains("rules_changed") {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "stream ended early: {seen}");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .unwrap_or_else(|_| panic!("no event within 10 s: {seen}"));
    assert!(seen.contains("text/event-stream"), "{seen}");
    assert!(seen.contains("event: helper"), "{seen}");
    assert!(seen.contains(r#""state":"connected""#), "{seen}");
    let version = format!(r#""version":"{}""#, portcullis_protocol::RELEASE_VERSION);
    assert!(seen.contains(&version), "the helper's hello: {seen}");
    assert!(seen.contains("event: event"), "{seen}");
}

#[tokio::test]
async fn only_loopback_addresses_are_served() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), "x").unwrap();
    let mut config = ServeConfig::new(ClientConfig::new("/nonexistent.sock", "t"), dir.path());
    config.addr = "0.0.0.0:0".parse().unwrap();
    assert!(matches!(
        WebServer::bind(config).await,
        Err(WebError::NotLoopback { .. })
    ));
    let config = ServeConfig::new(
        ClientConfig::new("/nonexistent.sock", "t"),
        dir.path().join("missing"),
    );
    let err = WebServer::bind(config).await.unwrap_err();
    assert!(err.to_string().contains("npm run build"), "{err}");
}

#[tokio::test]
async fn app_names_and_icons_come_from_desktop_entries_and_nothing_else() {
    let s = setup(true).await;
    let key = std::fs::canonicalize(s.dir.path().join("bin/editor")).unwrap();
    let key = key.to_str().unwrap();
    let icon_path = format!("/api/app-icon?key={}", key.replace('/', "%2F"));
    let cookie = sign_in(&s).await;
    for path in ["/api/app-entries", icon_path.as_str()] {
        let a = http(s.addr, "GET", path, &[], "").await;
        assert_eq!(a.status, 401, "signed in only: {path}: {a:?}");
        let o = "http://evil.example";
        let a = http(
            s.addr,
            "GET",
            path,
            &[("Cookie", &cookie), ("Origin", o)],
            "",
        )
        .await;
        assert_eq!(a.status, 403, "own origin only: {path}: {a:?}");
    }
    let a = http(
        s.addr,
        "GET",
        "/api/app-entries",
        &[("Cookie", &cookie)],
        "",
    )
    .await;
    assert_eq!(a.status, 200, "{a:?}");
    let labels: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(
        labels,
        serde_json::json!({ key: {"name": "Lab Editor", "icon": true} }),
    );
    let a = http(s.addr, "GET", &icon_path, &[("Cookie", &cookie)], "").await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.header("content-type"), Some("image/png"));
    assert!(
        a.header("content-security-policy")
            .unwrap()
            .contains("sandbox")
    );
    assert!(a.body.ends_with("lab"));
    let refused = [
        "/api/app-icon?key=%2Fetc%2Fpasswd",
        "/api/app-icon?key=..%2F..%2Fetc%2Fpasswd",
        "/api/app-icon?key=lab-editor",
        "/api/app-icon?key=flatpak%3Aorg.example.None",
    ];
    for path in refused {
        let a = http(s.addr, "GET", path, &[("Cookie", &cookie)], "").await;
        assert_eq!(a.status, 404, "{path}: {a:?}");
    }
    let a = http(s.addr, "GET", "/api/app-icon", &[("Cookie", &cookie)], "").await;
    assert_eq!(a.status, 400, "{a:?}");
}

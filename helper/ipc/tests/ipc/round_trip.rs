//! A server and clients in one process: requests answered, events delivered, errors mapped,
//! versions checked, many clients at once.

use std::time::Duration;

use portcullis_ipc::{Client, IpcError, PeerInfo, write_frame};
use portcullis_protocol::{
    ClientFrame, ErrorCode, ErrorFrame, Event, MAX_FRAME_LEN, PROTOCOL_VERSION, RELEASE_VERSION,
    Request, Response, RuleOwner, ServerFrame,
};

use crate::common::{self, Behaviour, FakeDaemon, app};
use crate::raw;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_is_answered_and_the_peer_is_known_by_its_kernel_credentials() {
    common::require_root!();
    let dir = common::open_dir();
    let path = common::socket_path(dir.path());
    let daemon = FakeDaemon::start(
        common::server_config(&path),
        Behaviour {
            generation: 7,
            hang: false,
        },
    );

    let mut client = Client::connect(common::client_config(&path)).await.unwrap();
    assert_eq!(client.helper_version(), RELEASE_VERSION);
    let response = client.call(Request::Status).await.unwrap();
    assert_eq!(common::generation_of(&response), 7);
    let again = client
        .call(Request::ShowApp {
            app: "/usr/bin/curl".into(),
        })
        .await
        .unwrap();
    assert!(
        matches!(again, Response::App { ref app, .. } if app.key == "/usr/bin/curl"),
        "{again:?}"
    );

    let peers = daemon.peers.lock().unwrap().clone();
    let me = PeerInfo {
        uid: 0,
        gid: nix::unistd::getegid().as_raw(),
        pid: std::process::id(),
    };
    assert_eq!(peers, vec![me]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_arrive_after_subscribe_also_between_responses() {
    common::require_root!();
    let dir = common::open_dir();
    let path = common::socket_path(dir.path());
    let daemon = FakeDaemon::start(
        common::server_config(&path),
        Behaviour {
            generation: 1,
            hang: false,
        },
    );
    let mut client = Client::connect(common::client_config(&path)).await.unwrap();

    assert!(matches!(
        client.next_event().await,
        Err(IpcError::NotSubscribed)
    ));
    assert_eq!(
        client.call(Request::Subscribe).await.unwrap(),
        Response::Subscribed
    );
    // The fake daemon greets each subscription with an event once it is registered.
    assert_eq!(
        client.next_event().await.unwrap(),
        Event::AppAdded { app: app("gen-1") }
    );

    let sent: Vec<Event> = (0..3)
        .map(|i| Event::RulesChanged {
            owner: RuleOwner::App(format!("/bin/app{i}")),
        })
        .collect();
    for event in &sent {
        daemon.events.send(event.clone()).unwrap();
    }
    // A call in between: events that come before its response are kept, in order.
    assert_eq!(
        common::generation_of(&client.call(Request::Status).await.unwrap()),
        1
    );
    let mut got = Vec::new();
    for _ in 0..3 {
        let event = tokio::time::timeout(Duration::from_secs(3), client.next_event()).await;
        got.push(event.expect("event within 3 s").unwrap());
    }
    assert_eq!(got, sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_reply_becomes_a_helper_error_and_the_connection_stays_usable() {
    common::require_root!();
    let dir = common::open_dir();
    let path = common::socket_path(dir.path());
    let _daemon = FakeDaemon::start(common::server_config(&path), Behaviour::default());
    let mut client = Client::connect(common::client_config(&path)).await.unwrap();

    let err = client
        .call(Request::RemoveRule { id: 9 })
        .await
        .unwrap_err();
    let IpcError::Helper(frame) = &err else {
        panic!("expected a helper error, got {err:?}")
    };
    assert_eq!(frame.code, ErrorCode::NotFound);
    assert_eq!(err.to_string(), "the fake daemon knows nothing of that");
    assert!(client.call(Request::Status).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_refuses_a_client_of_another_protocol_version() {
    common::require_root!();
    let dir = common::open_dir();
    let path = common::socket_path(dir.path());
    let daemon = FakeDaemon::start(common::server_config(&path), Behaviour::default());

    let mut s = raw::greeted(&path).await;
    let hello = ClientFrame::Hello {
        protocol_version: 999,
        client: "from the future".into(),
    };
    write_frame(&mut s, &hello, MAX_FRAME_LEN).await.unwrap();
    let error = raw::expect_error_then_close(&mut s).await;
    assert_eq!(error.code, ErrorCode::VersionMismatch);
    assert!(
        error.message.contains("client speaks protocol 999")
            && error
                .message
                .contains(&format!("helper speaks {PROTOCOL_VERSION}")),
        "{}",
        error.message
    );
    assert!(
        daemon.peers.lock().unwrap().is_empty(),
        "a refused peer must not be handed out"
    );
    let mut client = Client::connect(common::client_config(&path)).await.unwrap();
    assert!(client.call(Request::Status).await.is_ok());
}

/// A stand-in server that greets every client with `greeting`.
async fn scripted_server(
    path: &std::path::Path,
    greeting: ServerFrame,
) -> tokio::task::JoinHandle<()> {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let listener = tokio::net::UnixListener::bind(path).unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let _ = write_frame(&mut s, &greeting, MAX_FRAME_LEN).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_reports_a_version_mismatch_and_a_refusal_by_the_helper() {
    common::require_root!();
    let dir = common::open_dir();
    let path = common::socket_path(dir.path());
    let server = scripted_server(
        &path,
        ServerFrame::Hello {
            protocol_version: 999,
            version: "9.9".into(),
        },
    )
    .await;
    let err = Client::connect(common::client_config(&path))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            IpcError::VersionMismatch {
                ours: PROTOCOL_VERSION,
                theirs: 999
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("same Portcullis release"), "{err}");
    server.abort();
    let _ = server.await;
    std::fs::remove_file(&path).unwrap();

    let refusal = ErrorFrame::new(ErrorCode::PermissionDenied, "permission denied: go away");
    let server = scripted_server(&path, ServerFrame::Error(refusal.clone())).await;
    let err = Client::connect(common::client_config(&path))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, IpcError::Refused(f) if *f == refusal),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "portcullisd refused the connection: permission denied: go away"
    );
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_clients_each_get_their_own_answers() {
    common::require_root!();
    let dir = common::open_dir();
    let path = common::socket_path(dir.path());
    let daemon = FakeDaemon::start(
        common::server_config(&path),
        Behaviour {
            generation: 3,
            hang: false,
        },
    );

    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..100 {
        let config = common::client_config(&path);
        tasks.spawn(async move {
            let mut client = Client::connect(config).await.unwrap();
            for j in 0..5 {
                let key = format!("/opt/client-{i}/call-{j}");
                let response = client
                    .call(Request::ShowApp { app: key.clone() })
                    .await
                    .unwrap();
                let Response::App { app, settings, .. } = response else {
                    panic!("client {i} call {j}: wrong response {response:?}");
                };
                assert_eq!(app.key, key);
                assert_eq!(settings.app.as_deref(), Some(key.as_str()));
            }
            assert_eq!(
                common::generation_of(&client.call(Request::Status).await.unwrap()),
                3
            );
            i
        });
    }
    let done = tokio::time::timeout(Duration::from_secs(30), async {
        let mut done = Vec::new();
        while let Some(result) = tasks.join_next().await {
            done.push(result.unwrap());
        }
        done
    })
    .await
    .expect("100 clients did not finish within 30 s");
    assert_eq!(done.len(), 100);
    assert_eq!(daemon.peers.lock().unwrap().len(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_frames_pass_and_an_oversized_request_is_refused_before_sending() {
    common::require_root!();
    let dir = common::open_dir();
    let path = common::socket_path(dir.path());
    let _daemon = FakeDaemon::start(common::server_config(&path), Behaviour::default());
    let mut client = Client::connect(common::client_config(&path)).await.unwrap();

    // The answer repeats the key three times: about 900 KB, under the 1 MiB limit.
    let key = "k".repeat(300_000);
    let response = client
        .call(Request::ShowApp { app: key.clone() })
        .await
        .unwrap();
    assert!(matches!(response, Response::App { ref app, .. } if app.key == key));

    let huge = "k".repeat(MAX_FRAME_LEN as usize);
    let err = client
        .call(Request::ShowApp { app: huge })
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            IpcError::Frame(portcullis_ipc::FrameError::TooLarge {
                max: MAX_FRAME_LEN,
                ..
            })
        ),
        "{err:?}"
    );
    assert!(
        client.call(Request::Status).await.is_ok(),
        "the connection is still usable"
    );
}

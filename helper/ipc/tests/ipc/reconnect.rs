//! Helper restarts: the same `Client` carries on; idempotent requests are resent, others are
//! reported as possibly applied; a subscription is renewed.

use std::time::Duration;

use portcullis_ipc::{Client, IpcError};
use portcullis_protocol::{Event, Request, Response, RuleLifetime, RuleOwner};

use crate::common::{self, Behaviour, FakeDaemon, app};

fn add_rule() -> Request {
    Request::AddRule {
        owner: RuleOwner::Global,
        text: "- *.example.com".into(),
        position: None,
        lifetime: RuleLifetime::Forever,
    }
}

/// Fails instead of hanging when a request is never answered (e.g. wrongly resent to a
/// helper that holds it).
async fn within<F: std::future::Future>(future: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), future)
        .await
        .expect("no result within 10 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_survive_a_restart_and_only_idempotent_ones_are_resent() {
    common::require_root!();
    let dir = common::open_dir();
    let path = common::socket_path(dir.path());
    let config = common::server_config(&path);
    let first = FakeDaemon::start(
        config.clone(),
        Behaviour {
            generation: 1,
            hang: false,
        },
    );
    let mut client = Client::connect(common::client_config(&path)).await.unwrap();
    assert_eq!(
        common::generation_of(&client.call(Request::Status).await.unwrap()),
        1
    );

    // Restart between calls: the next call notices and reconnects.
    first.stop().await;
    assert!(!path.exists(), "a stopped server removes its socket");
    let second = FakeDaemon::start(
        config.clone(),
        Behaviour {
            generation: 2,
            hang: true,
        },
    );
    assert_eq!(
        common::generation_of(&client.call(Request::Status).await.unwrap()),
        2
    );

    // A non-idempotent request in flight across a restart is not resent.
    let hung = second.hung.clone();
    let restart = async {
        hung.notified().await;
        second.stop().await;
        FakeDaemon::start(
            config.clone(),
            Behaviour {
                generation: 3,
                hang: true,
            },
        )
    };
    let (result, third) = within(async { tokio::join!(client.call(add_rule()), restart) }).await;
    let err = result.unwrap_err();
    assert!(
        matches!(&err, IpcError::Disconnected { method } if method == "add_rule"),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("check whether it was applied"),
        "{err}"
    );
    assert_eq!(
        common::generation_of(&client.call(Request::Status).await.unwrap()),
        3
    );

    // An idempotent request in flight is resent to the new helper.
    let hung = third.hung.clone();
    let restart = async {
        hung.notified().await;
        third.stop().await;
        FakeDaemon::start(
            config.clone(),
            Behaviour {
                generation: 4,
                hang: false,
            },
        )
    };
    let (result, _fourth) =
        within(async { tokio::join!(client.call(Request::ListApps), restart) }).await;
    assert_eq!(result.unwrap(), Response::Apps(vec![app("gen-4")]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_is_renewed_after_a_restart() {
    common::require_root!();
    let dir = common::open_dir();
    let path = common::socket_path(dir.path());
    let config = common::server_config(&path);
    let first = FakeDaemon::start(
        config.clone(),
        Behaviour {
            generation: 1,
            hang: false,
        },
    );
    let mut client = Client::connect(common::client_config(&path)).await.unwrap();
    client.call(Request::Subscribe).await.unwrap();
    assert_eq!(
        client.next_event().await.unwrap(),
        Event::AppAdded { app: app("gen-1") }
    );

    // Restart while waiting for events: the client reconnects, resubscribes, and says that
    // events may have been missed.
    let restart = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        first.stop().await;
        FakeDaemon::start(
            config.clone(),
            Behaviour {
                generation: 2,
                hang: false,
            },
        )
    };
    let (event, second) = within(async { tokio::join!(client.next_event(), restart) }).await;
    assert_eq!(event.unwrap(), Event::Lagged { missed: 0 });
    let next = tokio::time::timeout(Duration::from_secs(3), client.next_event())
        .await
        .unwrap();
    assert_eq!(
        next.unwrap(),
        Event::AppAdded { app: app("gen-2") },
        "resubscribed to the new helper"
    );
    second
        .events
        .send(Event::RulesChanged {
            owner: RuleOwner::Global,
        })
        .unwrap();
    let next = tokio::time::timeout(Duration::from_secs(3), client.next_event())
        .await
        .unwrap();
    assert_eq!(
        next.unwrap(),
        Event::RulesChanged {
            owner: RuleOwner::Global
        }
    );

    // Restart between calls: the call reconnects and the subscription is renewed with it.
    second.stop().await;
    let _third = FakeDaemon::start(
        config.clone(),
        Behaviour {
            generation: 3,
            hang: false,
        },
    );
    assert_eq!(
        common::generation_of(&client.call(Request::Status).await.unwrap()),
        3
    );
    assert_eq!(
        client.next_event().await.unwrap(),
        Event::Lagged { missed: 0 }
    );
    let next = tokio::time::timeout(Duration::from_secs(3), client.next_event())
        .await
        .unwrap();
    assert_eq!(next.unwrap(), Event::AppAdded { app: app("gen-3") });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_helper_that_stays_down_is_reported_after_a_bounded_wait() {
    common::require_root!();
    let dir = common::open_dir();
    let path = common::socket_path(dir.path());
    let daemon = FakeDaemon::start(common::server_config(&path), Behaviour::default());
    let mut client = Client::connect(common::client_config(&path)).await.unwrap();
    daemon.stop().await;

    let started = std::time::Instant::now();
    let err = client.call(Request::Status).await.unwrap_err();
    let waited = started.elapsed();
    assert!(matches!(err, IpcError::NotRunning { .. }), "{err:?}");
    assert!(
        err.to_string().contains("sudo systemctl start portcullisd"),
        "{err}"
    );
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_secs(5),
        "waited {waited:?}"
    );
}

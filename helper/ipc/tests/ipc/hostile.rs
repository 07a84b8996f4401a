//! Broken and hostile peers: garbage, impossible lengths, half frames, silence. Each one gets
//! an error frame or is closed; the server keeps serving everyone else.

use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

use portcullis_ipc::{Client, write_frame};
use portcullis_protocol::{ClientFrame, ErrorCode, MAX_FRAME_LEN, Request};

use crate::common::{self, Behaviour, FakeDaemon};
use crate::raw;

fn framed(body: &[u8]) -> Vec<u8> {
    let mut v = u32::try_from(body.len()).unwrap().to_be_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

/// Inputs that must earn a specific error frame, wherever they come.
fn bad_inputs() -> Vec<(&'static str, Vec<u8>, ErrorCode)> {
    let request = serde_json::to_vec(&ClientFrame::Request {
        id: 1,
        request: Request::Status,
    })
    .unwrap();
    vec![
        (
            "invalid JSON behind a valid length",
            framed(b"{\"type\": hello"),
            ErrorCode::BadFrame,
        ),
        (
            "JSON of the wrong shape",
            framed(b"{\"type\":\"launch_missiles\"}"),
            ErrorCode::BadFrame,
        ),
        (
            "a length of 0xFFFFFFFF",
            vec![0xff, 0xff, 0xff, 0xff, b'{'],
            ErrorCode::FrameTooLarge,
        ),
        (
            "one byte over the limit",
            (MAX_FRAME_LEN + 1).to_be_bytes().to_vec(),
            ErrorCode::FrameTooLarge,
        ),
        ("a length of 0", vec![0, 0, 0, 0], ErrorCode::BadFrame),
        (
            "a request before hello",
            framed(&request),
            ErrorCode::BadFrame,
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_in_the_handshake_get_an_error_frame_and_a_close() {
    common::require_root!();
    let dir = common::open_dir();
    let path = common::socket_path(dir.path());
    let daemon = FakeDaemon::start(common::server_config(&path), Behaviour::default());
    let mut bystander = Client::connect(common::client_config(&path)).await.unwrap();

    for (what, bytes, code) in bad_inputs() {
        let mut s = raw::greeted(&path).await;
        raw::send_bytes(&mut s, &bytes).await;
        let error = raw::expect_error_then_close(&mut s).await;
        assert_eq!(error.code, code, "{what}: {}", error.message);
        assert!(
            bystander.call(Request::Status).await.is_ok(),
            "after {what}"
        );
    }
    let too_large = {
        let mut s = raw::greeted(&path).await;
        raw::send_bytes(&mut s, &[0xff, 0xff, 0xff, 0xff]).await;
        raw::expect_error_then_close(&mut s).await
    };
    assert!(
        too_large.message.contains("4294967295"),
        "{}",
        too_large.message
    );
    assert_eq!(
        daemon.peers.lock().unwrap().len(),
        1,
        "only the bystander got through"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_after_the_handshake_close_only_that_connection() {
    common::require_root!();
    let dir = common::open_dir();
    let path = common::socket_path(dir.path());
    let _daemon = FakeDaemon::start(common::server_config(&path), Behaviour::default());
    let mut bystander = Client::connect(common::client_config(&path)).await.unwrap();

    for (what, bytes, code) in bad_inputs() {
        if what == "a request before hello" {
            continue; // after the handshake a request is fine
        }
        let mut s = raw::handshaken(&path).await;
        raw::send_bytes(&mut s, &bytes).await;
        let error = raw::expect_error_then_close(&mut s).await;
        assert_eq!(error.code, code, "{what}: {}", error.message);
        assert!(
            bystander.call(Request::Status).await.is_ok(),
            "after {what}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bytes_never_take_the_server_down() {
    common::require_root!();
    let dir = common::open_dir();
    let path = common::socket_path(dir.path());
    let _daemon = FakeDaemon::start(common::server_config(&path), Behaviour::default());
    let mut bystander = Client::connect(common::client_config(&path)).await.unwrap();

    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut tasks = tokio::task::JoinSet::new();
    for round in 0..60 {
        let len = 1 + (next() % 300) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        let path = path.clone();
        tasks.spawn(async move {
            let mut s = if round % 2 == 0 {
                raw::greeted(&path).await
            } else {
                raw::handshaken(&path).await
            };
            raw::send_bytes(&mut s, &bytes).await;
            let _ = s.shutdown().await;
            // Either an error frame and a close, or a close: never a hang.
            raw::expect_closed(&mut s, Duration::from_secs(3)).await;
        });
    }
    while let Some(result) = tasks.join_next().await {
        result.unwrap();
    }
    assert!(bystander.call(Request::Status).await.is_ok());
    let mut fresh = Client::connect(common::client_config(&path)).await.unwrap();
    assert!(fresh.call(Request::Status).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_leaving_in_the_middle_of_a_frame_leaves_the_server_up() {
    common::require_root!();
    let dir = common::open_dir();
    let path = common::socket_path(dir.path());
    let _daemon = FakeDaemon::start(common::server_config(&path), Behaviour::default());
    let mut bystander = Client::connect(common::client_config(&path)).await.unwrap();

    let request = ClientFrame::Request {
        id: 1,
        request: Request::ListApps,
    };
    let whole = portcullis_ipc::encode_frame(&request, MAX_FRAME_LEN).unwrap();
    for cut in [1, 3, 4, 5, whole.len() / 2, whole.len() - 1] {
        let mut s = raw::handshaken(&path).await;
        raw::send_bytes(&mut s, &whole[..cut]).await;
        drop(s);
        let mut s = raw::greeted(&path).await;
        raw::send_bytes(&mut s, &whole[..cut]).await;
        drop(s);
    }
    assert!(bystander.call(Request::Status).await.is_ok());
    let mut fresh = Client::connect(common::client_config(&path)).await.unwrap();
    assert!(fresh.call(Request::Status).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_peer_stalls_nobody_and_is_closed_after_the_handshake_timeout() {
    common::require_root!();
    let dir = common::open_dir();
    let path = common::socket_path(dir.path());
    let _daemon = FakeDaemon::start(common::server_config(&path), Behaviour::default());

    let started = Instant::now();
    let mut silent = Vec::new();
    for _ in 0..5 {
        silent.push(raw::connect(&path).await);
    }
    // Half a hello, then silence.
    let mut half = raw::greeted(&path).await;
    let hello = ClientFrame::Hello {
        protocol_version: 1,
        client: "slow".into(),
    };
    let bytes = portcullis_ipc::encode_frame(&hello, MAX_FRAME_LEN).unwrap();
    raw::send_bytes(&mut half, &bytes[..6]).await;

    let mut client = Client::connect(common::client_config(&path)).await.unwrap();
    assert!(client.call(Request::Status).await.is_ok());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "others were stalled: {:?}",
        started.elapsed()
    );

    raw::expect_closed(&mut half, Duration::from_secs(8)).await;
    for s in &mut silent {
        raw::expect_closed(s, Duration::from_secs(3)).await;
    }
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "closed too early: {:?}",
        started.elapsed()
    );
    assert!(client.call(Request::Status).await.is_ok());

    // A well-behaved raw client still gets through afterwards.
    let mut s = raw::handshaken(&path).await;
    let request = ClientFrame::Request {
        id: 5,
        request: Request::Status,
    };
    write_frame(&mut s, &request, MAX_FRAME_LEN).await.unwrap();
    let answer: portcullis_protocol::ServerFrame =
        portcullis_ipc::read_frame(&mut s, MAX_FRAME_LEN)
            .await
            .unwrap()
            .unwrap();
    assert!(
        matches!(
            answer,
            portcullis_protocol::ServerFrame::Response { id: 5, .. }
        ),
        "{answer:?}"
    );
}

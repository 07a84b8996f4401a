//! A raw peer that writes whatever bytes a test wants, to play broken or hostile clients and
//! servers.

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use portcullis_ipc::{read_frame, write_frame};
use portcullis_protocol::{ClientFrame, ErrorFrame, MAX_FRAME_LEN, PROTOCOL_VERSION, ServerFrame};

pub async fn connect(path: &Path) -> UnixStream {
    UnixStream::connect(path).await.unwrap()
}

/// Connects and reads the server's hello.
pub async fn greeted(path: &Path) -> UnixStream {
    let mut s = connect(path).await;
    let hello: ServerFrame = read_frame(&mut s, MAX_FRAME_LEN).await.unwrap().unwrap();
    assert!(
        matches!(
            hello,
            ServerFrame::Hello {
                protocol_version: PROTOCOL_VERSION,
                ..
            }
        ),
        "{hello:?}"
    );
    s
}

/// Connects and completes the handshake.
pub async fn handshaken(path: &Path) -> UnixStream {
    let mut s = greeted(path).await;
    let hello = ClientFrame::Hello {
        protocol_version: PROTOCOL_VERSION,
        client: "raw".into(),
    };
    write_frame(&mut s, &hello, MAX_FRAME_LEN).await.unwrap();
    s
}

/// Waits (bounded) for an error frame followed by the end of the connection.
pub async fn expect_error_then_close(s: &mut UnixStream) -> ErrorFrame {
    let frame = tokio::time::timeout(
        Duration::from_secs(3),
        read_frame::<_, ServerFrame>(s, MAX_FRAME_LEN),
    )
    .await
    .expect("no answer within 3 s")
    .expect("reading the error frame failed");
    let Some(ServerFrame::Error(error)) = frame else {
        panic!("expected an error frame, got {frame:?}");
    };
    expect_closed(s, Duration::from_secs(3)).await;
    error
}

/// Waits (bounded) until the server closes the connection; any bytes before that are
/// discarded.
pub async fn expect_closed(s: &mut UnixStream, within: Duration) {
    let mut sink = [0u8; 1024];
    let closed = tokio::time::timeout(within, async {
        loop {
            match s.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the server did not close the connection within {within:?}"
    );
}

/// Writes bytes (ignoring a server that already closed).
pub async fn send_bytes(s: &mut UnixStream, bytes: &[u8]) {
    let _ = s.write_all(bytes).await;
}

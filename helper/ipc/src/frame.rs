//! Framing: every frame is a 4-byte big-endian length followed by that many bytes of JSON.
//! This module owns the encoding and decoding of frames, on byte slices ([`decode_frame`],
//! [`encode_frame`], pure and usable from a fuzz target) and on async streams ([`read_frame`],
//! [`write_frame`], [`FrameReader`]). It must not know what the frames mean (that is the
//! `protocol` crate) nor anything about sockets or peers; it must never panic on bytes from
//! outside, and never allocate more than the bytes that actually arrived (a length prefix
//! alone reserves nothing beyond a small bound).

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use portcullis_protocol::{ErrorCode, ErrorFrame};

/// Bytes of the length prefix.
pub const HEADER_LEN: usize = 4;

/// The most a reader reserves ahead of the bytes that arrived, so a peer that announces a
/// large frame and then stalls holds little memory.
const READ_AHEAD: usize = 64 * 1024;

/// A [`FrameReader`] grows its buffer only when less than this is free (or less than the
/// frame still needs), so growth follows the bytes that arrive instead of doubling per read.
const MIN_SPARE: usize = 4096;

/// Capacity a [`FrameReader`] shrinks back to after a large frame.
const IDLE_CAPACITY: usize = 8 * 1024;

/// Why a frame could not be read, decoded, encoded or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The socket failed while reading or writing.
    #[error("the connection failed")]
    Io(#[source] std::io::Error),
    /// The peer closed the connection in the middle of a frame.
    #[error("the connection closed in the middle of a frame")]
    Truncated,
    /// The length prefix announced more than the limit; the body was not read.
    #[error("a frame of {len} bytes is larger than the limit of {max} bytes")]
    TooLarge {
        /// The announced (or, when writing, the encoded) length.
        len: u64,
        /// The limit in force.
        max: u32,
    },
    /// The length prefix was 0; no valid frame is empty.
    #[error("an empty frame (length 0)")]
    Empty,
    /// The body was not JSON of the expected shape.
    #[error("a frame is not valid JSON of the expected shape")]
    Malformed(#[source] serde_json::Error),
    /// A frame could not be serialized to JSON (a bug on the sending side).
    #[error("a frame could not be encoded as JSON")]
    Encode(#[source] serde_json::Error),
}

impl FrameError {
    /// The error frame to send the peer before closing the connection for this error, or
    /// `None` when the peer is gone anyway (I/O failure, truncation) or the error is ours
    /// (encoding).
    pub fn to_error_frame(&self) -> Option<ErrorFrame> {
        match self {
            FrameError::TooLarge { len, max } => Some(ErrorFrame::new(
                ErrorCode::FrameTooLarge,
                format!("frame of {len} bytes refused: the limit is {max} bytes"),
            )),
            FrameError::Empty => Some(ErrorFrame::new(
                ErrorCode::BadFrame,
                "bad frame: the length prefix is 0",
            )),
            FrameError::Malformed(e) => Some(ErrorFrame::new(
                ErrorCode::BadFrame,
                format!("bad frame: {e}"),
            )),
            FrameError::Io(_) | FrameError::Truncated | FrameError::Encode(_) => None,
        }
    }

    /// Whether the error means the connection is gone (rather than that a frame was bad).
    pub fn is_disconnect(&self) -> bool {
        matches!(self, FrameError::Io(_) | FrameError::Truncated)
    }
}

/// Checks a length prefix: the body length it announces, if acceptable.
fn parse_header(header: [u8; HEADER_LEN], max_len: u32) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(header);
    if len == 0 {
        return Err(FrameError::Empty);
    }
    if len > max_len {
        return Err(FrameError::TooLarge {
            len: u64::from(len),
            max: max_len,
        });
    }
    usize::try_from(len).map_err(|_| FrameError::TooLarge {
        len: u64::from(len),
        max: max_len,
    })
}

fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    serde_json::from_slice(body).map_err(FrameError::Malformed)
}

/// Decodes the first frame in `buf`, without I/O.
///
/// Returns `Ok(Some((frame, consumed)))` when `buf` starts with a whole frame (`consumed`
/// bytes, prefix included), `Ok(None)` when more bytes are needed, and an error as soon as
/// the prefix is unacceptable (before its body arrived) or the body is not valid JSON of the
/// expected shape. Never panics, whatever the bytes.
pub fn decode_frame<T: DeserializeOwned>(
    buf: &[u8],
    max_len: u32,
) -> Result<Option<(T, usize)>, FrameError> {
    let Some((header, rest)) = buf.split_first_chunk::<HEADER_LEN>() else {
        return Ok(None);
    };
    let len = parse_header(*header, max_len)?;
    let Some(body) = rest.get(..len) else {
        return Ok(None);
    };
    let frame = decode_body(body)?;
    Ok(Some((frame, HEADER_LEN + len)))
}

/// Encodes `frame` with its length prefix. Refuses frames larger than `max_len`, which the
/// peer would refuse anyway.
pub fn encode_frame<T: Serialize + ?Sized>(frame: &T, max_len: u32) -> Result<Vec<u8>, FrameError> {
    let mut out = vec![0u8; HEADER_LEN];
    serde_json::to_writer(&mut out, frame).map_err(FrameError::Encode)?;
    let body_len = out.len().saturating_sub(HEADER_LEN);
    let too_large = || FrameError::TooLarge {
        len: u64::try_from(body_len).unwrap_or(u64::MAX),
        max: max_len,
    };
    let len = u32::try_from(body_len).map_err(|_| too_large())?;
    if len > max_len {
        return Err(too_large());
    }
    if let Some(prefix) = out.get_mut(..HEADER_LEN) {
        prefix.copy_from_slice(&len.to_be_bytes());
    }
    Ok(out)
}

/// Reads one frame from `r`.
///
/// `Ok(None)` on a clean end of stream at a frame boundary; [`FrameError::Truncated`] when
/// the stream ends inside a frame; [`FrameError::TooLarge`] when the prefix announces more
/// than `max_len` (nothing of the body is read or reserved); [`FrameError::Empty`] for a zero
/// prefix; [`FrameError::Malformed`] for bad JSON. Not cancel-safe: dropping the future
/// mid-frame loses the bytes read so far (use [`FrameReader`] inside `select!`).
pub async fn read_frame<R: AsyncRead + Unpin, T: DeserializeOwned>(
    r: &mut R,
    max_len: u32,
) -> Result<Option<T>, FrameError> {
    let mut header = [0u8; HEADER_LEN];
    let mut filled = 0;
    while filled < HEADER_LEN {
        let Some(dest) = header.get_mut(filled..) else {
            break;
        };
        let n = r.read(dest).await.map_err(FrameError::Io)?;
        if n == 0 {
            return if filled == 0 {
                Ok(None)
            } else {
                Err(FrameError::Truncated)
            };
        }
        filled += n;
    }
    let len = parse_header(header, max_len)?;
    let mut body = Vec::with_capacity(len.min(READ_AHEAD));
    let want = u64::try_from(len).unwrap_or(u64::MAX);
    let got = r
        .take(want)
        .read_to_end(&mut body)
        .await
        .map_err(FrameError::Io)?;
    if got < len {
        return Err(FrameError::Truncated);
    }
    decode_body(&body).map(Some)
}

/// Writes one frame (prefix and body in a single buffer) and flushes. Refuses frames larger
/// than `max_len` before writing anything.
pub async fn write_frame<W: AsyncWrite + Unpin, T: Serialize + ?Sized>(
    w: &mut W,
    frame: &T,
    max_len: u32,
) -> Result<(), FrameError> {
    let bytes = encode_frame(frame, max_len)?;
    w.write_all(&bytes).await.map_err(FrameError::Io)?;
    w.flush().await.map_err(FrameError::Io)
}

/// A buffered, cancel-safe frame reader: bytes that arrived but do not yet form a whole frame
/// stay in the reader, so [`FrameReader::read`] may be used in `select!` and polled again.
#[derive(Debug)]
pub struct FrameReader<R> {
    inner: R,
    buf: Vec<u8>,
    max_len: u32,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Wraps `inner`, refusing frames longer than `max_len`.
    pub fn new(inner: R, max_len: u32) -> FrameReader<R> {
        FrameReader {
            inner,
            buf: Vec::new(),
            max_len,
        }
    }

    /// The next frame; same results as [`read_frame`], but cancel-safe. After an error the
    /// stream is out of step and should be closed.
    pub async fn read<T: DeserializeOwned>(&mut self) -> Result<Option<T>, FrameError> {
        loop {
            match decode_frame::<T>(&self.buf, self.max_len) {
                Ok(Some((frame, consumed))) => {
                    self.buf.drain(..consumed.min(self.buf.len()));
                    if self.buf.is_empty() && self.buf.capacity() > READ_AHEAD {
                        self.buf.shrink_to(IDLE_CAPACITY);
                    }
                    return Ok(Some(frame));
                }
                Ok(None) => {}
                Err(e) => {
                    self.buf.clear();
                    return Err(e);
                }
            }
            // Reserve only up to what the current frame still needs (bounded), so a prefix
            // announcing a large frame reserves nothing until its bytes arrive.
            let needed = match self.buf.first_chunk::<HEADER_LEN>() {
                Some(header) => (HEADER_LEN + u32::from_be_bytes(*header) as usize)
                    .saturating_sub(self.buf.len()),
                None => HEADER_LEN - self.buf.len(),
            };
            let want = needed.clamp(HEADER_LEN, READ_AHEAD);
            if self.buf.capacity() - self.buf.len() < want.min(MIN_SPARE) {
                self.buf.reserve(want);
            }
            let n = self
                .inner
                .read_buf(&mut self.buf)
                .await
                .map_err(FrameError::Io)?;
            if n == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(FrameError::Truncated)
                };
            }
        }
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// The wrapped stream, e.g. to write to it. Reading from it directly loses frames.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_protocol::{ClientFrame, Request, ServerFrame};
    use proptest::prelude::*;

    const MAX: u32 = portcullis_protocol::MAX_FRAME_LEN;

    fn hello() -> ClientFrame {
        ClientFrame::Hello {
            protocol_version: 1,
            client: "test".into(),
        }
    }

    fn framed(body: &[u8]) -> Vec<u8> {
        let mut v = u32::try_from(body.len()).unwrap().to_be_bytes().to_vec();
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn encode_then_decode_round_trips_and_reports_consumed_bytes() {
        let bytes = encode_frame(&hello(), MAX).unwrap();
        let (frame, consumed) = decode_frame::<ClientFrame>(&bytes, MAX).unwrap().unwrap();
        assert_eq!(frame, hello());
        assert_eq!(consumed, bytes.len());
        let body_len = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
        assert_eq!(body_len + 4, bytes.len());
    }

    #[test]
    fn every_strict_prefix_of_a_frame_is_incomplete() {
        let bytes = encode_frame(&hello(), MAX).unwrap();
        for cut in 0..bytes.len() {
            assert!(
                decode_frame::<ClientFrame>(&bytes[..cut], MAX)
                    .unwrap()
                    .is_none(),
                "{cut}"
            );
        }
    }

    #[test]
    fn zero_length_and_oversized_prefixes_are_refused_before_the_body() {
        assert!(matches!(
            decode_frame::<ClientFrame>(&[0, 0, 0, 0], MAX),
            Err(FrameError::Empty)
        ));
        let err = decode_frame::<ClientFrame>(&[0xff, 0xff, 0xff, 0xff], MAX).unwrap_err();
        assert!(
            matches!(
                err,
                FrameError::TooLarge {
                    len: 0xffff_ffff,
                    max: MAX
                }
            ),
            "{err:?}"
        );
        let frame = err.to_error_frame().unwrap();
        assert_eq!(frame.code, ErrorCode::FrameTooLarge);
        // Exactly the limit is fine (incomplete here), one more is not.
        assert!(
            decode_frame::<ClientFrame>(&MAX.to_be_bytes(), MAX)
                .unwrap()
                .is_none()
        );
        assert!(matches!(
            decode_frame::<ClientFrame>(&(MAX + 1).to_be_bytes(), MAX),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn bad_json_and_wrong_shapes_are_malformed_with_a_bad_frame_code() {
        for body in [
            &b"{"[..],
            b"null",
            b"{\"type\":\"nope\"}",
            b"\xff\xfe",
            b"[1,2]",
        ] {
            let err = decode_frame::<ClientFrame>(&framed(body), MAX).unwrap_err();
            assert!(matches!(err, FrameError::Malformed(_)), "{body:?}: {err:?}");
            assert_eq!(err.to_error_frame().unwrap().code, ErrorCode::BadFrame);
        }
    }

    #[test]
    fn deeply_nested_json_is_an_error_not_a_stack_overflow() {
        let body = "[".repeat(100_000);
        let err = decode_frame::<ClientFrame>(&framed(body.as_bytes()), MAX).unwrap_err();
        assert!(matches!(err, FrameError::Malformed(_)));
    }

    #[test]
    fn encode_refuses_frames_over_the_limit() {
        let big = ClientFrame::Hello {
            protocol_version: 1,
            client: "x".repeat(100),
        };
        assert!(matches!(
            encode_frame(&big, 50),
            Err(FrameError::TooLarge { max: 50, .. })
        ));
    }

    #[test]
    fn a_seeded_loop_of_random_and_mutated_inputs_never_panics() {
        // A cheap deterministic generator, so this runs the same everywhere.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let valid = encode_frame(
            &ServerFrame::Response {
                id: 7,
                reply: portcullis_protocol::Reply::Ok(portcullis_protocol::Response::Subscribed),
            },
            MAX,
        )
        .unwrap();
        for round in 0..20_000 {
            let mut bytes = if round % 2 == 0 {
                let len = (next() % 64) as usize;
                (0..len).map(|_| next() as u8).collect::<Vec<u8>>()
            } else {
                let mut v = valid.clone();
                let i = (next() as usize) % v.len();
                v[i] = next() as u8;
                v.truncate((next() as usize) % (v.len() + 1));
                v
            };
            if round % 7 == 0 {
                bytes.splice(0..0, framed(b"{}")[..4].iter().copied());
            }
            let _ = decode_frame::<ServerFrame>(&bytes, MAX);
            let _ = decode_frame::<ClientFrame>(&bytes, 16);
        }
    }

    proptest! {
        #[test]
        fn decode_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512), max in 0u32..1024) {
            let _ = decode_frame::<ClientFrame>(&bytes, max);
            let _ = decode_frame::<ServerFrame>(&bytes, max);
        }

        #[test]
        fn any_request_id_round_trips(id in any::<u64>()) {
            let frame = ClientFrame::Request { id, request: Request::Status };
            let bytes = encode_frame(&frame, MAX).unwrap();
            let (back, used) = decode_frame::<ClientFrame>(&bytes, MAX).unwrap().unwrap();
            prop_assert_eq!(back, frame);
            prop_assert_eq!(used, bytes.len());
        }
    }

    fn run<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn read_frame_distinguishes_clean_eof_from_truncation() {
        run(async {
            let bytes = encode_frame(&hello(), MAX).unwrap();
            let mut all = bytes.clone();
            all.extend_from_slice(&bytes);
            let mut r = &all[..];
            assert_eq!(
                read_frame::<_, ClientFrame>(&mut r, MAX).await.unwrap(),
                Some(hello())
            );
            assert_eq!(
                read_frame::<_, ClientFrame>(&mut r, MAX).await.unwrap(),
                Some(hello())
            );
            assert_eq!(
                read_frame::<_, ClientFrame>(&mut r, MAX).await.unwrap(),
                None
            );
            for cut in 1..bytes.len() {
                let mut r = &bytes[..cut];
                let err = read_frame::<_, ClientFrame>(&mut r, MAX).await.unwrap_err();
                assert!(matches!(err, FrameError::Truncated), "{cut}: {err:?}");
            }
        });
    }

    #[test]
    fn read_frame_reads_nothing_past_an_oversized_prefix() {
        run(async {
            let mut input = vec![0xff, 0xff, 0xff, 0xff];
            input.extend_from_slice(b"rest");
            let mut r = &input[..];
            let err = read_frame::<_, ClientFrame>(&mut r, MAX).await.unwrap_err();
            assert!(matches!(err, FrameError::TooLarge { .. }));
            assert_eq!(r, b"rest", "the body must not be read");
        });
    }

    #[test]
    fn frame_reader_is_resumable_across_dribbled_bytes() {
        run(async {
            let bytes = encode_frame(&hello(), MAX).unwrap();
            let (mut tx, rx) = tokio::io::duplex(1);
            let writer = tokio::spawn(async move {
                for b in bytes.iter().chain(bytes.iter()) {
                    tx.write_all(&[*b]).await.unwrap();
                }
            });
            let mut reader = FrameReader::new(rx, MAX);
            // Poll with a very short timeout first: a cancelled read must keep its bytes.
            let mut frames = Vec::new();
            while frames.len() < 2 {
                if let Ok(r) = tokio::time::timeout(
                    std::time::Duration::from_micros(50),
                    reader.read::<ClientFrame>(),
                )
                .await
                {
                    frames.push(r.unwrap().unwrap());
                }
            }
            writer.await.unwrap();
            assert_eq!(frames, vec![hello(), hello()]);
            assert_eq!(reader.read::<ClientFrame>().await.unwrap(), None);
        });
    }

    #[test]
    fn frame_reader_reports_truncation_and_oversize() {
        run(async {
            let bytes = encode_frame(&hello(), MAX).unwrap();
            let mut reader = FrameReader::new(&bytes[..bytes.len() - 1], MAX);
            assert!(matches!(
                reader.read::<ClientFrame>().await,
                Err(FrameError::Truncated)
            ));
            let big = [0x7f, 0xff, 0xff, 0xff, b'{'];
            let mut reader = FrameReader::new(&big[..], MAX);
            assert!(matches!(
                reader.read::<ClientFrame>().await,
                Err(FrameError::TooLarge { .. })
            ));
            assert!(reader.buf.capacity() < 2 * READ_AHEAD);
        });
    }
}

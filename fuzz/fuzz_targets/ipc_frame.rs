//! IPC frames from a hostile peer: any bytes must decode to a frame, ask for more, or fail
//! with an error — never panic, and never claim more bytes than it was given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_ipc::decode_frame;
use portcullis_protocol::{ClientFrame, MAX_FRAME_LEN, ServerFrame};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((_, used))) = decode_frame::<ClientFrame>(data, MAX_FRAME_LEN) {
        assert!(used <= data.len());
    }
    if let Ok(Some((_, used))) = decode_frame::<ServerFrame>(data, MAX_FRAME_LEN) {
        assert!(used <= data.len());
    }
    // A small limit exercises the oversized-frame path too.
    let _ = decode_frame::<ClientFrame>(data, 16);
});

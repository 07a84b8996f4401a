//! `cargo run -p portcullis-protocol-ts [DIR]`: writes the protocol's TypeScript declarations
//! to `frontend/src/lib/protocol/` (or DIR). Run it after changing a type in helper/protocol;
//! the crate's test fails until the committed files match.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let dir = std::env::args_os()
        .nth(1)
        .map_or_else(portcullis_protocol_ts::out_dir, PathBuf::from);
    match portcullis_protocol_ts::write(&dir) {
        Ok(n) => {
            println!("wrote {n} TypeScript files to {}", dir.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("portcullis-protocol-ts: {e}");
            ExitCode::FAILURE
        }
    }
}

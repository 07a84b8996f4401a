//! Locating the workspace's built binaries (`portcullisd`, `portcullisctl`, the lab's own
//! `lab-echo`/`lab-app`) from a test, in any crate of the workspace.
//!
//! Cargo only tells a crate's own integration tests where that crate's binaries are
//! (`CARGO_BIN_EXE_<name>`); tests of other crates look next to their own executable, which
//! lives in `target/<profile>/deps/`. This module only looks; it never builds anything.

use std::path::PathBuf;

/// The built binary `name` of this workspace, found next to the running test executable
/// (`target/<profile>/`), or in `$PCL_BIN_DIR` if set.
///
/// Panics with instructions if it is missing: run `cargo build --workspace --bins` first (the
/// tests of one crate do not build the binaries of another).
pub fn lab_bin(name: &str) -> PathBuf {
    let mut dirs = Vec::new();
    if let Some(dir) = std::env::var_os("PCL_BIN_DIR") {
        dirs.push(PathBuf::from(dir));
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        dirs.push(dir.to_path_buf());
        // Test executables live in target/<profile>/deps, examples in target/<profile>/examples.
        if let Some(parent) = dir.parent() {
            dirs.push(parent.to_path_buf());
        }
    }
    for dir in &dirs {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    let looked: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    panic!(
        "binary `{name}` not found (looked in: {}); run `cargo build --workspace --bins` first \
         (with the same profile as the tests), or set PCL_BIN_DIR",
        looked.join(", ")
    );
}

//! Compiles the eBPF programs of `ebpf/` with clang (`clang -O2 -g -target bpf`, headers from
//! libbpf-dev) into `$OUT_DIR/attribution.bpf.o`, which the Linux attributor embeds with
//! `include_bytes!`. Only for Linux targets: other targets build without clang.
//!
//! `CLANG` names another compiler; `BPF_CFLAGS` adds flags (e.g. `-I` for headers elsewhere).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const SOURCE: &str = "ebpf/attribution.bpf.c";
const OBJECT: &str = "attribution.bpf.o";
const PACKAGES: &str = "clang libbpf-dev";

fn main() -> ExitCode {
    println!("cargo:rerun-if-changed={SOURCE}");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CLANG");
    println!("cargo:rerun-if-env-changed=BPF_CFLAGS");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return ExitCode::SUCCESS;
    }
    match build() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: portcullis-attribution: {message}");
            println!(
                "cargo:warning={}",
                message.lines().next().unwrap_or_default()
            );
            ExitCode::FAILURE
        }
    }
}

fn build() -> Result<(), String> {
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").ok_or("OUT_DIR is not set")?);
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".to_owned());
    let version = Command::new(&clang).arg("--version").output();
    if !version.is_ok_and(|o| o.status.success()) {
        return Err(format!(
            "cannot run `{clang}`, needed to compile the eBPF programs ({SOURCE}).\n\
             Install the Debian packages `{PACKAGES}` (scripts/install-deps does), or set CLANG."
        ));
    }
    let mut includes = Vec::new();
    // linux/bpf.h includes <asm/types.h>, which Debian keeps in the multiarch directory.
    if let Ok(arch) = std::env::var("CARGO_CFG_TARGET_ARCH") {
        let multiarch = PathBuf::from(format!("/usr/include/{arch}-linux-gnu"));
        if multiarch.is_dir() {
            includes.push(multiarch);
        }
    }
    let extra: Vec<String> = std::env::var("BPF_CFLAGS")
        .map(|s| s.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    if !has_header(&includes, &extra, "bpf/bpf_helpers.h") {
        return Err(format!(
            "bpf/bpf_helpers.h not found, needed to compile the eBPF programs ({SOURCE}).\n\
             Install the Debian packages `{PACKAGES}` (scripts/install-deps does), or point \
             BPF_CFLAGS=-I… at libbpf's headers."
        ));
    }
    let object = out_dir.join(OBJECT);
    let mut cmd = Command::new(&clang);
    cmd.args(["-O2", "-g", "-target", "bpf", "-Wall"]);
    for dir in &includes {
        cmd.arg("-I").arg(dir);
    }
    cmd.args(&extra);
    cmd.arg("-c").arg(SOURCE).arg("-o").arg(&object);
    let output = cmd
        .output()
        .map_err(|e| format!("cannot run `{clang}`: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "`{clang}` failed to compile {SOURCE}:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(())
}

/// Whether `header` is in the default include path or one of `dirs` / `-I` flags in `extra`.
fn has_header(dirs: &[PathBuf], extra: &[String], header: &str) -> bool {
    let flagged = extra
        .iter()
        .filter_map(|f| f.strip_prefix("-I"))
        .map(Path::new);
    ["/usr/include", "/usr/local/include"]
        .into_iter()
        .map(Path::new)
        .chain(dirs.iter().map(PathBuf::as_path))
        .chain(flagged)
        .any(|dir| dir.join(header).is_file())
}

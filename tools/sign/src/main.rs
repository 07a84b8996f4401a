//! `portcullis-sign`: the publisher's side of signed data bundles (`portcullis_intel::bundle`).
//! Makes an Ed25519 key pair, writes a bundle's `manifest.json` and `manifest.sig` for the
//! files in a directory, and verifies a bundle as the helper would. It never uploads anything
//! and never reads a key it did not make (the private key file is base64 of the 32-byte seed).
//!
//! Exit codes: 0 done, 1 refused or failed (the reason on stderr), 2 bad usage.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use clap::{Parser, Subcommand};
use ed25519_dalek::SigningKey;
use portcullis_intel::bundle::{
    self, FORMAT, FileEntry, MANIFEST, Manifest, SIGNATURE, TrustedKey, check_path,
};

/// Makes signing keys, and signs and verifies Portcullis data bundles.
#[derive(Debug, Parser)]
#[command(name = "portcullis-sign", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Makes a new key pair: writes the private key to KEYFILE (mode 0600, never
    /// overwritten) and prints the public key as `[updates] keys` takes it.
    Keygen {
        /// Where to write the private key.
        #[arg(long)]
        out: PathBuf,
    },
    /// Prints the public key of a private key file.
    Pubkey {
        /// The private key file.
        #[arg(long)]
        key: PathBuf,
    },
    /// Writes manifest.json and manifest.sig for every file under DIR.
    Sign {
        /// The private key file.
        #[arg(long)]
        key: PathBuf,
        /// The bundle's data version: must be greater than every version published before.
        #[arg(long)]
        version: u64,
        /// The creation time to record (Unix seconds; default now).
        #[arg(long)]
        created: Option<u64>,
        /// The bundle directory.
        dir: PathBuf,
    },
    /// Verifies the bundle in DIR as the helper does: signature, version, paths, sizes and
    /// hashes.
    Verify {
        /// The trusted public key (base64); may be repeated.
        #[arg(long = "pubkey", required = true)]
        pubkeys: Vec<String>,
        /// Refuse versions not newer than this one.
        #[arg(long, default_value_t = 0)]
        installed: u64,
        /// Largest file size allowed, in MiB.
        #[arg(long, default_value_t = 512)]
        max_file_mb: u64,
        /// The bundle directory.
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("portcullis-sign: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Keygen { out } => keygen(&out),
        Command::Pubkey { key } => {
            let key = read_key(&key)?;
            println!("{}", public_text(&key));
            Ok(())
        }
        Command::Sign {
            key,
            version,
            created,
            dir,
        } => sign(&read_key(&key)?, version, created, &dir),
        Command::Verify {
            pubkeys,
            installed,
            max_file_mb,
            dir,
        } => verify(&pubkeys, installed, max_file_mb, &dir),
    }
}

fn public_text(key: &SigningKey) -> String {
    TrustedKey::new(key.verifying_key()).to_base64()
}

fn keygen(out: &Path) -> anyhow::Result<()> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let key = SigningKey::from_bytes(&seed);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(out)
        .with_context(|| format!("cannot create {} (it is never overwritten)", out.display()))?;
    writeln!(file, "{}", BASE64.encode(seed))
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", out.display()))?;
    let trusted = TrustedKey::new(key.verifying_key());
    eprintln!(
        "private key written to {} (keep it secret); key id {}; public key:",
        out.display(),
        trusted.id()
    );
    println!("{}", trusted.to_base64());
    Ok(())
}

fn read_key(path: &Path) -> anyhow::Result<SigningKey> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the private key {}", path.display()))?;
    let seed = BASE64
        .decode(text.trim())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .with_context(|| {
            format!(
                "{} is not a private key made by `portcullis-sign keygen`",
                path.display()
            )
        })?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Every regular file under `dir`, as sorted relative `/`-paths, except the bundle's own
/// manifest and signature. Symbolic links and other special files are refused.
fn bundle_files(dir: &Path) -> anyhow::Result<Vec<String>> {
    fn walk(root: &Path, rel: &str, out: &mut Vec<String>) -> anyhow::Result<()> {
        let here = if rel.is_empty() {
            root.to_owned()
        } else {
            root.join(rel)
        };
        let entries =
            std::fs::read_dir(&here).with_context(|| format!("cannot list {}", here.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot list {}", here.display()))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                bail!("{}: file names must be ASCII", entry.path().display());
            };
            let path = if rel.is_empty() {
                name.to_owned()
            } else {
                format!("{rel}/{name}")
            };
            let kind = entry
                .file_type()
                .with_context(|| format!("cannot read {}", entry.path().display()))?;
            if kind.is_dir() {
                walk(root, &path, out)?;
            } else if kind.is_file() {
                if path != MANIFEST && path != SIGNATURE {
                    out.push(path);
                }
            } else {
                bail!(
                    "{}: only regular files and directories can be signed",
                    entry.path().display()
                );
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, "", &mut out)?;
    out.sort();
    Ok(out)
}

fn sign(key: &SigningKey, version: u64, created: Option<u64>, dir: &Path) -> anyhow::Result<()> {
    let mut files = Vec::new();
    for path in bundle_files(dir)? {
        check_path(&path)?;
        let contents = std::fs::read(dir.join(&path))
            .with_context(|| format!("cannot read {}", dir.join(&path).display()))?;
        files.push(FileEntry::of(path, &contents));
    }
    if files.is_empty() {
        bail!("{} holds no files to sign", dir.display());
    }
    let created = created.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    });
    let trusted = TrustedKey::new(key.verifying_key());
    let manifest = Manifest {
        format: FORMAT,
        version,
        created,
        key_id: trusted.id().to_owned(),
        files,
    };
    // The checks the helper makes, so that nothing unusable is published.
    let bytes = manifest.to_bytes();
    let sig = bundle::sign(&bytes, key);
    bundle::verify(&bytes, &sig, std::slice::from_ref(&trusted), 0, u64::MAX)?;
    std::fs::write(dir.join(MANIFEST), &bytes)
        .with_context(|| format!("cannot write {}", dir.join(MANIFEST).display()))?;
    std::fs::write(dir.join(SIGNATURE), sig)
        .with_context(|| format!("cannot write {}", dir.join(SIGNATURE).display()))?;
    println!(
        "signed version {version}: {} files, key {}",
        manifest.files.len(),
        trusted.id()
    );
    Ok(())
}

fn verify(pubkeys: &[String], installed: u64, max_file_mb: u64, dir: &Path) -> anyhow::Result<()> {
    let trusted = pubkeys
        .iter()
        .map(|k| TrustedKey::from_base64(k))
        .collect::<Result<Vec<_>, _>>()?;
    let manifest = std::fs::read(dir.join(MANIFEST))
        .with_context(|| format!("cannot read {}", dir.join(MANIFEST).display()))?;
    let sig = std::fs::read(dir.join(SIGNATURE))
        .with_context(|| format!("cannot read {}", dir.join(SIGNATURE).display()))?;
    let max = max_file_mb.saturating_mul(1 << 20);
    let m = bundle::verify(&manifest, &sig, &trusted, installed, max)?;
    bundle::verify_dir(&m, dir)?;
    println!(
        "ok: version {}, {} files, signed by key {}",
        m.version,
        m.files.len(),
        m.key_id
    );
    Ok(())
}

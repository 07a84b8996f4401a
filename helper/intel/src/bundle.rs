//! Signed data bundles: the format in which updated filter lists and geo data reach the
//! helper, and every check a bundle must pass before any of it is used. This module owns the
//! trust decision; it does no network I/O and never writes a file (only [`verify_dir`] reads
//! the files a caller points it at).
//!
//! # Format
//!
//! A bundle is a directory (or the same names under a URL):
//!
//! - `manifest.json`: UTF-8 JSON, one object, unknown fields refused:
//!   `{"format": 1, "version": N, "created": UNIX_SECONDS, "key_id": "16 hex",
//!   "files": [{"path": "lists/easylist.txt", "size": BYTES, "sha256": "64 hex"}, …]}`.
//!   `version` is a monotonic `u64` chosen by the publisher (e.g. `2026061900`, a date and a
//!   counter); a bundle is accepted only if it is strictly newer than the one installed.
//! - `manifest.sig`: the detached Ed25519 signature (64 raw bytes) over the **exact bytes** of
//!   `manifest.json` (never a re-serialisation), checked with `verify_strict` before the
//!   manifest's contents are believed.
//! - the files the manifest names, at their relative paths.
//!
//! Public keys are written as standard base64 of the 32 key bytes; a key's id is the first
//! 8 bytes of the SHA-256 of those bytes, in lowercase hex.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The manifest format this code reads and writes.
pub const FORMAT: u32 = 1;
/// The manifest's file name in a bundle.
pub const MANIFEST: &str = "manifest.json";
/// The signature's file name in a bundle.
pub const SIGNATURE: &str = "manifest.sig";
/// Largest manifest accepted, in bytes (checked before parsing).
pub const MAX_MANIFEST_LEN: usize = 1 << 20;
/// Most files one bundle may name.
pub const MAX_FILES: usize = 256;
/// Longest relative path of a file in a bundle, in bytes.
pub const MAX_PATH_LEN: usize = 200;
/// Most directory levels of a file's path.
pub const MAX_DEPTH: usize = 4;

/// A bundle's manifest, as signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The manifest format ([`FORMAT`]).
    pub format: u32,
    /// The data version: strictly greater than the installed one, or the bundle is refused.
    pub version: u64,
    /// When the bundle was made (Unix seconds); informational.
    pub created: u64,
    /// The id of the key that signed it ([`key_id`]).
    pub key_id: String,
    /// The files, in the order they were signed.
    pub files: Vec<FileEntry>,
}

/// One file of a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// Relative path, `/`-separated ([`check_path`]).
    pub path: String,
    /// Exact size in bytes.
    pub size: u64,
    /// SHA-256 of the contents, 64 lowercase hex digits.
    pub sha256: String,
}

/// Why a bundle, a key or a file of a bundle is refused. Each names the problem.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The manifest is larger than [`MAX_MANIFEST_LEN`].
    #[error("manifest is {len} bytes, more than the {MAX_MANIFEST_LEN} allowed")]
    ManifestTooLarge {
        /// Its size.
        len: usize,
    },
    /// The signature file is not 64 bytes.
    #[error("signature is {len} bytes; an Ed25519 signature is 64")]
    BadSignatureLength {
        /// Its size.
        len: usize,
    },
    /// No key is trusted, so nothing can be verified.
    #[error("no trusted keys are configured")]
    NoTrustedKeys,
    /// The manifest names a key that is not trusted (and no trusted key signed it).
    #[error("manifest is signed by key {key_id}, which is not trusted")]
    UnknownKey {
        /// The key id the manifest names.
        key_id: String,
    },
    /// The signature does not match the manifest under any trusted key: the manifest or the
    /// signature was changed, or it was signed with another key.
    #[error("bad signature: the manifest was not signed by a trusted key, or was changed")]
    BadSignature,
    /// The manifest is signed but not valid JSON of the expected shape.
    #[error("malformed manifest: {why}")]
    Malformed {
        /// What is wrong.
        why: String,
    },
    /// The manifest's format is not [`FORMAT`].
    #[error("manifest format {format} is not supported (this helper reads format {FORMAT})")]
    UnsupportedFormat {
        /// The format it declares.
        format: u32,
    },
    /// The bundle is not newer than the data installed: a replayed or older bundle.
    #[error(
        "bundle version {offered} is not newer than the installed version {installed} (rollback refused)"
    )]
    Rollback {
        /// The bundle's version.
        offered: u64,
        /// The installed version.
        installed: u64,
    },
    /// The manifest names more than [`MAX_FILES`] files.
    #[error("manifest names {count} files, more than the {MAX_FILES} allowed")]
    TooManyFiles {
        /// How many.
        count: usize,
    },
    /// A file's path is not a safe relative path.
    #[error("bad file path {path:?}: {why}")]
    BadPath {
        /// The path (shortened to 100 characters).
        path: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// Two entries name the same path.
    #[error("file {path:?} is named twice")]
    DuplicatePath {
        /// The path.
        path: String,
    },
    /// A file is declared larger than the configured maximum.
    #[error("file {path:?} is {size} bytes, more than the {max} allowed")]
    Oversize {
        /// The path.
        path: String,
        /// Its declared size.
        size: u64,
        /// The maximum.
        max: u64,
    },
    /// A file's size differs from the manifest's (e.g. a truncated download).
    #[error("file {path:?} is {actual} bytes, the manifest says {expected}")]
    SizeMismatch {
        /// The path.
        path: String,
        /// The size in the manifest.
        expected: u64,
        /// The size found.
        actual: u64,
    },
    /// A file grew beyond its declared size while being read (reading stopped there).
    #[error("file {path:?} is longer than the {expected} bytes the manifest says")]
    LongerThanDeclared {
        /// The path.
        path: String,
        /// The size in the manifest.
        expected: u64,
    },
    /// A file's SHA-256 differs from the manifest's.
    #[error("file {path:?} does not match its SHA-256 in the manifest")]
    HashMismatch {
        /// The path.
        path: String,
    },
    /// A file of the bundle could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A public key is not base64 of 32 bytes of a valid Ed25519 point.
    #[error("bad public key: {why}")]
    BadKey {
        /// What is wrong.
        why: String,
    },
}

/// A public key the helper trusts, with its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedKey {
    key: VerifyingKey,
    id: String,
}

impl TrustedKey {
    /// The key from its base64 text (surrounding whitespace ignored).
    pub fn from_base64(text: &str) -> Result<TrustedKey, BundleError> {
        let bytes = BASE64
            .decode(text.trim())
            .map_err(|e| BundleError::BadKey {
                why: format!("not base64 ({e})"),
            })?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| BundleError::BadKey {
            why: format!("{} bytes; an Ed25519 public key is 32", b.len()),
        })?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| BundleError::BadKey {
            why: "not a valid Ed25519 public key".to_owned(),
        })?;
        Ok(TrustedKey::new(key))
    }

    /// Wraps a verifying key.
    pub fn new(key: VerifyingKey) -> TrustedKey {
        TrustedKey {
            id: key_id(&key),
            key,
        }
    }

    /// The key's id ([`key_id`]).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The key as base64 text, as the helper's configuration takes it.
    pub fn to_base64(&self) -> String {
        BASE64.encode(self.key.as_bytes())
    }
}

/// A key's id: the first 8 bytes of the SHA-256 of its 32 bytes, in lowercase hex.
pub fn key_id(key: &VerifyingKey) -> String {
    let digest = Sha256::digest(key.as_bytes());
    hex(digest.get(..8).unwrap_or_default())
}

/// Signs the exact `manifest` bytes; the result is the contents of `manifest.sig`.
pub fn sign(manifest: &[u8], key: &SigningKey) -> [u8; 64] {
    key.sign(manifest).to_bytes()
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn short(path: &str) -> String {
    path.chars().take(100).collect()
}

impl Manifest {
    /// The manifest as the bytes to sign and publish (pretty JSON and a final newline).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }

    /// The entry for `path`, if the manifest names it.
    pub fn file(&self, path: &str) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.path == path)
    }
}

impl FileEntry {
    /// The entry describing `contents` at `path` (for signing).
    pub fn of(path: impl Into<String>, contents: &[u8]) -> FileEntry {
        FileEntry {
            path: path.into(),
            size: contents.len() as u64,
            sha256: hex(&Sha256::digest(contents)),
        }
    }

    /// A check that takes the file's bytes in pieces (a download).
    pub fn check(&self) -> FileCheck<'_> {
        FileCheck {
            entry: self,
            hasher: Sha256::new(),
            seen: 0,
        }
    }
}

/// Checks a file of a bundle as its bytes arrive: refuses at once when more arrive than the
/// manifest declares, and checks size and hash at the end.
#[derive(Debug)]
pub struct FileCheck<'a> {
    entry: &'a FileEntry,
    hasher: Sha256,
    seen: u64,
}

impl FileCheck<'_> {
    /// Takes the next piece; an error when the file is now longer than declared.
    pub fn update(&mut self, piece: &[u8]) -> Result<(), BundleError> {
        self.seen = self.seen.saturating_add(piece.len() as u64);
        if self.seen > self.entry.size {
            return Err(BundleError::LongerThanDeclared {
                path: self.entry.path.clone(),
                expected: self.entry.size,
            });
        }
        self.hasher.update(piece);
        Ok(())
    }

    /// Bytes taken so far.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// Checks the complete file's size and hash.
    pub fn finish(self) -> Result<(), BundleError> {
        if self.seen != self.entry.size {
            return Err(BundleError::SizeMismatch {
                path: self.entry.path.clone(),
                expected: self.entry.size,
                actual: self.seen,
            });
        }
        if hex(&self.hasher.finalize()) != self.entry.sha256 {
            return Err(BundleError::HashMismatch {
                path: self.entry.path.clone(),
            });
        }
        Ok(())
    }
}

/// Whether `path` is a safe relative path for a file of a bundle: at most
/// [`MAX_PATH_LEN`] bytes of ASCII letters, digits, `.`, `_`, `-` and `/` separators; not
/// absolute, no backslash, no empty, `.` or `..` component, no component that begins with a
/// dot, at most [`MAX_DEPTH`] components, and not the manifest's or signature's own name.
pub fn check_path(path: &str) -> Result<(), BundleError> {
    let bad = |why| BundleError::BadPath {
        path: short(path),
        why,
    };
    if path.is_empty() {
        return Err(bad("empty"));
    }
    if path.len() > MAX_PATH_LEN {
        return Err(bad("too long"));
    }
    if path.starts_with('/') {
        return Err(bad("absolute"));
    }
    if path.contains('\\') {
        return Err(bad("contains a backslash"));
    }
    if !path
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'))
    {
        return Err(bad(
            "only ASCII letters, digits, '.', '_', '-' and '/' are allowed",
        ));
    }
    let mut depth = 0;
    for component in path.split('/') {
        depth += 1;
        if component.is_empty() {
            return Err(bad("empty component ('//' or a trailing '/')"));
        }
        if component == ".." {
            return Err(bad("'..' is not allowed"));
        }
        if component.starts_with('.') {
            return Err(bad("a component begins with '.'"));
        }
    }
    if depth > MAX_DEPTH {
        return Err(bad("too many directory levels"));
    }
    if path == MANIFEST || path == SIGNATURE {
        return Err(bad("reserved for the bundle's own manifest and signature"));
    }
    Ok(())
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Verifies a bundle's manifest: its size, the signature over the exact bytes under one of
/// `trusted`, its shape and format, that its version is newer than `installed` (no
/// rollback), and every file entry (safe path, no duplicates, well-formed hash, declared
/// size at most `max_file_size`). The files themselves are checked with [`verify_file`],
/// [`FileEntry::check`] or [`verify_dir`].
pub fn verify(
    manifest: &[u8],
    signature: &[u8],
    trusted: &[TrustedKey],
    installed: u64,
    max_file_size: u64,
) -> Result<Manifest, BundleError> {
    if manifest.len() > MAX_MANIFEST_LEN {
        return Err(BundleError::ManifestTooLarge {
            len: manifest.len(),
        });
    }
    let sig = Signature::from_slice(signature).map_err(|_| BundleError::BadSignatureLength {
        len: signature.len(),
    })?;
    if trusted.is_empty() {
        return Err(BundleError::NoTrustedKeys);
    }
    let Some(signer) = trusted
        .iter()
        .find(|k| k.key.verify_strict(manifest, &sig).is_ok())
    else {
        // Only to name the problem: an unverified manifest decides nothing else.
        #[derive(Deserialize)]
        struct KeyIdOnly {
            key_id: String,
        }
        return Err(match serde_json::from_slice::<KeyIdOnly>(manifest) {
            Ok(k) if !trusted.iter().any(|t| t.id == k.key_id) => BundleError::UnknownKey {
                key_id: short(&k.key_id),
            },
            _ => BundleError::BadSignature,
        });
    };
    let parsed: Manifest = serde_json::from_slice(manifest)
        .map_err(|e| BundleError::Malformed { why: e.to_string() })?;
    if parsed.format != FORMAT {
        return Err(BundleError::UnsupportedFormat {
            format: parsed.format,
        });
    }
    if parsed.key_id != signer.id {
        return Err(BundleError::Malformed {
            why: format!(
                "it names key {} but was signed by key {}",
                short(&parsed.key_id),
                signer.id
            ),
        });
    }
    if parsed.version <= installed {
        return Err(BundleError::Rollback {
            offered: parsed.version,
            installed,
        });
    }
    if parsed.files.is_empty() {
        return Err(BundleError::Malformed {
            why: "it names no files".to_owned(),
        });
    }
    if parsed.files.len() > MAX_FILES {
        return Err(BundleError::TooManyFiles {
            count: parsed.files.len(),
        });
    }
    let mut seen = HashSet::new();
    for f in &parsed.files {
        check_path(&f.path)?;
        if !seen.insert(f.path.as_str()) {
            return Err(BundleError::DuplicatePath {
                path: f.path.clone(),
            });
        }
        if !is_sha256_hex(&f.sha256) {
            return Err(BundleError::Malformed {
                why: format!("the sha256 of {:?} is not 64 lowercase hex digits", f.path),
            });
        }
        if f.size > max_file_size {
            return Err(BundleError::Oversize {
                path: f.path.clone(),
                size: f.size,
                max: max_file_size,
            });
        }
    }
    // A file may not also be a directory of another (`a` and `a/b`).
    for f in &parsed.files {
        let mut prefix = f.path.as_str();
        while let Some((parent, _)) = prefix.rsplit_once('/') {
            if seen.contains(parent) {
                return Err(BundleError::BadPath {
                    path: short(&f.path),
                    why: "lies under another file of the bundle",
                });
            }
            prefix = parent;
        }
    }
    Ok(parsed)
}

/// Checks one complete file against its entry: exact size, then SHA-256.
pub fn verify_file(entry: &FileEntry, contents: &[u8]) -> Result<(), BundleError> {
    if contents.len() as u64 != entry.size {
        return Err(BundleError::SizeMismatch {
            path: entry.path.clone(),
            expected: entry.size,
            actual: contents.len() as u64,
        });
    }
    let mut check = entry.check();
    check.update(contents)?;
    check.finish()
}

/// Checks every file of a verified `manifest` under `dir`: each must be a regular file (not
/// a symbolic link) of the declared size and hash. Reads at most one byte more than declared.
pub fn verify_dir(manifest: &Manifest, dir: &Path) -> Result<(), BundleError> {
    for entry in &manifest.files {
        check_path(&entry.path)?;
        let path = dir.join(&entry.path);
        let read = |source| BundleError::Read {
            path: path.clone(),
            source,
        };
        let meta = std::fs::symlink_metadata(&path).map_err(read)?;
        if !meta.file_type().is_file() {
            return Err(read(std::io::Error::other("not a regular file")));
        }
        let file = std::fs::File::open(&path).map_err(read)?;
        let mut limited = file.take(entry.size.saturating_add(1));
        let mut check = entry.check();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = limited.read(&mut buf).map_err(read)?;
            if n == 0 {
                break;
            }
            check.update(buf.get(..n).unwrap_or_default())?;
        }
        check.finish()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MAX: u64 = 1 << 20;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn trusted(seed: u8) -> TrustedKey {
        TrustedKey::new(key(seed).verifying_key())
    }

    fn manifest(version: u64, signer: u8, files: &[(&str, &[u8])]) -> Manifest {
        Manifest {
            format: FORMAT,
            version,
            created: 1_750_000_000,
            key_id: trusted(signer).id().to_owned(),
            files: files.iter().map(|(p, c)| FileEntry::of(*p, c)).collect(),
        }
    }

    fn signed(m: &Manifest, signer: u8) -> (Vec<u8>, [u8; 64]) {
        let bytes = m.to_bytes();
        let sig = sign(&bytes, &key(signer));
        (bytes, sig)
    }

    fn good() -> Manifest {
        manifest(
            5,
            1,
            &[
                ("lists/easylist.txt", b"||ads.example^\n"),
                ("geo/asn-ipv4.csv", b"1.0.0.0,1.0.0.255,13335,Cloudflare\n"),
            ],
        )
    }

    #[test]
    fn a_good_bundle_verifies_with_its_files() {
        let m = good();
        let (bytes, sig) = signed(&m, 1);
        let got = verify(&bytes, &sig, &[trusted(2), trusted(1)], 4, MAX).unwrap();
        assert_eq!(got, m);
        verify_file(&got.files[0], b"||ads.example^\n").unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("lists")).unwrap();
        std::fs::create_dir_all(dir.path().join("geo")).unwrap();
        std::fs::write(dir.path().join("lists/easylist.txt"), "||ads.example^\n").unwrap();
        std::fs::write(
            dir.path().join("geo/asn-ipv4.csv"),
            "1.0.0.0,1.0.0.255,13335,Cloudflare\n",
        )
        .unwrap();
        verify_dir(&got, dir.path()).unwrap();
        std::fs::write(
            dir.path().join("geo/asn-ipv4.csv"),
            "1.0.0.0,1.0.0.255,1,X\n",
        )
        .unwrap();
        assert!(matches!(
            verify_dir(&got, dir.path()),
            Err(BundleError::SizeMismatch { .. })
        ));
    }

    #[test]
    fn a_tampered_manifest_is_a_bad_signature() {
        let (mut bytes, sig) = signed(&good(), 1);
        let at = bytes.iter().position(|&b| b == b'5').unwrap();
        bytes[at] = b'6';
        let err = verify(&bytes, &sig, &[trusted(1)], 0, MAX).unwrap_err();
        assert!(matches!(err, BundleError::BadSignature), "{err}");
        // Not even whitespace may change: the signature covers the exact bytes.
        let (mut bytes, sig) = signed(&good(), 1);
        bytes.push(b' ');
        assert!(matches!(
            verify(&bytes, &sig, &[trusted(1)], 0, MAX),
            Err(BundleError::BadSignature)
        ));
    }

    #[test]
    fn a_wrong_key_is_named() {
        let (bytes, sig) = signed(&manifest(5, 3, &[("a", b"x")]), 3);
        let err = verify(&bytes, &sig, &[trusted(1)], 0, MAX).unwrap_err();
        assert!(matches!(&err, BundleError::UnknownKey { key_id } if *key_id == trusted(3).id()));
        assert!(err.to_string().contains("not trusted"), "{err}");
        // Signed by an untrusted key but claiming a trusted one's id.
        let mut m = manifest(5, 1, &[("a", b"x")]);
        m.key_id = trusted(1).id().to_owned();
        let (bytes, sig) = signed(&m, 3);
        assert!(matches!(
            verify(&bytes, &sig, &[trusted(1)], 0, MAX),
            Err(BundleError::BadSignature)
        ));
        assert!(matches!(
            verify(&bytes, &sig, &[], 0, MAX),
            Err(BundleError::NoTrustedKeys)
        ));
    }

    #[test]
    fn a_bad_signature_length_is_named() {
        let (bytes, sig) = signed(&good(), 1);
        assert!(matches!(
            verify(&bytes, &sig[..63], &[trusted(1)], 0, MAX),
            Err(BundleError::BadSignatureLength { len: 63 })
        ));
    }

    #[test]
    fn older_or_equal_versions_are_a_rollback() {
        let (bytes, sig) = signed(&good(), 1);
        for installed in [5, 6, u64::MAX] {
            let err = verify(&bytes, &sig, &[trusted(1)], installed, MAX).unwrap_err();
            assert!(
                matches!(err, BundleError::Rollback { offered: 5, installed: i } if i == installed)
            );
        }
    }

    #[test]
    fn files_that_differ_are_refused() {
        let m = good();
        let e = &m.files[0];
        assert!(matches!(
            verify_file(e, b"||ads.example^"),
            Err(BundleError::SizeMismatch {
                expected: 15,
                actual: 14,
                ..
            })
        ));
        assert!(matches!(
            verify_file(e, b"||ads.exbmple^\n"),
            Err(BundleError::HashMismatch { .. })
        ));
        let mut c = e.check();
        c.update(b"||ads.example^").unwrap();
        assert!(matches!(
            c.update(b"\n\n"),
            Err(BundleError::LongerThanDeclared { expected: 15, .. })
        ));
    }

    #[test]
    fn oversize_files_are_refused_before_download() {
        let (bytes, sig) = signed(&good(), 1);
        let err = verify(&bytes, &sig, &[trusted(1)], 0, 20).unwrap_err();
        assert!(
            matches!(
                err,
                BundleError::Oversize {
                    size: 35,
                    max: 20,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn malformed_signed_manifests_are_named() {
        let cases: &[&[u8]] = &[
            b"not json",
            b"{\"format\":1}",
            br#"{"format":1,"version":2,"created":0,"key_id":"K","files":[],"extra":1}"#,
        ];
        for raw in cases {
            let text = String::from_utf8_lossy(raw).replace('K', trusted(1).id());
            let sig = sign(text.as_bytes(), &key(1));
            let err = verify(text.as_bytes(), &sig, &[trusted(1)], 0, MAX).unwrap_err();
            assert!(
                matches!(err, BundleError::Malformed { .. }),
                "{text}: {err}"
            );
        }
        let mut m = good();
        m.format = 2;
        let (bytes, sig) = signed(&m, 1);
        assert!(matches!(
            verify(&bytes, &sig, &[trusted(1)], 0, MAX),
            Err(BundleError::UnsupportedFormat { format: 2 })
        ));
        let mut m = good();
        m.files.clear();
        let (bytes, sig) = signed(&m, 1);
        assert!(matches!(
            verify(&bytes, &sig, &[trusted(1)], 0, MAX),
            Err(BundleError::Malformed { .. })
        ));
        let mut m = good();
        m.files[1].sha256 = m.files[1].sha256.to_uppercase();
        let (bytes, sig) = signed(&m, 1);
        assert!(matches!(
            verify(&bytes, &sig, &[trusted(1)], 0, MAX),
            Err(BundleError::Malformed { .. })
        ));
        let mut m = good();
        m.files.push(m.files[0].clone());
        let (bytes, sig) = signed(&m, 1);
        assert!(matches!(
            verify(&bytes, &sig, &[trusted(1)], 0, MAX),
            Err(BundleError::DuplicatePath { .. })
        ));
        let m = manifest(1, 1, &[("a", b"1"), ("a/b", b"2")]);
        let (bytes, sig) = signed(&m, 1);
        assert!(matches!(
            verify(&bytes, &sig, &[trusted(1)], 0, MAX),
            Err(BundleError::BadPath { .. })
        ));
        let big = vec![b' '; MAX_MANIFEST_LEN + 1];
        assert!(matches!(
            verify(&big, &[0; 64], &[trusted(1)], 0, MAX),
            Err(BundleError::ManifestTooLarge { .. })
        ));
    }

    #[test]
    fn unsafe_paths_are_refused() {
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "lists/../../x",
            "a/./b",
            "a\\b",
            "a//b",
            "a/",
            ".hidden",
            "a b",
            "é",
            "a/b/c/d/e",
            MANIFEST,
            SIGNATURE,
            &"x".repeat(MAX_PATH_LEN + 1),
        ] {
            assert!(
                matches!(check_path(bad), Err(BundleError::BadPath { .. })),
                "{bad:?}"
            );
        }
        for ok in [
            "lists/easylist.txt",
            "geo/dbip-country.mmdb",
            "a_b-c.1",
            "lists/manifest.json",
        ] {
            check_path(ok).unwrap();
        }
        let m = manifest(2, 1, &[("../escape", b"x")]);
        let (bytes, sig) = signed(&m, 1);
        let err = verify(&bytes, &sig, &[trusted(1)], 0, MAX).unwrap_err();
        assert!(err.to_string().contains("'..'"), "{err}");
    }

    #[test]
    fn keys_parse_from_base64_or_say_why_not() {
        let k = trusted(7);
        assert_eq!(
            TrustedKey::from_base64(&format!(" {}\n", k.to_base64())).unwrap(),
            k
        );
        assert_eq!(k.id().len(), 16);
        for bad in ["", "!!!", "AAAA", &BASE64.encode([0u8; 33])] {
            assert!(matches!(
                TrustedKey::from_base64(bad),
                Err(BundleError::BadKey { .. })
            ));
        }
    }

    proptest! {
        #[test]
        fn any_changed_byte_of_the_manifest_is_refused(at in any::<prop::sample::Index>(), flip in 1u8..=255) {
            let (mut bytes, sig) = signed(&good(), 1);
            let i = at.index(bytes.len());
            bytes[i] ^= flip;
            let err = verify(&bytes, &sig, &[trusted(1)], 0, MAX).unwrap_err();
            prop_assert!(matches!(err, BundleError::BadSignature | BundleError::UnknownKey { .. }), "{}", err);
        }

        #[test]
        fn any_changed_signature_byte_is_refused(at in 0usize..64, flip in 1u8..=255) {
            let (bytes, mut sig) = signed(&good(), 1);
            sig[at] ^= flip;
            prop_assert!(matches!(verify(&bytes, &sig, &[trusted(1)], 0, MAX), Err(BundleError::BadSignature)));
        }

        #[test]
        fn any_changed_or_cut_file_is_refused(contents in prop::collection::vec(any::<u8>(), 1..200), at in any::<prop::sample::Index>(), flip in 1u8..=255, cut in any::<prop::sample::Index>()) {
            let e = FileEntry::of("f", &contents);
            verify_file(&e, &contents).unwrap();
            let mut changed = contents.clone();
            changed[at.index(contents.len())] ^= flip;
            prop_assert!(matches!(verify_file(&e, &changed), Err(BundleError::HashMismatch { .. })), "hash mismatch expected");
            let short = &contents[..cut.index(contents.len())];
            prop_assert!(matches!(verify_file(&e, short), Err(BundleError::SizeMismatch { .. })), "size mismatch expected");
        }

        #[test]
        fn versions_not_newer_are_rollbacks(version in 0u64..1000, installed in 0u64..1000) {
            let (bytes, sig) = signed(&manifest(version, 1, &[("a", b"x")]), 1);
            let got = verify(&bytes, &sig, &[trusted(1)], installed, MAX);
            if version > installed {
                prop_assert!(got.is_ok());
            } else {
                prop_assert!(matches!(got, Err(BundleError::Rollback { .. })), "rollback expected");
            }
        }

        #[test]
        fn declared_sizes_beyond_the_limit_are_oversize(size in 0u64..10_000, max in 0u64..10_000) {
            let mut m = manifest(1, 1, &[("a", b"x")]);
            m.files[0].size = size;
            let (bytes, sig) = signed(&m, 1);
            let got = verify(&bytes, &sig, &[trusted(1)], 0, max);
            if size > max {
                prop_assert!(matches!(got, Err(BundleError::Oversize { .. })), "oversize expected");
            } else {
                prop_assert!(got.is_ok());
            }
        }

        #[test]
        fn checked_paths_never_escape(path in "[a-z./\\\\_-]{0,24}") {
            if check_path(&path).is_ok() {
                let p = Path::new(&path);
                prop_assert!(p.is_relative());
                prop_assert!(p.components().all(|c| matches!(c, std::path::Component::Normal(_))));
            }
        }
    }
}

//! Signed data updates: checks `[updates] url` on a schedule and on demand, downloads a bundle
//! (`portcullis_intel::bundle`) into a staging directory under the state directory, verifies
//! signature, version (no rollback), paths, sizes and hashes, builds the new filter lists and
//! geo data from it, and only then swaps them in whole; lookups never pause. Any failure leaves
//! the data in force untouched. At start, the newest installed bundle that still verifies is
//! preferred over the shipped `[intel] data_dir`.
//!
//! Layout under the state directory: `intel/<version>/` (a verified bundle, with its
//! `manifest.json` and `manifest.sig`), `intel/installed` (the highest version ever installed:
//! the rollback floor) and `intel/staging/` (a download in progress; removed before each one).
//! Files a bundle does not name are read from the shipped data directory.
//!
//! This module decides nothing about connections, and never trusts a byte of a bundle before
//! `bundle::verify` has checked the manifest's signature.

use std::collections::HashSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context;
use portcullis_dns::Trust;
use portcullis_intel::bundle::{
    self, BundleError, FileEntry, MANIFEST, Manifest, SIGNATURE, TrustedKey,
};
use portcullis_intel::geo::{GeoDb, GeoFiles, LiveGeo};
use portcullis_protocol::{UpdateOutcome, UpdateStatus};
use serde::Deserialize;

use crate::lists::Lists;

/// The geo files a bundle may replace.
const GEO_FILES: [&str; 3] = [
    "geo/dbip-country.mmdb",
    "geo/asn-ipv4.csv",
    "geo/asn-ipv6.csv",
];
/// The first scheduled check comes this long after start (the start itself stays quick).
const FIRST_CHECK: Duration = Duration::from_secs(60);
/// Longest a whole request (headers and body) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Longest wait for the next bytes of an answer.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest signature file read.
const MAX_SIGNATURE_LEN: usize = 1024;

/// The `[updates]` table of the helper's configuration. Updates are off without a `url`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpdatesSection {
    /// Where bundles are published (`https://…/`; `manifest.json`, `manifest.sig` and the
    /// files are fetched relative to it). Default: none, updates off.
    pub url: Option<String>,
    /// The trusted public keys (base64, as `portcullis-sign keygen` prints them). Required
    /// with `url`.
    pub keys: Vec<String>,
    /// Hours between scheduled checks (default 24); 0: only on demand (`updates check`).
    pub interval_hours: u64,
    /// Largest file a bundle may hold, in MiB (default 256).
    pub max_file_mb: u64,
    /// Which certificate authorities the server's certificate must chain to: `"system"`
    /// (default) or `{ ca_file = "/path.pem" }` (tests, private mirrors), as for
    /// `[dns.resolver] trust`.
    pub trust: Trust,
}

impl Default for UpdatesSection {
    fn default() -> Self {
        UpdatesSection {
            url: None,
            keys: Vec::new(),
            interval_hours: 24,
            max_file_mb: 256,
            trust: Trust::System,
        }
    }
}

/// A checked `[updates]` table.
#[derive(Debug, Clone)]
struct Settings {
    base: reqwest::Url,
    keys: Vec<TrustedKey>,
    max_file: u64,
    interval_hours: u64,
    trust: Trust,
}

impl UpdatesSection {
    /// The checked settings; `None` when updates are off (no url).
    fn settings(&self) -> anyhow::Result<Option<Settings>> {
        let Some(url) = &self.url else {
            return Ok(None);
        };
        let mut text = url.clone();
        if !text.ends_with('/') {
            text.push('/');
        }
        let base = reqwest::Url::parse(&text)
            .with_context(|| format!("[updates] url {url:?} is not a URL"))?;
        if base.scheme() != "https" {
            anyhow::bail!("[updates] url {url:?} must be https://");
        }
        if self.keys.is_empty() {
            anyhow::bail!(
                "[updates] url is set but no keys are: add the publisher's public key to [updates] keys"
            );
        }
        let keys = self
            .keys
            .iter()
            .map(|k| TrustedKey::from_base64(k).with_context(|| format!("[updates] keys: {k:?}")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        if self.max_file_mb == 0 || self.max_file_mb > 4096 {
            anyhow::bail!("[updates] max_file_mb must be 1–4096");
        }
        Ok(Some(Settings {
            base,
            keys,
            max_file: self.max_file_mb << 20,
            interval_hours: self.interval_hours,
            trust: self.trust.clone(),
        }))
    }
}

/// Where the data in force is read from: a verified bundle's directory for the files it
/// names, the shipped data directory for the rest.
#[derive(Debug, Clone)]
pub struct DataSource {
    shipped: PathBuf,
    bundle: Option<(PathBuf, HashSet<String>)>,
    version: u64,
}

impl DataSource {
    /// Only the shipped data.
    pub fn shipped(dir: &Path) -> DataSource {
        DataSource {
            shipped: dir.to_owned(),
            bundle: None,
            version: 0,
        }
    }

    fn with_bundle(shipped: &Path, dir: &Path, manifest: &Manifest) -> DataSource {
        DataSource {
            shipped: shipped.to_owned(),
            bundle: Some((
                dir.to_owned(),
                manifest.files.iter().map(|f| f.path.clone()).collect(),
            )),
            version: manifest.version,
        }
    }

    /// The file to read for `rel` (a path like `lists/easylist.txt`).
    pub fn path(&self, rel: &str) -> PathBuf {
        match &self.bundle {
            Some((dir, names)) if names.contains(rel) => dir.join(rel),
            _ => self.shipped.join(rel),
        }
    }

    /// The bundle's version; 0 for shipped data only.
    pub fn version(&self) -> u64 {
        self.version
    }

    fn names_geo(&self) -> bool {
        self.bundle
            .as_ref()
            .is_some_and(|(_, names)| GEO_FILES.iter().any(|g| names.contains(*g)))
    }

    /// The geo files to load.
    pub fn geo_files(&self) -> GeoFiles {
        let [country, v4, v6] = GEO_FILES;
        GeoFiles {
            country_mmdb: self.path(country),
            asn_csv: vec![self.path(v4), self.path(v6)],
        }
    }
}

/// What start-up found under the state directory.
#[derive(Debug)]
pub struct Installed {
    /// Where to load the data from.
    pub source: DataSource,
    /// The rollback floor: the highest version ever installed.
    pub floor: u64,
}

fn intel_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("intel")
}

/// The newest installed bundle that still verifies (signature under a configured key, every
/// file's size and hash), or the shipped data; with updates off, the shipped data.
pub fn installed(section: &UpdatesSection, state_dir: &Path, shipped: &Path) -> Installed {
    let fallback = Installed {
        source: DataSource::shipped(shipped),
        floor: 0,
    };
    let Ok(Some(settings)) = section.settings() else {
        return fallback;
    };
    let dir = intel_dir(state_dir);
    let floor = std::fs::read_to_string(dir.join("installed"))
        .ok()
        .and_then(|t| t.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let mut versions: Vec<u64> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u64>().ok())
        .collect();
    versions.sort_unstable_by(|a, b| b.cmp(a));
    for version in versions {
        let here = dir.join(version.to_string());
        match verify_installed(&settings, &here, version) {
            Ok(manifest) => {
                tracing::info!(version, "using the installed data bundle");
                return Installed {
                    source: DataSource::with_bundle(shipped, &here, &manifest),
                    floor: floor.max(version),
                };
            }
            Err(e) => tracing::warn!(
                version,
                error = format!("{e:#}"),
                "an installed data bundle no longer verifies; not using it"
            ),
        }
    }
    Installed { floor, ..fallback }
}

fn verify_installed(settings: &Settings, dir: &Path, version: u64) -> anyhow::Result<Manifest> {
    let manifest = std::fs::read(dir.join(MANIFEST)).context("cannot read its manifest")?;
    let sig = std::fs::read(dir.join(SIGNATURE)).context("cannot read its signature")?;
    let m = bundle::verify(&manifest, &sig, &settings.keys, 0, settings.max_file)?;
    if m.version != version {
        anyhow::bail!("its manifest says version {}", m.version);
    }
    bundle::verify_dir(&m, dir)?;
    Ok(m)
}

/// Why a check did not install anything.
enum Problem {
    /// The bundle failed a check.
    Refused(BundleError),
    /// Fetching, storing or loading failed.
    Failed(anyhow::Error),
}

impl From<BundleError> for Problem {
    fn from(e: BundleError) -> Self {
        Problem::Refused(e)
    }
}

impl From<anyhow::Error> for Problem {
    fn from(e: anyhow::Error) -> Self {
        Problem::Failed(e)
    }
}

#[derive(Debug)]
struct State {
    source: DataSource,
    floor: u64,
    last: Option<UpdateOutcome>,
    last_check_ms: Option<u64>,
}

/// How often the local list files are looked at for changes.
const LOCAL_LISTS_EVERY: Duration = Duration::from_secs(3);

/// The updater: configuration, HTTP client, and the data it swaps.
pub struct Updater {
    settings: Option<Settings>,
    client: Option<reqwest::Client>,
    intel_dir: PathBuf,
    lists: Arc<Lists>,
    geo: Arc<LiveGeo>,
    state: Mutex<State>,
    /// One check at a time.
    running: tokio::sync::Mutex<()>,
    /// Called once new data is in force (decides live connections again).
    swapped: std::sync::OnceLock<Box<dyn Fn() + Send + Sync>>,
}

impl std::fmt::Debug for Updater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Updater")
            .field("intel_dir", &self.intel_dir)
            .field("enabled", &self.settings.is_some())
            .finish_non_exhaustive()
    }
}

impl Updater {
    /// Calls `f` each time new data is in force (once set; later calls are ignored).
    pub fn on_swap(&self, f: impl Fn() + Send + Sync + 'static) {
        let _ = self.swapped.set(Box::new(f));
    }

    /// The updater for `section`; an error for a configuration it cannot use.
    pub fn new(
        section: &UpdatesSection,
        state_dir: &Path,
        installed: Installed,
        lists: Arc<Lists>,
        geo: Arc<LiveGeo>,
    ) -> anyhow::Result<Updater> {
        let settings = section.settings()?;
        let client = match &settings {
            Some(s) => {
                let roots = portcullis_dns::upstream::tls::root_store(&s.trust)
                    .context("[updates] trust")?;
                let tls = portcullis_dns::upstream::tls::client_config(roots)
                    .context("[updates] trust")?;
                Some(
                    reqwest::Client::builder()
                        .tls_backend_preconfigured((*tls).clone())
                        .https_only(true)
                        .no_proxy()
                        .connect_timeout(Duration::from_secs(30))
                        .read_timeout(READ_TIMEOUT)
                        .timeout(REQUEST_TIMEOUT)
                        .user_agent(concat!("portcullisd/", env!("CARGO_PKG_VERSION")))
                        .build()
                        .context("cannot set up the HTTPS client for updates")?,
                )
            }
            None => None,
        };
        Ok(Updater {
            settings,
            client,
            intel_dir: intel_dir(state_dir),
            lists,
            geo,
            state: Mutex::new(State {
                source: installed.source,
                floor: installed.floor,
                last: None,
                last_check_ms: None,
            }),
            running: tokio::sync::Mutex::new(()),
            swapped: std::sync::OnceLock::new(),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether updates are configured.
    pub fn enabled(&self) -> bool {
        self.settings.is_some()
    }

    /// The state, for `UpdateStatus`.
    pub fn status(&self) -> UpdateStatus {
        let state = self.state();
        UpdateStatus {
            enabled: self.settings.is_some(),
            url: self.settings.as_ref().map(|s| s.base.to_string()),
            interval_hours: self.settings.as_ref().map_or(0, |s| s.interval_hours),
            installed_version: state.source.version(),
            last_check_ms: state.last_check_ms,
            last: state.last.clone(),
        }
    }

    /// Checks every `interval_hours` (from a minute after start), while the helper runs.
    pub fn schedule(self: &Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        let hours = self.settings.as_ref()?.interval_hours;
        if hours == 0 {
            return None;
        }
        let me = Arc::clone(self);
        Some(tokio::spawn(async move {
            tokio::time::sleep(FIRST_CHECK).await;
            loop {
                me.check().await;
                tokio::time::sleep(Duration::from_secs(hours.saturating_mul(3600))).await;
            }
        }))
    }

    /// Reads the local list files again whenever one changes (checked every
    /// [`LOCAL_LISTS_EVERY`]), so that a user's edit applies without a restart; `None` when
    /// there are none.
    pub fn follow_local_lists(self: &Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        if !self.lists.has_local() {
            return None;
        }
        let me = Arc::clone(self);
        Some(tokio::spawn(async move {
            let mut seen = me.lists.local_signature();
            loop {
                tokio::time::sleep(LOCAL_LISTS_EVERY).await;
                let now = me.lists.local_signature();
                if now == seen {
                    continue;
                }
                seen = now;
                me.reload_lists().await;
            }
        }))
    }

    /// Builds the lists again from the data in force and the local files, and swaps them in.
    async fn reload_lists(&self) {
        let _one = self.running.lock().await;
        let source = self.state().source.clone();
        let lists = Arc::clone(&self.lists);
        let built = tokio::task::spawn_blocking(move || lists.build(&source)).await;
        let Ok((set, loaded)) = built else {
            tracing::error!("reading the filter lists again failed");
            return;
        };
        let _old = self.lists.swap(set);
        let entries: usize = loaded.lists.iter().map(|l| l.domains).sum();
        let networks: usize = loaded.lists.iter().map(|l| l.networks).sum();
        tracing::info!(
            entries,
            networks,
            "a local filter list changed; the lists were read again"
        );
        for (id, why) in &loaded.missing {
            tracing::warn!(list = %id, error = %why, "a filter list is not in force");
        }
        if let Some(swapped) = self.swapped.get() {
            swapped();
        }
    }

    /// Checks for a newer bundle now and installs it if it passes every check; answers the
    /// state with this check's outcome.
    pub async fn check(&self) -> UpdateStatus {
        let _one = self.running.lock().await;
        let outcome = match self.try_update().await {
            Ok(o) => o,
            Err(Problem::Refused(e)) => UpdateOutcome::Refused {
                reason: e.to_string(),
            },
            Err(Problem::Failed(e)) => UpdateOutcome::Failed {
                reason: format!("{e:#}"),
            },
        };
        match &outcome {
            UpdateOutcome::Installed { version } => {
                tracing::info!(version, "data update installed");
            }
            UpdateOutcome::UpToDate { version } => {
                tracing::debug!(version, "data is up to date");
            }
            UpdateOutcome::Refused { reason } => {
                tracing::warn!(reason = %reason, "data update refused; the data in force is kept");
            }
            UpdateOutcome::Failed { reason } => {
                tracing::warn!(reason = %reason, "data update failed; the data in force is kept");
            }
        }
        {
            let mut state = self.state();
            state.last = Some(outcome);
            state.last_check_ms = Some(crate::now_ms());
        }
        self.status()
    }

    async fn try_update(&self) -> Result<UpdateOutcome, Problem> {
        let (Some(settings), Some(client)) = (&self.settings, &self.client) else {
            return Err(Problem::Failed(anyhow::anyhow!(
                "updates are off: set [updates] url and keys"
            )));
        };
        let (floor, current) = {
            let state = self.state();
            (state.floor, state.source.clone())
        };
        let manifest_bytes =
            fetch_small(client, &settings.base, MANIFEST, bundle::MAX_MANIFEST_LEN).await?;
        let sig = fetch_small(client, &settings.base, SIGNATURE, MAX_SIGNATURE_LEN).await?;
        let manifest = match bundle::verify(
            &manifest_bytes,
            &sig,
            &settings.keys,
            floor,
            settings.max_file,
        ) {
            Ok(m) => m,
            Err(BundleError::Rollback { offered, installed }) if offered == installed => {
                return Ok(UpdateOutcome::UpToDate { version: offered });
            }
            Err(e) => return Err(e.into()),
        };

        // Staging: only this task writes there; whatever an earlier run left goes first.
        let staging = self.intel_dir.join("staging");
        fresh_dir(&self.intel_dir, &staging)?;
        let result = self
            .stage(client, settings, &staging, &manifest, &manifest_bytes, &sig)
            .await;
        if let Err(e) = result {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
        let dest = self.intel_dir.join(manifest.version.to_string());
        if dest.exists() {
            std::fs::remove_dir_all(&dest)
                .with_context(|| format!("cannot replace {}", dest.display()))?;
        }
        std::fs::rename(&staging, &dest)
            .with_context(|| format!("cannot move the bundle to {}", dest.display()))?;

        // Load before anything changes; the data in force stays until this succeeded.
        let source = DataSource::with_bundle(&current.shipped, &dest, &manifest);
        let reload_geo = source.names_geo() || current.names_geo();
        let loading = source.clone();
        let lists = Arc::clone(&self.lists);
        let built = tokio::task::spawn_blocking(move || {
            // Domain and IP lists are built together and swapped as one below.
            let (set, loaded) = lists.build(&loading);
            let geo = reload_geo.then(|| GeoDb::load(&loading.geo_files()));
            (set, loaded, geo)
        })
        .await
        .map_err(|e| anyhow::anyhow!("loading the bundle failed: {e}"));
        let (set, loaded, geo) = match built {
            Ok(b) => b,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dest);
                return Err(e.into());
            }
        };
        let geo = match geo {
            Some(Err(e)) if source.names_geo() => {
                let _ = std::fs::remove_dir_all(&dest);
                return Err(Problem::Failed(
                    anyhow::Error::new(e).context("the bundle's geo data does not load"),
                ));
            }
            // Shipped geo data that cannot be read: as at start, country and ASN unknown.
            Some(Err(_)) => Some(GeoDb::empty()),
            Some(Ok(db)) => Some(db),
            None => None,
        };
        write_floor(&self.intel_dir, manifest.version)?;
        let _old = self.lists.swap(set);
        if let Some(db) = geo {
            let _old = self.geo.swap(db);
        }
        if let Some(swapped) = self.swapped.get() {
            swapped();
        }
        for (id, why) in &loaded.missing {
            tracing::warn!(list = %id, error = %why, "a filter list is not in force");
        }
        {
            let mut state = self.state();
            state.source = source;
            state.floor = manifest.version;
        }
        remove_older(&self.intel_dir, manifest.version);
        Ok(UpdateOutcome::Installed {
            version: manifest.version,
        })
    }

    async fn stage(
        &self,
        client: &reqwest::Client,
        settings: &Settings,
        staging: &Path,
        manifest: &Manifest,
        manifest_bytes: &[u8],
        sig: &[u8],
    ) -> Result<(), Problem> {
        for entry in &manifest.files {
            download(client, &settings.base, entry, staging).await?;
        }
        write_synced(&staging.join(MANIFEST), manifest_bytes)?;
        write_synced(&staging.join(SIGNATURE), sig)?;
        // Once more, from disk, as start-up will read it.
        bundle::verify_dir(manifest, staging)?;
        Ok(())
    }
}

fn url_of(base: &reqwest::Url, rel: &str) -> anyhow::Result<reqwest::Url> {
    base.join(rel)
        .with_context(|| format!("cannot make a URL of {rel:?}"))
}

/// Fetches a small file whole, refusing more than `max` bytes.
async fn fetch_small(
    client: &reqwest::Client,
    base: &reqwest::Url,
    rel: &str,
    max: usize,
) -> Result<Vec<u8>, Problem> {
    let url = url_of(base, rel)?;
    let mut response = client
        .get(url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .with_context(|| format!("cannot fetch {rel}"))?;
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .with_context(|| format!("the download of {rel} broke off"))?
    {
        body.extend_from_slice(&chunk);
        if body.len() > max {
            return Err(if rel == MANIFEST {
                BundleError::ManifestTooLarge { len: body.len() }.into()
            } else {
                BundleError::BadSignatureLength { len: body.len() }.into()
            });
        }
    }
    Ok(body)
}

/// Downloads one file of the bundle into `staging`, checking it as it arrives: never more
/// than the declared size is read or written.
async fn download(
    client: &reqwest::Client,
    base: &reqwest::Url,
    entry: &FileEntry,
    staging: &Path,
) -> Result<(), Problem> {
    // `verify` checked the path: relative, no `..`, safe characters only.
    let dest = staging.join(&entry.path);
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let url = url_of(base, &entry.path)?;
    let mut response = client
        .get(url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .with_context(|| format!("cannot fetch {}", entry.path))?;
    if response.content_length().is_some_and(|n| n > entry.size) {
        return Err(BundleError::LongerThanDeclared {
            path: entry.path.clone(),
            expected: entry.size,
        }
        .into());
    }
    let mut file = std::fs::File::create(&dest)
        .with_context(|| format!("cannot create {}", dest.display()))?;
    let mut check = entry.check();
    while let Some(chunk) = response
        .chunk()
        .await
        .with_context(|| format!("the download of {} broke off", entry.path))?
    {
        check.update(&chunk)?;
        // Local writes of one chunk are short; the download itself is what waits.
        file.write_all(&chunk)
            .with_context(|| format!("cannot write {}", dest.display()))?;
    }
    check.finish()?;
    file.sync_all()
        .with_context(|| format!("cannot write {}", dest.display()))?;
    Ok(())
}

/// Makes `dir` (0700) under `parent` (0700), empty.
fn fresh_dir(parent: &Path, dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!("cannot empty {}", dir.display())));
        }
    }
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))
}

fn write_synced(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Records the rollback floor (write a new file, then rename it over the old one).
fn write_floor(intel_dir: &Path, version: u64) -> anyhow::Result<()> {
    let tmp = intel_dir.join("installed.new");
    write_synced(&tmp, format!("{version}\n").as_bytes())?;
    std::fs::rename(&tmp, intel_dir.join("installed")).with_context(|| {
        format!(
            "cannot record the installed version in {}",
            intel_dir.display()
        )
    })
}

/// Removes installed bundles older than `keep` (the new one is loaded by now).
fn remove_older(intel_dir: &Path, keep: u64) {
    let Ok(entries) = std::fs::read_dir(intel_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let older = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|v| v < keep);
        if older && let Err(e) = std::fs::remove_dir_all(entry.path()) {
            tracing::warn!(error = %e, "cannot remove an older data bundle");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(url: &str, keys: &[&str]) -> UpdatesSection {
        UpdatesSection {
            url: Some(url.to_owned()),
            keys: keys.iter().map(|k| (*k).to_owned()).collect(),
            ..UpdatesSection::default()
        }
    }

    fn key() -> String {
        TrustedKey::new(ed25519_dalek::SigningKey::from_bytes(&[1; 32]).verifying_key()).to_base64()
    }

    #[test]
    fn updates_are_off_by_default_and_checked_when_on() {
        assert!(UpdatesSection::default().settings().unwrap().is_none());
        let key = key();
        let key = key.as_str();
        let s = section("https://u.example/p", &[key])
            .settings()
            .unwrap()
            .unwrap();
        assert_eq!(s.base.as_str(), "https://u.example/p/");
        assert_eq!(s.max_file, 256 << 20);
        for (bad, why) in [
            (section("http://u.example/", &[key]), "https"),
            (section("https://u.example/", &[]), "no keys"),
            (section("https://u.example/", &["nope"]), "keys"),
            (section("::", &[key]), "not a URL"),
        ] {
            let err = format!("{:#}", bad.settings().unwrap_err());
            assert!(err.contains(why), "{err}");
        }
    }

    #[test]
    fn the_config_table_parses() {
        let c = crate::config::Config::parse(
            "[updates]\nurl = \"https://u.example/\"\nkeys = [\"k\"]\ninterval_hours = 0\nmax_file_mb = 8\ntrust = { ca_file = \"/ca.pem\" }\n",
            Path::new("x.toml"),
        )
        .unwrap();
        assert_eq!(c.updates.interval_hours, 0);
        assert_eq!(c.updates.trust, Trust::CaFile("/ca.pem".into()));
    }

    #[test]
    fn a_bundle_covers_only_the_files_it_names() {
        let m = Manifest {
            format: bundle::FORMAT,
            version: 3,
            created: 0,
            key_id: String::new(),
            files: vec![FileEntry::of("lists/easylist.txt", b"x")],
        };
        let s = DataSource::with_bundle(Path::new("/ship"), Path::new("/state/intel/3"), &m);
        assert_eq!(
            s.path("lists/easylist.txt"),
            Path::new("/state/intel/3/lists/easylist.txt")
        );
        assert_eq!(
            s.path("lists/easyprivacy.txt"),
            Path::new("/ship/lists/easyprivacy.txt")
        );
        assert!(!s.names_geo());
        assert_eq!(s.version(), 3);
    }

    #[test]
    fn start_up_prefers_the_newest_bundle_that_verifies() {
        use ed25519_dalek::SigningKey;
        let key = SigningKey::from_bytes(&[9; 32]);
        let public = TrustedKey::new(key.verifying_key()).to_base64();
        let state = tempfile::tempdir().unwrap();
        let put = |version: u64, contents: &[u8]| {
            let dir = intel_dir(state.path()).join(version.to_string());
            std::fs::create_dir_all(dir.join("lists")).unwrap();
            std::fs::write(dir.join("lists/easylist.txt"), contents).unwrap();
            let m = Manifest {
                format: bundle::FORMAT,
                version,
                created: 0,
                key_id: TrustedKey::new(key.verifying_key()).id().to_owned(),
                files: vec![FileEntry::of("lists/easylist.txt", contents)],
            };
            let bytes = m.to_bytes();
            std::fs::write(dir.join(MANIFEST), &bytes).unwrap();
            std::fs::write(dir.join(SIGNATURE), bundle::sign(&bytes, &key)).unwrap();
            dir
        };
        put(4, b"||four.example^\n");
        let five = put(5, b"||five.example^\n");
        std::fs::write(five.join("lists/easylist.txt"), b"||evil.example^\n").unwrap();
        std::fs::write(intel_dir(state.path()).join("installed"), "5\n").unwrap();
        let got = installed(
            &section("https://u.example/", &[&public]),
            state.path(),
            Path::new("/ship"),
        );
        // 5 was changed on disk: 4 is used, and the floor stays 5 (no replay of 5).
        assert_eq!(got.source.version(), 4);
        assert_eq!(got.floor, 5);
        // Updates off: the shipped data.
        let off = installed(&UpdatesSection::default(), state.path(), Path::new("/ship"));
        assert_eq!(off.source.version(), 0);
    }
}

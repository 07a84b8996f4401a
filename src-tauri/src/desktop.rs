//! The desktop app (Linux): the main window, the tray and the prompt window, on Tauri 2.
//!
//! The pages run the same frontend as browser mode, read at run time from the web root (the
//! same one `--serve` uses) through Tauri's own `tauri://` scheme. They reach the helper through
//! two commands that carry `protocol` values unchanged: `request` (one `Request`, its `Reply`)
//! and `subscribe` (a channel that gets the link state and every `Event`). Both go through
//! `portcullis-web`'s [`Bridge`], as browser mode does; this module interprets nothing but the
//! prompts' comings and goings, to show the prompt window and say how many wait.
//!
//! One event stream serves the whole app: it watches prompts for as long as the app runs (the
//! helper asks the user only while an app watches), so prompts keep coming while the main
//! window is hidden. The prompt window (`#/prompt`) is made anew, unfocused and always on top,
//! whenever prompts start waiting, and closed when none wait.
//!
//! When a prompt arrives while the main window is hidden in the tray or minimized, or the
//! prompt window could not be shown, a desktop notification with Allow and Block asks too
//! (see `notify`; `--no-notifications` turns it off). Apps' names and icons from their
//! `.desktop` entries reach the pages through two more commands, `app_entries` (the lookup
//! table) and `app_icon` (one icon as a `data:` URL), from `portcullis-desktop-entries`.
//!
//! Closing the main window hides it when a tray can be seen (the tray opens it again) and
//! quits otherwise, so the app is never left reachable only from a tray that is not there.
//! Quitting the app leaves the helper enforcing.
//!
//! With `PORTCULLIS_PERF` in its environment (benchmarks only: `pcl-appbench`), the main
//! window's page gets its measurement hooks switched on and reports marks (its first frame,
//! the Monitor's frame rate) through the `perf_mark` command, printed on stderr.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::Context as _;
use portcullis_desktop_entries::{AppLabel, Cache as EntryCache};
use portcullis_ipc::ClientConfig;
use portcullis_protocol::{
    Event, PromptAnswer, PromptDuration, PromptInfo, PromptTarget, Reply, Request, Response,
};
use portcullis_web::bridge::{Bridge, BridgeError, HelperState, StreamItem};
use serde_json::{Value, json};
use tauri::ipc::Channel;
use tauri::menu::{Menu, MenuItem, PredefinedMenuItem};
use tauri::tray::TrayIconBuilder;
use tauri::utils::assets::{AssetKey, AssetsIter, CspHash};
use tauri::{App, AppHandle, Manager, Runtime, WebviewUrl, WebviewWindow, WebviewWindowBuilder};

use crate::Cli;
use crate::notify::{Choice, Notifier, prompt_note};

const MAIN: &str = "main";
const PROMPT: &str = "prompt";
const TRAY: &str = "tray";

/// What the app shares between the helper's event stream, the commands and the windows.
struct Desktop {
    bridge: Arc<Bridge>,
    hub: Mutex<Hub>,
    entries: Arc<EntryCache>,
    /// Prompt notifications, once the main thread made them (`None`: off or no bus).
    notifier: Mutex<Option<Arc<Notifier>>>,
    /// With `PORTCULLIS_PERF` (benchmarks only): the page's measurement hooks' configuration,
    /// and when the app started, for the marks the page reports (see `perf_mark`).
    perf: Option<(String, std::time::Instant)>,
}

#[derive(Default)]
struct Hub {
    /// The last link state, for windows that subscribe later.
    link: Option<Value>,
    /// One channel per window (a reloaded page replaces its old one).
    subscribers: HashMap<String, Channel<Value>>,
    /// The ids of the prompts that wait.
    prompts: BTreeSet<u64>,
    /// Whether a tray can be seen (decides what closing the main window does).
    tray_visible: bool,
    connected: bool,
}

impl Desktop {
    fn hub(&self) -> MutexGuard<'_, Hub> {
        self.hub
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl std::fmt::Debug for Desktop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Desktop").finish_non_exhaustive()
    }
}

/// Paints the pages without WebKit's accelerated compositing, unless the user's environment
/// chose (`WEBKIT_DISABLE_COMPOSITING_MODE=0` keeps it). This UI is text, lists and a few
/// transitions: painting them on the CPU is cheap, while compositing costs a GL context in the
/// web process, and without a usable GPU (a VM, Xvfb, some drivers) a software GL one. Measured
/// by `pcl-appbench` under Xvfb (docs/performance.md): compositing made the Monitor scroll at
/// 14 fps instead of 60, the first paint ~150–200 ms later and the app ~80 MiB bigger.
/// Call before any thread starts (it sets an environment variable).
pub(crate) fn prefer_software_painting() {
    const VAR: &str = "WEBKIT_DISABLE_COMPOSITING_MODE";
    if std::env::var_os(VAR).is_none() {
        // SAFETY: called first thing in `main`, before this process starts any thread, so
        // nothing reads the environment concurrently.
        unsafe { std::env::set_var(VAR, "1") };
    }
}

/// Runs the desktop app until the user quits it.
pub(crate) fn run(cli: &Cli, web_root: PathBuf) -> anyhow::Result<()> {
    anyhow::ensure!(
        web_root.join("index.html").is_file(),
        "the frontend is not at {} (build it with `npm run build` in frontend/, or pass --web-root)",
        web_root.display()
    );
    let mut helper = ClientConfig::new(
        &cli.socket,
        format!("portcullis {}", env!("CARGO_PKG_VERSION")),
    );
    helper.require_root_owner = !cli.insecure_any_socket_owner;
    let desktop = Arc::new(Desktop {
        bridge: Arc::new(Bridge::new(helper, !cli.no_prompts)),
        hub: Mutex::new(Hub::default()),
        entries: Arc::new(EntryCache::from_env()),
        notifier: Mutex::new(None),
        perf: perf_config()?.map(|config| (config, std::time::Instant::now())),
    });
    let notifications = !cli.no_notifications && !cli.no_prompts;

    let mut context = tauri::generate_context!();
    context.set_assets(Box::new(DiskAssets { root: web_root }));
    let no_tray = cli.no_tray;
    let hidden = cli.hidden;
    let app = tauri::Builder::default()
        .manage(Arc::clone(&desktop))
        .invoke_handler(tauri::generate_handler![
            request,
            subscribe,
            app_entries,
            app_icon,
            perf_mark
        ])
        .setup(move |app| {
            setup(app, &desktop, no_tray, hidden)?;
            if notifications {
                *desktop
                    .notifier
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) =
                    make_notifier(app.handle(), Arc::clone(&desktop.bridge));
            }
            Ok(())
        })
        .build(context)
        .context("cannot start the desktop app")?;
    app.run(|_app, _event| {});
    Ok(())
}

fn setup(app: &mut App, desktop: &Arc<Desktop>, no_tray: bool, hidden: bool) -> anyhow::Result<()> {
    let mut main = WebviewWindowBuilder::new(app, MAIN, WebviewUrl::App("index.html".into()));
    if let Some((config, _)) = &desktop.perf {
        main = main.initialization_script(format!("window.__PCL_PERF__ = {config};"));
    }
    let main = main
        .title("Portcullis")
        .inner_size(1180.0, 760.0)
        .min_inner_size(720.0, 480.0)
        .visible(!hidden)
        .build()
        .context("cannot open the main window")?;
    let mut tray_visible = !no_tray && tray_host_present();
    if no_tray {
        tracing::info!("no tray (--no-tray)");
    } else if let Err(e) = make_tray(app.handle(), Arc::clone(desktop)) {
        tracing::warn!("no tray: {e:#}");
        tray_visible = false;
    } else if !tray_visible {
        tracing::info!(
            "no tray host on this desktop: the tray may not show; closing the window quits"
        );
    }
    desktop.hub().tray_visible = tray_visible;
    if hidden && !tray_visible {
        // Nothing would show that the app runs, and nothing would open its window.
        tracing::info!("--hidden without a tray: opening the window");
        show_main(app.handle());
    }
    let handle = app.handle().clone();
    let for_close = Arc::clone(desktop);
    main.on_window_event(move |event| {
        if let tauri::WindowEvent::CloseRequested { api, .. } = event {
            if for_close.hub().tray_visible {
                api.prevent_close();
                if let Some(w) = handle.get_webview_window(MAIN) {
                    let _ignored = w.hide();
                }
            } else {
                handle.exit(0);
            }
        }
    });
    tauri::async_runtime::spawn(pump(app.handle().clone(), Arc::clone(desktop)));
    Ok(())
}

fn make_tray(app: &AppHandle, desktop: Arc<Desktop>) -> anyhow::Result<()> {
    let open = MenuItem::with_id(app, "open", "Open Portcullis", true, None::<&str>)?;
    let pause5 = MenuItem::with_id(
        app,
        "pause-5",
        "Pause protection for 5 minutes",
        true,
        None::<&str>,
    )?;
    let pause15 = MenuItem::with_id(
        app,
        "pause-15",
        "Pause protection for 15 minutes",
        true,
        None::<&str>,
    )?;
    let pause60 = MenuItem::with_id(
        app,
        "pause-60",
        "Pause protection for an hour",
        true,
        None::<&str>,
    )?;
    let resume = MenuItem::with_id(app, "resume", "Resume protection", true, None::<&str>)?;
    let quit = MenuItem::with_id(
        app,
        "quit",
        "Quit (the helper keeps protecting)",
        true,
        None::<&str>,
    )?;
    let sep = PredefinedMenuItem::separator(app)?;
    let menu = Menu::with_items(
        app,
        &[
            &open, &sep, &pause5, &pause15, &pause60, &resume, &sep, &quit,
        ],
    )?;
    let mut tray = TrayIconBuilder::with_id(TRAY)
        .menu(&menu)
        .tooltip("Portcullis")
        .on_menu_event(move |app, event| {
            let request = match event.id().as_ref() {
                "open" => return show_main(app),
                "quit" => return app.exit(0),
                "pause-5" => Request::Pause { minutes: 5 },
                "pause-15" => Request::Pause { minutes: 15 },
                "pause-60" => Request::Pause { minutes: 60 },
                "resume" => Request::Resume,
                _ => return,
            };
            let bridge = Arc::clone(&desktop.bridge);
            tauri::async_runtime::spawn(async move {
                if let Err(e) = bridge.request(request).await {
                    tracing::warn!(error = ?e, "the helper did not take the pause or resume");
                }
            });
        });
    if let Some(icon) = app.default_window_icon() {
        tray = tray.icon(icon.clone());
    }
    tray.build(app)?;
    Ok(())
}

fn show_main<R: Runtime>(app: &AppHandle<R>) {
    if let Some(w) = app.get_webview_window(MAIN) {
        let _ignored = w.show();
        let _ignored = w.unminimize();
        let _ignored = w.set_focus();
    }
}

/// Whether something shows trays: a StatusNotifier host (KDE, GNOME with the AppIndicator
/// extension, …) on the session bus. Desktops with an XEmbed tray only count as having none
/// (closing the window then quits: the safe side).
fn tray_host_present() -> bool {
    use gio::glib::{ToVariant as _, VariantTy};
    let Ok(bus) = gio::bus_get_sync(gio::BusType::Session, gio::Cancellable::NONE) else {
        return false;
    };
    bus.call_sync(
        Some("org.freedesktop.DBus"),
        "/org/freedesktop/DBus",
        "org.freedesktop.DBus",
        "NameHasOwner",
        Some(&("org.kde.StatusNotifierWatcher",).to_variant()),
        Some(VariantTy::new("(b)").unwrap_or(VariantTy::TUPLE)),
        gio::DBusCallFlags::NONE,
        1000,
        gio::Cancellable::NONE,
    )
    .ok()
    .and_then(|reply| reply.get::<(bool,)>())
    .is_some_and(|(owned,)| owned)
}

/// The app's one event stream: forwards everything to the windows and keeps the prompt
/// window and the tray current.
async fn pump(app: AppHandle, desktop: Arc<Desktop>) {
    let (tx, mut rx) = tokio::sync::mpsc::channel(256);
    let bridge = Arc::clone(&desktop.bridge);
    tauri::async_runtime::spawn(async move { bridge.pump_events(tx).await });
    while let Some(item) = rx.recv().await {
        match item {
            StreamItem::Helper(state) => {
                let up = matches!(state, HelperState::Connected { .. });
                let message = json!({ "kind": "helper", "state": state });
                {
                    let mut hub = desktop.hub();
                    hub.link = Some(message.clone());
                    hub.connected = up;
                    if !up {
                        hub.prompts.clear();
                    }
                }
                if !up {
                    let notifier = desktop
                        .notifier
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .clone();
                    if let Some(n) = notifier {
                        tauri::async_runtime::spawn_blocking(move || n.close_all());
                    }
                }
                broadcast(&desktop, &message);
                if up {
                    // Prompts that waited before this connection.
                    if let Ok(Reply::Ok(Response::Prompts(data))) =
                        desktop.bridge.request(Request::ListPrompts).await
                    {
                        desktop.hub().prompts.extend(data.iter().map(|p| p.id));
                    }
                }
            }
            StreamItem::Event(event) => {
                {
                    let mut hub = desktop.hub();
                    match &event {
                        Event::PromptAdded { prompt } => {
                            hub.prompts.insert(prompt.id);
                        }
                        Event::PromptClosed { id, .. } => {
                            hub.prompts.remove(id);
                        }
                        _ => {}
                    }
                }
                broadcast(&desktop, &json!({ "kind": "event", "event": event }));
                sync_prompt_window(&app, &desktop);
                match event {
                    Event::PromptAdded { prompt } => notify_prompt(&app, &desktop, prompt),
                    Event::PromptClosed { id, .. } => close_notification(&desktop, id),
                    _ => {}
                }
                continue;
            }
        }
        sync_prompt_window(&app, &desktop);
    }
}

/// The notifier, whose clicks answer prompts once (the prompt window makes lasting rules)
/// or open the main window.
fn make_notifier(app: &AppHandle, bridge: Arc<Bridge>) -> Option<Arc<Notifier>> {
    let app = app.clone();
    Notifier::session(Box::new(move |id, choice| {
        let allow = match choice {
            Choice::Open => return show_main(&app),
            Choice::Allow => true,
            Choice::Block => false,
        };
        let request = Request::AnswerPrompt {
            id,
            answer: PromptAnswer {
                allow,
                target: PromptTarget::IpPort,
                duration: PromptDuration::Once,
            },
        };
        let bridge = Arc::clone(&bridge);
        tauri::async_runtime::spawn(async move {
            match bridge.request(request).await {
                Ok(Reply::Ok(_)) => {}
                Ok(Reply::Err(e)) => tracing::info!("the helper refused the answer: {}", e.message),
                Err(e) => tracing::warn!(error = ?e, "the answer did not reach the helper"),
            }
        });
    }))
}

/// Whether the user would not see a prompt without a notification: the main window is
/// hidden (in the tray) or minimized, or the prompt window is not shown.
fn needs_notification(app: &AppHandle) -> bool {
    let main_hidden = app
        .get_webview_window(MAIN)
        .is_none_or(|w| !w.is_visible().unwrap_or(true) || w.is_minimized().unwrap_or(false));
    let prompt_shown = app
        .get_webview_window(PROMPT)
        .is_some_and(|w| w.is_visible().unwrap_or(false));
    main_hidden || !prompt_shown
}

fn notify_prompt(app: &AppHandle, desktop: &Arc<Desktop>, prompt: PromptInfo) {
    let Some(notifier) = desktop
        .notifier
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
    else {
        return;
    };
    if !needs_notification(app) {
        return;
    }
    let entries = Arc::clone(&desktop.entries);
    tauri::async_runtime::spawn_blocking(move || {
        let name = entries
            .catalog()
            .label(&prompt.app)
            .map_or_else(|| prompt.app_name.clone(), |l| l.name);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        notifier.show(prompt.id, &prompt_note(&prompt, &name, now));
    });
}

fn close_notification(desktop: &Desktop, id: u64) {
    let notifier = desktop
        .notifier
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    if let Some(n) = notifier.filter(|n| n.showing(id)) {
        tauri::async_runtime::spawn_blocking(move || n.close(id));
    }
}

fn broadcast(desktop: &Desktop, message: &Value) {
    let mut hub = desktop.hub();
    hub.subscribers
        .retain(|_, channel| channel.send(message.clone()).is_ok());
}

/// Opens the prompt window (unfocused, on top) when prompts wait, closes it when none do, and
/// says how many wait in the tray.
fn sync_prompt_window(app: &AppHandle, desktop: &Desktop) {
    let (waiting, connected) = {
        let hub = desktop.hub();
        (hub.prompts.len(), hub.connected)
    };
    let title = match waiting {
        1 => "Portcullis: 1 connection waiting".to_owned(),
        n => format!("Portcullis: {n} connections waiting"),
    };
    match (waiting, app.get_webview_window(PROMPT)) {
        (0, Some(w)) => {
            let _ignored = w.destroy();
        }
        (0, None) => {}
        (_, Some(w)) => {
            let _ignored = w.set_title(&title);
        }
        (_, None) => {
            if let Err(e) = open_prompt_window(app, &title) {
                tracing::warn!("cannot open the prompt window: {e:#}");
            }
        }
    }
    if let Some(tray) = app.tray_by_id(TRAY) {
        let text = match (connected, waiting) {
            (false, _) => "Portcullis: the helper cannot be reached".to_owned(),
            (true, 0) => "Portcullis".to_owned(),
            (true, 1) => "Portcullis: 1 connection waiting".to_owned(),
            (true, n) => format!("Portcullis: {n} connections waiting"),
        };
        let _ignored = tray.set_tooltip(Some(&text));
    }
}

/// The prompt window's size, in logical pixels.
const PROMPT_SIZE: (f64, f64) = (480.0, 600.0);

fn open_prompt_window(app: &AppHandle, title: &str) -> anyhow::Result<WebviewWindow> {
    let mut builder = WebviewWindowBuilder::new(app, PROMPT, WebviewUrl::App("index.html".into()));
    // Bottom right of the primary screen, where notifications usually are.
    if let Ok(Some(monitor)) = app.primary_monitor() {
        let area = monitor.size().to_logical::<f64>(monitor.scale_factor());
        let margin = 24.0;
        builder = builder.position(
            (area.width - PROMPT_SIZE.0 - margin).max(0.0),
            (area.height - PROMPT_SIZE.1 - margin).max(0.0),
        );
    }
    let window = builder
        .initialization_script("if (!location.hash) history.replaceState(null, '', '#/prompt');")
        .title(title)
        .inner_size(PROMPT_SIZE.0, PROMPT_SIZE.1)
        .resizable(true)
        .always_on_top(true)
        .focused(false)
        .skip_taskbar(true)
        .visible_on_all_workspaces(true)
        .build()?;
    Ok(window)
}

/// `request`: one protocol request to the helper; its reply, or why it was not delivered.
#[tauri::command]
async fn request(
    desktop: tauri::State<'_, Arc<Desktop>>,
    request: Request,
) -> Result<Reply, BridgeError> {
    desktop.bridge.request(request).await
}

/// `subscribe`: this window's channel for the link state and events (replacing any earlier
/// one of the same window); the current link state comes at once.
#[tauri::command]
fn subscribe(
    window: WebviewWindow,
    desktop: tauri::State<'_, Arc<Desktop>>,
    channel: Channel<Value>,
) {
    let mut hub = desktop.hub();
    if let Some(link) = &hub.link {
        let _ignored = channel.send(link.clone());
    }
    hub.subscribers.insert(window.label().to_owned(), channel);
}

/// `app_entries`: every app key with a `.desktop` entry, with its name and whether it has an
/// icon (the scan is cached for a few minutes).
/// The page's measurement hooks' configuration from `PORTCULLIS_PERF` (a JSON object, or `1`
/// for the defaults), for the desktop app's benchmark; `None` (the hooks stay off) without it.
fn perf_config() -> anyhow::Result<Option<String>> {
    let Some(raw) = std::env::var_os("PORTCULLIS_PERF") else {
        return Ok(None);
    };
    let raw = raw.to_string_lossy();
    if raw.trim() == "1" {
        return Ok(Some("{}".to_owned()));
    }
    let config: Value = serde_json::from_str(&raw).context("PORTCULLIS_PERF is not JSON")?;
    anyhow::ensure!(config.is_object(), "PORTCULLIS_PERF is not a JSON object");
    Ok(Some(config.to_string()))
}

/// A measurement the page reports (only with `PORTCULLIS_PERF`; see frontend/src/lib/perf.ts):
/// one line `portcullis-perf WHAT MS DATA` on stderr, MS since the app started, for the
/// benchmark that reads it. Without `PORTCULLIS_PERF` it does nothing.
#[tauri::command]
fn perf_mark(desktop: tauri::State<'_, Arc<Desktop>>, what: String, data: Value) {
    if let Some((_, started)) = &desktop.perf {
        let what: String = what
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .take(40)
            .collect();
        eprintln!(
            "portcullis-perf {what} {} {data}",
            started.elapsed().as_millis()
        );
    }
}

#[tauri::command]
async fn app_entries(
    desktop: tauri::State<'_, Arc<Desktop>>,
) -> Result<std::collections::BTreeMap<String, AppLabel>, String> {
    let entries = Arc::clone(&desktop.entries);
    tauri::async_runtime::spawn_blocking(move || entries.catalog().labels())
        .await
        .map_err(|e| e.to_string())
}

/// `app_icon`: the icon the scan found for an app key, as a `data:` URL; `None` for any
/// other key. Never a file by path.
#[tauri::command]
async fn app_icon(
    desktop: tauri::State<'_, Arc<Desktop>>,
    key: String,
) -> Result<Option<String>, String> {
    let entries = Arc::clone(&desktop.entries);
    let icon = tauri::async_runtime::spawn_blocking(move || entries.catalog().icon(&key))
        .await
        .map_err(|e| e.to_string())?;
    Ok(icon.map(|i| format!("data:{};base64,{}", i.content_type, base64(&i.bytes))))
}

/// Standard base64 with padding (icons only; not worth a dependency).
fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                let index = usize::try_from((n >> (18 - 6 * i)) & 63).unwrap_or(0);
                out.push(char::from(ABC.get(index).copied().unwrap_or(b'A')));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The built frontend, read from disk on each request (so an installed or rebuilt frontend
/// needs no new binary). Paths that leave the root are refused.
struct DiskAssets {
    root: PathBuf,
}

impl DiskAssets {
    fn path(&self, key: &AssetKey) -> Option<PathBuf> {
        let rel = Path::new(key.as_ref().trim_start_matches('/'));
        let plain = rel
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
        (plain && rel.components().next().is_some()).then(|| self.root.join(rel))
    }
}

impl<R: Runtime> tauri::Assets<R> for DiskAssets {
    fn get(&self, key: &AssetKey) -> Option<Cow<'_, [u8]>> {
        let path = self.path(key)?;
        std::fs::read(path).ok().map(Cow::Owned)
    }

    fn iter(&self) -> Box<AssetsIter<'_>> {
        Box::new(std::iter::empty())
    }

    fn csp_hashes(&self, _html_path: &AssetKey) -> Box<dyn Iterator<Item = CspHash<'_>> + '_> {
        Box::new(std::iter::empty())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(super::base64(b""), "");
        assert_eq!(super::base64(b"f"), "Zg==");
        assert_eq!(super::base64(b"fo"), "Zm8=");
        assert_eq!(super::base64(b"foo"), "Zm9v");
        assert_eq!(super::base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(super::base64(&[0xff, 0xfe, 0x00, 0x80]), "//4AgA==");
    }
}

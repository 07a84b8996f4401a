//! Tauri's build step (the app's configuration, capabilities and icons), for Linux only: the
//! desktop window is not built for other systems (see Cargo.toml).

fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        tauri_build::build();
    }
}

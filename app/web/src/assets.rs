//! The built frontend (`frontend/dist`), read into memory once at start: a fixed map from URL
//! path to bytes, so no request can name a file outside it (no path is ever joined from the
//! URL). It must not serve anything that was not under the web root at start.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::WebError;

/// More than any build of the frontend needs; a wrong `--web-root` (say `/`) stops here.
const MAX_TOTAL: u64 = 64 << 20;

/// One file.
#[derive(Debug, Clone)]
pub struct Asset {
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

/// Every file of the web root, by URL path (`/index.html`, `/assets/index-x.js`).
#[derive(Debug, Clone)]
pub struct Assets {
    files: HashMap<String, Asset>,
}

impl Assets {
    /// Reads `dir` recursively (symbolic links are not followed); it must hold `index.html`.
    pub fn load(dir: &Path) -> Result<Assets, WebError> {
        if !dir.join("index.html").is_file() {
            return Err(WebError::FrontendMissing {
                dir: dir.to_path_buf(),
            });
        }
        let mut files = HashMap::new();
        let mut total = 0u64;
        let mut pending: Vec<PathBuf> = vec![dir.to_path_buf()];
        while let Some(current) = pending.pop() {
            let read_err = |source| WebError::ReadAsset {
                path: current.clone(),
                source,
            };
            for entry in std::fs::read_dir(&current).map_err(read_err)? {
                let entry = entry.map_err(read_err)?;
                let path = entry.path();
                let kind = entry.file_type().map_err(|source| WebError::ReadAsset {
                    path: path.clone(),
                    source,
                })?;
                if kind.is_dir() {
                    pending.push(path);
                    continue;
                }
                if !kind.is_file() {
                    continue;
                }
                let Some(url) = url_path(dir, &path) else {
                    continue;
                };
                let bytes = std::fs::read(&path).map_err(|source| WebError::ReadAsset {
                    path: path.clone(),
                    source,
                })?;
                total = total.saturating_add(bytes.len() as u64);
                if total > MAX_TOTAL {
                    return Err(WebError::FrontendTooLarge {
                        dir: dir.to_path_buf(),
                        limit: MAX_TOTAL,
                    });
                }
                let content_type = content_type(&path);
                files.insert(
                    url,
                    Asset {
                        content_type,
                        bytes,
                    },
                );
            }
        }
        Ok(Assets { files })
    }

    /// The file at URL path `path` (`/` means `/index.html`).
    pub fn get(&self, path: &str) -> Option<&Asset> {
        let path = if path == "/" { "/index.html" } else { path };
        self.files.get(path)
    }

    /// How many files there are.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether there are none (never, once loaded: `index.html` is required).
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

/// `/a/b.js` for `<dir>/a/b.js`; `None` for names that are not plain UTF-8 components.
fn url_path(dir: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(dir).ok()?;
    let mut url = String::new();
    for part in rel.components() {
        let std::path::Component::Normal(name) = part else {
            return None;
        };
        url.push('/');
        url.push_str(name.to_str()?);
    }
    Some(url)
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_a_tree_and_requires_index_html() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            Assets::load(dir.path()),
            Err(WebError::FrontendMissing { .. })
        ));
        std::fs::write(dir.path().join("index.html"), "<!doctype html>").unwrap();
        std::fs::create_dir(dir.path().join("assets")).unwrap();
        std::fs::write(dir.path().join("assets/app.js"), "1").unwrap();
        let a = Assets::load(dir.path()).unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(a.get("/").unwrap().content_type, "text/html; charset=utf-8");
        assert_eq!(
            a.get("/assets/app.js").unwrap().content_type,
            "text/javascript; charset=utf-8"
        );
        assert!(a.get("/assets/../index.html").is_none());
        assert!(a.get("/nope").is_none());
    }
}

//! Icon lookup: a theme icon name to a file, in the `hicolor` theme of each icon directory
//! (preferring 48, 64 and scalable sizes) and then the pixmaps directories; or an absolute
//! path as it is. Only PNG and SVG files no larger than [`crate::MAX_ICON`] count (browsers
//! show both; XPM they do not). The directories are listed once per scan into an index, so a
//! few hundred entries cost a few hundred map lookups, not thousands of `stat`s.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::MAX_ICON;

/// Files read from one `apps` directory at most.
const MAX_FILES_PER_DIR: usize = 20_000;
/// Size directories of a theme looked at, at most.
const MAX_SIZE_DIRS: usize = 64;

/// How much a size directory is preferred: lower is better.
fn size_rank(dir: &str) -> u32 {
    if dir == "scalable" {
        return 4; // after 48 and 64, before everything larger
    }
    let (base, scaled) = match dir.split_once('@') {
        Some((b, _)) => (b, true),
        None => (dir, false),
    };
    let size: u32 = base
        .split_once('x')
        .and_then(|(w, _)| w.parse().ok())
        .unwrap_or(0);
    let rank = match size {
        48 => 0,
        64 => 1,
        96 => 3,
        128 => 4,
        72 => 5,
        256 => 6,
        32 => 7,
        512 => 8,
        36 => 9,
        24 => 10,
        22 => 11,
        16 => 12,
        _ => 20,
    };
    rank * 2 + u32::from(scaled)
}

/// Whether a file name is one we serve: `.png` or `.svg`.
pub(crate) fn servable(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("png" | "svg")
    )
}

/// The index of one scan: icon name → best file.
#[derive(Debug, Default)]
pub(crate) struct IconIndex {
    best: HashMap<String, (u32, PathBuf)>,
}

impl IconIndex {
    /// Lists `hicolor` under each of `icon_dirs` (in order of preference) and then each of
    /// `pixmap_dirs`.
    pub(crate) fn build(icon_dirs: &[PathBuf], pixmap_dirs: &[PathBuf]) -> IconIndex {
        let mut index = IconIndex::default();
        for (order, base) in icon_dirs.iter().enumerate() {
            let theme = base.join("hicolor");
            let Ok(sizes) = std::fs::read_dir(&theme) else {
                continue;
            };
            for size in sizes.flatten().take(MAX_SIZE_DIRS) {
                let name = size.file_name();
                let Some(name) = name.to_str() else { continue };
                // Earlier directories win over later ones of the same size.
                let rank = size_rank(name) * 64 + u32::try_from(order.min(63)).unwrap_or(63);
                index.add_dir(&size.path().join("apps"), rank);
            }
        }
        for (order, dir) in pixmap_dirs.iter().enumerate() {
            let rank = 10_000 + u32::try_from(order.min(63)).unwrap_or(63);
            index.add_dir(dir, rank);
        }
        index
    }

    fn add_dir(&mut self, dir: &Path, rank: u32) {
        let Ok(files) = std::fs::read_dir(dir) else {
            return;
        };
        for file in files.flatten().take(MAX_FILES_PER_DIR) {
            let path = file.path();
            if !servable(&path) {
                continue;
            }
            let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            match self.best.get(stem) {
                Some((have, _)) if *have <= rank => {}
                _ => {
                    self.best.insert(stem.to_owned(), (rank, path));
                }
            }
        }
    }

    /// The file for an entry's `Icon` value: an absolute path as it is, else the theme or
    /// pixmap file of that name (a name given with an extension is looked up without it).
    /// `None` when nothing servable is found, or the file is too large or not a regular file.
    pub(crate) fn resolve(&self, icon: &str) -> Option<PathBuf> {
        let path = if icon.starts_with('/') {
            let p = PathBuf::from(icon);
            servable(&p).then_some(p)?
        } else if icon.contains('/') {
            return None;
        } else {
            let name = icon
                .strip_suffix(".png")
                .or_else(|| icon.strip_suffix(".svg"))
                .or_else(|| icon.strip_suffix(".xpm"))
                .unwrap_or(icon);
            self.best.get(name)?.1.clone()
        };
        let meta = std::fs::metadata(&path).ok()?;
        (meta.is_file() && meta.len() <= MAX_ICON).then_some(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_prefer_48_then_64_then_scalable() {
        let mut dirs = [
            "16x16", "scalable", "256x256", "64x64", "48x48", "48x48@2", "odd",
        ];
        dirs.sort_by_key(|d| size_rank(d));
        assert_eq!(dirs[..3], ["48x48", "48x48@2", "64x64"]);
        assert_eq!(dirs[3], "scalable");
        assert_eq!(dirs[6], "odd");
    }
}

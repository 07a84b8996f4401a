//! What can stop browser mode from starting or serving.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Why the browser-mode server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// The frontend has not been built (or the web root is wrong).
    #[error(
        "the frontend is not built: {} is missing; run `npm install && npm run build` in \
         frontend/, or pass --web-root DIR",
        .dir.join("index.html").display()
    )]
    FrontendMissing {
        /// The web root that was searched.
        dir: PathBuf,
    },

    /// A file of the built frontend could not be read.
    #[error("cannot read the frontend file {}", path.display())]
    ReadAsset {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// The built frontend is larger than browser mode holds in memory.
    #[error("the frontend in {} is larger than {limit} bytes; is --web-root the right directory?", dir.display())]
    FrontendTooLarge {
        /// The web root.
        dir: PathBuf,
        /// The limit.
        limit: u64,
    },

    /// Browser mode only listens on loopback addresses, so no other machine can reach it.
    #[error("refusing to listen on {addr}: browser mode listens on 127.0.0.1 or ::1 only")]
    NotLoopback {
        /// The address asked for.
        addr: SocketAddr,
    },

    /// Binding the listening socket failed.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// The operating system's random source failed (needed for the token).
    #[error("cannot read random bytes for the access token: {0}")]
    Random(String),

    /// The HTTP server failed while serving.
    #[error("the browser-mode server failed")]
    Serve(#[source] std::io::Error),
}

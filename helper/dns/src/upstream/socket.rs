//! How upstream sockets are made: like hickory's Tokio provider, with one addition — a hook
//! the owner of the resolver runs on every new socket before it connects or sends
//! ([`SocketHook`]). The daemon uses it to mark its own upstream traffic so that its firewall
//! lets it pass without asking (the helper must never wait on itself). This module decides
//! nothing about where sockets go.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hickory_net::runtime::iocompat::AsyncIoTokioAsStd;
use hickory_net::runtime::{RuntimeProvider, TokioRuntimeProvider};

/// A borrowed socket, as the platform names it.
#[cfg(unix)]
pub type SocketRef<'a> = std::os::fd::BorrowedFd<'a>;
/// A borrowed socket, as the platform names it.
#[cfg(windows)]
pub type SocketRef<'a> = std::os::windows::io::BorrowedSocket<'a>;

/// Runs on every new upstream socket before it connects or sends; an error fails that
/// connection attempt (the next upstream is tried).
pub type SocketHook = Arc<dyn Fn(SocketRef<'_>) -> io::Result<()> + Send + Sync>;

/// How long a TCP connect may take when the caller gives no limit (hickory's default).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// hickory's Tokio runtime provider with a [`SocketHook`].
#[derive(Clone, Default)]
pub struct Provider {
    inner: TokioRuntimeProvider,
    hook: Option<SocketHook>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("hook", &self.hook.is_some())
            .finish_non_exhaustive()
    }
}

impl Provider {
    /// A provider that runs `hook` on each new socket.
    pub fn new(hook: Option<SocketHook>) -> Provider {
        Provider {
            inner: TokioRuntimeProvider::new(),
            hook,
        }
    }
}

#[cfg(unix)]
fn borrow<S: std::os::fd::AsFd>(s: &S) -> SocketRef<'_> {
    s.as_fd()
}

#[cfg(windows)]
fn borrow<S: std::os::windows::io::AsSocket>(s: &S) -> SocketRef<'_> {
    s.as_socket()
}

impl RuntimeProvider for Provider {
    type Handle = <TokioRuntimeProvider as RuntimeProvider>::Handle;
    type Timer = <TokioRuntimeProvider as RuntimeProvider>::Timer;
    type Udp = tokio::net::UdpSocket;
    type Tcp = AsyncIoTokioAsStd<tokio::net::TcpStream>;

    fn create_handle(&self) -> Self::Handle {
        self.inner.create_handle()
    }

    fn connect_tcp(
        &self,
        server_addr: SocketAddr,
        bind_addr: Option<SocketAddr>,
        wait_for: Option<Duration>,
    ) -> Pin<Box<dyn Send + Future<Output = Result<Self::Tcp, io::Error>>>> {
        let hook = self.hook.clone();
        Box::pin(async move {
            let socket = match server_addr {
                SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
                SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
            }?;
            if let Some(hook) = &hook {
                hook(borrow(&socket))?;
            }
            if let Some(bind_addr) = bind_addr {
                socket.bind(bind_addr)?;
            }
            socket.set_nodelay(true)?;
            let wait_for = wait_for.unwrap_or(CONNECT_TIMEOUT);
            match tokio::time::timeout(wait_for, socket.connect(server_addr)).await {
                Ok(Ok(stream)) => Ok(AsyncIoTokioAsStd(stream)),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "TCP connect timed out",
                )),
            }
        })
    }

    fn bind_udp(
        &self,
        local_addr: SocketAddr,
        _server_addr: SocketAddr,
    ) -> Pin<Box<dyn Send + Future<Output = Result<Self::Udp, io::Error>>>> {
        let hook = self.hook.clone();
        Box::pin(async move {
            let socket = std::net::UdpSocket::bind(local_addr)?;
            if let Some(hook) = &hook {
                hook(borrow(&socket))?;
            }
            socket.set_nonblocking(true)?;
            tokio::net::UdpSocket::from_std(socket)
        })
    }
}

//! The servers the benchmark's traffic goes to, running inside this process on sockets made in
//! a lab's server namespace (a socket belongs to the namespace it was created in, whichever
//! thread uses it later).
//!
//! - [`CONNECT_PORT`] and [`STORM_PORT`]: accept and close at once. A connect completes in the
//!   kernel before `accept`; the accept loops only keep the backlog empty. Two ports so that
//!   the helper's record of the attribution storm is told apart from everything else.
//! - [`HOLD_PORT`]: accepts, reports each peer address on a channel, and keeps the connection
//!   open until [`Servers::release_held`], so that attribution can be timed on live sockets.
//! - [`SINK_PORT`]: a UDP sink that only counts datagrams.
//!
//! Dropping [`Servers`] stops every thread (shutting the sockets down wakes blocked calls).

use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use nix::sys::socket::{Backlog, Shutdown, listen, setsockopt, shutdown, sockopt};
use portcullis_lab::Ns;

/// Accept-and-close server for connect latency and rate.
pub const CONNECT_PORT: u16 = 7000;
/// Accept-and-hold server for attribution lookups.
pub const HOLD_PORT: u16 = 7001;
/// Accept-and-close server for the fork–connect–exit storm.
pub const STORM_PORT: u16 = 7002;
/// UDP sink.
pub const SINK_PORT: u16 = 9000;
/// iperf3's port (iperf3 runs as its own process).
pub const IPERF_PORT: u16 = 5201;

/// Receive buffer of the UDP sink: large, so a burst is queued rather than dropped.
const SINK_RCVBUF: usize = 64 * 1024 * 1024;

/// The servers of one lab; see the module docs.
#[derive(Debug)]
pub struct Servers {
    stop: Arc<AtomicBool>,
    listeners: Vec<Arc<TcpListener>>,
    sink: Arc<UdpSocket>,
    sink_count: Arc<AtomicU64>,
    held: Arc<Mutex<Vec<TcpStream>>>,
    accepted: Mutex<Receiver<SocketAddr>>,
    threads: Vec<JoinHandle<()>>,
}

impl Servers {
    /// Binds every server on `0.0.0.0` inside `ns` and starts their threads.
    pub fn start(ns: &Ns) -> anyhow::Result<Servers> {
        let bind = |port: u16| -> anyhow::Result<Arc<TcpListener>> {
            let l = ns
                .in_ns(|| TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)))
                .with_context(|| format!("binding TCP port {port} in {}", ns.name()))?;
            // The standard library listens with a backlog of 128: a burst of connects would
            // overflow it, and a dropped SYN costs the client a one-second retransmit.
            listen(&l, Backlog::MAXCONN).context("raising the listen backlog")?;
            Ok(Arc::new(l))
        };
        let connect = bind(CONNECT_PORT)?;
        let hold = bind(HOLD_PORT)?;
        let storm = bind(STORM_PORT)?;
        let sink = ns
            .in_ns(|| UdpSocket::bind((Ipv4Addr::UNSPECIFIED, SINK_PORT)))
            .with_context(|| format!("binding UDP port {SINK_PORT} in {}", ns.name()))?;
        setsockopt(&sink, sockopt::RcvBufForce, &SINK_RCVBUF).context("SO_RCVBUFFORCE")?;
        sink.set_read_timeout(Some(Duration::from_millis(100)))
            .context("sink read timeout")?;
        let sink = Arc::new(sink);

        let stop = Arc::new(AtomicBool::new(false));
        let sink_count = Arc::new(AtomicU64::new(0));
        let held = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let mut threads = Vec::new();
        // Two accept threads on the busy port: on two cores one can run while the other waits.
        for l in [&connect, &connect, &storm] {
            let (l, stop) = (Arc::clone(l), Arc::clone(&stop));
            threads.push(spawn("accept", move || accept_and_close(&l, &stop))?);
        }
        {
            let (l, stop, held) = (Arc::clone(&hold), Arc::clone(&stop), Arc::clone(&held));
            threads.push(spawn("hold", move || {
                accept_and_hold(&l, &stop, &held, &tx)
            })?);
        }
        {
            let (s, stop, count) = (
                Arc::clone(&sink),
                Arc::clone(&stop),
                Arc::clone(&sink_count),
            );
            threads.push(spawn("sink", move || count_datagrams(&s, &stop, &count))?);
        }
        Ok(Servers {
            stop,
            listeners: vec![connect, hold, storm],
            sink,
            sink_count,
            held,
            accepted: Mutex::new(rx),
            threads,
        })
    }

    /// Datagrams the sink has received so far.
    pub fn sink_count(&self) -> u64 {
        self.sink_count.load(Ordering::Relaxed)
    }

    /// The next peer address accepted on [`HOLD_PORT`], waiting at most `timeout`.
    pub fn next_held(&self, timeout: Duration) -> Option<SocketAddr> {
        self.accepted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .recv_timeout(timeout)
            .ok()
    }

    /// Sends one byte on the held connection from `peer` (the probe's go-ahead for its next
    /// connection); false if there is no such connection or the write failed.
    pub fn poke_held(&self, peer: SocketAddr) -> bool {
        let held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        held.iter()
            .rev()
            .find(|s| s.peer_addr().is_ok_and(|a| a == peer))
            .is_some_and(|mut s| s.write_all(b"!").is_ok())
    }

    /// Closes every connection held on [`HOLD_PORT`].
    pub fn release_held(&self) {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        // Drain addresses nobody asked for.
        let rx = self.accepted.lock().unwrap_or_else(PoisonError::into_inner);
        while rx.try_recv().is_ok() {}
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for l in &self.listeners {
            // Shutting a listening socket down wakes a blocked accept() with an error.
            let _ignored = shutdown(l.as_raw_fd(), Shutdown::Both);
        }
        let _ignored = shutdown(self.sink.as_raw_fd(), Shutdown::Both);
        for t in self.threads.drain(..) {
            let _ignored = t.join();
        }
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> anyhow::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("srv-{name}"))
        .spawn(f)
        .with_context(|| format!("starting the {name} server thread"))
}

fn accept_and_close(listener: &TcpListener, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => drop(stream),
            Err(_) => std::thread::sleep(Duration::from_millis(1)),
        }
    }
}

fn accept_and_hold(
    listener: &TcpListener,
    stop: &AtomicBool,
    held: &Mutex<Vec<TcpStream>>,
    accepted: &Sender<SocketAddr>,
) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, peer)) => {
                held.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(stream);
                let _ignored = accepted.send(peer);
            }
            Err(_) => std::thread::sleep(Duration::from_millis(1)),
        }
    }
}

fn count_datagrams(sink: &UdpSocket, stop: &AtomicBool, count: &AtomicU64) {
    let mut buf = [0_u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        if sink.recv(&mut buf).is_ok() {
            count.fetch_add(1, Ordering::Relaxed);
        }
    }
}

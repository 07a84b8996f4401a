//! Tells the service manager how the helper is doing (`sd_notify(3)`'s protocol): `READY=1`
//! once interception, the resolver and the IPC socket are up, `STOPPING=1` when it starts to
//! stop. The protocol is one datagram to the Unix socket named in `NOTIFY_SOCKET` (a path, or
//! an abstract name written with a leading `@`), so it is written here directly rather than
//! through a library. Without `NOTIFY_SOCKET` (started by hand, by tests) nothing is sent.
//! It must never stop the helper: a failure to notify is logged and otherwise ignored.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// The environment variable systemd sets for `Type=notify` services.
const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Sends `state` (newline-separated `KEY=VALUE` lines) to the service manager, if there is
/// one. Returns whether it was sent; a failure is logged at WARN and reported as `false`.
pub fn notify(state: &str) -> bool {
    let Some(socket) = std::env::var_os(NOTIFY_SOCKET) else {
        return false;
    };
    match send(&socket, state) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, state, "cannot notify the service manager");
            false
        }
    }
}

/// Sends `state` as one datagram to the notification socket `socket`.
fn send(socket: &OsStr, state: &str) -> io::Result<()> {
    let addr = address(socket)?;
    let sock = UnixDatagram::unbound()?;
    let sent = sock.send_to_addr(state.as_bytes(), &addr)?;
    if sent != state.len() {
        return Err(io::Error::other("the notification was cut short"));
    }
    Ok(())
}

/// The socket address `NOTIFY_SOCKET` names: `@name` is in the abstract namespace, an absolute
/// path a socket file. Anything else (e.g. `vsock:`, which systemd uses only for VMs) is refused.
fn address(socket: &OsStr) -> io::Result<SocketAddr> {
    let bytes = socket.as_bytes();
    match bytes.first() {
        Some(b'@') => {
            use std::os::linux::net::SocketAddrExt as _;
            SocketAddr::from_abstract_name(bytes.get(1..).unwrap_or_default())
        }
        Some(b'/') => SocketAddr::from_pathname(socket),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "NOTIFY_SOCKET is neither an absolute path nor an abstract (@) address",
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;
    use std::os::linux::net::SocketAddrExt as _;
    use std::time::Duration;

    use super::*;

    fn received(sock: &UnixDatagram) -> String {
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 256];
        let n = sock.recv(&mut buf).unwrap();
        String::from_utf8(buf.get(..n).unwrap().to_vec()).unwrap()
    }

    #[test]
    fn a_socket_file_receives_the_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let sock = UnixDatagram::bind(&path).unwrap();
        send(path.as_os_str(), "READY=1").unwrap();
        assert_eq!(received(&sock), "READY=1");
        send(path.as_os_str(), "STOPPING=1").unwrap();
        assert_eq!(received(&sock), "STOPPING=1");
    }

    #[test]
    fn an_abstract_address_receives_the_state() {
        let name = format!("portcullis-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let sock = UnixDatagram::bind_addr(&addr).unwrap();
        send(&OsString::from(format!("@{name}")), "READY=1").unwrap();
        assert_eq!(received(&sock), "READY=1");
    }

    #[test]
    fn other_addresses_and_missing_listeners_are_errors() {
        assert!(send(OsStr::new("relative/path"), "READY=1").is_err());
        assert!(send(OsStr::new(""), "READY=1").is_err());
        assert!(send(OsStr::new("vsock:2:1234"), "READY=1").is_err());
        let dir = tempfile::tempdir().unwrap();
        let nobody = dir.path().join("nobody");
        assert!(send(nobody.as_os_str(), "READY=1").is_err());
    }
}

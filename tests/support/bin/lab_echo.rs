//! `lab-echo`: the lab's TCP/UDP echo server, run inside a lab namespace.
//!
//! ```text
//! lab-echo tcp|udp|both PORT [BIND_IP]      (BIND_IP defaults to `::`, dual-stack)
//! ```
//! It echoes every byte back and logs one line per TCP connection or UDP datagram on stdout
//! (`tcp accept from=…`, `udp from=… len=…`), so a test can assert what reached the server.
//! Dual-stack relies on `net.ipv6.bindv6only = 0`, the default in a fresh namespace.
//! UDP answers leave from the address the datagram was sent to (IP(V6)_PKTINFO), so extra
//! "Internet" addresses on the server's loopback work for connected UDP clients too. It runs
//! until killed and must never touch anything but its own sockets.

use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::ExitCode;

use nix::sys::socket::{
    ControlMessage, ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg, sendmsg, setsockopt,
    sockopt,
};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let strs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (mode, port, ip) = match strs.as_slice() {
        [mode, port] => (*mode, *port, "::"),
        [mode, port, ip] => (*mode, *port, *ip),
        _ => return usage(),
    };
    let (Ok(port), Ok(ip)) = (port.parse::<u16>(), ip.parse::<IpAddr>()) else {
        return usage();
    };
    let addr = SocketAddr::new(ip, port);
    let result = match mode {
        "tcp" => tcp(addr),
        "udp" => udp(addr),
        "both" => {
            let t = std::thread::spawn(move || tcp(addr));
            let u = udp(addr);
            u.and(
                t.join()
                    .unwrap_or_else(|_| Err("tcp thread panicked".to_owned())),
            )
        }
        _ => return usage(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lab-echo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn usage() -> ExitCode {
    eprintln!("usage: lab-echo tcp|udp|both PORT [BIND_IP]");
    ExitCode::from(2)
}

fn tcp(addr: SocketAddr) -> Result<(), String> {
    let listener = TcpListener::bind(addr).map_err(|e| format!("bind tcp {addr}: {e}"))?;
    println!("listening tcp {addr}");
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                std::thread::spawn(move || serve(stream));
            }
            Err(e) => eprintln!("lab-echo: accept: {e}"),
        }
    }
    Ok(())
}

fn serve(mut stream: TcpStream) {
    let from = stream
        .peer_addr()
        .map_or_else(|e| format!("?({e})"), |a| unmap(a).to_string());
    println!("tcp accept from={from}");
    let mut buf = [0_u8; 16 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let Some(data) = buf.get(..n) else { break };
                if stream.write_all(data).is_err() {
                    break;
                }
            }
        }
    }
    println!("tcp close from={from}");
}

fn udp(addr: SocketAddr) -> Result<(), String> {
    let sock = UdpSocket::bind(addr).map_err(|e| format!("bind udp {addr}: {e}"))?;
    // A server holding several addresses must answer from the one each datagram was sent to,
    // or a connected client drops the answer: learn it with IPV6_PKTINFO (IPv4 arrives
    // v4-mapped on the dual-stack socket) and send the reply with the same pktinfo.
    let v6 = addr.is_ipv6();
    if v6 {
        setsockopt(&sock, sockopt::Ipv6RecvPacketInfo, &true)
            .map_err(|e| format!("IPV6_RECVPKTINFO: {e}"))?;
    } else {
        setsockopt(&sock, sockopt::Ipv4PacketInfo, &true)
            .map_err(|e| format!("IP_PKTINFO: {e}"))?;
    }
    println!("listening udp {addr}");
    let fd = sock.as_raw_fd();
    let mut buf = [0_u8; 64 * 1024];
    let mut cmsg_buf = nix::cmsg_space!(libc::in6_pktinfo, libc::in_pktinfo);
    loop {
        let (n, from, info) = {
            let mut iov = [IoSliceMut::new(&mut buf)];
            let msg = match recvmsg::<SockaddrStorage>(
                fd,
                &mut iov,
                Some(&mut cmsg_buf),
                MsgFlags::empty(),
            ) {
                Ok(msg) => msg,
                Err(e) => {
                    eprintln!("lab-echo: recvmsg: {e}");
                    continue;
                }
            };
            let mut info = None;
            for c in msg.cmsgs().into_iter().flatten() {
                match c {
                    ControlMessageOwned::Ipv6PacketInfo(mut i) => {
                        i.ipi6_ifindex = 0; // let routing pick the interface
                        info = Some(Pktinfo::V6(i));
                    }
                    ControlMessageOwned::Ipv4PacketInfo(mut i) => {
                        i.ipi_ifindex = 0;
                        info = Some(Pktinfo::V4(i));
                    }
                    _ => {}
                }
            }
            (msg.bytes, msg.address, info)
        };
        let Some(from) = from else { continue };
        let shown = from
            .as_sockaddr_in6()
            .map(|a| unmap(SocketAddr::V6((*a).into())).to_string())
            .or_else(|| {
                from.as_sockaddr_in()
                    .map(|a| SocketAddr::V4((*a).into()).to_string())
            })
            .unwrap_or_else(|| from.to_string());
        println!("udp from={shown} len={n}");
        let Some(data) = buf.get(..n) else { continue };
        let iov = [IoSlice::new(data)];
        let cmsgs: Vec<ControlMessage<'_>> = match &info {
            Some(Pktinfo::V6(i)) => vec![ControlMessage::Ipv6PacketInfo(i)],
            Some(Pktinfo::V4(i)) => vec![ControlMessage::Ipv4PacketInfo(i)],
            None => Vec::new(),
        };
        if let Err(e) = sendmsg(fd, &iov, &cmsgs, MsgFlags::empty(), Some(&from)) {
            eprintln!("lab-echo: sendmsg to {shown}: {e}");
        }
    }
}

/// Destination of a received datagram, to answer from.
enum Pktinfo {
    V6(libc::in6_pktinfo),
    V4(libc::in_pktinfo),
}

/// Shows IPv4 peers of the dual-stack socket as plain IPv4 (`::ffff:a.b.c.d` → `a.b.c.d`).
fn unmap(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => SocketAddr::new(IpAddr::V6(*v6.ip()), v6.port()),
        },
        SocketAddr::V4(_) => a,
    }
}

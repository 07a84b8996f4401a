//! Packets as NFQUEUE delivers them, from the network or any local program: parsing never
//! panics, and whatever parses is consistent (both addresses of one family, ports only for
//! TCP and UDP, an ICMP type only for ICMP, SYN only for TCP).
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_intercept::packet::parse;
use portcullis_protocol::Protocol;

fuzz_target!(|data: &[u8]| {
    match parse(data) {
        Ok(info) => {
            assert_eq!(info.src.is_ipv4(), info.dst.is_ipv4());
            assert_eq!(info.src_port.is_some(), info.dst_port.is_some());
            match info.protocol {
                Protocol::Tcp => assert!(info.icmp_type.is_none()),
                Protocol::Udp => assert!(info.icmp_type.is_none() && !info.tcp_syn),
                Protocol::Icmp => assert!(info.src_port.is_none() && !info.tcp_syn),
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});

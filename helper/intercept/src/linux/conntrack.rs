//! Forgets connections the queue allowed, so that their next packet is decided again after a
//! rule change: deletes their conntrack entries, found by our "allow" mark bits in the
//! connection mark (saved there by our CONNMARK rule). It must not delete entries without our
//! mark — the helper's own excluded traffic and other software's flows stay.
//!
//! For now it runs the `conntrack` tool (`conntrack -D -f ipv4|ipv6 -m MARK/MASK [-d ADDR]`);
//! a ctnetlink implementation replaces it later, without the process spawn per call.

use tracing::debug;

use super::tools;
use crate::ForgetFilter;
use crate::error::InterceptError;
use crate::marks::Marks;

/// See [`crate::forget_connections`].
pub(crate) fn forget_connections(
    marks: &Marks,
    filter: &ForgetFilter,
) -> Result<usize, InterceptError> {
    let conntrack = tools::require(&["conntrack"], "conntrack")?;
    let mark = format!("{:#x}/{:#x}", marks.allow, marks.mask);
    let v4: &[&str] = &["ipv4"];
    let v6: &[&str] = &["ipv6"];
    let (families, extra): (&[&str], Vec<String>) = match filter {
        ForgetFilter::AllAllowed => (&["ipv4", "ipv6"], Vec::new()),
        ForgetFilter::AllowedTo(ip) => (
            if ip.is_ipv4() { v4 } else { v6 },
            vec!["-d".into(), ip.to_string()],
        ),
        ForgetFilter::AllowedFlow { protocol, src, dst } => {
            let proto = match protocol {
                portcullis_protocol::Protocol::Tcp => "tcp",
                portcullis_protocol::Protocol::Udp => "udp",
                portcullis_protocol::Protocol::Icmp => return Ok(0),
            };
            let family = if src.is_ipv4() { v4 } else { v6 };
            let args = vec![
                "-p".into(),
                proto.into(),
                "--orig-src".into(),
                src.ip().to_string(),
                "--orig-dst".into(),
                dst.ip().to_string(),
                "--orig-port-src".into(),
                src.port().to_string(),
                "--orig-port-dst".into(),
                dst.port().to_string(),
            ];
            (family, args)
        }
    };
    let mut total = 0;
    for family in families {
        let mut args = vec!["-D", "-f", family, "-m", &mark];
        args.extend(extra.iter().map(String::as_str));
        let out = tools::run(&conntrack, &args, None, None)?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        match (out.status.code(), deleted_count(&stderr)) {
            (Some(0), Some(n)) => total += n,
            // "0 flow entries have been deleted." comes with exit status 1.
            (Some(1), Some(0)) => {}
            _ => return Err(tools::failed(&conntrack, &args, &out)),
        }
    }
    debug!(count = total, "forgot allowed connections");
    Ok(total)
}

/// The number in conntrack's "N flow entries have been deleted." line.
fn deleted_count(stderr: &str) -> Option<usize> {
    stderr.lines().find_map(|line| {
        let (before, _) = line.split_once(" flow entries have been deleted")?;
        before.rsplit(' ').next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_deleted_count() {
        assert_eq!(
            deleted_count(
                "conntrack v1.4.7 (conntrack-tools): 3 flow entries have been deleted.\n"
            ),
            Some(3)
        );
        assert_eq!(
            deleted_count("conntrack v1.4.7 (conntrack-tools): 0 flow entries have been deleted."),
            Some(0)
        );
        assert_eq!(deleted_count("conntrack: invalid parameter"), None);
    }
}

//! Reads the kernel's per-queue counters from the text of
//! `/proc/net/netfilter/nfnetlink_queue`. Pure: the platform module reads the file (of the
//! caller's network namespace) and hands the text here. It must not interpret the counters.

/// The kernel's counters of one bound NFQUEUE (one line of
/// `/proc/net/netfilter/nfnetlink_queue`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueStats {
    /// The queue number.
    pub queue_num: u16,
    /// Netlink port id of the program bound to it.
    pub portid: u32,
    /// Packets waiting for a verdict right now.
    pub waiting: u32,
    /// Copy mode: 0 none, 1 metadata only, 2 packet.
    pub copy_mode: u8,
    /// How many bytes of each packet are copied to userspace.
    pub copy_range: u32,
    /// Packets dropped (or passed, when failing open) because the queue was full.
    pub dropped: u32,
    /// Packets dropped because the program could not receive them (socket buffer full).
    pub user_dropped: u32,
    /// Packets ever queued: the id of the last one (ids start at 1 and count every packet).
    pub packets: u32,
}

/// The counters of queue `queue_num` in the text of `nfnetlink_queue`, if it is bound.
pub fn parse_queue_stats(text: &str, queue_num: u16) -> Option<QueueStats> {
    text.lines().find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let num: u16 = f.first()?.parse().ok()?;
        if num != queue_num {
            return None;
        }
        let at = |i: usize| f.get(i).and_then(|s| s.parse::<u32>().ok());
        Some(QueueStats {
            queue_num: num,
            portid: at(1)?,
            waiting: at(2)?,
            copy_mode: u8::try_from(at(3)?).ok()?,
            copy_range: at(4)?,
            dropped: at(5)?,
            user_dropped: at(6)?,
            packets: at(7)?,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_line_of_our_queue() {
        // The kernel prints the port id unsigned: a process's second netlink socket gets a
        // "negative" one.
        let text = "    0  12345     0 2 65535     0     0        3  1\n \
                     4200 4294963079     2 2   256     1     5       17  1\n";
        assert_eq!(parse_queue_stats(text, 1), None);
        assert_eq!(parse_queue_stats("", 4200), None);
        assert_eq!(parse_queue_stats("garbage\n4200 x\n", 4200), None);
        assert_eq!(parse_queue_stats(text, 0).map(|s| s.packets), Some(3));
        assert_eq!(
            parse_queue_stats(text, 4200),
            Some(QueueStats {
                queue_num: 4200,
                portid: 4_294_963_079,
                waiting: 2,
                copy_mode: 2,
                copy_range: 256,
                dropped: 1,
                user_dropped: 5,
                packets: 17,
            })
        );
    }
}

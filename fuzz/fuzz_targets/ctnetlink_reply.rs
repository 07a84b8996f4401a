//! Conntrack netlink replies as the kernel (or a buggy one) might send them: decoding never
//! panics, every message takes at least a header's worth of bytes, every decoded entry is
//! consistent (IPv4 or IPv6, both addresses of that family), and the deletion request built
//! from an entry names that same entry again when decoded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_intercept::ctnetlink::{self, AF_INET, AF_INET6, Entry, Reply};

fuzz_target!(|data: &[u8]| {
    let Ok(messages) = ctnetlink::decode(data) else {
        return;
    };
    assert!(messages.len() <= data.len() / 16);
    for message in messages {
        match message.reply {
            Reply::Entry(entry) => check(&entry),
            Reply::Unusable(e) => {
                let _ = e.to_string();
            }
            Reply::Status(_) | Reply::Done(_) | Reply::Other => {}
        }
    }
});

fn check(entry: &Entry) {
    assert!(entry.family == AF_INET || entry.family == AF_INET6);
    assert_eq!(ctnetlink::family_of(entry.orig.src), entry.family);
    assert_eq!(ctnetlink::family_of(entry.orig.dst), entry.family);
    // The deletion carries the tuple, id and zone; as an entry message (type CT_NEW) it must
    // decode to the same entry, mark aside (a deletion carries none).
    let mut request = ctnetlink::delete_request(1, entry);
    request[4..6].copy_from_slice(&0x0100_u16.to_ne_bytes());
    let again = ctnetlink::decode(&request).expect("our own request decodes");
    let want = Entry { mark: 0, ..*entry };
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].reply, Reply::Entry(want));
}

//! Building the messages the server sends back: FORMERR for undecodable queries, errors,
//! block answers, answers from the cache or an upstream, and the wire encoding with UDP
//! truncation. This module owns the header flags and EDNS of replies; it decides nothing.

use std::net::{Ipv4Addr, Ipv6Addr};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{RData, Record, RecordType};

use crate::policy::BlockStyle;

/// EDNS payload size we advertise to clients, and the largest UDP reply we send.
pub const MAX_UDP_PAYLOAD: u16 = 1232;
/// Size of a DNS header.
pub const HEADER_LEN: usize = 12;

/// A FORMERR reply to a query that could not be decoded, built from its header alone; `None`
/// when not even a query header can be read (too short, or it is a response): such input is
/// dropped, so that forged "responses" cannot make us reflect traffic.
pub fn formerr_for_bytes(bytes: &[u8]) -> Option<Vec<u8>> {
    let header = bytes.get(..HEADER_LEN)?;
    let (&id_hi, &id_lo, &flags1) = (header.first()?, header.get(1)?, header.get(2)?);
    if flags1 & 0x80 != 0 {
        return None; // QR set: a response, not a query.
    }
    // Keep the opcode and RD; set QR. RA set, rcode FORMERR, all counts zero.
    let flags1 = 0x80 | (flags1 & 0x79);
    Some(vec![
        id_hi,
        id_lo,
        flags1,
        0x80 | 0x01,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
    ])
}

/// The skeleton of a reply to `request`: same id, opcode and question, RD and CD copied, RA
/// set; EDNS answered with ours when the client used EDNS.
pub fn reply_to(request: &Message) -> Message {
    let mut reply = Message::new(
        request.metadata.id,
        MessageType::Response,
        request.metadata.op_code,
    );
    reply.metadata.recursion_desired = request.metadata.recursion_desired;
    reply.metadata.checking_disabled = request.metadata.checking_disabled;
    reply.metadata.recursion_available = true;
    // One question is echoed; with several (FORMERR) none, so a reply never grows with them.
    if request.queries.len() == 1 {
        reply.queries = request.queries.clone();
    }
    if request.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(MAX_UDP_PAYLOAD);
        reply.edns = Some(edns);
    }
    reply
}

/// A reply carrying only `rcode`.
pub fn error_reply(request: &Message, rcode: ResponseCode) -> Message {
    let mut reply = reply_to(request);
    reply.metadata.response_code = rcode;
    reply
}

/// The reply for a blocked question, in `style`; `ttl` for the 0.0.0.0/:: records.
pub fn blocked_reply(request: &Message, style: BlockStyle, ttl: u32) -> Message {
    let mut reply = reply_to(request);
    match style {
        BlockStyle::NxDomain => reply.metadata.response_code = ResponseCode::NXDomain,
        BlockStyle::Refused => reply.metadata.response_code = ResponseCode::Refused,
        BlockStyle::ZeroIp => {
            if let Some(q) = request.queries.first() {
                let data = match q.query_type() {
                    RecordType::A => Some(RData::A(A(Ipv4Addr::UNSPECIFIED))),
                    RecordType::AAAA => Some(RData::AAAA(AAAA(Ipv6Addr::UNSPECIFIED))),
                    _ => None, // no data
                };
                if let Some(data) = data {
                    reply
                        .answers
                        .push(Record::from_rdata(q.name().clone(), ttl, data));
                }
            }
        }
    }
    reply
}

/// A reply with these sections and rcode (an upstream's or the cache's answer).
pub fn answer_reply(
    request: &Message,
    rcode: ResponseCode,
    answers: Vec<Record>,
    authorities: Vec<Record>,
    additionals: Vec<Record>,
) -> Message {
    let mut reply = reply_to(request);
    reply.metadata.response_code = rcode;
    reply.answers = answers;
    reply.authorities = authorities;
    reply.additionals = additionals
        .into_iter()
        .filter(|r| !matches!(r.record_type(), RecordType::OPT | RecordType::TSIG))
        .collect();
    reply
}

/// The largest UDP reply `request` allows: its EDNS payload size (at least 512, at most ours),
/// or 512 without EDNS.
pub fn udp_limit(request: &Message) -> usize {
    request.edns.as_ref().map_or(512, |e| {
        usize::from(e.max_payload().clamp(512, MAX_UDP_PAYLOAD))
    })
}

/// Encodes `reply`; if it is longer than `limit`, sends the question only with TC set, so
/// that the client asks again over TCP (and the bare header if even that is too long). A
/// reply that cannot be encoded becomes SERVFAIL. `None` only if nothing can be encoded.
pub fn encode(reply: &Message, limit: usize) -> Option<Vec<u8>> {
    let fits = |m: &Message| m.to_vec().ok().filter(|b| b.len() <= limit);
    match reply.to_vec() {
        Ok(bytes) if bytes.len() <= limit => return Some(bytes),
        Ok(_) => {
            if let Some(bytes) = fits(&reply.truncate()) {
                return Some(bytes);
            }
        }
        Err(_) => {
            let mut fail = reply.truncate();
            fail.metadata.truncation = false;
            fail.metadata.response_code = ResponseCode::ServFail;
            if let Some(bytes) = fits(&fail) {
                return Some(bytes);
            }
        }
    }
    let mut bare = reply.truncate();
    bare.queries.clear();
    bare.edns = None;
    bare.to_vec().ok()
}

/// Whether the opcode is one we answer (only QUERY).
pub fn is_standard_query(message: &Message) -> bool {
    message.metadata.op_code == OpCode::Query
}

#[cfg(test)]
mod tests {
    use hickory_proto::op::Query;
    use hickory_proto::rr::Name;

    use super::*;

    fn query(name: &str, qtype: RecordType) -> Message {
        let mut m = Message::new(0x1234, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.queries
            .push(Query::query(Name::from_ascii(name).unwrap(), qtype));
        m
    }

    #[test]
    fn formerr_keeps_id_opcode_and_rd_and_drops_responses_and_short_input() {
        let mut bytes = query("x.example.", RecordType::A).to_vec().unwrap();
        bytes.truncate(14); // header plus garbage
        let out = formerr_for_bytes(&bytes).unwrap();
        let m = Message::from_vec(&out).unwrap();
        assert_eq!(m.metadata.id, 0x1234);
        assert_eq!(m.metadata.message_type, MessageType::Response);
        assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
        assert!(m.metadata.recursion_desired);
        assert!(m.queries.is_empty());

        assert_eq!(formerr_for_bytes(&bytes[..11]), None);
        let mut response = bytes.clone();
        response[2] |= 0x80;
        assert_eq!(formerr_for_bytes(&response), None);
    }

    #[test]
    fn block_styles() {
        let q = query("ads.example.", RecordType::A);
        let nx = blocked_reply(&q, BlockStyle::NxDomain, 10);
        assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
        assert!(nx.answers.is_empty());
        let refused = blocked_reply(&q, BlockStyle::Refused, 10);
        assert_eq!(refused.metadata.response_code, ResponseCode::Refused);
        let zero = blocked_reply(&q, BlockStyle::ZeroIp, 10);
        assert_eq!(zero.metadata.response_code, ResponseCode::NoError);
        assert_eq!(zero.answers[0].data, RData::A(A(Ipv4Addr::UNSPECIFIED)));
        assert_eq!(zero.answers[0].ttl, 10);
        let q6 = query("ads.example.", RecordType::AAAA);
        let zero6 = blocked_reply(&q6, BlockStyle::ZeroIp, 10);
        assert_eq!(
            zero6.answers[0].data,
            RData::AAAA(AAAA(Ipv6Addr::UNSPECIFIED))
        );
        let mx = query("ads.example.", RecordType::MX);
        let nodata = blocked_reply(&mx, BlockStyle::ZeroIp, 10);
        assert!(nodata.answers.is_empty());
        assert_eq!(nodata.metadata.response_code, ResponseCode::NoError);
    }

    #[test]
    fn a_reply_to_many_questions_echoes_none_and_fits() {
        let mut q = query(&format!("{}.example.", "a".repeat(60)), RecordType::A);
        for i in 0..8 {
            let long = format!("{i}{}.{}.example.", "b".repeat(60), "c".repeat(60));
            q.queries
                .push(Query::query(Name::from_ascii(long).unwrap(), RecordType::A));
        }
        let reply = error_reply(&q, ResponseCode::FormErr);
        assert!(reply.queries.is_empty());
        let bytes = encode(&reply, udp_limit(&q)).unwrap();
        assert_eq!(bytes.len(), HEADER_LEN);
    }

    #[test]
    fn big_udp_replies_are_truncated_to_the_question() {
        let q = query("big.example.", RecordType::A);
        let answers: Vec<Record> = (0..100_u8)
            .map(|i| {
                Record::from_rdata(
                    Name::from_ascii("big.example.").unwrap(),
                    60,
                    RData::A(A::new(192, 0, 2, i)),
                )
            })
            .collect();
        let reply = answer_reply(&q, ResponseCode::NoError, answers, vec![], vec![]);
        assert_eq!(udp_limit(&q), 512);
        let bytes = encode(&reply, udp_limit(&q)).unwrap();
        assert!(bytes.len() <= 512);
        let m = Message::from_vec(&bytes).unwrap();
        assert!(m.metadata.truncation);
        assert_eq!(m.queries.len(), 1);
        assert_eq!(m.metadata.id, 0x1234);
        let full = encode(&reply, 65_535).unwrap();
        assert_eq!(Message::from_vec(&full).unwrap().answers.len(), 100);
    }
}

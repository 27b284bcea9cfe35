//! DNS messages (RFC 1035): the query for one name and type, and what a reply says of it. A
//! reply is untrusted input; [`parse_reply`] reads it within its length, follows compression
//! pointers only backwards, and accepts only a reply to the query it was asked about.

use alloc::string::String;
use alloc::vec::Vec;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const TYPE_A: u16 = 1;
pub const TYPE_AAAA: u16 = 28;
const TYPE_CNAME: u16 = 5;
const CLASS_IN: u16 = 1;
const HEADER: usize = 12;
/// A name's longest wire form (RFC 1035 §2.3.4).
const MAX_NAME: usize = 255;
/// CNAMEs followed from the name asked about.
const MAX_ALIASES: usize = 16;

/// What a reply says of the query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// The name exists; its addresses of the type asked (none: it has only others).
    Addresses(Vec<IpAddr>),
    /// `NXDOMAIN`: no such name.
    NoSuchName,
    /// The server failed or refused, or truncated a reply without addresses (the guest does
    /// not retry over TCP).
    Failed,
}

/// The query `id` for `name`'s records of `kind` (recursion desired) → `None` for a name
/// DNS cannot carry (an empty label, a label over 63 bytes, over 255 bytes in all).
pub fn query(id: u16, name: &str, kind: u16) -> Option<Vec<u8>> {
    let mut message = Vec::with_capacity(HEADER + name.len() + 6);
    message.extend_from_slice(&id.to_be_bytes());
    message.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    let start = message.len();
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return None;
        }
        message.push(label.len() as u8);
        message.extend_from_slice(label.as_bytes());
    }
    message.push(0);
    if message.len() - start > MAX_NAME {
        return None;
    }
    message.extend_from_slice(&kind.to_be_bytes());
    message.extend_from_slice(&CLASS_IN.to_be_bytes());
    Some(message)
}

/// What `message` says of query `id` for `name` and `kind` → `None` when it is not a reply to
/// that query (or is malformed): the caller keeps waiting.
pub fn parse_reply(message: &[u8], id: u16, name: &str, kind: u16) -> Option<Reply> {
    let mut reader = Reader { message, at: 0 };
    if reader.u16()? != id {
        return None;
    }
    let flags = reader.u16()?;
    let (questions, answers) = (reader.u16()?, reader.u16()?);
    reader.at = HEADER;
    let is_reply = flags & 0x8000 != 0 && (flags >> 11) & 0xf == 0;
    if !is_reply || questions != 1 {
        return None;
    }
    let asked = reader.name()?;
    if !asked.eq_ignore_ascii_case(name) || reader.u16()? != kind || reader.u16()? != CLASS_IN {
        return None;
    }
    match flags & 0xf {
        0 => {}
        3 => return Some(Reply::NoSuchName),
        _ => return Some(Reply::Failed),
    }
    let mut records = Vec::new();
    for _ in 0..answers {
        let owner = reader.name()?;
        let (rtype, class) = (reader.u16()?, reader.u16()?);
        reader.skip(4)?;
        let length = usize::from(reader.u16()?);
        let data_at = reader.at;
        let data = reader.take(length)?;
        if class != CLASS_IN {
            continue;
        }
        let value = match rtype {
            TYPE_CNAME => Record::Alias(Reader { message, at: data_at }.name()?),
            TYPE_A if kind == TYPE_A => Record::Address(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(data).ok()?))),
            TYPE_AAAA if kind == TYPE_AAAA => {
                Record::Address(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(data).ok()?)))
            }
            _ => continue,
        };
        records.push((owner, value));
    }
    // The addresses of the name and of the aliases it leads to, as a stub resolver takes them.
    let mut names = alloc::vec![String::from(name)];
    while names.len() <= MAX_ALIASES {
        let last = names.last()?;
        let next = records.iter().find_map(|(owner, record)| match record {
            Record::Alias(target) if owner.eq_ignore_ascii_case(last) => Some(target.clone()),
            _ => None,
        });
        match next {
            Some(target) if !names.iter().any(|n| n.eq_ignore_ascii_case(&target)) => names.push(target),
            _ => break,
        }
    }
    let mut addresses = Vec::new();
    for (owner, record) in &records {
        if let Record::Address(ip) = record {
            if names.iter().any(|n| n.eq_ignore_ascii_case(owner)) && !addresses.contains(ip) {
                addresses.push(*ip);
            }
        }
    }
    let truncated = flags & 0x0200 != 0;
    Some(if truncated && addresses.is_empty() { Reply::Failed } else { Reply::Addresses(addresses) })
}

enum Record {
    Alias(String),
    Address(IpAddr),
}

struct Reader<'a> {
    message: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        let bytes = self.message.get(self.at..self.at.checked_add(len)?)?;
        self.at += len;
        Some(bytes)
    }

    fn skip(&mut self, len: usize) -> Option<()> {
        self.take(len).map(drop)
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    /// A name, dotted, following compression pointers (each strictly backwards, so a chain of
    /// them ends); the reader moves past the name's bytes at its first place.
    fn name(&mut self) -> Option<String> {
        let mut name = String::new();
        let mut wire_length = 1;
        let mut at = self.at;
        let mut resume = None;
        loop {
            let length = *self.message.get(at)?;
            match length >> 6 {
                0 if length == 0 => break,
                0 => {
                    let label = self.message.get(at + 1..at + 1 + usize::from(length))?;
                    wire_length += 1 + label.len();
                    if wire_length > MAX_NAME || !label.iter().all(|b| b.is_ascii_graphic()) {
                        return None;
                    }
                    if !name.is_empty() {
                        name.push('.');
                    }
                    name.extend(label.iter().map(|&b| char::from(b)));
                    at += 1 + label.len();
                }
                3 => {
                    let target = usize::from(u16::from_be_bytes([length, *self.message.get(at + 1)?]) & 0x3fff);
                    if target >= at {
                        return None;
                    }
                    resume.get_or_insert(at + 2);
                    at = target;
                }
                _ => return None,
            }
        }
        self.at = resume.unwrap_or(at + 1);
        Some(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reply to `query` (its question kept) with `records` appended: (owner pointer or
    /// name, type, data).
    fn reply(query: &[u8], rcode: u8, records: &[(&[u8], u16, &[u8])]) -> Vec<u8> {
        let mut message = query.to_vec();
        message[2] = 0x81;
        message[3] = 0x80 | rcode;
        message[7] = records.len() as u8;
        for (owner, rtype, data) in records {
            message.extend_from_slice(owner);
            message.extend_from_slice(&rtype.to_be_bytes());
            message.extend_from_slice(&CLASS_IN.to_be_bytes());
            message.extend_from_slice(&[0, 0, 0, 60]);
            message.extend_from_slice(&(data.len() as u16).to_be_bytes());
            message.extend_from_slice(data);
        }
        message
    }

    const QUESTION_NAME: &[u8] = &[0xc0, 12];

    #[test]
    fn a_query_is_the_wire_form_of_the_name() {
        let q = query(0xabcd, "db.svc", TYPE_AAAA).unwrap();
        assert_eq!(q, b"\xab\xcd\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x02db\x03svc\x00\x00\x1c\x00\x01");
        assert_eq!(query(1, "a..b", TYPE_A), None);
        assert_eq!(query(1, &"a".repeat(64), TYPE_A), None);
        assert_eq!(query(1, &["a"; 128].join("."), TYPE_A), None, "257 bytes on the wire");
        assert!(query(1, &["a"; 127].join("."), TYPE_A).is_some());
    }

    #[test]
    fn a_reply_gives_the_addresses_of_the_name_and_its_aliases() {
        let q = query(7, "web.example", TYPE_A).unwrap();
        let alias = b"\x03lb1\xc0\x10"; // lb1.example, pointing into the question
        let r = reply(
            &q,
            0,
            &[
                (QUESTION_NAME, TYPE_CNAME, alias),
                (b"\x03lb1\x07example\x00", TYPE_A, &[10, 0, 0, 1]),
                (b"\x05other\x00", TYPE_A, &[6, 6, 6, 6]),
                (QUESTION_NAME, TYPE_AAAA, &[0; 16]),
                (QUESTION_NAME, TYPE_A, &[10, 0, 0, 2]),
            ],
        );
        let expected = [IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2])];
        assert_eq!(parse_reply(&r, 7, "WEB.example", TYPE_A), Some(Reply::Addresses(expected.to_vec())));
        assert_eq!(parse_reply(&r, 8, "web.example", TYPE_A), None, "another id");
        assert_eq!(parse_reply(&r, 7, "web.example2", TYPE_A), None, "another question");
        assert_eq!(parse_reply(&r, 7, "web.example", TYPE_AAAA), None, "another type");
        assert_eq!(parse_reply(&q, 7, "web.example", TYPE_A), None, "the query itself");
    }

    #[test]
    fn errors_and_truncation_are_reported() {
        let q = query(7, "nope", TYPE_A).unwrap();
        assert_eq!(parse_reply(&reply(&q, 3, &[]), 7, "nope", TYPE_A), Some(Reply::NoSuchName));
        assert_eq!(parse_reply(&reply(&q, 2, &[]), 7, "nope", TYPE_A), Some(Reply::Failed));
        assert_eq!(parse_reply(&reply(&q, 0, &[]), 7, "nope", TYPE_A), Some(Reply::Addresses(Vec::new())));
        let mut truncated = reply(&q, 0, &[]);
        truncated[2] |= 0x02;
        assert_eq!(parse_reply(&truncated, 7, "nope", TYPE_A), Some(Reply::Failed));
    }

    #[test]
    fn hostile_replies_end_in_none_or_an_answer_never_a_loop_or_a_panic() {
        let q = query(7, "a", TYPE_A).unwrap();
        // A pointer to itself, one forwards, and a label running past the end.
        for owner in [&b"\xc0\x13"[..], b"\xc0\xff", b"\x3fabc", b"\x80", b"\x01"] {
            let r = reply(&q, 0, &[(owner, TYPE_A, &[1, 2, 3, 4])]);
            assert_eq!(parse_reply(&r, 7, "a", TYPE_A), None, "{owner:?}");
        }
        // CNAME loops end.
        let r = reply(&q, 0, &[(QUESTION_NAME, TYPE_CNAME, b"\x01b\x00"), (b"\x01b\x00", TYPE_CNAME, QUESTION_NAME)]);
        assert_eq!(parse_reply(&r, 7, "a", TYPE_A), Some(Reply::Addresses(Vec::new())));
        // Every prefix and every single-byte change of a good reply.
        let good = reply(&q, 0, &[(QUESTION_NAME, TYPE_A, &[1, 2, 3, 4])]);
        for len in 0..good.len() {
            let _ = parse_reply(&good[..len], 7, "a", TYPE_A);
        }
        for at in 0..good.len() {
            for byte in [0, 1, 0x3f, 0x40, 0xc0, 0xff] {
                let mut bad = good.clone();
                bad[at] = byte;
                let _ = parse_reply(&bad, 7, "a", TYPE_A);
            }
        }
    }
}

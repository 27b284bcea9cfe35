//! A request head: what [`parse`] makes of the bytes a connection has delivered so far — not
//! yet complete, complete (with how its body is framed and whether the connection stays open
//! after it), or refused with the status the server answers before closing.

use crate::body::Framing;
use alloc::string::String;
use alloc::vec::Vec;

/// The longest request head accepted (request line and headers).
pub const MAX_HEAD: usize = 32 * 1024;
/// The most header lines accepted.
pub const MAX_HEADERS: usize = 100;

/// A complete request head.
#[derive(Debug, PartialEq, Eq)]
pub struct Head {
    pub method: String,
    /// The request target as sent (origin form: path and query).
    pub target: String,
    /// The `Host` header, if any: the request's authority.
    pub authority: Option<String>,
    /// Every header, names lowercased, in the order sent.
    pub headers: Vec<(String, Vec<u8>)>,
    pub framing: Framing,
    /// Whether the connection may carry another request after this one's response.
    pub keep_alive: bool,
    /// The client waits for `100 Continue` before sending the body.
    pub expect_continue: bool,
    /// HTTP/1.0 (no chunked responses).
    pub http10: bool,
}

/// Why a head is refused: the response status says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not HTTP/1.x, or a framing that cannot be trusted (400).
    BadRequest,
    /// The head is longer than [`MAX_HEAD`] or has more than [`MAX_HEADERS`] lines (431).
    HeadTooLarge,
    /// A transfer coding other than `chunked` (501).
    UnknownCoding,
}

impl Refusal {
    /// The status line's code and reason.
    pub fn status(self) -> (u16, &'static str) {
        match self {
            Refusal::BadRequest => (400, "Bad Request"),
            Refusal::HeadTooLarge => (431, "Request Header Fields Too Large"),
            Refusal::UnknownCoding => (501, "Not Implemented"),
        }
    }
}

/// What the bytes so far hold.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Not a whole head yet (and not too long so far).
    Partial,
    /// A head and how many bytes of the buffer it took; the body (or the next request) follows.
    Complete(Head, usize),
}

/// Parses the start of `buf` as a request head.
pub fn parse(buf: &[u8]) -> Result<Parsed, Refusal> {
    let mut lines = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut lines);
    let len = match request.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => return Err(Refusal::HeadTooLarge),
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(httparse::Error::TooManyHeaders) => return Err(Refusal::HeadTooLarge),
        Err(_) => return Err(Refusal::BadRequest),
    };
    if len > MAX_HEAD {
        return Err(Refusal::HeadTooLarge);
    }
    let (Some(method), Some(target), Some(version)) = (request.method, request.path, request.version) else {
        return Err(Refusal::BadRequest);
    };
    let http10 = version == 0;
    let mut head = Head {
        method: method.into(),
        target: target.into(),
        authority: None,
        headers: Vec::with_capacity(request.headers.len()),
        framing: Framing::Length(0),
        keep_alive: !http10,
        expect_continue: false,
        http10,
    };
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut codings = false;
    for line in request.headers.iter() {
        let name = line.name.to_ascii_lowercase();
        let value = line.value;
        match name.as_str() {
            "content-length" => {
                let parsed = parse_length(value).ok_or(Refusal::BadRequest)?;
                // Repeated lengths must agree (RFC 9112 §6.3).
                if length.is_some_and(|l| l != parsed) {
                    return Err(Refusal::BadRequest);
                }
                length = Some(parsed);
            }
            "transfer-encoding" => {
                for coding in value.split(|&b| b == b',').map(trim) {
                    if chunked {
                        // Chunked must be the last coding.
                        return Err(Refusal::BadRequest);
                    }
                    if coding.eq_ignore_ascii_case(b"chunked") {
                        chunked = true;
                    } else {
                        codings = true;
                    }
                }
            }
            "connection" => {
                for option in value.split(|&b| b == b',').map(trim) {
                    if option.eq_ignore_ascii_case(b"close") {
                        head.keep_alive = false;
                    } else if option.eq_ignore_ascii_case(b"keep-alive") && http10 {
                        head.keep_alive = true;
                    }
                }
            }
            "expect" if trim(value).eq_ignore_ascii_case(b"100-continue") => head.expect_continue = !http10,
            "host" if head.authority.is_none() => {
                head.authority = Some(core::str::from_utf8(value).map_err(|_| Refusal::BadRequest)?.into());
            }
            _ => {}
        }
        head.headers.push((name, value.into()));
    }
    head.framing = match (chunked || codings, length) {
        // Both say where the body ends: the classic smuggling ambiguity, refused.
        (true, Some(_)) => return Err(Refusal::BadRequest),
        (true, None) if codings => return Err(Refusal::UnknownCoding),
        (true, None) if http10 => return Err(Refusal::BadRequest),
        (true, None) => Framing::Chunked,
        (false, length) => Framing::Length(length.unwrap_or(0)),
    };
    Ok(Parsed::Complete(head, len))
}

/// A `Content-Length` value: decimal digits only, no sign, no overflow.
fn parse_length(value: &[u8]) -> Option<u64> {
    let digits = trim(value);
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(start, |e| e + 1);
    &bytes[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use alloc::vec;

    fn complete(text: &str) -> (Head, usize) {
        match parse(text.as_bytes()) {
            Ok(Parsed::Complete(head, len)) => (head, len),
            other => panic!("{text:?}: {other:?}"),
        }
    }

    #[test]
    fn a_simple_get_keeps_the_connection() {
        let (head, len) = complete("GET /a?b=c HTTP/1.1\r\nHost: example:80\r\nX-Y: z\r\n\r\nnext");
        assert_eq!(len, 49);
        assert_eq!((head.method.as_str(), head.target.as_str()), ("GET", "/a?b=c"));
        assert_eq!(head.authority.as_deref(), Some("example:80"));
        assert_eq!(head.headers, vec![("host".into(), b"example:80".to_vec()), ("x-y".into(), b"z".to_vec())]);
        assert_eq!(head.framing, Framing::Length(0));
        assert!(head.keep_alive && !head.http10 && !head.expect_continue);
    }

    #[test]
    fn partial_heads_wait_and_long_ones_are_refused() {
        assert_eq!(parse(b"GET / HTTP/1.1\r\nHost: a\r\n"), Ok(Parsed::Partial));
        assert_eq!(parse(b""), Ok(Parsed::Partial));
        let long = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(MAX_HEAD));
        assert_eq!(parse(long.as_bytes()), Err(Refusal::HeadTooLarge));
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: v\r\n")).collect();
        assert_eq!(parse(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes()), Err(Refusal::HeadTooLarge));
        assert_eq!(parse(b"GARBAGE\r\n\r\n"), Err(Refusal::BadRequest));
        assert_eq!(parse(b"GET / HTTP/2.0\r\n\r\n"), Err(Refusal::BadRequest));
    }

    #[test]
    fn framing_follows_rfc_9112_and_refuses_ambiguity() {
        let framing = |headers: &str| parse(format!("POST / HTTP/1.1\r\n{headers}\r\n").as_bytes());
        let ok = |headers: &str| match framing(headers) {
            Ok(Parsed::Complete(head, _)) => head.framing,
            other => panic!("{headers:?}: {other:?}"),
        };
        assert_eq!(ok("Content-Length: 42\r\n"), Framing::Length(42));
        assert_eq!(ok("Content-Length: 7\r\ncontent-length: 7\r\n"), Framing::Length(7));
        assert_eq!(ok("Transfer-Encoding: chunked\r\n"), Framing::Chunked);
        assert_eq!(ok("Transfer-Encoding: CHUNKED \r\n"), Framing::Chunked);
        assert_eq!(ok(""), Framing::Length(0));
        assert_eq!(framing("Content-Length: 7\r\nContent-Length: 8\r\n"), Err(Refusal::BadRequest));
        assert_eq!(framing("Content-Length: -1\r\n"), Err(Refusal::BadRequest));
        assert_eq!(framing("Content-Length: +1\r\n"), Err(Refusal::BadRequest));
        assert_eq!(framing("Content-Length: 1 2\r\n"), Err(Refusal::BadRequest));
        assert_eq!(framing("Content-Length: 99999999999999999999\r\n"), Err(Refusal::BadRequest));
        assert_eq!(framing("Transfer-Encoding: chunked\r\nContent-Length: 3\r\n"), Err(Refusal::BadRequest));
        assert_eq!(framing("Transfer-Encoding: chunked, gzip\r\n"), Err(Refusal::BadRequest));
        assert_eq!(framing("Transfer-Encoding: gzip\r\n"), Err(Refusal::UnknownCoding));
        assert_eq!(framing("Transfer-Encoding: gzip, chunked\r\n"), Err(Refusal::UnknownCoding));
    }

    #[test]
    fn connection_options_and_expectations() {
        let (head, _) = complete("GET / HTTP/1.1\r\nConnection: Close\r\n\r\n");
        assert!(!head.keep_alive);
        let (head, _) = complete("GET / HTTP/1.0\r\n\r\n");
        assert!(!head.keep_alive && head.http10);
        let (head, _) = complete("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert!(head.keep_alive);
        let (head, _) = complete("PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n");
        assert!(head.expect_continue);
        assert_eq!(parse(b"GET / HTTP/1.1\r\nHost: \xff\r\n\r\n"), Err(Refusal::BadRequest));
    }

    /// Every prefix of a valid head is partial, and no byte flip panics or claims more than
    /// the buffer holds.
    #[test]
    fn prefixes_and_corruptions() {
        let text = b"POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
        for end in 0..text.len() {
            assert_eq!(parse(&text[..end]), Ok(Parsed::Partial), "prefix {end}");
        }
        for at in 0..text.len() {
            for flip in [0u8, b'\n', b'\r', b':', b' ', 0xff] {
                let mut bytes = text.to_vec();
                bytes[at] = flip;
                if let Ok(Parsed::Complete(_, len)) = parse(&bytes) {
                    assert!(len <= bytes.len());
                }
            }
        }
    }
}

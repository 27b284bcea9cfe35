//! The client side, for `wasi:http/outgoing-handler`: a request head to send, and what a
//! server's response head says (status, headers, where its body ends). The server is as
//! untrusted as a client: heads are bounded as requests are, and a response whose framing is
//! ambiguous is refused.

use crate::body::Framing;
use crate::request::{MAX_HEAD, MAX_HEADERS};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// A request head. `headers` are the component's (checked by `wasi:http/types`: valid, none
/// forbidden); `host` comes from `authority`, and the framing header from `framing` (`None`:
/// no body).
pub fn request_head(
    method: &str,
    target: &str,
    authority: &str,
    headers: &[(String, Vec<u8>)],
    framing: Option<Framing>,
) -> Vec<u8> {
    let mut out = format!("{method} {target} HTTP/1.1\r\nhost: {authority}\r\n").into_bytes();
    for (name, value) in headers {
        if name == "content-length" || name == "host" || name == "transfer-encoding" {
            continue;
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    match framing {
        Some(Framing::Length(n)) => out.extend_from_slice(format!("content-length: {n}\r\n").as_bytes()),
        Some(Framing::Chunked) => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Some(Framing::UntilClose) | None => {}
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// A response head.
#[derive(Debug, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    /// Names lowercased, in the order sent.
    pub headers: Vec<(String, Vec<u8>)>,
    pub framing: Framing,
}

/// What the bytes received so far hold.
#[derive(Debug, PartialEq, Eq)]
pub enum ParsedResponse {
    Partial,
    /// A 1xx response of this many bytes, to skip (the final response follows).
    Informational(usize),
    /// The final response head and its length.
    Complete(ResponseHead, usize),
}

/// The response is malformed or too large.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseError;

/// Parses a response head; `head_request`: the request was `HEAD` (no body follows).
pub fn parse_response(buf: &[u8], head_request: bool) -> Result<ParsedResponse, ResponseError> {
    let mut lines = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut lines);
    let len = match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD => len,
        Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD => return Ok(ParsedResponse::Partial),
        _ => return Err(ResponseError),
    };
    let status = response.code.ok_or(ResponseError)?;
    if (100..200).contains(&status) {
        return Ok(ParsedResponse::Informational(len));
    }
    let mut headers = Vec::with_capacity(response.headers.len());
    let (mut length, mut chunked, mut codings) = (None::<u64>, false, false);
    for line in response.headers.iter() {
        let name = line.name.to_ascii_lowercase();
        match name.as_str() {
            "content-length" => {
                let text = core::str::from_utf8(line.value).map_err(|_| ResponseError)?.trim();
                if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(ResponseError);
                }
                let value: u64 = text.parse().map_err(|_| ResponseError)?;
                if length.is_some_and(|l| l != value) {
                    return Err(ResponseError);
                }
                length = Some(value);
            }
            "transfer-encoding" => {
                for coding in line.value.split(|&b| b == b',') {
                    let coding = coding.trim_ascii();
                    if chunked {
                        return Err(ResponseError);
                    }
                    if coding.eq_ignore_ascii_case(b"chunked") {
                        chunked = true;
                    } else {
                        codings = true;
                    }
                }
            }
            _ => {}
        }
        headers.push((name, line.value.into()));
    }
    let framing = if head_request || status == 204 || status == 304 {
        Framing::Length(0)
    } else if chunked || codings {
        if length.is_some() {
            return Err(ResponseError);
        }
        if chunked {
            Framing::Chunked
        } else {
            Framing::UntilClose
        }
    } else {
        length.map_or(Framing::UntilClose, Framing::Length)
    };
    Ok(ParsedResponse::Complete(ResponseHead { status, headers, framing }, len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn request_heads_carry_host_and_framing_only_once() {
        let headers = [("x-a".to_string(), b"1".to_vec()), ("content-length".to_string(), b"99".to_vec())];
        let head = request_head("POST", "/p?q", "svc:8080", &headers, Some(Framing::Length(3)));
        assert_eq!(head, b"POST /p?q HTTP/1.1\r\nhost: svc:8080\r\nx-a: 1\r\ncontent-length: 3\r\n\r\n");
        let head = request_head("GET", "/", "h", &[], None);
        assert_eq!(head, b"GET / HTTP/1.1\r\nhost: h\r\n\r\n");
        let head = request_head("PUT", "/", "h", &[], Some(Framing::Chunked));
        assert!(head.ends_with(b"transfer-encoding: chunked\r\n\r\n"));
    }

    #[test]
    fn response_framing() {
        let framing = |text: &str, head: bool| match parse_response(text.as_bytes(), head) {
            Ok(ParsedResponse::Complete(r, len)) => {
                assert_eq!(len, text.len());
                Ok(r.framing)
            }
            other => Err(other),
        };
        assert_eq!(framing("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", false), Ok(Framing::Length(5)));
        assert_eq!(framing("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", true), Ok(Framing::Length(0)));
        assert_eq!(framing("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n", false), Ok(Framing::Chunked));
        assert_eq!(framing("HTTP/1.1 200 OK\r\n\r\n", false), Ok(Framing::UntilClose));
        assert_eq!(framing("HTTP/1.1 204 No Content\r\n\r\n", false), Ok(Framing::Length(0)));
        assert_eq!(framing("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n", false), Ok(Framing::UntilClose));
        assert!(framing("HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n", false).is_err());
        assert!(framing("HTTP/1.1 200 OK\r\ncontent-length: 1\r\ntransfer-encoding: chunked\r\n\r\n", false).is_err());
        assert!(framing("HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n", false).is_err());
        assert_eq!(
            parse_response(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1", false),
            Ok(ParsedResponse::Informational(25))
        );
        assert_eq!(parse_response(b"HTTP/1.1 200 OK\r\n", false), Ok(ParsedResponse::Partial));
        assert_eq!(parse_response(b"garbage\r\n\r\n", false), Err(ResponseError));
        let huge = alloc::format!("HTTP/1.1 200 OK\r\nx: {}", "a".repeat(MAX_HEAD));
        assert_eq!(parse_response(huge.as_bytes(), false), Err(ResponseError));
    }

    #[test]
    fn response_headers_are_lowercased_in_order() {
        let Ok(ParsedResponse::Complete(head, _)) =
            parse_response(b"HTTP/1.1 418 Teapot\r\nX-B: 2\r\nx-a: 1\r\nContent-Length: 0\r\n\r\n", false)
        else {
            panic!()
        };
        assert_eq!(head.status, 418);
        let names: Vec<&str> = head.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["x-b", "x-a", "content-length"]);
    }
}

//! A response as bytes: the head (status line, the component's headers, and the framing
//! headers only the server writes) and body chunks.

use alloc::format;
use alloc::vec::Vec;

/// How the server delimits a response body it sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delimit {
    /// `Content-Length` (given by the component, or known because the body ended before
    /// anything was sent).
    Length(u64),
    /// `Transfer-Encoding: chunked` (an HTTP/1.1 client, a body still being written).
    Chunked,
    /// The body ends when the connection closes (HTTP/1.0 clients).
    Close,
    /// No body may follow: 1xx, 204 and 304 responses, and answers to `HEAD` (any
    /// `Content-Length` the component set is kept).
    None,
}

/// The reason phrase for `status` (empty for codes without a common one: allowed by RFC 9112).
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

/// Whether a response with `status` may carry a body at all.
pub fn may_have_body(status: u16) -> bool {
    !(status < 200 || status == 204 || status == 304)
}

/// The response head. `headers` are the component's (checked by `wasi:http/types` already:
/// valid, none forbidden); `Content-Length` among them is dropped unless `delimit` is
/// `Length` or `None`, and written here from `delimit` otherwise.
pub fn head(
    status: u16,
    headers: &[(impl AsRef<str>, impl AsRef<[u8]>)],
    delimit: Delimit,
    keep_alive: bool,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(format!("HTTP/1.1 {status} {}\r\n", reason(status)).as_bytes());
    for (name, value) in headers {
        let name = name.as_ref();
        if name.eq_ignore_ascii_case("content-length") && !matches!(delimit, Delimit::None) {
            continue;
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_ref());
        out.extend_from_slice(b"\r\n");
    }
    match delimit {
        Delimit::Length(n) => out.extend_from_slice(format!("content-length: {n}\r\n").as_bytes()),
        Delimit::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Delimit::Close | Delimit::None => {}
    }
    if !keep_alive {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Appends `bytes` as one chunk (nothing for no bytes: an empty chunk would end the body).
pub fn chunk(out: &mut Vec<u8>, bytes: &[u8]) {
    if !bytes.is_empty() {
        out.extend_from_slice(format!("{:x}\r\n", bytes.len()).as_bytes());
        out.extend_from_slice(bytes);
        out.extend_from_slice(b"\r\n");
    }
}

/// Appends the last chunk and the trailers.
pub fn last_chunk(out: &mut Vec<u8>, trailers: &[(impl AsRef<str>, impl AsRef<[u8]>)]) {
    out.extend_from_slice(b"0\r\n");
    for (name, value) in trailers {
        out.extend_from_slice(name.as_ref().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_ref());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::{Decoder, Framing};

    const NONE: [(&str, &[u8]); 0] = [];

    #[test]
    fn heads_say_how_the_body_ends() {
        let headers = [("content-type", &b"text/plain"[..]), ("content-length", b"99")];
        assert_eq!(
            head(200, &headers, Delimit::Length(5), true),
            b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 5\r\n\r\n"
        );
        assert_eq!(
            head(404, &NONE, Delimit::Chunked, false),
            b"HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        );
        assert_eq!(
            head(299, &headers, Delimit::None, true),
            b"HTTP/1.1 299 \r\ncontent-type: text/plain\r\ncontent-length: 99\r\n\r\n"
        );
        assert!(!may_have_body(204) && !may_have_body(304) && !may_have_body(101) && may_have_body(200));
    }

    #[test]
    fn chunks_decode_back() {
        let mut out = Vec::new();
        chunk(&mut out, b"hello ");
        chunk(&mut out, b"");
        chunk(&mut out, &[b'x'; 300]);
        last_chunk(&mut out, &[("x-t", b"1")]);
        let mut body = Vec::new();
        let mut decoder = Decoder::new(Framing::Chunked);
        assert_eq!(decoder.decode(&out, &mut body, usize::MAX), Ok(out.len()));
        assert!(decoder.done());
        assert_eq!(body.len(), 306);
        assert!(body.starts_with(b"hello x"));
    }
}

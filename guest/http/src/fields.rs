//! Header names and values as `wasi:http/types.fields` checks them, and the headers a
//! component may not set (those that say how the connection or the message is framed, which
//! only the server decides; wasmtime-wasi-http's default list).

/// Headers a component may neither read on a request nor set on a response.
pub const FORBIDDEN: [&str; 9] = [
    "connection",
    "host",
    "http2-settings",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
];

/// Whether `name` (any case) is one of [`FORBIDDEN`].
pub fn is_forbidden(name: &str) -> bool {
    FORBIDDEN.iter().any(|f| f.eq_ignore_ascii_case(name))
}

/// A field name is a non-empty RFC 9110 token.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(is_token_byte)
}

/// A field value has no control bytes but tab (so no CR, LF or NUL), as the `http` crate
/// (wasmtime's) checks `HeaderValue`s.
pub fn valid_value(value: &[u8]) -> bool {
    value.iter().all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_values_and_forbidden_headers() {
        assert!(valid_name("content-type") && valid_name("X-Custom_1") && valid_name("a!b"));
        assert!(!valid_name("") && !valid_name("malformed header name") && !valid_name("a:b") && !valid_name("é"));
        assert!(valid_value(b"ok value") && valid_value(b"") && valid_value("é".as_bytes()));
        assert!(!valid_value(b"bad\nvalue") && !valid_value(b"bad\rvalue") && !valid_value(b"nul\0"));
        assert!(valid_value(b" spaced\t") && !valid_value(b"del\x7f"));
        assert!(is_forbidden("Connection") && is_forbidden("HOST") && is_forbidden("transfer-encoding"));
        assert!(!is_forbidden("content-length") && !is_forbidden("content-type"));
        assert!(FORBIDDEN.windows(2).all(|w| w[0] < w[1]));
    }
}

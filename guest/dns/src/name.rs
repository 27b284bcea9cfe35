//! A name as `wasi:sockets/ip-name-lookup` reads it: wasmtime hands the name to
//! `url::Host::parse` (the WHATWG host parser: percent-decoding, IPv4 in any of its URL forms,
//! bracketed IPv6, lower-cased domains) and, failing that, to the IPv6 parser. This is that
//! parser for ASCII names; a name that is not ASCII once decoded is refused (wasmtime would
//! convert it to Punycode — documented in docs/networking.md), and labels already in Punycode
//! (`xn--…`) are taken as given.

use alloc::string::String;
use alloc::vec::Vec;
use core::net::{Ipv4Addr, Ipv6Addr};

/// What a name is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Host {
    V4(Ipv4Addr),
    V6(Ipv6Addr),
    /// Lower-case ASCII.
    Domain(String),
}

/// The name is neither an address nor a domain (`invalid-argument`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidName;

/// Reads `name` as wasmtime's `resolve-addresses` does.
pub fn parse_host(name: &str) -> Result<Host, InvalidName> {
    if let Some(inner) = name.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or(InvalidName)?;
        return inner.parse().map(Host::V6).map_err(|_| InvalidName);
    }
    match domain(name) {
        Ok(host) => Ok(host),
        Err(InvalidName) => name.parse().map(Host::V6).map_err(|_| InvalidName),
    }
}

fn domain(name: &str) -> Result<Host, InvalidName> {
    let decoded = percent_decode(name.as_bytes());
    if decoded.iter().any(|&b| !b.is_ascii() || forbidden(b)) {
        return Err(InvalidName);
    }
    let domain: String = decoded.iter().map(|&b| char::from(b.to_ascii_lowercase())).collect();
    if domain.is_empty() {
        return Err(InvalidName);
    }
    if ends_in_a_number(&domain) {
        return ipv4(&domain).map(Host::V4);
    }
    Ok(Host::Domain(domain))
}

/// The URL standard's forbidden domain code points among ASCII ones.
fn forbidden(b: u8) -> bool {
    b <= b' ' || b == 0x7f || b"%#/:<>?@[\\]^|".contains(&b)
}

fn percent_decode(input: &[u8]) -> Vec<u8> {
    let hex = |b: u8| char::from(b).to_digit(16);
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        let escaped =
            (input[i] == b'%').then(|| Some(hex(*input.get(i + 1)?)? * 16 + hex(*input.get(i + 2)?)?)).flatten();
        match escaped {
            Some(byte) => {
                out.push(byte as u8);
                i += 3;
            }
            None => {
                out.push(input[i]);
                i += 1;
            }
        }
    }
    out
}

/// The URL standard's "ends in a number".
fn ends_in_a_number(domain: &str) -> bool {
    let mut parts = domain.rsplit('.');
    let mut last = parts.next().unwrap_or("");
    if last.is_empty() {
        match parts.next() {
            Some(before) => last = before,
            None => return false,
        }
    }
    (!last.is_empty() && last.bytes().all(|b| b.is_ascii_digit())) || ipv4_number(last).is_ok()
}

/// The URL standard's IPv4 number parser: `Ok(None)` for a number past `u32`.
fn ipv4_number(part: &str) -> Result<Option<u32>, InvalidName> {
    if part.is_empty() {
        return Err(InvalidName);
    }
    let (digits, radix) = if let Some(hex) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
        (hex, 16)
    } else if part.len() >= 2 && part.starts_with('0') {
        (&part[1..], 8)
    } else {
        (part, 10)
    };
    if digits.is_empty() {
        return Ok(Some(0));
    }
    if !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(InvalidName);
    }
    Ok(u32::from_str_radix(digits, radix).ok())
}

/// The URL standard's IPv4 parser (`127.1`, `0x7f.0.0.1`, `2130706433` …).
fn ipv4(domain: &str) -> Result<Ipv4Addr, InvalidName> {
    let mut parts: Vec<&str> = domain.split('.').collect();
    if parts.last() == Some(&"") {
        parts.pop();
    }
    if parts.is_empty() || parts.len() > 4 {
        return Err(InvalidName);
    }
    let mut numbers = Vec::with_capacity(parts.len());
    for part in parts {
        numbers.push(ipv4_number(part)?.ok_or(InvalidName)?);
    }
    let mut address = numbers.pop().ok_or(InvalidName)?;
    if address > u32::MAX >> (8 * numbers.len() as u32) || numbers.iter().any(|&n| n > 255) {
        return Err(InvalidName);
    }
    for (i, n) in numbers.iter().enumerate() {
        address += n << (8 * (3 - i as u32));
    }
    Ok(Ipv4Addr::from(address))
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::string::ToString;

    /// What wasmtime 48 makes of `name` (`wasmtime_wasi::sockets::ip_name_lookup`).
    fn wasmtime(name: &str) -> Option<Host> {
        match url::Host::parse(name) {
            Ok(url::Host::Domain(domain)) => Some(Host::Domain(domain)),
            Ok(url::Host::Ipv4(v4)) => Some(Host::V4(v4)),
            Ok(url::Host::Ipv6(v6)) => Some(Host::V6(v6)),
            Err(_) => name.parse().ok().map(Host::V6),
        }
    }

    #[test]
    fn names_parse_as_wasmtime_parses_them() {
        let names = [
            "localhost",
            "Example.COM",
            "example.com.",
            "a..b",
            ".",
            "..",
            "",
            " ",
            "a b",
            "a%20b",
            "exa%6Dple.com",
            "%41",
            "%",
            "%zz",
            "%2e",
            "a/b",
            "a:80",
            "a@b",
            "a#b",
            "a?b",
            "a^b",
            "a|b",
            "a\\b",
            "a<b",
            "a_b",
            "a-b",
            "-a",
            "a*b",
            "a~b",
            "a!b",
            "a$b",
            "a&b",
            "a'b",
            "a(b)",
            "a+b",
            "a,b",
            "a;b",
            "a=b",
            "a{b}",
            "a\"b",
            "a`b",
            "127.0.0.1",
            "127.1",
            "127.0.1",
            "0x7f.1",
            "0X7F.0.0.1",
            "0177.0.0.1",
            "2130706433",
            "4294967295",
            "4294967296",
            "256.0.0.1",
            "1.256",
            "1.2.3.4.5",
            "1.2.3.4.",
            "1.2.3.4..",
            "0x",
            "0x.0x",
            "00",
            "08",
            "09.1",
            "1.0x",
            "x.1",
            "1.x",
            "a.0x1g",
            "a.123",
            "123.a",
            "a.0x",
            "1e3",
            "::1",
            "[::1]",
            "[::1",
            "::1]",
            "[127.0.0.1]",
            "::ffff:1.2.3.4",
            "[::ffff:1.2.3.4]",
            "fe80::1%eth0",
            "[fe80::1%25eth0]",
            "1::2::3",
            "xn--nxasmq6b",
            "\u{00e9}.com",
            "%C3%A9.com",
            "a\tb",
            "a\u{7f}b",
            "%00",
            "aa.bb.cc.dd.ee",
            "0.0.0.0",
            "0",
            "0.0",
            "10.0.0.300",
            "[]",
            "[:]",
            "[::]",
        ];
        for name in names {
            let ours = parse_host(name).ok();
            let theirs = wasmtime(name);
            let non_ascii = matches!(&theirs, Some(Host::Domain(d)) if d.contains("xn--")) && !name.contains("xn--");
            if non_ascii {
                assert_eq!(ours, None, "{name:?}: not ASCII, refused");
            } else {
                assert_eq!(ours, theirs, "{name:?}");
            }
        }
    }

    #[test]
    fn every_short_ascii_name_parses_as_wasmtime_parses_it() {
        // All strings of up to three characters over an alphabet of the interesting ones.
        let alphabet: std::vec::Vec<char> = "a0x9.:[]%-_/1F".chars().collect();
        let mut names = std::vec![std::string::String::new()];
        for _ in 0..3 {
            let longer: std::vec::Vec<_> =
                names.iter().flat_map(|n| alphabet.iter().map(move |c| std::format!("{n}{c}"))).collect();
            names.extend(longer);
        }
        names.sort();
        names.dedup();
        for name in &names {
            assert_eq!(parse_host(name).ok(), wasmtime(name), "{:?}", name.to_string());
        }
    }
}

//! What a client sends the guest's HTTP server (`wasmcell serve`): any bytes, delivered in any
//! pieces, as a request head and then its body. The parser never panics, never claims more
//! than it was given, agrees with itself however the bytes are split, and the body decoder
//! never takes more input than it was offered nor gives more body than it may.

#![no_main]

use libfuzzer_sys::fuzz_target;
use wasmcell_guest_http::body::Decoder;
use wasmcell_guest_http::request::{self, Parsed};

fuzz_target!(|input: (u16, Vec<u8>)| {
    let (split, bytes) = input;
    let Ok(Parsed::Complete(head, len)) = request::parse(&bytes) else { return };
    assert!(len <= bytes.len() && len <= request::MAX_HEAD);
    // Any prefix that ends before the head does is partial, or refused the same way.
    let cut = usize::from(split) % (len + 1);
    if cut < len {
        assert!(!matches!(request::parse(&bytes[..cut]), Ok(Parsed::Complete(..))));
    }
    // The body, whole and in two pieces, decodes to the same bytes.
    let rest = &bytes[len..];
    let mut whole = Vec::new();
    let mut decoder = Decoder::new(head.framing);
    let Ok(used) = decoder.decode(rest, &mut whole, usize::MAX) else { return };
    assert!(used <= rest.len());
    let at = usize::from(split) % (rest.len() + 1);
    let mut pieces = Vec::new();
    let mut decoder = Decoder::new(head.framing);
    let first = decoder.decode(&rest[..at], &mut pieces, usize::MAX).expect("a prefix of a valid body");
    if at <= used {
        assert_eq!(first, at, "a body stops only at its end");
        let second = decoder.decode(&rest[at..], &mut pieces, usize::MAX).expect("the rest of a valid body");
        assert_eq!(first + second, used);
        assert_eq!(pieces, whole);
    }
    // A bounded read gives at most what it may.
    let mut bounded = Vec::new();
    let _ = Decoder::new(head.framing).decode(rest, &mut bounded, 7);
    assert!(bounded.len() <= 7);
});

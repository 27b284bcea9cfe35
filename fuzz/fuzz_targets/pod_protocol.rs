//! What the shim and a pod's VMM read from each other over the control channel: a VMM taken
//! over by its guest can write anything to the shim (and a shim's requests carry what a tenant
//! put in its spec). Any bytes give messages, an end, or an error — never a panic or a read past
//! the message limit.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::io::BufReader;
use wasmcell_bundle::protocol::{receive, Event, Request};

fuzz_target!(|bytes: &[u8]| {
    let mut events = BufReader::new(bytes);
    for _ in 0..64 {
        match receive::<Event>(&mut events) {
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    let mut requests = BufReader::new(bytes);
    for _ in 0..64 {
        match receive::<Request>(&mut requests) {
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
});

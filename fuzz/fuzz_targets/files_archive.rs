//! The files archive the guest reads in place (a container's root filesystem, packed by the VMM
//! from an image the tenant wrote): any bytes either fail to parse or give entries whose every
//! name, data range and child range can be followed without panicking or looping.

#![no_main]

use libfuzzer_sys::fuzz_target;
use wasmcell_abi::archive::{Archive, Kind};

fuzz_target!(|bytes: &[u8]| {
    let Some(archive) = Archive::parse(bytes) else { return };
    let mut visited = 0u64;
    let mut stack: Vec<u32> = archive.roots().collect();
    while let Some(index) = stack.pop() {
        visited += 1;
        assert!(visited <= u64::from(archive.len()), "an entry was reached twice: the tree loops");
        let entry = archive.entry(index).expect("children and roots are valid entries");
        let _ = (entry.name, entry.data(), entry.mtime_ns);
        if entry.kind == Kind::Dir {
            stack.extend(entry.children());
        }
    }
});

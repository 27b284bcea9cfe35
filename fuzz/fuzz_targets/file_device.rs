//! The file device driven by a hostile guest: any sequence of calls with any argument words and
//! any bytes (paths among them) in its memory, on a real volume directory that sits beside a
//! secret, with symlinks out of it. Asserts: no panic, never more than the handle limit open,
//! a path or buffer out of the workload's memory is a device error, and nothing outside the
//! volume is ever created, changed or removed.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;
use vm_memory::{Bytes, GuestAddress};
use wasmcell_abi::file::{FileCall, Op, Volume, MAX_HANDLES};
use wasmcell_vmm::devices::file::{FileDevice, HostVolume};
use wasmcell_vmm::memory::GuestMemory;

/// The workload's memory: 64 KiB at 1 MiB.
const BASE: u64 = 1 << 20;
const SIZE: u64 = 0x1_0000;
const SECRET: &[u8] = b"the host's secret";

/// `TOP/secret` and the volume `TOP/volume`, made once per process.
fn top() -> &'static PathBuf {
    static TOP: OnceLock<PathBuf> = OnceLock::new();
    TOP.get_or_init(|| {
        let top = std::env::temp_dir().join(format!("wasmcell-fuzz-file-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&top);
        std::fs::create_dir_all(&top).unwrap();
        std::fs::write(top.join("secret"), SECRET).unwrap();
        top
    })
}

/// A fresh volume: a file, a directory, symlinks in and out.
fn fresh_volume() -> PathBuf {
    let volume = top().join("volume");
    let _ = std::fs::remove_dir_all(&volume);
    std::fs::create_dir_all(volume.join("sub")).unwrap();
    std::fs::write(volume.join("a"), b"hello").unwrap();
    std::os::unix::fs::symlink("../secret", volume.join("up")).unwrap();
    std::os::unix::fs::symlink(top().join("secret"), volume.join("abs")).unwrap();
    std::os::unix::fs::symlink("..", volume.join("parent")).unwrap();
    std::os::unix::fs::symlink("sub", volume.join("in")).unwrap();
    volume
}

fuzz_target!(|input: (Vec<u8>, Vec<(u8, [u64; 8])>)| {
    let (bytes, calls) = input;
    let volume = fresh_volume();
    let memory = GuestMemory::from_ranges(&[(GuestAddress(BASE), SIZE as usize)]).unwrap();
    memory.write_slice(&bytes[..bytes.len().min(SIZE as usize)], GuestAddress(BASE)).unwrap();
    let volumes = vec![
        HostVolume::open(&volume, "/data", Volume::Dir).unwrap(),
        HostVolume::open(&volume.join("sub"), "/ro", Volume::ReadOnlyDir).unwrap(),
        HostVolume::open(&volume.join("a"), "/file", Volume::File).unwrap(),
    ];
    let mut device = FileDevice::new(memory, volumes);
    for (op, mut args) in calls.into_iter().take(64) {
        let Some(op) = Op::from_u32(u32::from(op % 18)) else { continue };
        // Mostly small handles, and (but for one in eight) paths and buffers in the memory and
        // short, so that calls get past the first checks; sizes small, to stay fast.
        args[0] %= 600;
        if args[7] & 7 != 0 {
            for at in 1..7 {
                if args[at] > SIZE {
                    args[at] = BASE + args[at] % SIZE;
                } else {
                    args[at] %= 64;
                }
            }
        }
        if op == Op::SetSize {
            args[1] %= 1 << 20;
        }
        args[7] %= 600;
        let _ = device.call(op, &FileCall { args });
        assert!(device.open_handles() <= MAX_HANDLES as usize);
    }
    drop(device);
    let mut outside: Vec<_> = std::fs::read_dir(top()).unwrap().map(|e| e.unwrap().file_name()).collect();
    outside.sort();
    assert_eq!(outside, ["secret", "volume"], "something was made beside the volume");
    assert_eq!(std::fs::read(top().join("secret")).unwrap(), SECRET, "the secret changed");
});

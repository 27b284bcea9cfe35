//! The socket device driven by a hostile guest: any sequence of calls with any argument words
//! and any bytes in its memory. Outgoing traffic is denied (the fuzzer must reach no address
//! but its own), so what runs is opening, binding, listening, options, polls and closes on real
//! host sockets (listeners on loopback only). Asserts: no panic, never more than the socket limit open, and a buffer or poll
//! list out of the workload's memory is a device error, never a read or write there.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::net::Ipv6Addr;
use vm_memory::{Bytes, GuestAddress};
use wasmcell_abi::socket::{Address, Op, SocketCall, MAX_SOCKETS};
use wasmcell_vmm::devices::socket::{poll_now, Network, Outgoing, Resolver, SocketDevice};
use wasmcell_vmm::memory::GuestMemory;

/// The workload's memory: 64 KiB at 1 MiB.
const BASE: u64 = 1 << 20;
const SIZE: usize = 0x1_0000;
const LOOPBACK_V4: [u8; 16] = [127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

fuzz_target!(|input: (Vec<u8>, Vec<(u8, [u64; 8])>)| {
    let (bytes, calls) = input;
    let memory = GuestMemory::from_ranges(&[(GuestAddress(BASE), SIZE)]).unwrap();
    memory.write_slice(&bytes[..bytes.len().min(SIZE)], GuestAddress(BASE)).unwrap();
    let mut device = SocketDevice::new(
        memory,
        Network { outgoing: Outgoing::Denied, name_lookup: Some(Resolver::new(b"nameserver 10.0.0.1\n", b"")) },
    );
    for (op, mut args) in calls.into_iter().take(64) {
        let Some(op) = Op::from_u32(u32::from(op % 17)) else { continue };
        // Mostly small handles, so that calls get past the first check.
        args[0] %= 300;
        if op == Op::Bind {
            // Listeners only on loopback: nothing the fuzzer opens is reachable from outside.
            let mut address = Address::from_words(&args[1..5]);
            address.ip = if address.family == 6 { Ipv6Addr::LOCALHOST.octets() } else { LOOPBACK_V4 };
            args[1..5].copy_from_slice(&address.to_words());
        }
        if op == Op::Poll {
            args[2] = 0;
            if let Ok(mut set) = device.poll_set(&SocketCall { args }) {
                poll_now(&mut set.fds);
                let _ = device.finish_poll(set);
            }
        } else {
            let _ = device.call(op, &SocketCall { args });
        }
        assert!(device.open_sockets() <= MAX_SOCKETS as usize);
    }
});

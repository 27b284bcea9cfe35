//! Self-tests: diagnostics the boot info can ask for instead of normal work. They let the VMM's
//! tests drive, on real KVM, every way a guest ends: exit codes, panics, each kind of fault
//! (W^X, supervisor-only pages, guard pages), hangs and waits.

use crate::{arch, control, log};
use alloc::boxed::Box;
use alloc::vec::Vec;
use wasmcell_abi::memory_map::{IMAGE_START, NULL_GUARD};
use wasmcell_abi::{exit, SelfTest};

/// Runs the requested self-test and returns the exit code to report (if it returns at all).
pub fn run(request: SelfTest) -> u32 {
    match request.kind {
        SelfTest::NONE => 0,
        SelfTest::EXIT => request.arg,
        SelfTest::PANIC => panic!("selftest panic (arg {})", request.arg),
        SelfTest::READ_UNMAPPED => {
            arch::read_u64(NULL_GUARD + 8);
            0
        }
        SelfTest::UD2 => arch::invalid_opcode(),
        SelfTest::HANG => loop {
            core::hint::spin_loop();
        },
        SelfTest::WAIT => {
            control::wait(request.arg.saturating_mul(1000));
            log!("waited {} ms", request.arg);
            0
        }
        SelfTest::WRITE_CODE => {
            arch::write_u64(IMAGE_START, 0);
            0
        }
        SelfTest::WRITE_SYSTEM => {
            arch::write_u64(arch::SYSTEM_PAGE, 0);
            0
        }
        SelfTest::STACK_OVERFLOW => {
            recurse(0);
            0
        }
        SelfTest::HEAP => heap_pattern(request.arg as usize),
        SelfTest::HOLD_LOCK => {
            crate::sync::hold_a_lock(request.arg);
            loop {
                core::hint::spin_loop();
            }
        }
        _ => exit::UNKNOWN_SELFTEST,
    }
}

/// Recurses without bound, keeping a page-sized frame alive so the guard page is reached fast.
#[inline(never)]
#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    let frame = core::hint::black_box([depth; 512]);
    recurse(depth + 1) + frame[depth as usize % 512]
}

/// Allocates `count` boxes of growing sizes, each filled with its own index, checks every
/// byte, frees half, allocates again, checks again. Returns 0, or panics on corruption.
fn heap_pattern(count: usize) -> u32 {
    let fill = |i: usize| Box::<[u8]>::from(alloc::vec![i as u8; 1 + i * 97 % 8192]);
    let mut boxes: Vec<Box<[u8]>> = (0..count).map(fill).collect();
    for round in 0..2 {
        for (i, b) in boxes.iter().enumerate() {
            assert!(b.iter().all(|&x| x == i as u8), "heap corrupted at box {i} (round {round})");
        }
        for i in (0..count).step_by(2) {
            boxes[i] = fill(i);
        }
    }
    log!("heap pattern of {count} boxes ok");
    0
}

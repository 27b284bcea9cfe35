//! Every way a guest ends, on real KVM, through the VMM library: exit codes, a panic with its
//! message, each kind of fault the page tables and the CPU raise in user mode (unmapped, W^X,
//! system pages, the stack guard, an undefined instruction), a hang stopped by the timeout.
//! The same test on every architecture; only the fault's name differs (a page fault and #UD on
//! x86-64, a data abort from EL0 and an undefined instruction on aarch64), so this is what the
//! emulated-arm64 CI stage runs first.

use std::time::Duration;
use wasmcell_abi::memory_map::{vcpu_area, IMAGE_LIMIT, IMAGE_START, VCPU_STACK_GUARD};
use wasmcell_abi::SelfTest;
use wasmcell_vmm::{MemorySize, Outcome, Vm, VmConfig};

/// The fault a user-mode access to a page it may not touch raises, and an undefined instruction.
#[cfg(target_arch = "x86_64")]
mod fault {
    pub const MEMORY: u8 = 14;
    pub const UNDEFINED: u8 = 6;
    /// A page only the kernel's mode may touch.
    pub const SYSTEM_PAGE: u64 = wasmcell_abi::memory_map::GDT;
}
#[cfg(target_arch = "aarch64")]
mod fault {
    pub const MEMORY: u8 = 0x24;
    pub const UNDEFINED: u8 = 0x00;
    pub const SYSTEM_PAGE: u64 = wasmcell_abi::memory_map::EXCEPTION_STUBS;
}

fn run(kind: u32, arg: u32) -> Outcome {
    assert!(std::path::Path::new("/dev/kvm").exists(), "/dev/kvm is missing: these tests boot real KVM microVMs");
    let config = VmConfig {
        selftest: SelfTest { kind, arg },
        memory: MemorySize::from_mib(16).unwrap(),
        timeout: Some(Duration::from_secs(if kind == SelfTest::HANG { 1 } else { 60 })),
        ..Default::default()
    };
    Vm::try_from(config).unwrap().run().unwrap().outcome
}

/// The fault's vector, faulting PC and address; panics on any other outcome.
fn fault(kind: u32) -> (u8, u64, u64) {
    match run(kind, 0) {
        Outcome::GuestFault { vector, rip, cr2, .. } => (vector, rip, cr2),
        other => panic!("self-test {kind}: {other:?}, not a fault"),
    }
}

#[test]
fn exit_codes_and_panics_reach_the_vmm() {
    assert_eq!(run(SelfTest::NONE, 0), Outcome::Exited(0));
    assert_eq!(run(SelfTest::EXIT, 42), Outcome::Exited(42));
    match run(SelfTest::PANIC, 7) {
        Outcome::GuestPanic(message) => assert!(message.starts_with("selftest panic (arg 7)"), "{message}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn user_mode_faults_are_reported_with_their_address() {
    let in_image = |pc: u64| (IMAGE_START..IMAGE_LIMIT).contains(&pc);
    let (vector, pc, addr) = fault(SelfTest::READ_UNMAPPED);
    assert_eq!((vector, addr), (fault::MEMORY, 8), "a read of the null guard page");
    assert!(in_image(pc), "{pc:#x}");
    let (vector, pc, _) = fault(SelfTest::UD2);
    assert_eq!(vector, fault::UNDEFINED);
    assert!(in_image(pc), "{pc:#x}");
    assert_eq!(fault(SelfTest::WRITE_CODE).0, fault::MEMORY);
    assert_eq!(fault(SelfTest::WRITE_CODE).2, IMAGE_START, "the image's code is not writable");
    let (vector, _, addr) = fault(SelfTest::WRITE_SYSTEM);
    assert_eq!((vector, addr), (fault::MEMORY, fault::SYSTEM_PAGE), "system pages are the kernel mode's");
    let (vector, _, addr) = fault(SelfTest::STACK_OVERFLOW);
    let guard = vcpu_area(0) + VCPU_STACK_GUARD;
    assert_eq!(vector, fault::MEMORY);
    assert!((guard..guard + 4096).contains(&addr), "fault at {addr:#x}, not in the stack's guard page");
}

#[test]
fn a_hang_ends_at_the_timeout() {
    assert_eq!(run(SelfTest::HANG, 0), Outcome::Timeout);
}

//! The VMM against a guest that plays the attacker (real KVM): native code at CPL 3 (EL0 on
//! aarch64) in a workload, as a tenant who broke out of Wasm would have. Every attack must end
//! the attacker's workload with a clear outcome — a fault the page tables raised, a device error
//! — and leave the pod's other workloads, its kernel and the host untouched. The same attacks on
//! both architectures; each also has its own instructions the workload's mode must not use.

mod common;

use common::{attack, eventually, pod, Capture};
use std::os::fd::{FromRawFd, OwnedFd};
use std::time::{Duration, Instant};
use wasmcell_abi::devices::console::mmio_base;
use wasmcell_abi::memory_map::{self as map, window_base};
use wasmcell_vmm::{Error, Outcome, Output};

/// The outcome of `args` run in `vm`, next to whatever already runs there.
fn outcome(vm: &wasmcell_vmm::Vm, args: &[&str]) -> Outcome {
    vm.start(attack(args, 64, Output::null())).unwrap().join().unwrap().outcome
}

fn hex(value: u64) -> String {
    format!("{value:#x}")
}

/// What a forbidden access raises, and the pages only the kernel's mode may touch.
#[cfg(target_arch = "x86_64")]
mod fault {
    use wasmcell_abi::memory_map as map;
    /// A page fault, for loads, stores and instruction fetches alike.
    pub const MEMORY: u8 = 14;
    pub const FETCH: u8 = 14;
    pub const SYSTEM_PAGES: [(u64, &str); 3] =
        [(map::GDT, "the GDT"), (map::IDT, "the IDT"), (map::EXCEPTION_STUBS, "the exception stubs")];
}
#[cfg(target_arch = "aarch64")]
mod fault {
    use wasmcell_abi::memory_map as map;
    /// A data abort and an instruction abort from EL0.
    pub const MEMORY: u8 = 0x24;
    pub const FETCH: u8 = 0x20;
    pub const SYSTEM_PAGES: [(u64, &str); 1] = [(map::EXCEPTION_STUBS, "the EL1 vectors")];
}

fn assert_fault(outcome: Outcome, vector: u8, addr: u64, what: &str) {
    match outcome {
        Outcome::GuestFault { vector: v, cr2, .. } if v == vector && cr2 == addr => {}
        other => panic!("{what} at {addr:#x}: expected fault {vector:#x} there, got {other:?}"),
    }
}

fn assert_page_fault(outcome: Outcome, addr: u64, what: &str) {
    assert_fault(outcome, fault::MEMORY, addr, what);
}

#[test]
fn other_vcpus_the_kernel_and_the_system_pages_are_out_of_reach() {
    let vm = pod();
    // A neighbour waits in window 0 on vCPU 0 (the boot vCPU, parked, is the first reused); each
    // attacker then runs on vCPU 1, in window 1.
    let neighbour_out = Capture::default();
    let neighbour =
        vm.start(attack(&["flood", "1", "10"], 64, Output::writer(Box::new(neighbour_out.clone())))).unwrap();
    eventually("the neighbour wrote", || neighbour_out.len() == 0x10);

    let writes = [
        (map::vcpu_area(0) + map::VCPU_BLOCK, "the neighbour's (and boot vCPU's) block"),
        (map::vcpu_area(5) + map::VCPU_BLOCK, "another vCPU's block"),
        (map::PAGE_TABLES, "the page tables"),
        (map::BOOT_INFO, "the boot info"),
        (map::IMAGE_START, "the kernel's code"),
        (window_base(0) + 0x10_0000, "the neighbour's window"),
        (mmio_base(0), "the neighbour's console"),
    ];
    for (addr, what) in writes.into_iter().chain(fault::SYSTEM_PAGES) {
        assert_page_fault(outcome(&vm, &["write", &hex(addr)]), addr, what);
    }
    // Code runs only from the image's code pages: not from the system pages, nor from pages it
    // may read (its own vCPU info, the boot info).
    for (addr, what) in fault::SYSTEM_PAGES
        .into_iter()
        .chain([(map::vcpu_area(1) + map::VCPU_INFO, "its own vCPU info"), (map::BOOT_INFO, "the boot info")])
    {
        assert_fault(outcome(&vm, &["jump", &hex(addr)]), fault::FETCH, addr, what);
    }
    for (addr, what) in [
        (map::vcpu_area(0) + map::VCPU_INFO, "the neighbour's vCPU info (its random seed)"),
        (window_base(0), "the neighbour's module"),
    ] {
        assert_page_fault(outcome(&vm, &["read", &hex(addr)]), addr, what);
    }
    match outcome(&vm, &["write-kernel-heap"]) {
        Outcome::GuestFault { vector: fault::MEMORY, .. } => {}
        other => panic!("the kernel heap: expected a page fault, got {other:?}"),
    }

    // Through it all, the neighbour waited undisturbed.
    neighbour.stopper().stop();
    assert_eq!(neighbour.join().unwrap().outcome, Outcome::Killed);
    assert_eq!(neighbour_out.len(), 0x10);
}

#[cfg(target_arch = "x86_64")]
#[test]
fn privileged_instructions_fault_in_a_workload() {
    let vm = pod();
    for instruction in ["wrmsr", "mov-dr"] {
        match outcome(&vm, &[instruction]) {
            Outcome::GuestFault { vector: 13, .. } => {}
            other => panic!("{instruction}: expected #GP, got {other:?}"),
        }
    }
    // Allowed with IOPL 3 on real hardware, where it changes nothing (interrupts are off);
    // nested KVM without hardware virtualisation refuses it. Either way the workload ends
    // cleanly and the VM goes on.
    match outcome(&vm, &["cli"]) {
        Outcome::Exited(0) | Outcome::GuestFault { vector: 13, .. } => {}
        other => panic!("cli: {other:?}"),
    }
    assert_eq!(outcome(&vm, &["exit", "4"]), Outcome::Exited(4));
}

#[test]
fn each_workload_has_its_own_copy_of_the_kernels_data() {
    let vm = pod();
    // The static starts at 7 in each; each sets it to 99, which no other may see.
    assert_eq!(outcome(&vm, &["data"]), Outcome::Exited(7));
    assert_eq!(outcome(&vm, &["data"]), Outcome::Exited(7), "a fresh copy for the next workload");
    let runs: Vec<_> = (0..4).map(|_| vm.start(attack(&["data"], 32, Output::null())).unwrap()).collect();
    for run in runs {
        assert_eq!(run.join().unwrap().outcome, Outcome::Exited(7));
    }
}

#[cfg(target_arch = "aarch64")]
#[test]
fn el1_instructions_registers_and_undecodable_mmio_end_a_workload() {
    const UNDEFINED: u8 = 0x00;
    const WFI_WFE: u8 = 0x01;
    const SVC: u8 = 0x15;
    const SYSTEM_REGISTER: u8 = 0x18;
    const BRK: u8 = 0x3c;
    let vm = pod();
    let tables = hex(map::PAGE_TABLES);
    let attacks: [(&[&str], u8); 17] = [
        // The address space, the vectors, and the registers the vectors trust: EL1's alone.
        (&["msr-ttbr0", "0"], UNDEFINED),
        (&["msr-vbar", "0"], UNDEFINED),
        (&["msr-tpidrro", "0"], UNDEFINED),
        (&["mrs-tpidr-el1"], UNDEFINED),
        // Unmasking interrupts (no UMA) and the physical timer (no EL0PTEN) trap to EL1.
        (&["daif"], SYSTEM_REGISTER),
        (&["cntp"], SYSTEM_REGISTER),
        // A system call reaches only the VMM's vectors, which send it back as a fault.
        (&["svc"], SVC),
        (&["hvc"], UNDEFINED),
        (&["smc"], UNDEFINED),
        (&["eret"], UNDEFINED),
        (&["brk"], BRK),
        // Idling: trapped to EL1 (nTWI, nTWE clear), never a core parked by a tenant.
        (&["wfi"], WFI_WFE),
        (&["ic-iallu"], UNDEFINED),
        (&["tlbi"], UNDEFINED),
        (&["at", &tables], UNDEFINED),
        (&["dc-ivac", &tables], UNDEFINED),
        // Zeroing a block (DZE), aimed at the page tables: an abort.
        (&["dc-zva", &tables], fault::MEMORY),
    ];
    for (attack, class) in attacks {
        match outcome(&vm, attack) {
            Outcome::GuestFault { vector, .. } if vector == class => {}
            other => panic!("{attack:?}: expected exception class {class:#x}, got {other:?}"),
        }
    }
    // Clean and invalidate (UCI) loses and shows nothing: an abort on hardware (the page tables
    // are not the workload's to read), a no-op under QEMU.
    match outcome(&vm, &["dc-civac", &tables]) {
        Outcome::GuestFault { vector: fault::MEMORY, .. } | Outcome::Exited(0) => {}
        other => panic!("dc civac: {other:?}"),
    }
    // `wfe` traps on hardware; QEMU treats it as a yield, so the workload goes on there.
    match outcome(&vm, &["wfe"]) {
        Outcome::GuestFault { vector: WFI_WFE, .. } | Outcome::Exited(0) => {}
        other => panic!("wfe: {other:?}"),
    }
    // MMIO stores without a syndrome KVM can decode end the workload, not the VMM.
    for attack in [&["stp-control"][..], &["str-writeback", &hex(mmio_base(0) + 0x70 - 4)]] {
        assert_device_error(outcome(&vm, attack), "cannot decode", &format!("{attack:?}"));
    }
    assert_eq!(outcome(&vm, &["exit", "4"]), Outcome::Exited(4), "the pod still runs workloads");
}

#[cfg(target_arch = "x86_64")]
#[test]
fn the_guest_cpuid_is_the_template_or_the_hosts_own() {
    let vm = pod();
    let Outcome::Exited(max) = outcome(&vm, &["cpuid-max"]) else { panic!("cpuid-max did not exit") };
    if max == 0xd {
        // CPUID exits to KVM (VMX/SVM): the guest sees the VMM's template, which has no
        // paravirtual leaves.
        assert_eq!(outcome(&vm, &["cpuid-kvm"]), Outcome::Exited(0));
    } else {
        // Nested KVM without hardware virtualisation (PVM) runs CPL 3 `cpuid` natively: the
        // guest sees exactly what this host process sees, nothing of the VMM's KVM.
        assert_eq!(max, core::arch::x86_64::__cpuid(0).eax & 0xff, "neither the template nor the host's CPUID");
        let host = core::arch::x86_64::__cpuid(0x4000_0000);
        let host_kvm = [host.ebx, host.ecx, host.edx] == [0x4b4d_564b, 0x564b_4d56, 0x4d];
        assert_eq!(outcome(&vm, &["cpuid-kvm"]), Outcome::Exited(u32::from(host_kvm)));
    }
}

/// Held by the tests that keep a CPU busy and by the one that measures this process's CPU time:
/// they never overlap.
static BUSY: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn assert_device_error(outcome: Outcome, needle: &str, what: &str) {
    match outcome {
        Outcome::DeviceError(message) if message.contains(needle) => {}
        other => panic!("{what}: expected a device error saying {needle:?}, got {other:?}"),
    }
}

#[test]
fn rings_aimed_outside_the_workloads_memory_end_it() {
    let vm = pod();
    // The attacker is in window 0 (vCPU 1) each time: the pod runs nothing else.
    let own = window_base(0);
    let targets = [
        ("used", map::PAGE_TABLES, "the page tables"),
        ("used", map::PAGE_TABLES - 4 + 0x1000, "a page-directory entry"),
        ("desc", map::IDT, "the IDT"),
        ("avail", map::GDT, "the GDT"),
        ("used", map::vcpu_area(0) + map::VCPU_BLOCK, "the boot vCPU's block"),
        ("used", map::EXCEPTION_STUBS, "the exception stubs"),
        ("used", window_base(1), "another window"),
        ("used", own, "its own module"),
        ("used", own + (64 << 20) - 0x1_0000, "its own page tables"),
    ];
    for (ring, addr, what) in targets {
        assert_device_error(outcome(&vm, &["ring", "1", ring, &hex(addr)]), "rings lie outside", what);
    }
}

#[test]
fn register_batches_aimed_outside_the_workloads_memory_end_it() {
    let vm = pod();
    let own = window_base(0);
    for (addr, what) in [
        (own, "its own module"),
        (own + (64 << 20) - 0x1_0000, "its own page tables"),
        (own + (3 << 30), "past the end of its window"),
    ] {
        assert_device_error(outcome(&vm, &["batch", &hex(addr)]), "batch of register writes", what);
    }
    // A batch in its own heap gets the checks single writes get: a ring aimed at base RAM's
    // page tables (high half and all) is refused.
    assert_device_error(
        outcome(&vm, &["batch-ring", &hex(map::PAGE_TABLES)]),
        "rings lie outside",
        "the page tables, through a batch",
    );
}

#[test]
fn buffers_aimed_outside_the_workloads_memory_end_it() {
    let vm = pod();
    let own = window_base(0);
    for (addr, len, what) in [
        (map::PAGE_TABLES, 0x1000, "the page tables"),
        (map::vcpu_area(0), 0x1000, "the boot vCPU's area"),
        (own, 0x1000, "its own module"),
        (own + (32 << 20), u32::MAX as u64, "past the end of its window"),
        (window_base(1), 16, "another window"),
    ] {
        assert_device_error(
            outcome(&vm, &["buffer", &hex(addr), &hex(len)]),
            "lies outside the workload's stack and heap",
            what,
        );
    }
}

#[test]
fn a_stop_is_prompt_while_gigabytes_are_queued_to_a_stalled_reader() {
    let _quiet = BUSY.lock().unwrap_or_else(|e| e.into_inner());
    let vm = pod();
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two fds `pipe2` writes.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both fds were just created and are owned here; the read end is never read.
    let (reader, writer) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // 16 chains of 256 MiB each: 4 GiB queued.
    let run = vm.start(attack(&["flood", "10", "10000000"], 512, Output::from_fd(writer))).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // The reader is stalled: the guest waits for its buffers, and nothing spins meanwhile.
    let cpu = common::cpu_time();
    std::thread::sleep(Duration::from_millis(500));
    let spent = common::cpu_time() - cpu;
    assert!(spent < Duration::from_millis(100), "{spent:?} of CPU in 500 ms while the reader is stalled");
    let stopping = Instant::now();
    run.stopper().stop();
    let report = run.join().unwrap();
    assert!(stopping.elapsed() < Duration::from_secs(1), "the stop took {:?}", stopping.elapsed());
    assert_eq!(report.outcome, Outcome::Killed);
    drop(reader);
    // The pod goes on.
    assert_eq!(outcome(&vm, &["exit", "5"]), Outcome::Exited(5));
}

#[test]
fn output_queued_without_a_notify_is_sent_when_the_workload_is_stopped() {
    let _busy = BUSY.lock().unwrap_or_else(|e| e.into_inner());
    let vm = pod();
    let stdout = Capture::default();
    let run = vm.start(attack(&["queue-and-spin", "1000"], 32, Output::writer(Box::new(stdout.clone())))).unwrap();
    // Ample time to queue one buffer; nothing notifies, so nothing is sent while it spins.
    std::thread::sleep(Duration::from_millis(300));
    run.stopper().stop();
    assert_eq!(run.join().unwrap().outcome, Outcome::Killed);
    assert_eq!(stdout.len(), 0x1000, "the queued buffer was not sent at the stop");
}

#[test]
fn a_crash_looping_workload_does_not_wedge_its_pod() {
    let _busy = BUSY.lock().unwrap_or_else(|e| e.into_inner());
    let vm = pod();
    for round in 0..60 {
        let ended = match round % 3 {
            0 => outcome(&vm, &["write", &hex(map::GDT)]),
            1 => outcome(&vm, &["ring", "1", "used", &hex(map::PAGE_TABLES)]),
            _ => {
                let run = vm.start(attack(&["flood", "1", "10"], 32, Output::null())).unwrap();
                run.stopper().stop();
                run.join().unwrap().outcome
            }
        };
        assert!(matches!(ended, Outcome::GuestFault { .. } | Outcome::DeviceError(_) | Outcome::Killed), "{ended:?}");
    }
    assert_eq!(outcome(&vm, &["exit", "5"]), Outcome::Exited(5), "the pod still runs workloads");
}

#[test]
fn a_pod_full_of_workloads_refuses_one_more_clearly() {
    let vm = pod();
    // The boot vCPU parked and is reused: 32 workloads fit at once.
    let runs: Vec<_> =
        (0..map::MAX_VCPUS).map(|_| vm.start(attack(&["flood", "1", "10"], 16, Output::null())).unwrap()).collect();
    let refused = vm.start(attack(&["exit", "0"], 16, Output::null())).err().unwrap();
    assert!(matches!(refused, Error::TooManyVcpus), "{refused:?}");
    assert_eq!(refused.to_string(), "The VM runs 32 vCPUs already");
    let mut runs = runs.into_iter();
    let first = runs.next().unwrap();
    first.stopper().stop();
    first.join().unwrap();
    assert_eq!(outcome(&vm, &["exit", "3"]), Outcome::Exited(3), "a freed vCPU takes the next one");
    for run in runs {
        run.stopper().stop();
        assert_eq!(run.join().unwrap().outcome, Outcome::Killed);
    }
}

#[test]
fn a_workload_maps_its_own_heap_into_its_guarded_memories_and_nothing_else() {
    let vm = pod();
    let g = map::guarded_memory;
    let last = map::MAX_GUARDED_MEMORIES - 1;
    let map_heap = |virt: u64, len: u64, offset: u64| outcome(&vm, &["map-heap", &hex(virt), &hex(len), &hex(offset)]);
    // Its own heap's pages, anywhere in a guarded memory's mappable part: a store through the
    // new address lands in the heap.
    assert_eq!(map_heap(g(0), 0x1_0000, 0), Outcome::Exited(0));
    assert_eq!(map_heap(g(last) + map::GUARDED_MEMORY_MAX - 0x1000, 0x1000, 0x20_0000), Outcome::Exited(0));
    let refused = [
        (g(0) + map::GUARDED_MEMORY_MAX, 0x1000, 0, "the guard region"),
        (g(0) + map::GUARDED_MEMORY_MAX - 0x1000, 0x2000, 0, "a range running into the guard region"),
        (g(map::MAX_GUARDED_MEMORIES), 0x1000, 0, "past the last guarded memory"),
        (map::GUARDED_MEMORIES - 0x1000, 0x1000, 0, "below the first"),
        (g(1) + 0x800, 0x1000, 0, "an unaligned address"),
        (g(1), 0, 0, "nothing"),
        (g(1), 0x1000, 0u64.wrapping_sub(0x10_0000), "a page below the heap"),
        (g(1), 64 << 20, 0, "more than the heap"),
        (g(1), !0xfff, 0, "a length that wraps"),
    ];
    for (virt, len, offset, what) in refused {
        assert_device_error(map_heap(virt, len, offset), "Refused to map", what);
    }
    assert_device_error(outcome(&vm, &["map-twice", &hex(g(2)), "0x2000"]), "Refused to map", "a page mapped twice");
    for what in ["payload", "tables", "base-tables", "boot-heap"] {
        assert_device_error(outcome(&vm, &["map-at", what, &hex(g(3))]), "Refused to map", what);
    }
    // The pod's kernel lived through it all: a workload still runs.
    assert_eq!(outcome(&vm, &["exit", "5"]), Outcome::Exited(5));
}

//! A test-only guest image that plays the attacker: what a tenant who broke out of Wasm has is
//! native code at CPL 3 (EL0 on aarch64) in the guest, with the workload's own vCPU, window and
//! console. The VMM's hostile-guest tests (`vmm/tests/hostile*.rs`) boot it in place of the real
//! guest and name the attack in the workload's arguments; each attack ends with what the VMM
//! makes of it (a fault, a device error, an exit code) and the test checks that it is the safe
//! one.
//!
//! It shares the real guest's entry contract (`wasmcell_abi`) and linker script, but none of its
//! code: it is built beside it (`cargo build` of `guest/kernel` makes both) and never embedded
//! in the `wasmcell` binary.
//!
//! Attacks (`argv[1]`, numbers in hex):
//! - `write ADDR` / `read ADDR`: one 8-byte store or load.
//! - `jump ADDR`: an instruction fetch at ADDR.
//! - `write-kernel-heap`: a store to the kernel heap the boot info names (the boot vCPU's).
//! - instructions the workload's mode must not be able to use, each architecture's own
//!   (`arch/`): x86-64 `wrmsr`, `mov-dr`, `cli`, `cpuid-max` (exit with the highest basic CPUID
//!   leaf, low 8 bits), `cpuid-kvm` (exit 1 if CPUID shows KVM's paravirtual signature);
//!   aarch64 system-register writes and reads (`msr-ttbr0 VALUE`, `msr-vbar VALUE`,
//!   `msr-tpidrro VALUE`, `mrs-tpidr-el1`, `daif`, `cntp`), `svc`, `hvc`, `smc`, `eret`, `brk`,
//!   `wfi`, `wfe`, maintenance (`ic-iallu`, `tlbi`, `at ADDR`, `dc-zva ADDR`, `dc-ivac ADDR`,
//!   `dc-civac ADDR`) and MMIO stores KVM cannot decode (`stp-control`, `str-writeback ADDR`).
//! - `ring QUEUE desc|avail|used ADDR`: set up console queue QUEUE with one ring at ADDR.
//! - `buffer ADDR LEN`: send one stdout buffer at ADDR of LEN bytes.
//! - `device-ready COUNT`: send COUNT DEVICE_READY control messages, never posting a buffer
//!   for the answers, then exit 0.
//! - `flood CHAINS LEN`: queue CHAINS stdout buffers of LEN bytes each (all the same bytes of
//!   the heap), then wait forever for them to come back.
//! - `data`: exit with the value of a static in the image's writable data, after setting it
//!   to 99 (every workload must see its own, fresh copy: 7).
//! - `map-heap VIRT LEN OFFSET`: ask the VMM to map LEN bytes at VIRT to the heap's pages from
//!   OFFSET on; if it does, store through VIRT and exit 0 if the store shows in the heap.
//! - `map-twice VIRT LEN`: map the heap's first LEN bytes at VIRT twice.
//! - `map-at WHAT VIRT`: map one page at VIRT to a page that is not the heap's: `payload`
//!   (the module's code), `tables` (the window's page tables), `base-tables` (the VM's),
//!   `boot-heap` (the kernel heap).
//! - `exit CODE`: exit with CODE.
//!
//! A fault the CPL 0 stubs or the EL1 vectors send back to `_start` (a first argument below
//! `arch::FAULT_LIMIT`) is reported with FAULT_REPORT as the real guest reports one that is no
//! Wasm trap.
#![no_std]
#![no_main]

#[cfg_attr(target_arch = "x86_64", path = "arch/x86_64.rs")]
#[cfg_attr(target_arch = "aarch64", path = "arch/aarch64.rs")]
mod arch;
mod console;

use arch::{control, load, store};
use core::sync::atomic::{AtomicU32, Ordering};
use wasmcell_abi::boot_info::POD;
use wasmcell_abi::control::{self as reg, FaultReport, MapRequest, BOOT_DONE_MAGIC};
use wasmcell_abi::memory_map::{PAGE_SIZE, PAGE_TABLES};
use wasmcell_abi::vcpu::VcpuInfo;
use wasmcell_abi::workload::Workload;
use wasmcell_abi::BootInfo;

/// Exit code of an attack that got through (a test failing on it names the attack).
const BREACH: u32 = 66;
/// Exit code for arguments this image does not understand.
const BAD_ARGUMENTS: u32 = 64;

/// A static in the image's writable data, as it was linked.
static DATA: AtomicU32 = AtomicU32::new(7);

/// # Safety
/// Entered by the VMM only, as the real guest is (`wasmcell_abi`); or by a CPL 0 stub or an EL1
/// vector for a fault, with the vector (exception class), faulting instruction, fault address
/// and error code (syndrome) in the argument registers.
#[no_mangle]
pub unsafe extern "C" fn _start(boot_info: *const BootInfo, vcpu: *const VcpuInfo, addr: u64, error: u64) -> ! {
    if (boot_info as u64) < arch::FAULT_LIMIT {
        let report = FaultReport { vector: boot_info as u64, error_code: error, rip: vcpu as u64, cr2: addr };
        put(&report.to_bytes());
        control(reg::FAULT_REPORT, 0);
        exit(BREACH);
    }
    // SAFETY: the VMM maps both pages readable before the first instruction.
    let (boot, vcpu) = unsafe { (boot_info.read(), vcpu.read()) };
    if !vcpu.has_workload() {
        control(reg::BOOT_DONE, BOOT_DONE_MAGIC);
        if boot.flags & POD != 0 {
            control(reg::PARK, 0);
        }
        exit(0);
    }
    // SAFETY: the VMM maps the workload blob read-only for as long as the vCPU runs.
    let blob = unsafe { core::slice::from_raw_parts(vcpu.workload_addr as *const u8, vcpu.workload_len as usize) };
    let Some(workload) = Workload::parse(blob) else { exit(BAD_ARGUMENTS) };
    let mut args = workload.args().skip(1);
    let name = args.next().unwrap_or_default();
    let rest: [&[u8]; 3] = core::array::from_fn(|_| args.next().unwrap_or_default());
    let mut numbers = rest.iter().map(|a| hex(a).unwrap_or(0));
    let mut number = || numbers.next().unwrap_or(0);
    control(reg::BOOT_DONE, BOOT_DONE_MAGIC);
    match name {
        b"write" => {
            store(number(), 0x4141_4141);
            exit(BREACH)
        }
        b"write-kernel-heap" => {
            // The boot vCPU's heap must not be mapped in a workload's space.
            store(boot.heap_start, 0x4141);
            exit(BREACH)
        }
        b"read" => exit(BREACH ^ (load(number()) as u32 & 1)),
        b"jump" => arch::jump(number()),
        b"ring" => {
            let (queue, which, addr) = (hex(rest[0]).unwrap_or(0) as u32, rest[1], hex(rest[2]).unwrap_or(0));
            let mut device = console::Device::new(vcpu.console_mmio, vcpu.heap_start);
            device.ring_at(queue, which, addr);
            exit(BREACH)
        }
        b"batch" => {
            let mut device = console::Device::new(vcpu.console_mmio, vcpu.heap_start);
            device.batch_at(number());
            exit(BREACH)
        }
        b"batch-ring" => {
            let mut device = console::Device::new(vcpu.console_mmio, vcpu.heap_start);
            device.batch_ring(1, number());
            exit(BREACH)
        }
        b"buffer" => {
            let (addr, len) = (number(), number() as u32);
            let mut device = console::Device::new(vcpu.console_mmio, vcpu.heap_start);
            device.send_stdout(&[(addr, len)]);
            exit(BREACH)
        }
        b"device-ready" => {
            let count = number();
            let mut device = console::Device::new(vcpu.console_mmio, vcpu.heap_start);
            device.device_ready_flood(count);
            exit(0)
        }
        b"flood" => {
            let (chains, len) = (number() as usize, number() as u32);
            let mut device = console::Device::new(vcpu.console_mmio, vcpu.heap_start);
            // Every buffer is the same bytes of the heap, past the rings.
            let buffer = vcpu.heap_start + 0x10_0000;
            device.queue_stdout(buffer, len, chains);
            loop {
                control(reg::WAIT, reg::WAIT_FOREVER);
            }
        }
        b"queue-and-spin" => {
            let mut device = console::Device::new(vcpu.console_mmio, vcpu.heap_start);
            device.queue_silently(vcpu.heap_start + 0x10_0000, number() as u32);
            loop {
                core::hint::spin_loop();
            }
        }
        b"data" => exit(DATA.swap(99, Ordering::Relaxed)),
        b"map-heap" => {
            let (virt, len, offset) = (number(), number(), number());
            map(virt, len, vcpu.heap_start.wrapping_add(offset));
            let probe = virt as *mut u64;
            // SAFETY: the VMM just mapped `virt` to heap memory this vCPU owns (or stopped it).
            unsafe { probe.write_volatile(0x5a5a_5a5a) };
            // SAFETY: the heap is mapped at its own addresses too.
            let seen = unsafe { (vcpu.heap_start.wrapping_add(offset) as *const u64).read_volatile() };
            exit(if seen == 0x5a5a_5a5a { 0 } else { 65 })
        }
        b"map-twice" => {
            let (virt, len) = (number(), number());
            map(virt, len, vcpu.heap_start);
            map(virt, len, vcpu.heap_start);
            exit(BREACH)
        }
        b"map-at" => {
            let phys = match rest[0] {
                b"payload" => vcpu.payload_addr,
                b"tables" => vcpu.heap_end,
                b"base-tables" => PAGE_TABLES,
                b"boot-heap" => boot.heap_start,
                _ => exit(BAD_ARGUMENTS),
            };
            map(hex(rest[1]).unwrap_or(0), PAGE_SIZE, phys / PAGE_SIZE * PAGE_SIZE);
            exit(BREACH)
        }
        b"exit" => exit(number() as u32),
        other => exit(arch::instruction(other, number()).unwrap_or(BAD_ARGUMENTS)),
    }
}

fn hex(text: &[u8]) -> Option<u64> {
    let text = text.strip_prefix(b"0x").unwrap_or(text);
    let mut value = 0u64;
    for &c in text {
        value = value.checked_mul(16)?.checked_add(u64::from((c as char).to_digit(16)?))?;
    }
    Some(value)
}

/// Places `bytes` at the start of the vCPU block's message buffer.
fn put(bytes: &[u8]) {
    let message = arch::vcpu_block() + core::mem::offset_of!(wasmcell_abi::vcpu::VcpuBlock, message) as u64;
    // SAFETY: the block is mapped read-write for this vCPU; the bytes fit its message buffer.
    unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), message as *mut u8, bytes.len()) };
}

/// Asks the VMM to map `len` bytes at `virt` to `phys`.
fn map(virt: u64, len: u64, phys: u64) {
    put(&MapRequest { virt, len, phys }.to_bytes());
    control(reg::MAP_MEMORY, 0);
}

fn exit(code: u32) -> ! {
    control(reg::EXIT, code);
    loop {
        core::hint::spin_loop();
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    exit(wasmcell_abi::exit::PANIC)
}

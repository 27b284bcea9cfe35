//! The GDT, the IDT, each vCPU's TSS, and the CPL 0 exception stubs the IDT points to.
//!
//! The guest itself never loads a descriptor: the VMM sets the segment registers directly
//! (`regs.rs`), TR included, whose base is the vCPU's own TSS (faults on two vCPUs must not share
//! a stack). These tables exist for the CPU's own use when an exception leaves CPL 3: it reads
//! the IDT gate, switches to the TSS's stack and runs a stub. Each stub reports its vector on the
//! control device's FAULT register and halts; the VMM reads the rest of the fault from the vCPU.
//! The stubs are the only CPL 0 code there is, a handful of instructions run once per VM at most.

use crate::devices::serial::SerialConsole;
use crate::memory::GuestMemory;
use vm_memory::{Bytes, GuestAddress};
use wasmcell_abi::control::{FAULT, X86_PORT_BASE, X86_PORT_COUNT};
use wasmcell_abi::memory_map as map;

pub const KERNEL_CODE_SELECTOR: u16 = 0x08;
pub const USER_DATA_SELECTOR: u16 = 0x18 | 3;
pub const USER_CODE_SELECTOR: u16 = 0x20 | 3;
pub const TSS_SELECTOR: u16 = 0x28;
/// Bytes of the 64-bit TSS proper (SDM vol. 3 §8.7); the I/O permission bitmap follows it.
const TSS_BASE_SIZE: usize = 104;
/// Ports the I/O permission bitmap describes; every port above is denied.
const IO_BITMAP_PORTS: usize = 0x600;
/// Size of the TSS with its bitmap and the bitmap's terminating `0xff` byte.
const TSS_SIZE: usize = TSS_BASE_SIZE + IO_BITMAP_PORTS / 8 + 1;
/// `TR.limit`: the TSS's last byte.
pub const TSS_LIMIT: u32 = TSS_SIZE as u32 - 1;
/// GDT entries: null, kernel code, kernel data, user data, user code, TSS (two slots).
pub const GDT_ENTRIES: usize = 7;

/// Guest-physical address of vCPU `index`'s TSS.
pub fn tss_address(index: u32) -> u64 {
    map::vcpu_area(index) + map::VCPU_TSS
}

/// Descriptors with the accessed bit preset, so the CPU never needs to write the GDT. The TSS
/// descriptor names vCPU 0's; every vCPU's TR is set directly, so it is never read.
fn gdt() -> [u64; GDT_ENTRIES] {
    let tss = tss_address(0);
    let tss_low = u64::from(TSS_LIMIT)
        | (tss & 0xff_ffff) << 16
        | 0x89 << 40 // present, DPL 0, available 64-bit TSS
        | ((tss >> 24) & 0xff) << 56;
    [
        0,
        0x0020_9b00_0000_0000, // kernel code: present, DPL 0, long mode
        0x0000_9300_0000_0000, // kernel data
        0x0000_f300_0000_0000, // user data: DPL 3
        0x0020_fb00_0000_0000, // user code: DPL 3, long mode
        tss_low,
        tss >> 32,
    ]
}

/// vCPU `index`'s TSS: `RSP0` for faults from CPL 3, `IST1` for faults that must not trust any
/// stack (both in the vCPU's area), and an I/O permission bitmap that allows exactly the guest's
/// device ports.
///
/// With `IOPL = 3` real hardware never reads the bitmap. Nested KVM without hardware
/// virtualisation (PVM) does: it refuses a CPL 3 `out` whose port the bitmap does not allow,
/// whatever the IOPL (measured: with no bitmap only ports below the TSS limit × 8 worked).
fn tss(index: u32) -> [u8; TSS_SIZE] {
    let area = map::vcpu_area(index);
    let mut tss = [0u8; TSS_SIZE];
    // The exception stack ends at the boot-stack guard page; the IST1 stack below it.
    tss[4..12].copy_from_slice(&(area + map::VCPU_STACK_GUARD).to_le_bytes());
    tss[36..44].copy_from_slice(&(area + map::VCPU_EXCEPTION_STACK).to_le_bytes());
    tss[102..104].copy_from_slice(&(TSS_BASE_SIZE as u16).to_le_bytes());
    let bitmap = &mut tss[TSS_BASE_SIZE..];
    bitmap.fill(0xff);
    let allowed = [(SerialConsole::PORT_BASE, SerialConsole::PORT_COUNT), (X86_PORT_BASE, X86_PORT_COUNT)];
    for (base, count) in allowed {
        for port in usize::from(base)..usize::from(base + count) {
            bitmap[port / 8] &= !(1 << (port % 8));
        }
    }
    tss
}

/// IST slot for vectors whose stack may be unusable: NMI, double fault, machine check.
fn ist_for(vector: u64) -> u64 {
    match vector {
        2 | 8 | 18 => 1,
        _ => 0,
    }
}

/// Interrupt gates (DPL 0, so `int n` from the guest is a #GP, not a call into a stub).
fn idt() -> Vec<u8> {
    let mut idt = Vec::with_capacity(map::EXCEPTION_VECTORS as usize * 16);
    for vector in 0..map::EXCEPTION_VECTORS {
        let handler = map::EXCEPTION_STUBS + vector * map::EXCEPTION_STUB_SIZE;
        let low = (handler & 0xffff)
            | u64::from(KERNEL_CODE_SELECTOR) << 16
            | ist_for(vector) << 32
            | 0x8e << 40 // present, DPL 0, 64-bit interrupt gate
            | ((handler >> 16) & 0xffff) << 48;
        idt.extend_from_slice(&low.to_le_bytes());
        idt.extend_from_slice(&(handler >> 32).to_le_bytes());
    }
    idt
}

/// One stub per vector: `mov dx, FAULT; mov eax, vector; out dx, eax; 1: hlt; jmp 1b`.
fn exception_stubs() -> Vec<u8> {
    let port = (X86_PORT_BASE + FAULT).to_le_bytes();
    let mut stubs = Vec::with_capacity((map::EXCEPTION_VECTORS * map::EXCEPTION_STUB_SIZE) as usize);
    for vector in 0..map::EXCEPTION_VECTORS as u32 {
        let v = vector.to_le_bytes();
        let stub = [0x66, 0xba, port[0], port[1], 0xb8, v[0], v[1], v[2], v[3], 0xef, 0xf4, 0xeb, 0xfd];
        stubs.extend_from_slice(&stub);
        stubs.resize(stubs.len() + map::EXCEPTION_STUB_SIZE as usize - stub.len(), 0xcc);
    }
    stubs
}

/// Number of bytes of IDT, for `IDTR.limit`.
pub const IDT_BYTES: u16 = (map::EXCEPTION_VECTORS * 16) as u16;

/// Writes the GDT, IDT and stubs at their places in the memory map.
pub fn write(memory: &GuestMemory) -> Result<(), vm_memory::GuestMemoryError> {
    let gdt: Vec<u8> = gdt().iter().flat_map(|d| d.to_le_bytes()).collect();
    memory.write_slice(&gdt, GuestAddress(map::GDT))?;
    memory.write_slice(&idt(), GuestAddress(map::IDT))?;
    memory.write_slice(&exception_stubs(), GuestAddress(map::EXCEPTION_STUBS))
}

/// Writes vCPU `index`'s TSS (once, when the vCPU is created: only then is its page touched).
pub fn write_tss(memory: &GuestMemory, index: u32) -> Result<(), vm_memory::GuestMemoryError> {
    memory.write_slice(&tss(index), GuestAddress(tss_address(index)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stubs_fit_their_slots_and_report_their_vector() {
        let stubs = exception_stubs();
        assert_eq!(stubs.len() as u64, map::EXCEPTION_VECTORS * map::EXCEPTION_STUB_SIZE);
        let stub14 = &stubs[14 * 16..15 * 16];
        assert_eq!(&stub14[5..9], &14u32.to_le_bytes());
        assert_eq!(&stub14[2..4], &(X86_PORT_BASE + FAULT).to_le_bytes());
    }

    #[test]
    fn gates_point_at_stubs_with_ist_for_double_fault() {
        let idt = idt();
        let gate = |v: usize| u64::from_le_bytes(idt[v * 16..v * 16 + 8].try_into().unwrap());
        let handler = |g: u64| (g & 0xffff) | ((g >> 48) << 16);
        assert_eq!(handler(gate(6)), map::EXCEPTION_STUBS + 6 * 16);
        assert_eq!((gate(8) >> 32) & 7, 1);
        assert_eq!((gate(14) >> 32) & 7, 0);
        assert_eq!((gate(14) >> 40) & 0xff, 0x8e);
    }

    #[test]
    fn tss_descriptor_points_at_the_tss() {
        let g = gdt();
        let base = ((g[5] >> 16) & 0xff_ffff) | ((g[5] >> 56) << 24) | (g[6] << 32);
        assert_eq!(base, tss_address(0));
        let area = map::vcpu_area(5);
        let tss = tss(5);
        assert_eq!(u64::from_le_bytes(tss[4..12].try_into().unwrap()), area + map::VCPU_STACK_GUARD);
        assert_eq!(u64::from_le_bytes(tss[36..44].try_into().unwrap()), area + map::VCPU_EXCEPTION_STACK);
    }

    #[test]
    fn io_bitmap_allows_only_device_ports() {
        let tss = tss(0);
        let allowed = |port: usize| tss[TSS_BASE_SIZE + port / 8] & (1 << (port % 8)) == 0;
        assert!(allowed(0x3f8) && allowed(0x3ff));
        assert!(allowed(usize::from(X86_PORT_BASE + FAULT)));
        assert!(allowed(usize::from(X86_PORT_BASE + wasmcell_abi::control::PARK)));
        assert!(!allowed(0x3f7) && !allowed(0x80) && !allowed(0x5ff));
        assert_eq!(tss[TSS_SIZE - 1], 0xff, "bitmap terminator");
        assert!(TSS_SIZE as u64 <= map::PAGE_SIZE);
    }
}

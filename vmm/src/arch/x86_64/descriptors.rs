//! The GDT, the IDT, each vCPU's TSS, and the CPL 0 exception stubs the IDT points to.
//!
//! The guest itself never loads a descriptor: the VMM sets the segment registers directly
//! (`regs.rs`), TR included, whose base is the vCPU's own TSS (faults on two vCPUs must not share
//! a stack). These tables exist for the CPU's own use when an exception leaves CPL 3: it reads
//! the IDT gate, switches to the TSS's stack and runs a stub. Each stub reports its vector on the
//! control device's FAULT register and halts; the VMM reads the rest of the fault from the vCPU.
//!
//! The faults compiled Wasm uses as traps — #DE (division), #UD (`ud2`) and #PF (a guard
//! region) — are sent back to CPL 3 instead: their stub rewrites the exception frame so that
//! `iretq` enters the guest's entry point on the vCPU's trap stack (its area's boot stack) with
//! `RDI` = the vector, `RSI` = the faulting `RIP`, `RDX` = `CR2`, `RCX` = the error code and
//! the other registers as they were; the guest's runtime decides whether it was a Wasm trap. A
//! fault on the trap stack itself, or in CPL 0, is reported as any other. The stubs are the only
//! CPL 0 code there is, a few instructions per fault.

use crate::devices::serial::SerialConsole;
use crate::memory::GuestMemory;
use vm_memory::{Bytes, GuestAddress};
use wasmcell_abi::control::{FAULT, X86_PORT_BASE, X86_PORT_COUNT};
use wasmcell_abi::exit::x86_has_error_code;
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

/// Vectors sent back to the guest's trap entry: #DE, #UD, #PF.
pub const REDIRECTED_VECTORS: [u8; 3] = [0, 6, 14];

/// `mov dx, FAULT; mov eax, vector; out dx, eax; 1: hlt; jmp 1b`.
fn report_stub(vector: u8) -> [u8; 13] {
    let port = (X86_PORT_BASE + FAULT).to_le_bytes();
    [0x66, 0xba, port[0], port[1], 0xb8, vector, 0, 0, 0, 0xef, 0xf4, 0xeb, 0xfd]
}

/// The stub that sends `vector` back to `entry` in CPL 3, on the trap stack (see the module
/// doc), or reports it when it came from CPL 0 or from the trap stack itself.
fn redirect_stub(vector: u8, entry: u64) -> Vec<u8> {
    // Offset of the frame's RIP: the CPU pushes an error code below it for some vectors.
    let e = if x86_has_error_code(vector) { 8u8 } else { 0 };
    let trap_stack = map::VCPU_STACK as u32;
    let trap_stack_len = (map::VCPU_AREA_SIZE - map::VCPU_STACK) as u32;
    let mut s = Vec::with_capacity(map::EXCEPTION_STUB_SIZE as usize);
    s.extend([0x48, 0x89, 0xe0]); // mov rax, rsp
    s.extend([0x48, 0x25, 0x00, 0x00, 0xff, 0xff]); // and rax, -0x10000: the vCPU's area
    s.extend([0x48, 0x8b, 0x4c, 0x24, e + 24]); // mov rcx, [rsp+e+24]: the interrupted RSP
    s.extend([0x48, 0x29, 0xc1]); // sub rcx, rax
    s.extend([0x48, 0x81, 0xe9]); // sub rcx, VCPU_STACK
    s.extend(trap_stack.to_le_bytes());
    s.extend([0x48, 0x81, 0xf9]); // cmp rcx, trap stack length
    s.extend(trap_stack_len.to_le_bytes());
    let on_trap_stack = s.len();
    s.extend([0x76, 0]); // jbe report: a fault while handling one
    s.extend([0xf6, 0x44, 0x24, e + 8, 0x03]); // test byte [rsp+e+8], 3: the interrupted CS's RPL
    let from_cpl0 = s.len();
    s.extend([0x74, 0]); // je report: a fault in CPL 0
    s.extend([0x48, 0x8b, 0x74, 0x24, e]); // mov rsi, [rsp+e]: the faulting RIP
    s.extend([0x0f, 0x20, 0xd2]); // mov rdx, cr2
    if e != 0 {
        s.push(0x59); // pop rcx: the error code (iretq wants the frame without it)
    } else {
        s.extend([0x31, 0xc9]); // xor ecx, ecx
    }
    s.push(0xbf); // mov edi, vector
    s.extend(u32::from(vector).to_le_bytes());
    s.extend([0x48, 0x05]); // add rax, VCPU_AREA_SIZE - 8: the trap stack's top, as after a call
    s.extend((map::VCPU_AREA_SIZE as u32 - 8).to_le_bytes());
    s.extend([0x48, 0x89, 0x44, 0x24, 0x18]); // mov [rsp+24], rax: the new RSP
    s.extend([0x48, 0xb8]); // movabs rax, entry
    s.extend(entry.to_le_bytes());
    s.extend([0x48, 0x89, 0x04, 0x24]); // mov [rsp], rax: the new RIP
    s.extend([0x48, 0xcf]); // iretq
    let report = s.len();
    for jump in [on_trap_stack, from_cpl0] {
        s[jump + 1] = (report - (jump + 2)) as u8;
    }
    s.extend(report_stub(vector));
    s
}

/// One stub per vector, [`map::EXCEPTION_STUB_SIZE`] bytes each, padded with `int3`.
fn exception_stubs(entry: u64) -> Vec<u8> {
    let mut stubs = Vec::with_capacity((map::EXCEPTION_VECTORS * map::EXCEPTION_STUB_SIZE) as usize);
    for vector in 0..map::EXCEPTION_VECTORS as u8 {
        let start = stubs.len();
        if REDIRECTED_VECTORS.contains(&vector) {
            stubs.extend(redirect_stub(vector, entry));
        } else {
            stubs.extend(report_stub(vector));
        }
        debug_assert!(stubs.len() - start <= map::EXCEPTION_STUB_SIZE as usize);
        stubs.resize(start + map::EXCEPTION_STUB_SIZE as usize, 0xcc);
    }
    stubs
}

/// Number of bytes of IDT, for `IDTR.limit`.
pub const IDT_BYTES: u16 = (map::EXCEPTION_VECTORS * 16) as u16;

/// Writes the GDT, IDT and stubs at their places in the memory map; `entry` is the guest's
/// entry point, where redirected faults go.
pub fn write(memory: &GuestMemory, entry: u64) -> Result<(), vm_memory::GuestMemoryError> {
    let gdt: Vec<u8> = gdt().iter().flat_map(|d| d.to_le_bytes()).collect();
    memory.write_slice(&gdt, GuestAddress(map::GDT))?;
    memory.write_slice(&idt(), GuestAddress(map::IDT))?;
    memory.write_slice(&exception_stubs(entry), GuestAddress(map::EXCEPTION_STUBS))
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
        let entry = 0x40_1230;
        let stubs = exception_stubs(entry);
        assert_eq!(stubs.len() as u64, map::EXCEPTION_VECTORS * map::EXCEPTION_STUB_SIZE);
        let stub = |v: usize| &stubs[v * 128..(v + 1) * 128];
        let report = |v: u8| report_stub(v).to_vec();
        // A plain stub is the report alone.
        assert_eq!(&stub(13)[..13], report(13).as_slice());
        assert_eq!(&stub(13)[2..4], &(X86_PORT_BASE + FAULT).to_le_bytes());
        // A redirecting stub ends in the report, and both of its jumps land on it.
        for v in REDIRECTED_VECTORS {
            let code = redirect_stub(v, entry);
            let report_at = code.len() - 13;
            assert_eq!(&code[report_at..], report(v).as_slice());
            assert_eq!(&stub(v.into())[..code.len()], code.as_slice());
            let jumps: Vec<usize> = (0..report_at - 1).filter(|&i| matches!(code[i], 0x74 | 0x76)).collect();
            assert!(jumps.iter().any(|&j| j + 2 + code[j + 1] as usize == report_at), "vector {v}");
            let at = code.windows(8).position(|w| w == entry.to_le_bytes()).expect("the entry");
            assert_eq!(&code[at - 2..at], &[0x48, 0xb8]);
            assert_eq!(&code[report_at - 2..report_at], &[0x48, 0xcf], "iretq before the report");
        }
        // #PF pops its error code before iretq; #UD has none to pop.
        assert!(redirect_stub(14, entry).contains(&0x59));
        assert!(!redirect_stub(6, entry).contains(&0x59));
    }

    #[test]
    fn gates_point_at_stubs_with_ist_for_double_fault() {
        let idt = idt();
        let gate = |v: usize| u64::from_le_bytes(idt[v * 16..v * 16 + 8].try_into().unwrap());
        let handler = |g: u64| (g & 0xffff) | ((g >> 48) << 16);
        assert_eq!(handler(gate(6)), map::EXCEPTION_STUBS + 6 * map::EXCEPTION_STUB_SIZE);
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

//! Prints a line, then reads linear memory at the address given as its first argument (default
//! just under 4 GiB, far past its memory): a workload that traps with an out-of-bounds access.
fn main() {
    let addr: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(0xffff_fff0);
    println!("reading at {addr:#x}");
    // SAFETY: none — reading outside linear memory is the point; wasm turns it into a trap.
    let byte = unsafe { std::ptr::read_volatile(addr as *const u8) };
    println!("read {byte}");
}

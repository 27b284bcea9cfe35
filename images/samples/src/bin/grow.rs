//! Grows its linear memory 1 MiB at a time until `memory.grow` refuses, and prints how much it
//! got: the memory a workload may use is its container's memory limit.
fn main() {
    const PAGES_PER_MIB: usize = 16;
    let mut grown = 0;
    while core::arch::wasm32::memory_grow(0, PAGES_PER_MIB) != usize::MAX {
        grown += 1;
    }
    println!("grew {grown} MiB");
}

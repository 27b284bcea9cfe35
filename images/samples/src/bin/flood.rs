//! Writes 64 KiB blocks of `y` lines to stdout until it has written `mib` MiB (first argument,
//! default: forever): a workload whose output outruns, or outlives, its reader.
use std::io::Write;

fn main() {
    let mib: Option<u64> = std::env::args().nth(1).and_then(|a| a.parse().ok());
    let block = "y\n".repeat(32 * 1024);
    let mut out = std::io::stdout().lock();
    let mut written = 0u64;
    while mib.is_none_or(|m| written < m << 20) {
        if out.write_all(block.as_bytes()).is_err() {
            return;
        }
        written += block.len() as u64;
    }
}

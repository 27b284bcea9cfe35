//! File I/O for the benchmark, in the preopened `/data`: reads `/data/blob` whole in 64 KiB
//! chunks, then opens, reads and closes `/data/small.txt` N times (default 10 000), then writes
//! a 16 MiB file in 64 KiB chunks. Prints the byte counts.
//!
//! Usage: `file_io [N]`

use std::fs::{self, File};
use std::io::{Read, Write};

fn main() {
    let opens: usize = std::env::args().nth(1).map_or(10_000, |n| n.parse().expect("N is a number"));
    let mut buf = vec![0u8; 1 << 16];
    let mut blob = File::open("/data/blob").expect("/data/blob");
    let mut read = 0;
    loop {
        let n = blob.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        read += n;
    }
    let small: usize = (0..opens).map(|_| fs::read("/data/small.txt").unwrap().len()).sum();
    let mut out = File::create("/data/out.bin").unwrap();
    for _ in 0..256 {
        out.write_all(&buf).unwrap();
    }
    println!("read {read} bytes, {opens} small files ({small} bytes), wrote {} bytes", 256 * buf.len());
}

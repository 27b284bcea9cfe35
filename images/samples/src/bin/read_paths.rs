//! Reads each path given as an argument and prints what it got: its size, or the error. The
//! end-to-end tests point it at hostile root filesystems (hard links, symlinks out, FIFOs,
//! device nodes).
use std::fs;

fn main() {
    for path in std::env::args().skip(1) {
        match fs::read(&path) {
            Ok(bytes) => println!("{path}: {} bytes", bytes.len()),
            Err(e) => println!("{path}: error: {e}"),
        }
    }
}

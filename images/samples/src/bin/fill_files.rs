//! Writes 1 MiB chunks to `/data/fill.bin` until the file system refuses, then deletes the file
//! and writes one chunk again: a full in-memory file system must fail cleanly and recover.
//! Prints the error and whether the space came back.

use std::fs::{self, File};
use std::io::Write;

fn main() {
    let chunk = vec![0x5a_u8; 1 << 20];
    let mut file = File::create("/data/fill.bin").unwrap();
    let mut written = 0usize;
    let error = loop {
        match file.write_all(&chunk) {
            Ok(()) => written += 1,
            Err(e) => break e,
        }
        if written == 4096 {
            println!("no limit reached after 4 GiB");
            return;
        }
    };
    drop(file);
    println!("full after {} MiB: {error}", if written > 8 { "more than 8" } else { "at most 8" });
    fs::remove_file("/data/fill.bin").unwrap();
    fs::write("/data/again.bin", &chunk).unwrap();
    println!("after deleting: wrote {} bytes", fs::metadata("/data/again.bin").unwrap().len());
}

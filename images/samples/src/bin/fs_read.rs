//! Reads and lists the preopened directory `/data` (the test fixture: `hello.txt`, `sub/nested.txt`,
//! a symlink to `hello.txt`, and a 1 MiB `big.bin`), printing what it finds in a fixed order.

use std::fs;
use std::io::{Read, Seek, SeekFrom};

fn kind(t: fs::FileType) -> &'static str {
    if t.is_dir() {
        "dir"
    } else if t.is_symlink() {
        "link"
    } else {
        "file"
    }
}

fn list(dir: &str) {
    let mut entries: Vec<(String, &str)> = fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name().into_string().unwrap(), kind(e.file_type().unwrap()))
        })
        .collect();
    entries.sort();
    for (name, kind) in entries {
        println!("{dir}: {kind} {name}");
    }
}

fn main() {
    list("/data");
    list("/data/sub");
    print!("hello.txt: {}", fs::read_to_string("/data/hello.txt").unwrap());
    print!("nested: {}", fs::read_to_string("/data/sub/nested.txt").unwrap());
    print!("via link: {}", fs::read_to_string("/data/link_to_hello").unwrap());
    let meta = fs::metadata("/data/hello.txt").unwrap();
    println!("hello.txt: {} bytes, file {}, dir {}", meta.len(), meta.is_file(), meta.is_dir());
    println!("sub is a dir: {}", fs::metadata("/data/sub").unwrap().is_dir());
    println!("link is a symlink: {}", fs::symlink_metadata("/data/link_to_hello").unwrap().file_type().is_symlink());
    let mut file = fs::File::open("/data/hello.txt").unwrap();
    file.seek(SeekFrom::Start(6)).unwrap();
    let mut word = [0u8; 5];
    file.read_exact(&mut word).unwrap();
    println!("at 6: {}, now at {}", String::from_utf8_lossy(&word), file.stream_position().unwrap());
    println!("from the end: {}", file.seek(SeekFrom::End(-3)).unwrap());
    let big = fs::read("/data/big.bin").unwrap();
    println!("big.bin: {} bytes, sum {}", big.len(), big.iter().map(|&b| u64::from(b)).sum::<u64>());
    println!("missing: {}", fs::read("/data/nope").unwrap_err());
    println!("file as dir: {}", fs::read("/data/hello.txt/x").unwrap_err());
    println!("dir as file: {}", fs::read("/data/sub").unwrap_err());
}

//! Writes in the preopened directory `/data` (the fs_read fixture) and reads back: new files and
//! directories, appends, overwriting a packed file, sparse writes, truncation, rename, removal,
//! and the errors POSIX promises. In wasmcell the writes live in the VM's memory only.

use std::fs::{self, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

fn main() {
    fs::create_dir("/data/new").unwrap();
    fs::write("/data/new/a.txt", "first\n").unwrap();
    OpenOptions::new().append(true).open("/data/new/a.txt").unwrap().write_all(b"second\n").unwrap();
    print!("a.txt: {}", fs::read_to_string("/data/new/a.txt").unwrap());

    OpenOptions::new().write(true).open("/data/hello.txt").unwrap().write_all(b"HELLO").unwrap();
    print!("hello.txt: {}", fs::read_to_string("/data/hello.txt").unwrap());

    let mut sparse =
        OpenOptions::new().read(true).write(true).create(true).truncate(true).open("/data/new/sparse").unwrap();
    sparse.seek(SeekFrom::Start(4)).unwrap();
    sparse.write_all(b"x").unwrap();
    println!("sparse: {:?}", fs::read("/data/new/sparse").unwrap());
    sparse.set_len(2).unwrap();
    println!("after set_len: {} bytes", sparse.metadata().unwrap().len());
    drop(sparse);

    fs::rename("/data/new/a.txt", "/data/renamed.txt").unwrap();
    println!(
        "renamed: {}, old gone: {}",
        Path::new("/data/renamed.txt").exists(),
        !Path::new("/data/new/a.txt").exists()
    );
    println!("create existing dir: {}", fs::create_dir("/data/new").unwrap_err());
    println!("remove non-empty dir: {}", fs::remove_dir("/data/new").unwrap_err());
    println!("remove_file on a dir: {}", fs::remove_file("/data/sub").is_err());
    println!(
        "create_new on existing: {}",
        OpenOptions::new().write(true).create_new(true).open("/data/renamed.txt").unwrap_err()
    );
    fs::remove_file("/data/new/sparse").unwrap();
    fs::remove_dir("/data/new").unwrap();
    println!("removed: {}", !Path::new("/data/new").exists());

    fs::create_dir_all("/data/x/y/z").unwrap();
    fs::write("/data/x/y/z/deep.txt", vec![b'z'; 100_000]).unwrap();
    println!("deep.txt: {} bytes", fs::metadata("/data/x/y/z/deep.txt").unwrap().len());
    fs::remove_dir_all("/data/x").unwrap();

    let mut names: Vec<String> =
        fs::read_dir("/data").unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    println!("now in /data: {}", names.join(" "));
}

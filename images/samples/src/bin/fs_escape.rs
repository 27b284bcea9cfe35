//! Tries every way out of the preopened directory `/data` (the fs_read fixture, whose parent
//! holds `outside.txt`, plus symlinks `out_link` → `../outside.txt` and `abs_link` → an absolute
//! path to it). Each attempt must be refused; the line says how.

use std::fs;

fn report<T>(what: &str, result: std::io::Result<T>) {
    match result {
        Ok(_) => println!("{what}: ESCAPED"),
        Err(e) => println!("{what}: refused ({e})"),
    }
}

fn main() {
    report("dot-dot", fs::read("/data/../outside.txt"));
    report("deep dot-dot", fs::read("/data/sub/../../outside.txt"));
    report("absolute path outside every preopen", fs::read("/outside.txt"));
    report("relative symlink out", fs::read("/data/out_link"));
    report("absolute symlink", fs::read("/data/abs_link"));
    report("list the parent", fs::read_dir("/data/.."));
    report("create outside", fs::write("/data/../created.txt", "x"));
    report("mkdir outside", fs::create_dir("/data/../made"));
    report("rename out", fs::rename("/data/hello.txt", "/data/../moved.txt"));
    report("write through a symlink out", fs::write("/data/out_link", "x"));
    report("hard link to a file outside", fs::hard_link("/data/../outside.txt", "/data/stolen"));
    println!("inside still works: {}", fs::read_to_string("/data/hello.txt").unwrap().trim_end());
}

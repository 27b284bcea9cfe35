//! File operations named on the command line, one per pair of arguments, each printing one
//! line: what the volume tests and the Kubernetes end-to-end checks ask a workload to do.
//!
//! - `write PATH TEXT`, `append PATH TEXT`, `read PATH` (printed without trailing whitespace),
//!   `ls DIR`, `mkdir DIR`, `rm PATH`, `rename FROM TO`, `link FROM TO`, `symlink TARGET PATH`,
//!   `readlink PATH`, `truncate PATH BYTES`, `touch PATH` (its modification time to 1970 + 5 s)
//! - `wait PATH SECONDS`: polls until PATH exists and is not empty, then prints it (what a
//!   second container of a pod does while the first writes);
//! - `exit CODE`: ends with that status (after the lines before it);
//! - `bench DIR`: writes 16 MiB, reads it back, opens 10 000 small files, and prints the time
//!   each took (the benchmark's workload).

use std::fs;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

fn show<T: std::fmt::Display>(what: &str, result: std::io::Result<T>) {
    match result {
        Ok(value) => println!("{what}: {value}"),
        Err(e) => println!("{what}: error: {e}"),
    }
}

fn wait(path: &str, seconds: u64) -> std::io::Result<String> {
    let until = Instant::now() + Duration::from_secs(seconds);
    loop {
        match fs::read_to_string(path) {
            Ok(text) if !text.is_empty() => return Ok(text),
            _ if Instant::now() >= until => return Err(std::io::ErrorKind::TimedOut.into()),
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn bench(dir: &str) -> std::io::Result<String> {
    let chunk = vec![0x5au8; 1 << 20];
    let path = format!("{dir}/bench.bin");
    let start = Instant::now();
    let mut file = fs::File::create(&path)?;
    for _ in 0..16 {
        file.write_all(&chunk)?;
    }
    file.sync_all()?;
    drop(file);
    let write = start.elapsed();
    let start = Instant::now();
    let mut back = Vec::with_capacity(16 << 20);
    fs::File::open(&path)?.read_to_end(&mut back)?;
    let read = start.elapsed();
    assert_eq!(back.len(), 16 << 20);
    fs::create_dir_all(format!("{dir}/small"))?;
    for i in 0..100 {
        fs::write(format!("{dir}/small/{i}"), b"x")?;
    }
    let start = Instant::now();
    for i in 0..10_000 {
        fs::File::open(format!("{dir}/small/{}", i % 100))?;
    }
    let opens = start.elapsed();
    Ok(format!(
        "write 16 MiB {:.1} ms, read 16 MiB {:.1} ms, 10000 opens {:.1} ms",
        write.as_secs_f64() * 1e3,
        read.as_secs_f64() * 1e3,
        opens.as_secs_f64() * 1e3
    ))
}

/// `std::fs::soft_link`: the one portable way std offers (deprecated for the per-OS ones, and
/// WASI's is unstable).
#[allow(deprecated)]
fn symlink(target: &str, path: &str) -> std::io::Result<()> {
    fs::soft_link(target, path)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut rest = &args[..];
    while let [op, path, more @ ..] = rest {
        let text = more.first().cloned().unwrap_or_default();
        let (what, used) = (format!("{op} {path}"), 2);
        let used = match op.as_str() {
            "write" => {
                show(&what, fs::write(path, &text).map(|()| "ok"));
                used + 1
            }
            "append" => {
                let file = fs::OpenOptions::new().append(true).create(true).open(path);
                show(&what, file.and_then(|mut f| f.write_all(text.as_bytes())).map(|()| "ok"));
                used + 1
            }
            "read" => {
                show(&what, fs::read_to_string(path).map(|text| text.trim_end().to_string()));
                used
            }
            "ls" => {
                let names = fs::read_dir(path).and_then(|entries| {
                    let mut names = entries
                        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                        .collect::<Result<Vec<_>, _>>()?;
                    names.sort();
                    Ok(names.join(" "))
                });
                show(&what, names);
                used
            }
            "mkdir" => {
                show(&what, fs::create_dir_all(path).map(|()| "ok"));
                used
            }
            "rm" => {
                show(&what, fs::remove_file(path).map(|()| "ok"));
                used
            }
            "rename" => {
                show(&what, fs::rename(path, &text).map(|()| "ok"));
                used + 1
            }
            "link" => {
                show(&what, fs::hard_link(path, &text).map(|()| "ok"));
                used + 1
            }
            "symlink" => {
                show(&what, symlink(path, &text).map(|()| "ok"));
                used + 1
            }
            "readlink" => {
                show(&what, fs::read_link(path).map(|target| target.display().to_string()));
                used
            }
            "truncate" => {
                let file = fs::OpenOptions::new().write(true).open(path);
                show(&what, file.and_then(|f| f.set_len(text.parse().unwrap_or(0))).map(|()| "ok"));
                used + 1
            }
            "touch" => {
                let at = std::time::UNIX_EPOCH + Duration::from_secs(5);
                let file = fs::OpenOptions::new().write(true).open(path);
                show(&what, file.and_then(|f| f.set_modified(at)).map(|()| "ok"));
                used
            }
            "wait" => {
                show(&what, wait(path, text.parse().unwrap_or(30)));
                used + 1
            }
            "bench" => {
                show(&what, bench(path));
                used
            }
            "exit" => {
                std::io::stdout().flush().ok();
                std::process::exit(path.parse().unwrap_or(1));
            }
            _ => {
                println!("{op}: unknown operation");
                std::process::exit(2);
            }
        };
        rest = &rest[used.min(rest.len())..];
    }
}

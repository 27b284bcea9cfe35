//! Copies stdin to stdout line by line, then reports the line count on stderr.
use std::io::{BufRead, Write};

fn main() {
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    let mut lines = 0;
    for line in stdin.lock().lines() {
        writeln!(out, "{}", line.expect("read stdin")).expect("write stdout");
        lines += 1;
    }
    eprintln!("{lines} lines");
}

//! Prints a line, then sleeps for the milliseconds given as its first argument (default 1000),
//! then prints another: a service that logs "listening…" and waits.
use std::time::Duration;

fn main() {
    let millis: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1000);
    println!("sleeping {millis} ms");
    std::thread::sleep(Duration::from_millis(millis));
    println!("woke up");
}

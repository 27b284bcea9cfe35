//! Sleeps (WASI `poll_oneoff` with a clock subscription) for the milliseconds given as its first
//! argument and checks that at least that much monotonic time passed.
use std::time::{Duration, Instant};

fn main() {
    let millis: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(10);
    let start = Instant::now();
    std::thread::sleep(Duration::from_millis(millis));
    let slept = start.elapsed();
    assert!(slept >= Duration::from_millis(millis), "woke after {slept:?}");
    println!("slept at least {millis} ms");
}

//! Checks the clocks: monotonic time never goes back, a sleep-free busy loop takes some time,
//! and the wall clock is after 2024. Prints what it checked (no readings: they differ per run).
use std::time::{Instant, SystemTime, UNIX_EPOCH};

fn main() {
    let start = Instant::now();
    let mut last = start;
    for _ in 0..100_000 {
        let now = Instant::now();
        assert!(now >= last, "monotonic clock went back");
        last = now;
    }
    assert!(last > start, "monotonic clock did not advance");
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).expect("after the epoch");
    assert!(since_epoch.as_secs() > 1_704_067_200, "wall clock before 2024: {since_epoch:?}");
    println!("monotonic clock never went back in 100000 readings");
    println!("wall clock is after 2024");
}

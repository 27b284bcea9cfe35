//! Prints one line ("spinning"), then computes forever without a WASI call: only stopping the
//! VM ends it. With a count N as its argument, first prints N numbered lines, one write each.
fn main() {
    let lines: u32 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(0);
    for i in 1..=lines {
        println!("line {i}");
    }
    println!("spinning");
    let mut x: u64 = 1;
    loop {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
}

//! Interleaves stdout and stderr: each stream must arrive complete and in its own order.
fn main() {
    for i in 0..5 {
        println!("out {i}");
        eprintln!("err {i}");
    }
}

//! The classic: one line on stdout.
fn main() {
    println!("Hello, world!");
}

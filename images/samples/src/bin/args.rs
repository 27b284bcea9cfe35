//! Prints its arguments, one per line, numbered.
fn main() {
    for (i, arg) in std::env::args().enumerate() {
        println!("{i}: {arg}");
    }
}

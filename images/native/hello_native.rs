//! A static native hello for the runc side of the end-to-end tests (the hybrid node): built with
//! `rustc -C target-feature=+crt-static`, it needs nothing from its image but itself.
fn main() {
    println!("Hello from runc!");
}

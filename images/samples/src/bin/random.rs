//! Draws random bytes through WASI `random_get` and checks they look random. Prints only the
//! verdict: the bytes themselves differ per run.
#[link(wasm_import_module = "wasi_snapshot_preview1")]
extern "C" {
    fn random_get(buf: *mut u8, len: usize) -> u16;
}

fn draw() -> [u8; 64] {
    let mut buf = [0u8; 64];
    // SAFETY: `buf` is valid for 64 bytes of writes.
    assert_eq!(unsafe { random_get(buf.as_mut_ptr(), buf.len()) }, 0, "random_get failed");
    buf
}

fn main() {
    let (a, b) = (draw(), draw());
    assert_ne!(a, b, "two draws are equal");
    assert!(a.iter().any(|&x| x != 0), "all zeros");
    let distinct = a.iter().collect::<std::collections::HashSet<_>>().len();
    assert!(distinct > 16, "only {distinct} distinct bytes in 64");
    println!("random bytes look random");
}

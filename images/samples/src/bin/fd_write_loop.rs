//! Makes `count` (first argument, default 100000) one-byte `fd_write` calls to stdout, straight
//! through the WASI import (no std buffering): the cost of a WASI call that leaves the guest.
#[link(wasm_import_module = "wasi_snapshot_preview1")]
extern "C" {
    fn fd_write(fd: u32, iovs: *const [u32; 2], iovs_len: u32, written: *mut u32) -> u16;
}

fn main() {
    let count: u32 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let byte = b".";
    let iov = [byte.as_ptr() as u32, 1];
    let mut written = 0;
    for _ in 0..count {
        // SAFETY: `iov` points at one valid iovec over `byte`; `written` is a valid out pointer.
        assert_eq!(unsafe { fd_write(1, &iov, 1, &mut written) }, 0);
    }
}

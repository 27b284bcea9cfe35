//! A static pause binary for runc pods' sandboxes in the end-to-end tests (the sandbox image
//! containerd's CRI starts for every runc pod; wasmcell pods run none). Sleeps until SIGTERM or
//! SIGINT, which it handles itself: as PID 1 of its namespace it would otherwise ignore them.

extern "C" {
    fn signal(signum: i32, handler: extern "C" fn(i32)) -> usize;
    fn pause() -> i32;
    fn _exit(status: i32) -> !;
}

extern "C" fn exit_on_signal(_: i32) {
    // SAFETY: `_exit` is async-signal-safe and ends the process at once.
    unsafe { _exit(0) }
}

fn main() {
    // SAFETY: installs a handler that only exits; `pause` merely waits for a signal.
    unsafe {
        signal(15, exit_on_signal);
        signal(2, exit_on_signal);
        loop {
            pause();
        }
    }
}

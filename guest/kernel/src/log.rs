//! The guest log: formatted lines to the serial console, one VM exit per line (where the host
//! batches string I/O). A lock keeps the lines of this address space's code whole.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, Ordering};
use spinning_top::RawSpinlock;
use talc::lock_api::Mutex;

/// Serialises writes to the one serial port.
static PORT: Mutex<RawSpinlock, ()> = Mutex::new(());

/// Whether the boot info asked for a log. Off costs nothing: a serial byte is a VM exit.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Turns the log on or off (once, at boot).
pub fn set_enabled(enabled: bool) {
    ENABLED.store(enabled, Ordering::Relaxed);
}

/// Whether lines are written at all.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Collects a line in a stack buffer and flushes it with one console write when full or dropped:
/// one `rep outsb` on x86-64 (a VM exit costs ~9 µs on nested KVM, so batching bytes matters), a
/// store per byte on aarch64 (whose log is for diagnostics only).
pub struct LineWriter {
    buf: [u8; 256],
    len: usize,
}

impl LineWriter {
    pub const fn new() -> Self {
        Self { buf: [0; 256], len: 0 }
    }

    fn flush(&mut self) {
        if self.len > 0 {
            let _port = PORT.lock();
            crate::arch::console_write(&self.buf[..self.len]);
            self.len = 0;
        }
    }
}

impl Write for LineWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for chunk in s.as_bytes().chunks(self.buf.len()) {
            if self.len + chunk.len() > self.buf.len() {
                self.flush();
            }
            self.buf[self.len..self.len + chunk.len()].copy_from_slice(chunk);
            self.len += chunk.len();
        }
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Writes one formatted line to the guest log.
#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => {{
        if $crate::log::enabled() {
        let mut w = $crate::log::LineWriter::new();
        let _ = core::fmt::Write::write_fmt(&mut w, format_args!($($arg)*));
        let _ = core::fmt::Write::write_str(&mut w, "\n");
        }
    }};
}

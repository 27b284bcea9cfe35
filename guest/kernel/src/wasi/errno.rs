//! WASI preview 1 error numbers (`wasi_snapshot_preview1` `errno`), the ones the guest returns.

/// An `errno` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum Errno {
    Success = 0,
    BadF = 8,
    Fault = 21,
    Inval = 28,
    Io = 29,
    NoSys = 52,
    Overflow = 61,
    NotCapable = 76,
}

/// Runs a WASI call body and turns its result into the `errno` the module sees.
pub fn to_errno(result: Result<(), Errno>) -> i32 {
    match result {
        Ok(()) => Errno::Success as i32,
        Err(e) => e as i32,
    }
}

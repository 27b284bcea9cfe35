//! WASI preview 1 error numbers (`wasi_snapshot_preview1` `errno`), the ones the guest returns.

use wasmcell_guest_fs::Error as FsError;

/// An `errno` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum Errno {
    Success = 0,
    Acces = 2,
    Again = 6,
    BadF = 8,
    Busy = 10,
    ConnAborted = 13,
    ConnRefused = 14,
    ConnReset = 15,
    DQuot = 19,
    Exist = 20,
    Fault = 21,
    FBig = 22,
    HostUnreach = 23,
    Inval = 28,
    Io = 29,
    IsDir = 31,
    Loop = 32,
    MFile = 33,
    MLink = 34,
    NameTooLong = 37,
    NetDown = 38,
    NetUnreach = 40,
    NFile = 41,
    NoBufs = 42,
    NoEnt = 44,
    NoMem = 48,
    NoSpc = 51,
    NoSys = 52,
    NotConn = 53,
    NotDir = 54,
    NotEmpty = 55,
    NotSock = 57,
    NotSup = 58,
    Nxio = 60,
    Overflow = 61,
    Perm = 63,
    Pipe = 64,
    RoFs = 69,
    SPipe = 70,
    TimedOut = 73,
    TxtBsy = 74,
    XDev = 75,
}

impl From<FsError> for Errno {
    fn from(error: FsError) -> Self {
        match error {
            FsError::NoEnt => Errno::NoEnt,
            FsError::Exist => Errno::Exist,
            FsError::NotDir => Errno::NotDir,
            FsError::IsDir => Errno::IsDir,
            FsError::NotEmpty => Errno::NotEmpty,
            // What wasmtime answers for a path that leaves its preopen (cap-std's escape error).
            FsError::Escape => Errno::Perm,
            FsError::Perm => Errno::Perm,
            FsError::Loop => Errno::Loop,
            FsError::Inval => Errno::Inval,
            FsError::NoSpace => Errno::NoSpc,
            FsError::TooBig => Errno::FBig,
        }
    }
}

/// Runs a WASI call body and turns its result into the `errno` the module sees.
pub fn to_errno(result: Result<(), Errno>) -> i32 {
    match result {
        Ok(()) => Errno::Success as i32,
        Err(e) => e as i32,
    }
}

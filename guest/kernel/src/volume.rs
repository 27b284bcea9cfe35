//! The guest's side of the file device (`wasmcell_abi::file`): the host directories and files
//! a workload was given as volumes, read and written through. Each function is one call, one
//! VM exit — arguments into this vCPU's block, the operation number to the control device, the
//! reply read back. Paths and data are passed from the guest heap (the device reaches nothing
//! else): callers copy them out of a module's memory first. WASI preview 1 (`crate::wasi`) is
//! built on these.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use wasmcell_abi::file::{FileCall, FileReply, Op, Stat, CLOSE_FIRST, FILE, MAX_TRANSFER};

/// A file call's error: a Linux `errno`.
pub type Errno = i32;

/// A handle dropped but not closed yet, plus one (0: none): closed by the device before the
/// next call ([`CLOSE_FIRST`]), which saves the close its own exit. Per workload: each
/// workload's window has its own copy of the kernel's data.
static PENDING_CLOSE: AtomicU64 = AtomicU64::new(0);

/// One call, closing the handle dropped last first.
fn call(op: Op, mut args: [u64; 8]) -> FileReply {
    args[CLOSE_FIRST] = PENDING_CLOSE.swap(0, Ordering::Relaxed);
    exchange(op, args)
}

/// One exit: the arguments out, the reply back.
fn exchange(op: Op, args: [u64; 8]) -> FileReply {
    let mut reply = [0u8; FileReply::SIZE];
    crate::control::device_call(FILE, op as u32, &FileCall { args }.to_bytes(), &mut reply);
    FileReply::from_bytes(&reply)
}

fn args(first: &[u64]) -> [u64; 8] {
    let mut args = [0; 8];
    args[..first.len()].copy_from_slice(first);
    args
}

fn result(reply: FileReply) -> Result<u64, Errno> {
    if reply.result < 0 {
        Err(i32::try_from(-reply.result).unwrap_or(libc_errno::EINVAL))
    } else {
        Ok(reply.result as u64)
    }
}

fn path_words(path: &[u8]) -> [u64; 2] {
    [path.as_ptr() as u64, path.len() as u64]
}

/// Linux numbers the guest names itself.
pub mod libc_errno {
    pub const EINVAL: i32 = 22;
}

/// An open handle of the device; closed when dropped, unless it is a volume's (those live as
/// long as the workload).
#[derive(Debug)]
pub struct Handle {
    raw: u32,
    volume: bool,
}

impl Handle {
    /// The handle of volume `index` (the workload blob's order).
    pub fn volume(index: u32) -> Self {
        Self { raw: index, volume: true }
    }

    pub fn raw(&self) -> u64 {
        self.raw.into()
    }
}

impl Drop for Handle {
    /// Closed with the next call; a handle still waiting is closed now.
    fn drop(&mut self) {
        if !self.volume {
            let waiting = PENDING_CLOSE.swap(self.raw() + 1, Ordering::Relaxed);
            if waiting != 0 {
                let _ = exchange(Op::Close, args(&[waiting - 1]));
            }
        }
    }
}

/// The device's open flags (`wasmcell_abi::file::open`) for a WASI open: how it treats the
/// path (`open`), and whether it reads, writes or appends.
pub fn open_flags(open: &wasmcell_guest_fs::OpenFlags, read: bool, write: bool, append: bool) -> u64 {
    use wasmcell_abi::file::open as bit;
    [
        (read, bit::READ),
        (write, bit::WRITE),
        (append, bit::APPEND),
        (open.create, bit::CREATE),
        (open.directory, bit::DIRECTORY),
        (open.exclusive, bit::EXCLUSIVE),
        (open.truncate, bit::TRUNCATE),
        (!open.follow, bit::NOFOLLOW),
    ]
    .into_iter()
    .filter(|&(set, _)| set)
    .fold(0, |flags, (_, bit)| flags | bit)
}

/// Opens `path` beneath `dir` with `flags` (`wasmcell_abi::file::open`).
pub fn open(dir: &Handle, path: &[u8], flags: u64) -> Result<(Handle, Stat), Errno> {
    let [p, l] = path_words(path);
    let reply = call(Op::Open, args(&[dir.raw(), p, l, flags]));
    let stat = reply.stat;
    result(reply).map(|raw| (Handle { raw: raw as u32, volume: false }, stat))
}

/// The stat of `path` beneath `dir` (empty: `dir` itself).
pub fn stat(dir: &Handle, path: &[u8], follow: bool) -> Result<Stat, Errno> {
    let [p, l] = path_words(path);
    let reply = call(Op::Stat, args(&[dir.raw(), p, l, follow.into()]));
    result(reply).map(|_| reply.stat)
}

/// Reads at `offset` into `buf` (at most [`MAX_TRANSFER`] per call) → bytes read.
pub fn read(handle: &Handle, buf: &mut [u8], offset: u64) -> Result<usize, Errno> {
    let len = (buf.len() as u64).min(MAX_TRANSFER);
    result(call(Op::Read, args(&[handle.raw(), buf.as_mut_ptr() as u64, len, offset]))).map(|n| n as usize)
}

/// Writes `bytes` at `offset` (`wasmcell_abi::file::APPEND`: at the end) → bytes written.
pub fn write(handle: &Handle, bytes: &[u8], offset: u64) -> Result<usize, Errno> {
    let len = (bytes.len() as u64).min(MAX_TRANSFER);
    result(call(Op::Write, args(&[handle.raw(), bytes.as_ptr() as u64, len, offset]))).map(|n| n as usize)
}

pub fn set_size(handle: &Handle, size: u64) -> Result<(), Errno> {
    result(call(Op::SetSize, args(&[handle.raw(), size]))).map(drop)
}

/// `flags` are WASI's `fstflags`; an empty path is `dir` itself.
pub fn set_times(dir: &Handle, path: &[u8], follow: bool, atime: u64, mtime: u64, flags: u64) -> Result<(), Errno> {
    let [p, l] = path_words(path);
    result(call(Op::SetTimes, args(&[dir.raw(), p, l, follow.into(), atime, mtime, flags]))).map(drop)
}

pub fn sync(handle: &Handle) -> Result<(), Errno> {
    result(call(Op::Sync, args(&[handle.raw()]))).map(drop)
}

/// Directory entries from `cookie` into `buf` (`wasmcell_abi::file::Dirent`s) → bytes written.
pub fn read_dir(handle: &Handle, buf: &mut [u8], cookie: u64) -> Result<usize, Errno> {
    let len = (buf.len() as u64).min(MAX_TRANSFER);
    result(call(Op::ReadDir, args(&[handle.raw(), buf.as_mut_ptr() as u64, len, cookie]))).map(|n| n as usize)
}

/// A change to one path: [`Op::CreateDir`], [`Op::Unlink`] or [`Op::RemoveDir`].
pub fn change(op: Op, dir: &Handle, path: &[u8]) -> Result<(), Errno> {
    let [p, l] = path_words(path);
    result(call(op, args(&[dir.raw(), p, l]))).map(drop)
}

/// A change naming two paths: [`Op::Rename`] or [`Op::Link`].
pub fn change_two(op: Op, from_dir: &Handle, from: &[u8], to_dir: &Handle, to: &[u8]) -> Result<(), Errno> {
    let ([p, l], [q, m]) = (path_words(from), path_words(to));
    result(call(op, args(&[from_dir.raw(), p, l, to_dir.raw(), q, m]))).map(drop)
}

pub fn symlink(target: &[u8], dir: &Handle, path: &[u8]) -> Result<(), Errno> {
    let ([t, tl], [p, l]) = (path_words(target), path_words(path));
    result(call(Op::Symlink, args(&[t, tl, dir.raw(), p, l]))).map(drop)
}

/// The target of the symlink at `path`, cut to `max` bytes.
pub fn read_link(dir: &Handle, path: &[u8], max: usize) -> Result<Vec<u8>, Errno> {
    let [p, l] = path_words(path);
    let mut buf = alloc::vec![0u8; max.min(4096)];
    let n = result(call(Op::ReadLink, args(&[dir.raw(), p, l, buf.as_mut_ptr() as u64, buf.len() as u64])))?;
    buf.truncate(n as usize);
    Ok(buf)
}

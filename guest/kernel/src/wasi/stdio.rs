//! The standard streams: fds 0, 1 and 2 over the virtio console. No other fd exists yet (no
//! preopens), so every other fd is `EBADF`.

use super::errno::{to_errno, Errno};
use super::{memory, write_bytes, write_u32, WasiCtx, MODULE};
use crate::virtio::console::{Console, Output};
use alloc::vec::Vec;
use wasmtime::{Caller, Linker};

/// `filetype::character_device`.
const CHARACTER_DEVICE: u8 = 2;
/// All rights a stream can have (`rights` bits 0–28).
const ALL_RIGHTS: u64 = (1 << 29) - 1;
/// Most bytes gathered for one write (one VM exit); larger writes are split.
const MAX_WRITE: usize = 1 << 20;

/// The console, brought up on first use: programs that never touch stdio never pay for it.
pub(super) fn console(ctx: &mut WasiCtx) -> Result<&mut Console, Errno> {
    if ctx.console.is_none() {
        ctx.console = Some(Console::new().map_err(|_| Errno::Io)?);
    }
    ctx.console.as_mut().ok_or(Errno::Io)
}

/// The `(buf, len)` pairs of an iovec array.
fn iovecs(caller: &mut Caller<'_, WasiCtx>, ptr: u32, count: u32) -> Result<Vec<(usize, usize)>, Errno> {
    let memory = memory(caller)?;
    let data = memory.data(&*caller);
    let bytes = (count as usize).checked_mul(8).ok_or(Errno::Overflow)?;
    let raw = data.get(ptr as usize..(ptr as usize).checked_add(bytes).ok_or(Errno::Fault)?).ok_or(Errno::Fault)?;
    Ok(raw
        .chunks_exact(8)
        .map(|c| {
            let buf = u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as usize;
            let len = u32::from_le_bytes([c[4], c[5], c[6], c[7]]) as usize;
            (buf, len)
        })
        .collect())
}

fn fd_write(caller: &mut Caller<'_, WasiCtx>, fd: u32, iovs: u32, count: u32, written_ptr: u32) -> Result<(), Errno> {
    let output = match fd {
        1 => Output::Stdout,
        2 => Output::Stderr,
        _ => return Err(Errno::BadF),
    };
    let mut bytes = Vec::new();
    {
        let vecs = iovecs(caller, iovs, count)?;
        let memory = memory(caller)?;
        let data = memory.data(&*caller);
        for (buf, len) in vecs {
            let len = len.min(MAX_WRITE - bytes.len());
            bytes.extend_from_slice(data.get(buf..buf.checked_add(len).ok_or(Errno::Fault)?).ok_or(Errno::Fault)?);
        }
    }
    console(caller.data_mut())?.write(output, &bytes).map_err(|_| Errno::Io)?;
    write_u32(caller, written_ptr, bytes.len() as u32)
}

fn fd_read(caller: &mut Caller<'_, WasiCtx>, fd: u32, iovs: u32, count: u32, read_ptr: u32) -> Result<(), Errno> {
    if fd != 0 {
        return Err(if fd <= 2 { Errno::NotCapable } else { Errno::BadF });
    }
    let vecs = iovecs(caller, iovs, count)?;
    let total: usize = vecs.iter().map(|v| v.1).sum::<usize>().min(MAX_WRITE);
    let mut buf = alloc::vec![0u8; total];
    let n = if total == 0 { 0 } else { console(caller.data_mut())?.read(&mut buf).map_err(|_| Errno::Io)? };
    let mut at = 0;
    for (ptr, len) in vecs {
        if at == n {
            break;
        }
        let take = len.min(n - at);
        write_bytes(caller, ptr as u32, &buf[at..at + take])?;
        at += take;
    }
    write_u32(caller, read_ptr, n as u32)
}

fn fd_fdstat_get(caller: &mut Caller<'_, WasiCtx>, fd: u32, ptr: u32) -> Result<(), Errno> {
    if fd > 2 {
        return Err(Errno::BadF);
    }
    // struct fdstat { u8 filetype; u16 flags @2; u64 rights_base @8; u64 rights_inheriting @16 }
    let mut stat = [0u8; 24];
    stat[0] = CHARACTER_DEVICE;
    stat[8..16].copy_from_slice(&ALL_RIGHTS.to_le_bytes());
    write_bytes(caller, ptr, &stat)
}

pub fn add_to_linker(linker: &mut Linker<WasiCtx>) -> wasmtime::Result<()> {
    linker.func_wrap(MODULE, "fd_write", |mut c: Caller<'_, WasiCtx>, fd: u32, iovs: u32, n: u32, out: u32| {
        to_errno(fd_write(&mut c, fd, iovs, n, out))
    })?;
    linker.func_wrap(MODULE, "fd_read", |mut c: Caller<'_, WasiCtx>, fd: u32, iovs: u32, n: u32, out: u32| {
        to_errno(fd_read(&mut c, fd, iovs, n, out))
    })?;
    linker.func_wrap(MODULE, "fd_fdstat_get", |mut c: Caller<'_, WasiCtx>, fd: u32, ptr: u32| {
        to_errno(fd_fdstat_get(&mut c, fd, ptr))
    })?;
    // No preopened directories yet: the preopen scan of wasi-libc ends at the first EBADF.
    linker.func_wrap(MODULE, "fd_prestat_get", |_: Caller<'_, WasiCtx>, _fd: u32, _ptr: u32| Errno::BadF as i32)?;
    linker.func_wrap(MODULE, "fd_prestat_dir_name", |_: Caller<'_, WasiCtx>, _fd: u32, _ptr: u32, _len: u32| {
        Errno::BadF as i32
    })?;
    Ok(())
}

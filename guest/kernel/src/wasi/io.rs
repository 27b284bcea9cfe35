//! Reading, writing and seeking, by descriptor: the standard streams go to the console
//! (`stdio`), files to the in-guest file tree, copied straight between the tree and the
//! module's memory, volumes' files to the file device (`host`), connections to the socket
//! device (`socket`).

use super::errno::{to_errno, Errno};
use super::fd::{Fd, OpenFile};
use super::{host, memory, socket, stdio, write_bytes, write_u32, WasiCtx, WasiLinker, MODULE};
use crate::virtio::console::Output;
use alloc::vec::Vec;
use wasmtime::Caller;

/// The `(buf, len)` pairs of an iovec array.
pub(super) fn iovecs(caller: &mut Caller<'_, WasiCtx>, ptr: u32, count: u32) -> Result<Vec<(usize, usize)>, Errno> {
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

/// What a read or write can do with a descriptor.
enum Target {
    Stream(Option<Output>),
    File,
    HostFile,
    Socket,
}

fn target(ctx: &WasiCtx, fd: u32, write: bool, positioned: bool) -> Result<Target, Errno> {
    match ctx.fds.get(fd)? {
        Fd::Stdin | Fd::Stdout | Fd::Stderr if positioned => Err(Errno::SPipe),
        Fd::Stdin if !write => Ok(Target::Stream(None)),
        Fd::Stdout if write => Ok(Target::Stream(Some(Output::Stdout))),
        Fd::Stderr if write => Ok(Target::Stream(Some(Output::Stderr))),
        Fd::File(file) if (write && file.writable) || (!write && file.readable) => Ok(Target::File),
        Fd::HostFile(file) if (write && file.writable) || (!write && file.readable) => Ok(Target::HostFile),
        Fd::Socket(socket) if !positioned && !socket.listener => Ok(Target::Socket),
        // Reading a directory descriptor is EBADF, as in wasmtime; a listener, or a socket at
        // an offset, as in wasi-common.
        _ => Err(Errno::BadF),
    }
}

fn open_file(ctx: &mut WasiCtx, fd: u32) -> Result<&mut OpenFile, Errno> {
    match ctx.fds.get_mut(fd)? {
        Fd::File(file) => Ok(file),
        _ => Err(Errno::BadF),
    }
}

/// Reads (at `offset`, or at and advancing the file position) or writes into the iovecs.
fn transfer(
    caller: &mut Caller<'_, WasiCtx>,
    fd: u32,
    iovs: u32,
    count: u32,
    offset: Option<u64>,
    write: bool,
    out: u32,
) -> Result<(), Errno> {
    match target(caller.data(), fd, write, offset.is_some())? {
        Target::Stream(Some(output)) => return stdio::write(caller, output, iovs, count, out),
        Target::Stream(None) => return stdio::read(caller, iovs, count, out),
        Target::Socket => {
            let n = if write {
                socket::send(caller, fd, iovs, count)?
            } else {
                socket::receive(caller, fd, iovs, count, false, false)?
            };
            return write_u32(caller, out, n as u32);
        }
        Target::HostFile => {
            let vecs = iovecs(caller, iovs, count)?;
            let memory = memory(caller)?;
            let (data, ctx) = memory.data_and_store_mut(&mut *caller);
            let Fd::HostFile(file) = ctx.fds.get_mut(fd)? else { return Err(Errno::BadF) };
            let n = host::transfer(file, data, &vecs, offset, write)?;
            return write_u32(caller, out, n as u32);
        }
        Target::File => {}
    }
    let vecs = iovecs(caller, iovs, count)?;
    let memory = memory(caller)?;
    let (data, ctx) = memory.data_and_store_mut(&mut *caller);
    let now = ctx.clocks.realtime_ns();
    let file = open_file(ctx, fd)?;
    let mut node = file.node.borrow_mut();
    let mut position = match offset {
        Some(offset) => offset,
        None if write && file.append => node.stat().size,
        None => file.position,
    };
    // The count is reported in a u32.
    let mut total = 0usize;
    for (buf, len) in vecs {
        let len = len.min(u32::MAX as usize - total);
        let bytes = data.get_mut(buf..buf.checked_add(len).ok_or(Errno::Fault)?).ok_or(Errno::Fault)?;
        let n = if write { node.write_at(position, bytes, now)? } else { node.read_at(position, bytes)? };
        position += n as u64;
        total += n;
        if n < len {
            break;
        }
    }
    drop(node);
    if offset.is_none() {
        file.position = position;
    }
    write_u32(caller, out, total as u32)
}

fn fd_seek(caller: &mut Caller<'_, WasiCtx>, fd: u32, offset: i64, whence: u32, out: u32) -> Result<(), Errno> {
    let (position, end) = match caller.data_mut().fds.get_mut(fd)? {
        Fd::File(file) => (&mut file.position, file.node.borrow().stat().size),
        // The end is the host file's now (another container may have written to it).
        Fd::HostFile(file) if whence == 2 => {
            let size = crate::volume::stat(&file.handle, b"", false).map_err(host::from_linux)?.size;
            (&mut file.position, size)
        }
        Fd::HostFile(file) => (&mut file.position, 0),
        Fd::Stdin | Fd::Stdout | Fd::Stderr => return Err(Errno::SPipe),
        Fd::Dir { .. } | Fd::HostDir(_) | Fd::Socket(_) => return Err(Errno::BadF),
    };
    let base = match whence {
        0 => 0,
        1 => *position,
        2 => end,
        _ => return Err(Errno::Inval),
    };
    let moved = i64::try_from(base).ok().and_then(|b| b.checked_add(offset)).ok_or(Errno::Inval)?;
    *position = u64::try_from(moved).map_err(|_| Errno::Inval)?;
    let position = *position;
    write_bytes(caller, out, &position.to_le_bytes())
}

pub fn add_to_linker(linker: &mut WasiLinker<'_>) -> wasmtime::Result<()> {
    linker.func_wrap(MODULE, "fd_read", |mut c: Caller<'_, WasiCtx>, fd: u32, iovs: u32, n: u32, out: u32| {
        to_errno(transfer(&mut c, fd, iovs, n, None, false, out))
    })?;
    linker.func_wrap(MODULE, "fd_write", |mut c: Caller<'_, WasiCtx>, fd: u32, iovs: u32, n: u32, out: u32| {
        to_errno(transfer(&mut c, fd, iovs, n, None, true, out))
    })?;
    linker.func_wrap(
        MODULE,
        "fd_pread",
        |mut c: Caller<'_, WasiCtx>, fd: u32, iovs: u32, n: u32, offset: u64, out: u32| {
            to_errno(transfer(&mut c, fd, iovs, n, Some(offset), false, out))
        },
    )?;
    linker.func_wrap(
        MODULE,
        "fd_pwrite",
        |mut c: Caller<'_, WasiCtx>, fd: u32, iovs: u32, n: u32, offset: u64, out: u32| {
            to_errno(transfer(&mut c, fd, iovs, n, Some(offset), true, out))
        },
    )?;
    linker.func_wrap(
        MODULE,
        "fd_seek",
        |mut c: Caller<'_, WasiCtx>, fd: u32, offset: i64, whence: u32, out: u32| {
            to_errno(fd_seek(&mut c, fd, offset, whence, out))
        },
    )?;
    linker.func_wrap(MODULE, "fd_tell", |mut c: Caller<'_, WasiCtx>, fd: u32, out: u32| {
        to_errno(fd_seek(&mut c, fd, 0, 1, out))
    })?;
    Ok(())
}

//! Preview 1's sockets: the TCP listeners a preview-1 module is handed (`wasmcell run
//! --tcplisten`: bound by [`preopen`] before the workload starts, descriptors 3, 4, … ahead of
//! the preopened directories) and the connections `sock_accept` takes from them, over the
//! socket device (`crate::net`). Preview 1 cannot open a socket, so these are all a module
//! ever has.
//!
//! Semantics are wasi-common's, the implementation behind `wasmtime run --tcplisten` up to
//! wasmtime 46 (48 has no preview-1 sockets): listeners start non-blocking, `fdflags` toggle
//! only NONBLOCK, a blocking call sleeps in the device's poll, calls a listener cannot do answer
//! `BADF`, flags it does not know `NOTSUP`. A descriptor that is no socket answers `NOTSOCK`
//! (wasmtime 48's answer). Bytes are copied through a guest-heap buffer (the device reaches
//! nothing else), at most `MAX_TRANSFER` per device call.

use super::errno::{to_errno, Errno};
use super::fd::{Fd, FDFLAGS_NONBLOCK as NONBLOCK};
use super::io::iovecs;
use super::{memory, write_bytes, write_u32, WasiCtx, WasiLinker, MODULE};
use crate::net::{self, Handle};
use alloc::string::String;
use alloc::vec::Vec;
use wasmcell_abi::socket::{errno, MAX_TRANSFER, READABLE, WRITABLE};
use wasmtime::Caller;

/// The backlog of a preopened listener (what Rust's `TcpListener::bind` asks for).
const BACKLOG: u64 = 128;

/// `riflags`.
const RECV_PEEK: u16 = 1;
const RECV_WAITALL: u16 = 2;
/// `sdflags`.
const SHUT_RD: u32 = 1;
const SHUT_WR: u32 = 2;

/// An open TCP socket: a listener or a connection. Closing the descriptor closes it.
pub struct Socket {
    handle: Handle,
    pub listener: bool,
    pub nonblocking: bool,
}

impl Drop for Socket {
    fn drop(&mut self) {
        net::close(self.handle);
    }
}

impl Socket {
    /// The device's handle, for a poll.
    pub fn handle(&self) -> Handle {
        self.handle
    }

    /// `fd_fdstat_set_flags`: only NONBLOCK, on or off.
    pub fn set_flags(&mut self, flags: u16) -> Result<(), Errno> {
        if flags & !NONBLOCK != 0 {
            return Err(Errno::Inval);
        }
        self.nonblocking = flags == NONBLOCK;
        Ok(())
    }

    /// The `fdflags` it reports.
    pub fn flags(&self) -> u16 {
        if self.nonblocking {
            NONBLOCK
        } else {
            0
        }
    }
}

/// Binds and listens on each of `addresses` (`IP:PORT` text), non-blocking as wasmtime made
/// them; the error is a sentence for the user.
pub fn preopen<'a>(addresses: impl Iterator<Item = &'a [u8]>) -> Result<Vec<Socket>, String> {
    addresses
        .map(|address| {
            let (handle, _) = net::listen_on(address, BACKLOG, "listen")?;
            Ok(Socket { handle, listener: true, nonblocking: true })
        })
        .collect()
}

/// The WASI error for a Linux `errno` the device answered, name for name.
pub fn from_linux(errno: net::Errno) -> Errno {
    match errno {
        errno::EAGAIN => Errno::Again,
        errno::EACCES | errno::EPERM => Errno::Acces,
        errno::EBADF => Errno::BadF,
        errno::EINVAL => Errno::Inval,
        errno::EMFILE => Errno::MFile,
        errno::ENFILE => Errno::NFile,
        errno::ENOMEM => Errno::NoMem,
        errno::ENOBUFS => Errno::NoBufs,
        errno::EPIPE => Errno::Pipe,
        errno::ECONNABORTED => Errno::ConnAborted,
        errno::ECONNRESET => Errno::ConnReset,
        errno::ECONNREFUSED => Errno::ConnRefused,
        errno::ENOTCONN => Errno::NotConn,
        errno::ETIMEDOUT => Errno::TimedOut,
        errno::ENETDOWN => Errno::NetDown,
        errno::ENETUNREACH => Errno::NetUnreach,
        errno::EHOSTUNREACH => Errno::HostUnreach,
        _ => Errno::Io,
    }
}

/// The socket behind `fd`: `NOTSOCK` for any other descriptor.
fn socket(ctx: &WasiCtx, fd: u32) -> Result<&Socket, Errno> {
    match ctx.fds.get(fd)? {
        Fd::Socket(socket) => Ok(socket),
        _ => Err(Errno::NotSock),
    }
}

/// A connection (not a listener) behind `fd`: `(handle, nonblocking)`.
fn connection(ctx: &WasiCtx, fd: u32) -> Result<(Handle, bool), Errno> {
    match socket(ctx, fd)? {
        Socket { listener: false, handle, nonblocking } => Ok((*handle, *nonblocking)),
        _ => Err(Errno::BadF),
    }
}

/// Sleeps until `handle` is ready for `events`, the workload's queued output sent first.
fn wait(ctx: &mut WasiCtx, handle: Handle, events: u16) -> Result<(), Errno> {
    ctx.flush_output()?;
    net::wait(handle, events).map_err(from_linux)
}

fn sock_accept(caller: &mut Caller<'_, WasiCtx>, fd: u32, flags: u32, out: u32) -> Result<(), Errno> {
    let (handle, nonblocking) = match socket(caller.data(), fd)? {
        Socket { listener: true, handle, nonblocking } => (*handle, *nonblocking),
        _ => return Err(Errno::BadF),
    };
    if flags & !u32::from(NONBLOCK) != 0 {
        return Err(Errno::Inval);
    }
    let accepted = loop {
        match net::accept(handle) {
            Ok((accepted, _peer)) => break accepted,
            Err(errno::EAGAIN) if !nonblocking => wait(caller.data_mut(), handle, READABLE)?,
            Err(e) => return Err(from_linux(e)),
        }
    };
    let socket = Socket { handle: accepted, listener: false, nonblocking: flags != 0 };
    // A full table drops (closes) the connection with the error.
    let number = caller.data_mut().fds.insert(Fd::Socket(socket))?;
    write_u32(caller, out, number).inspect_err(|_| drop(caller.data_mut().fds.remove(number)))
}

/// Receives into the iovecs at `iovs` → bytes received (0: the peer closed). With `waitall`,
/// goes on until they are full or the peer closes (a non-blocking socket stops early when
/// nothing more has arrived, as Linux does).
pub(super) fn receive(
    caller: &mut Caller<'_, WasiCtx>,
    fd: u32,
    iovs: u32,
    count: u32,
    peek: bool,
    waitall: bool,
) -> Result<usize, Errno> {
    let (handle, nonblocking) = connection(caller.data(), fd)?;
    let (vecs, memory) = checked_iovecs(caller, iovs, count)?;
    let wanted = vecs.iter().map(|v| v.1).fold(0usize, usize::saturating_add).min(u32::MAX as usize);
    let mut buf = alloc::vec![0u8; wanted.min(MAX_TRANSFER as usize)];
    let mut total = 0;
    while total < wanted {
        let room = (wanted - total).min(buf.len());
        let n = match net::receive(handle, &mut buf[..room], peek) {
            Ok((n, _)) => n,
            // Only with `waitall` does a second receive happen.
            Err(errno::EAGAIN) if total > 0 && nonblocking => break,
            Err(errno::EAGAIN) if !nonblocking => {
                wait(caller.data_mut(), handle, READABLE)?;
                continue;
            }
            // Bytes already received are reported; the error comes with the next call.
            Err(_) if total > 0 => break,
            Err(e) => return Err(from_linux(e)),
        };
        scatter(caller, memory, &vecs, total, &buf[..n])?;
        total += n;
        if n == 0 || peek || !waitall {
            break;
        }
    }
    Ok(total)
}

/// The iovecs at `iovs`, each checked to lie in the caller's memory before any byte moves (a
/// bad one would otherwise be found with bytes already taken from, or given to, the socket).
fn checked_iovecs(
    caller: &mut Caller<'_, WasiCtx>,
    iovs: u32,
    count: u32,
) -> Result<(Vec<(usize, usize)>, wasmtime::Memory), Errno> {
    let vecs = iovecs(caller, iovs, count)?;
    let memory = memory(caller)?;
    let size = memory.data_size(&*caller);
    match vecs.iter().all(|&(ptr, len)| ptr.checked_add(len).is_some_and(|end| end <= size)) {
        true => Ok((vecs, memory)),
        false => Err(Errno::Fault),
    }
}

/// Copies `bytes` into the iovecs, starting `skip` bytes into them.
fn scatter(
    caller: &mut Caller<'_, WasiCtx>,
    memory: wasmtime::Memory,
    vecs: &[(usize, usize)],
    mut skip: usize,
    mut bytes: &[u8],
) -> Result<(), Errno> {
    let data = memory.data_mut(caller);
    for &(ptr, len) in vecs {
        if bytes.is_empty() {
            break;
        }
        if skip >= len {
            skip -= len;
            continue;
        }
        let take = (len - skip).min(bytes.len());
        let at = ptr.checked_add(skip).ok_or(Errno::Fault)?;
        data.get_mut(at..at.checked_add(take).ok_or(Errno::Fault)?)
            .ok_or(Errno::Fault)?
            .copy_from_slice(&bytes[..take]);
        bytes = &bytes[take..];
        skip = 0;
    }
    Ok(())
}

/// Sends the ciovecs at `iovs` → bytes sent. A blocking socket sends them all, sleeping while
/// the host socket is full; a non-blocking one what fits now (`AGAIN` if nothing does).
pub(super) fn send(caller: &mut Caller<'_, WasiCtx>, fd: u32, iovs: u32, count: u32) -> Result<usize, Errno> {
    let (handle, nonblocking) = connection(caller.data(), fd)?;
    let (vecs, memory) = checked_iovecs(caller, iovs, count)?;
    let mut buf = Vec::with_capacity(MAX_TRANSFER as usize);
    let mut total = 0usize;
    for (ptr, len) in vecs {
        let mut at = 0;
        while at < len && total < u32::MAX as usize {
            let take = (len - at).min(MAX_TRANSFER as usize).min(u32::MAX as usize - total);
            buf.clear();
            let start = ptr.checked_add(at).ok_or(Errno::Fault)?;
            let data = memory.data(&*caller);
            buf.extend_from_slice(data.get(start..start.checked_add(take).ok_or(Errno::Fault)?).ok_or(Errno::Fault)?);
            let n = match net::send(handle, &buf, None) {
                Ok(n) => n,
                Err(errno::EAGAIN) if nonblocking && total > 0 => return Ok(total),
                Err(errno::EAGAIN) if !nonblocking => {
                    wait(caller.data_mut(), handle, WRITABLE)?;
                    continue;
                }
                // Bytes already sent are reported; the error comes with the next call.
                Err(_) if total > 0 => return Ok(total),
                Err(e) => return Err(from_linux(e)),
            };
            at += n;
            total += n;
            if nonblocking && n < take {
                return Ok(total);
            }
        }
    }
    Ok(total)
}

fn sock_recv(
    caller: &mut Caller<'_, WasiCtx>,
    fd: u32,
    iovs: u32,
    count: u32,
    flags: u32,
    out_len: u32,
    out_flags: u32,
) -> Result<(), Errno> {
    socket(caller.data(), fd)?;
    if flags & !u32::from(RECV_PEEK | RECV_WAITALL) != 0 {
        return Err(Errno::NotSup);
    }
    let n = receive(caller, fd, iovs, count, flags & u32::from(RECV_PEEK) != 0, flags & u32::from(RECV_WAITALL) != 0)?;
    write_u32(caller, out_len, n as u32)?;
    // `roflags`: no datagrams, so never truncated.
    write_bytes(caller, out_flags, &0u16.to_le_bytes())
}

fn sock_send(
    caller: &mut Caller<'_, WasiCtx>,
    fd: u32,
    iovs: u32,
    count: u32,
    flags: u32,
    out: u32,
) -> Result<(), Errno> {
    socket(caller.data(), fd)?;
    if flags != 0 {
        return Err(Errno::NotSup);
    }
    let n = send(caller, fd, iovs, count)?;
    write_u32(caller, out, n as u32)
}

fn sock_shutdown(ctx: &WasiCtx, fd: u32, how: u32) -> Result<(), Errno> {
    let (handle, _) = connection(ctx, fd)?;
    let how = match how {
        SHUT_RD => 0,
        SHUT_WR => 1,
        h if h == SHUT_RD | SHUT_WR => 2,
        _ => return Err(Errno::Inval),
    };
    net::shutdown(handle, how).map_err(from_linux)
}

pub fn add_to_linker(linker: &mut WasiLinker<'_>) -> wasmtime::Result<()> {
    linker.func_wrap(MODULE, "sock_accept", |mut c: Caller<'_, WasiCtx>, fd: u32, flags: u32, out: u32| {
        to_errno(sock_accept(&mut c, fd, flags, out))
    })?;
    linker.func_wrap(
        MODULE,
        "sock_recv",
        |mut c: Caller<'_, WasiCtx>, fd: u32, iovs: u32, n: u32, flags: u32, out_len: u32, out_flags: u32| {
            to_errno(sock_recv(&mut c, fd, iovs, n, flags, out_len, out_flags))
        },
    )?;
    linker.func_wrap(
        MODULE,
        "sock_send",
        |mut c: Caller<'_, WasiCtx>, fd: u32, iovs: u32, n: u32, flags: u32, out: u32| {
            to_errno(sock_send(&mut c, fd, iovs, n, flags, out))
        },
    )?;
    linker.func_wrap(MODULE, "sock_shutdown", |c: Caller<'_, WasiCtx>, fd: u32, how: u32| {
        to_errno(sock_shutdown(c.data(), fd, how))
    })?;
    Ok(())
}

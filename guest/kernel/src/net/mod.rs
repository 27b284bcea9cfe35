//! The guest's side of the socket device (`wasmcell_abi::socket`): each function is one call,
//! one VM exit — arguments into this vCPU's block, the operation number to the control
//! device, the reply read back from the block. The host sockets are non-blocking; [`poll`] is
//! how a workload sleeps until one is ready. WASI's two socket APIs (`crate::component::sockets`)
//! are built on these; buffers are the guest heap's or stack's (the device reaches nothing
//! else).

pub mod http_client;
pub mod lookup;

use crate::vcpu;
use alloc::format;
use alloc::string::String;
use core::net::{IpAddr, SocketAddr};
use wasmcell_abi::socket::{errno, Address, Op, Opt, PollEntry, SocketCall, SocketReply, SOCKET, TCP, UDP};

/// A socket call's error: a Linux `errno`.
pub type Errno = i32;

/// Whether this workload has a network (without one every call answers `EACCES`).
pub fn available() -> bool {
    vcpu::info().has_network()
}

fn call(op: Op, args: [u64; 8]) -> SocketReply {
    let mut reply = [0u8; SocketReply::SIZE];
    crate::control::device_call(SOCKET, op as u32, &SocketCall { args }.to_bytes(), &mut reply);
    SocketReply::from_bytes(&reply)
}

fn result(reply: SocketReply) -> Result<u64, Errno> {
    if reply.result < 0 {
        Err(i32::try_from(-reply.result).unwrap_or(errno::EINVAL))
    } else {
        Ok(reply.result as u64)
    }
}

fn with_address(op: Op, args: [u64; 8]) -> Result<(u64, Address), Errno> {
    let reply = call(op, args);
    result(reply).map(|value| (value, reply.address))
}

fn args(first: &[u64], address: Option<(usize, &Address)>) -> [u64; 8] {
    let mut args = [0; 8];
    args[..first.len()].copy_from_slice(first);
    if let Some((at, address)) = address {
        args[at..at + Address::WORDS].copy_from_slice(&address.to_words());
    }
    args
}

/// A socket's handle, as the device gave it.
pub type Handle = u32;

pub fn open(family: u8, tcp: bool) -> Result<Handle, Errno> {
    if !available() {
        return Err(errno::EACCES);
    }
    let kind = if tcp { TCP } else { UDP };
    result(call(Op::Open, args(&[family.into(), kind], None))).map(|h| h as Handle)
}

pub fn bind(handle: Handle, address: &Address) -> Result<(), Errno> {
    result(call(Op::Bind, args(&[handle.into()], Some((1, address))))).map(drop)
}

pub fn listen(handle: Handle, backlog: u64) -> Result<(), Errno> {
    result(call(Op::Listen, args(&[handle.into(), backlog], None))).map(drop)
}

pub fn accept(handle: Handle) -> Result<(Handle, Address), Errno> {
    with_address(Op::Accept, args(&[handle.into()], None)).map(|(h, peer)| (h as Handle, peer))
}

/// Starts connecting: `Err(EINPROGRESS)` while under way ([`take_error`] tells how it ended).
pub fn connect(handle: Handle, address: &Address) -> Result<(), Errno> {
    result(call(Op::Connect, args(&[handle.into()], Some((1, address))))).map(drop)
}

/// Sends (at most `MAX_TRANSFER` bytes of) `bytes`, to `to` if given.
pub fn send(handle: Handle, bytes: &[u8], to: Option<&Address>) -> Result<usize, Errno> {
    let to = to.copied().unwrap_or_default();
    let first = [handle.into(), bytes.as_ptr() as u64, bytes.len() as u64];
    result(call(Op::Send, args(&first, Some((3, &to))))).map(|n| n as usize)
}

/// Receives into `buf`: bytes received (0: the peer closed) and the sender.
pub fn receive(handle: Handle, buf: &mut [u8], peek: bool) -> Result<(usize, Address), Errno> {
    let first = [handle.into(), buf.as_mut_ptr() as u64, buf.len() as u64, peek.into()];
    with_address(Op::Receive, args(&first, None)).map(|(n, from)| (n as usize, from))
}

/// `how`: 0 read, 1 write, 2 both.
pub fn shutdown(handle: Handle, how: u64) -> Result<(), Errno> {
    result(call(Op::Shutdown, args(&[handle.into(), how], None))).map(drop)
}

pub fn close(handle: Handle) {
    let _ = call(Op::Close, args(&[handle.into()], None));
}

pub fn local_address(handle: Handle) -> Result<Address, Errno> {
    with_address(Op::LocalAddress, args(&[handle.into()], None)).map(|(_, a)| a)
}

pub fn peer_address(handle: Handle) -> Result<Address, Errno> {
    with_address(Op::PeerAddress, args(&[handle.into()], None)).map(|(_, a)| a)
}

pub fn set_option(handle: Handle, option: Opt, value: u64) -> Result<(), Errno> {
    result(call(Op::SetOption, args(&[handle.into(), option as u64, value], None))).map(drop)
}

pub fn get_option(handle: Handle, option: Opt) -> Result<u64, Errno> {
    result(call(Op::GetOption, args(&[handle.into(), option as u64], None)))
}

/// The socket's pending error (a connection's outcome): `Ok(())` for none.
pub fn take_error(handle: Handle) -> Result<(), Errno> {
    match result(call(Op::TakeError, args(&[handle.into()], None)))? {
        0 => Ok(()),
        negated => Err(i32::try_from((negated as i64).unsigned_abs()).unwrap_or(errno::EINVAL)),
    }
}

/// A TCP socket bound to `address` (`IP:PORT` text, as the host's `SocketAddr` prints it) and
/// listening, and the address it is bound to (the port the kernel chose for port 0). The
/// error is a sentence for the user: "cannot {what} on {address}: why".
pub fn listen_on(address: &[u8], backlog: u64, what: &str) -> Result<(Handle, SocketAddr), String> {
    let text = core::str::from_utf8(address).map_err(|_| format!("the address to {what} on is not text"))?;
    let address: SocketAddr = text.parse().map_err(|_| format!("`{text}` is not an IP address and port"))?;
    let (family, device) = match address {
        SocketAddr::V4(a) => (4, Address::v4(a.ip().octets(), a.port())),
        SocketAddr::V6(a) => (
            6,
            Address { family: 6, port: a.port(), flowinfo: a.flowinfo(), ip: a.ip().octets(), scope_id: a.scope_id() },
        ),
    };
    let socket = open(family, true).map_err(|e| format!("cannot open a socket to {what} on (errno {e})"))?;
    let bound = bind(socket, &device).and_then(|()| listen(socket, backlog)).and_then(|()| local_address(socket));
    let local = match bound {
        Ok(local) => local,
        Err(e) => {
            close(socket);
            return Err(match e {
                errno::EADDRINUSE => format!("cannot {what} on {address}: the address is in use"),
                errno::EACCES => format!("cannot {what} on {address}: permission denied"),
                errno::EADDRNOTAVAIL => format!("cannot {what} on {address}: no interface has this address"),
                _ => format!("cannot {what} on {address} (errno {e})"),
            });
        }
    };
    let ip = match local.family {
        4 => IpAddr::from([local.ip[0], local.ip[1], local.ip[2], local.ip[3]]),
        _ => IpAddr::from(local.ip),
    };
    Ok((socket, SocketAddr::new(ip, local.port)))
}

/// Sleeps until one of `entries` is ready, `timeout_us` passes (`None`: never; `Some(0)`:
/// only looks) or stdin has input; fills every entry's `ready` → how many are ready.
pub fn poll(entries: &mut [PollEntry], timeout_us: Option<u64>) -> Result<usize, Errno> {
    let mut raw = alloc::vec![0u8; entries.len() * PollEntry::SIZE];
    for (chunk, entry) in raw.chunks_exact_mut(PollEntry::SIZE).zip(entries.iter()) {
        chunk.copy_from_slice(&entry.to_bytes());
    }
    let first = [raw.as_ptr() as u64, entries.len() as u64, timeout_us.unwrap_or(u64::MAX)];
    let ready = result(call(Op::Poll, args(&first, None)))?;
    for (entry, chunk) in entries.iter_mut().zip(raw.chunks_exact(PollEntry::SIZE)) {
        *entry = PollEntry::from_bytes(chunk.try_into().unwrap_or(&[0; PollEntry::SIZE]));
    }
    Ok(ready as usize)
}

/// Sleeps until `handle` is ready for `events` (`READABLE`, `WRITABLE`).
pub fn wait(handle: Handle, events: u16) -> Result<(), Errno> {
    poll(&mut [PollEntry { handle, events, ready: 0 }], None).map(drop)
}

/// Sends all of `bytes`, sleeping while the socket is full.
pub fn send_all(handle: Handle, mut bytes: &[u8]) -> Result<(), Errno> {
    while !bytes.is_empty() {
        match send(handle, bytes, None) {
            Ok(n) => bytes = &bytes[n..],
            Err(errno::EAGAIN) => wait(handle, wasmcell_abi::socket::WRITABLE)?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Appends what has arrived (at most `max` bytes) to `out` → how many; 0: the peer closed.
/// Without `block`, `Err(EAGAIN)` when nothing has arrived; with it, sleeps until something has.
pub fn receive_into(handle: Handle, out: &mut alloc::vec::Vec<u8>, max: usize, block: bool) -> Result<usize, Errno> {
    let start = out.len();
    out.resize(start + max, 0);
    let result = loop {
        match receive(handle, &mut out[start..], false) {
            Err(errno::EAGAIN) if block => {
                if let Err(e) = wait(handle, wasmcell_abi::socket::READABLE) {
                    break Err(e);
                }
            }
            other => break other.map(|(n, _)| n),
        }
    };
    out.truncate(start + *result.as_ref().unwrap_or(&0));
    result
}

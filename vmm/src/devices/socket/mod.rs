//! The socket device of one workload (`wasmcell_abi::socket`): the TCP and UDP sockets the VMM
//! holds for it in the host kernel, in the VMM's network namespace. A SOCKET write to the
//! control device reaches [`SocketDevice::call`] on the vCPU's thread; the call is carried out
//! at once, without blocking, and its reply written over its arguments. Waiting is the
//! vCPU loop's (`Op::Poll` is a WAIT that also watches sockets: [`SocketDevice::poll_set`]).
//!
//! What a hostile workload controls and what it costs the host at most: [`MAX_SOCKETS`]
//! descriptors, listeners with at most [`MAX_BACKLOG`] pending connections, socket buffers of
//! at most [`MAX_BUFFER`] (charged by the kernel to the pod's cgroup), and per exit one transfer
//! of at most [`MAX_TRANSFER`] bytes straight between its own stack or heap and the socket — the
//! VMM buffers nothing. Only IPv4 and IPv6 TCP and UDP sockets can be made, only the options of
//! [`Opt`] reached, `SO_REUSEPORT` never set, and outgoing connections and datagrams pass the
//! workload's [`Network`] policy first.

mod host;
mod resolver;

pub use resolver::Resolver;

use super::slots::Slots;
use crate::memory::GuestMemory;
use host::Errno;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};
use wasmcell_abi::socket::{
    errno, Address, Op, Opt, PollEntry, SocketCall, SocketReply, MAX_BACKLOG, MAX_BUFFER, MAX_POLL, MAX_SOCKETS,
    MAX_TRANSFER, READABLE, TCP, UDP, WRITABLE,
};

/// A workload's network: what its sockets may reach beyond what the network namespace allows,
/// and whether it may look names up.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Network {
    pub outgoing: Outgoing,
    /// The files its name lookups read (`None`: lookups are refused, as `wasmtime run` without
    /// `-S allow-ip-name-lookup`).
    pub name_lookup: Option<Resolver>,
}

/// Whether a workload may connect out or send datagrams (listening and answering are always
/// allowed). The namespace's own rules (a pod's NetworkPolicy) apply on top.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Outgoing {
    /// As a runc container: anywhere the namespace routes to.
    #[default]
    Allowed,
    /// Nowhere: `connect` and `send` to an address answer `EACCES`.
    Denied,
}

/// A driver broke the device's contract in a way no correct driver does.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SocketError {
    #[error("a buffer at {addr:#x} ({len} bytes) lies outside the workload's stack and heap")]
    BufferOutside { addr: u64, len: u64 },
    #[error("a poll of {count} sockets (at most {MAX_POLL})")]
    PollTooLong { count: u64 },
}

/// One host socket.
struct HostSocket {
    fd: OwnedFd,
    family: u8,
    kind: u64,
}

/// The sockets of one workload.
pub struct SocketDevice {
    /// The workload's stack and heap: every buffer must lie there.
    memory: GuestMemory,
    network: Network,
    /// Index = handle.
    sockets: Slots<HostSocket>,
}

/// The sockets an [`Op::Poll`] waits for: their entries and host descriptors.
pub struct PollSet {
    at: u64,
    entries: Vec<PollEntry>,
    /// One per entry (-1 for an unknown handle: ready at once).
    pub fds: Vec<libc::pollfd>,
    /// The timeout asked for, in µs (`None`: none).
    pub timeout_us: Option<u64>,
}

impl SocketDevice {
    pub fn new(memory: GuestMemory, network: Network) -> Self {
        Self { memory, network, sockets: Slots::default() }
    }

    /// Sockets open now.
    pub fn open_sockets(&self) -> usize {
        self.sockets.count()
    }

    /// Carries out `op` (anything but [`Op::Poll`]); `Err` only for a driver that broke the
    /// contract (the workload then ends).
    pub fn call(&mut self, op: Op, call: &SocketCall) -> Result<SocketReply, SocketError> {
        let [a, b, c, ..] = call.args;
        let address = |from: usize| Address::from_words(&call.args[from..from + Address::WORDS]);
        let value = |result: Result<u64, Errno>| match result {
            Ok(value) => SocketReply { result: value as i64, address: Address::default() },
            Err(e) => SocketReply::error(e),
        };
        let with_address = |result: Result<(u64, Address), Errno>| match result {
            Ok((value, address)) => SocketReply { result: value as i64, address },
            Err(e) => SocketReply::error(e),
        };
        Ok(match op {
            Op::Open => value(self.open(a, b)),
            Op::Bind => value(self.bind(a, &address(1)).map(|()| 0)),
            Op::Listen => value(self.socket(a).and_then(|s| host::listen(s.fd.as_raw_fd(), backlog(b))).map(|()| 0)),
            Op::Accept => with_address(self.accept(a)),
            Op::Connect => value(self.connect(a, &address(1)).map(|()| 0)),
            Op::Send => return self.send(a, b, c, &address(3)).map(value),
            Op::Receive => return self.receive(a, b, c, call.args[3] != 0).map(with_address),
            Op::Shutdown => value(self.shutdown(a, b).map(|()| 0)),
            Op::Close => value(self.close(a).map(|()| 0)),
            Op::LocalAddress => with_address(self.fd(a).and_then(|fd| host::name(fd, false)).map(|addr| (0, addr))),
            Op::PeerAddress => with_address(self.fd(a).and_then(|fd| host::name(fd, true)).map(|addr| (0, addr))),
            Op::SetOption => value(self.set_option(a, b, c).map(|()| 0)),
            Op::GetOption => value(self.get_option(a, b)),
            Op::TakeError => value(
                self.fd(a)
                    .and_then(|fd| host::get_int(fd, libc::SOL_SOCKET, libc::SO_ERROR))
                    .map(|e| (-i64::from(e)) as u64),
            ),
            Op::Resolver => return self.resolver(a, b).map(value),
            // Answered by the vCPU loop (it blocks); reaching here is a VMM bug, not the guest's.
            Op::Poll => SocketReply::error(errno::EINVAL),
        })
    }

    fn socket(&self, handle: u64) -> Result<&HostSocket, Errno> {
        self.sockets.get(handle).ok_or(errno::EBADF)
    }

    fn fd(&self, handle: u64) -> Result<RawFd, Errno> {
        self.socket(handle).map(|s| s.fd.as_raw_fd())
    }

    fn open(&mut self, family: u64, kind: u64) -> Result<u64, Errno> {
        let domain = match family {
            4 => libc::AF_INET,
            6 => libc::AF_INET6,
            _ => return Err(errno::EAFNOSUPPORT),
        };
        let socket_type = match kind {
            TCP => libc::SOCK_STREAM,
            UDP => libc::SOCK_DGRAM,
            _ => return Err(errno::EPROTONOSUPPORT),
        };
        if self.open_sockets() >= MAX_SOCKETS as usize {
            return Err(errno::EMFILE);
        }
        let fd = host::open(domain, socket_type)?;
        Ok(self.sockets.insert(HostSocket { fd, family: family as u8, kind }))
    }

    /// An address of the socket's own family (as the kernel would refuse anyway; checked here
    /// so that the answer does not depend on the host's IPv6 support).
    fn same_family(socket: &HostSocket, address: &Address) -> Result<(), Errno> {
        if address.family == socket.family {
            Ok(())
        } else {
            Err(errno::EAFNOSUPPORT)
        }
    }

    fn bind(&mut self, handle: u64, address: &Address) -> Result<(), Errno> {
        let socket = self.socket(handle)?;
        Self::same_family(socket, address)?;
        if socket.kind == TCP {
            // As wasmtime: a listener can be restarted on its port at once. Never SO_REUSEPORT,
            // which would let two workloads share (and steal) a port.
            host::set_int(socket.fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
        }
        host::bind(socket.fd.as_raw_fd(), address)
    }

    fn accept(&mut self, handle: u64) -> Result<(u64, Address), Errno> {
        let (family, fd) = {
            let socket = self.socket(handle)?;
            (socket.family, socket.fd.as_raw_fd())
        };
        // At the limit the connection stays in the backlog (the kernel bounds it) for later.
        if self.open_sockets() >= MAX_SOCKETS as usize {
            return Err(errno::EMFILE);
        }
        let (fd, peer) = host::accept(fd)?;
        Ok((self.sockets.insert(HostSocket { fd, family, kind: TCP }), peer))
    }

    fn connect(&mut self, handle: u64, address: &Address) -> Result<(), Errno> {
        let socket = self.socket(handle)?;
        if address.family == 0 && socket.kind == UDP {
            return host::connect(socket.fd.as_raw_fd(), address);
        }
        Self::same_family(socket, address)?;
        if self.network.outgoing == Outgoing::Denied {
            return Err(errno::EACCES);
        }
        host::connect(socket.fd.as_raw_fd(), address)
    }

    /// The host memory of the guest buffer `addr..addr+len` (`len` capped at [`MAX_TRANSFER`]).
    fn buffer(&self, addr: u64, len: u64) -> Result<(*mut u8, usize), SocketError> {
        let len = len.min(MAX_TRANSFER);
        let slice = self
            .memory
            .get_slice(GuestAddress(addr), len as usize)
            .map_err(|_| SocketError::BufferOutside { addr, len })?;
        Ok((slice.ptr_guard_mut().as_ptr(), len as usize))
    }

    fn send(&mut self, handle: u64, addr: u64, len: u64, to: &Address) -> Result<Result<u64, Errno>, SocketError> {
        let (ptr, len) = self.buffer(addr, len)?;
        let sent = self.socket(handle).and_then(|socket| {
            if to.family != 0 {
                Self::same_family(socket, to)?;
                if self.network.outgoing == Outgoing::Denied {
                    return Err(errno::EACCES);
                }
            }
            // SAFETY: `ptr..ptr+len` is host memory of the workload's window, mapped for as long
            // as this device (it holds a reference to the region); the guest may change it
            // meanwhile, which only changes the bytes sent.
            unsafe { host::send(socket.fd.as_raw_fd(), ptr, len, to) }
        });
        Ok(sent.map(|n| n as u64))
    }

    fn receive(
        &mut self,
        handle: u64,
        addr: u64,
        len: u64,
        peek: bool,
    ) -> Result<Result<(u64, Address), Errno>, SocketError> {
        let (ptr, len) = self.buffer(addr, len)?;
        let received = self.fd(handle).and_then(|fd| {
            // SAFETY: as for `send`: window memory the device keeps mapped; the kernel writes
            // at most `len` bytes into it.
            unsafe { host::receive(fd, ptr, len, peek) }
        });
        Ok(received.map(|(n, from)| (n as u64, from)))
    }

    /// Copies the resolver files into `addr..addr+len` → their length.
    fn resolver(&self, addr: u64, len: u64) -> Result<Result<u64, Errno>, SocketError> {
        let Some(resolver) = &self.network.name_lookup else { return Ok(Err(errno::EACCES)) };
        let files = resolver.files();
        if (files.len() as u64) > len {
            return Ok(Err(errno::ERANGE));
        }
        self.memory
            .write_slice(files, GuestAddress(addr))
            .map_err(|_| SocketError::BufferOutside { addr, len: files.len() as u64 })?;
        Ok(Ok(files.len() as u64))
    }

    fn shutdown(&mut self, handle: u64, how: u64) -> Result<(), Errno> {
        let how = match how {
            0 => libc::SHUT_RD,
            1 => libc::SHUT_WR,
            2 => libc::SHUT_RDWR,
            _ => return Err(errno::EINVAL),
        };
        host::shutdown(self.fd(handle)?, how)
    }

    fn close(&mut self, handle: u64) -> Result<(), Errno> {
        self.sockets.remove(handle).map(drop).ok_or(errno::EBADF)
    }

    /// The level and name of `option` on `socket`.
    fn option(socket: &HostSocket, option: u64) -> Result<(Opt, libc::c_int, libc::c_int), Errno> {
        let option = Opt::from_u64(option).ok_or(errno::ENOPROTOOPT)?;
        let tcp_only = |level, name| if socket.kind == TCP { Ok((level, name)) } else { Err(errno::ENOPROTOOPT) };
        let (level, name) = match option {
            Opt::KeepAlive => tcp_only(libc::SOL_SOCKET, libc::SO_KEEPALIVE)?,
            Opt::KeepIdle => tcp_only(libc::IPPROTO_TCP, libc::TCP_KEEPIDLE)?,
            Opt::KeepInterval => tcp_only(libc::IPPROTO_TCP, libc::TCP_KEEPINTVL)?,
            Opt::KeepCount => tcp_only(libc::IPPROTO_TCP, libc::TCP_KEEPCNT)?,
            Opt::HopLimit if socket.family == 6 => (libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS),
            Opt::HopLimit => (libc::IPPROTO_IP, libc::IP_TTL),
            Opt::ReceiveBuffer => (libc::SOL_SOCKET, libc::SO_RCVBUF),
            Opt::SendBuffer => (libc::SOL_SOCKET, libc::SO_SNDBUF),
        };
        Ok((option, level, name))
    }

    fn set_option(&mut self, handle: u64, option: u64, value: u64) -> Result<(), Errno> {
        let socket = self.socket(handle)?;
        let (option, level, name) = Self::option(socket, option)?;
        let value = match option {
            Opt::ReceiveBuffer | Opt::SendBuffer => value.min(MAX_BUFFER),
            _ => value.min(i32::MAX as u64),
        };
        host::set_int(socket.fd.as_raw_fd(), level, name, value as libc::c_int)
    }

    fn get_option(&mut self, handle: u64, option: u64) -> Result<u64, Errno> {
        let socket = self.socket(handle)?;
        let (_, level, name) = Self::option(socket, option)?;
        host::get_int(socket.fd.as_raw_fd(), level, name).map(|v| v.max(0) as u64)
    }

    /// Reads an [`Op::Poll`]'s entries: `(entries, count, timeout µs)`.
    pub fn poll_set(&self, call: &SocketCall) -> Result<PollSet, SocketError> {
        let [at, count, timeout, ..] = call.args;
        if count > MAX_POLL {
            return Err(SocketError::PollTooLong { count });
        }
        let len = count * PollEntry::SIZE as u64;
        let mut raw = vec![0u8; len as usize];
        self.memory.read_slice(&mut raw, GuestAddress(at)).map_err(|_| SocketError::BufferOutside { addr: at, len })?;
        let entries: Vec<PollEntry> = raw
            .chunks_exact(PollEntry::SIZE)
            .map(|chunk| PollEntry::from_bytes(chunk.try_into().unwrap_or(&[0; PollEntry::SIZE])))
            .collect();
        let fds = entries
            .iter()
            .map(|entry| {
                let fd = self.fd(u64::from(entry.handle)).unwrap_or(-1);
                let mut events = 0;
                if entry.events & READABLE != 0 {
                    events |= libc::POLLIN;
                }
                if entry.events & WRITABLE != 0 {
                    events |= libc::POLLOUT;
                }
                libc::pollfd { fd, events, revents: 0 }
            })
            .collect();
        Ok(PollSet { at, entries, fds, timeout_us: (timeout != u64::MAX).then_some(timeout) })
    }

    /// Fills in the entries' readiness from `set.fds` (polled by the caller) and writes them
    /// back → the reply (how many are ready).
    pub fn finish_poll(&self, mut set: PollSet) -> Result<SocketReply, SocketError> {
        let mut ready = 0;
        let mut raw = Vec::with_capacity(set.entries.len() * PollEntry::SIZE);
        for (entry, fd) in set.entries.iter_mut().zip(&set.fds) {
            entry.ready = if fd.fd < 0 {
                READABLE | WRITABLE
            } else if fd.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
                entry.events
            } else {
                let mut r = 0;
                if fd.revents & libc::POLLIN != 0 {
                    r |= READABLE;
                }
                if fd.revents & libc::POLLOUT != 0 {
                    r |= WRITABLE;
                }
                r & entry.events
            };
            if entry.ready != 0 || fd.fd < 0 {
                ready += 1;
            }
            raw.extend_from_slice(&entry.to_bytes());
        }
        let len = raw.len() as u64;
        self.memory
            .write_slice(&raw, GuestAddress(set.at))
            .map_err(|_| SocketError::BufferOutside { addr: set.at, len })?;
        Ok(SocketReply { result: ready, address: Address::default() })
    }
}

/// Whether any of `fds` is ready now (polls without waiting; fills their `revents`).
pub fn poll_now(fds: &mut [libc::pollfd]) -> bool {
    if fds.is_empty() {
        return false;
    }
    // SAFETY: `fds` is a live slice of pollfds; a zero timeout never blocks.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 0) };
    n > 0 || fds.iter().any(|fd| fd.fd < 0)
}

/// A listen backlog: at least 1, at most [`MAX_BACKLOG`].
fn backlog(asked: u64) -> libc::c_int {
    asked.clamp(1, MAX_BACKLOG) as libc::c_int
}

#[cfg(test)]
mod tests;

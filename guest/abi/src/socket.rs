//! The socket device: how a workload uses TCP and UDP sockets that the VMM holds for it in the
//! host kernel, in the VMM's network namespace (a pod's). The guest never sees a frame: each
//! call is one write of the operation number to the control device's [`SOCKET`] register, with
//! its arguments ([`SocketCall`]) placed in the vCPU block's `message` first; the VMM carries
//! the call out without blocking (every host socket is non-blocking) and writes a
//! [`SocketReply`] over the arguments before it resumes the vCPU. Data moves straight between
//! the workload's stack or heap and the host socket: a buffer anywhere else ends the workload
//! (a device error), as for the console.
//!
//! Results are Linux `errno` numbers, negated (the same numbers on x86-64 and arm64 for every
//! error a socket call gives), so the guest maps them to WASI errors exactly as wasmtime maps
//! the host's. Blocking is [`Op::Poll`]: a WAIT that also ends when a socket is ready.
//!
//! A vCPU whose info has [`crate::vcpu::HAS_NETWORK`] may use the device; without it, every
//! call answers `EACCES`.

/// Control-device register (offset): write an [`Op`] number after placing its [`SocketCall`].
pub const SOCKET: u16 = 0x28;

/// Sockets one workload may hold at once (listeners, connections, UDP sockets).
pub const MAX_SOCKETS: u32 = 256;
/// Bytes one send or receive moves at most (a datagram is at most this long).
pub const MAX_TRANSFER: u64 = 64 * 1024;
/// Pending connections a listener may have (its backlog is capped at this).
pub const MAX_BACKLOG: u64 = 128;
/// A socket buffer (`SO_RCVBUF`, `SO_SNDBUF`) a workload asks for is capped at this.
pub const MAX_BUFFER: u64 = 4 << 20;
/// Entries one [`Op::Poll`] may name.
pub const MAX_POLL: u64 = MAX_SOCKETS as u64;

/// Socket operations. Arguments are `SocketCall::args` in order; an address takes
/// [`Address::WORDS`] words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Op {
    /// `(family 4|6, kind)` → a handle. [`Kind`]; IPv6 sockets are v6-only.
    Open = 1,
    /// `(handle, address)`: bind (with `SO_REUSEADDR`, never `SO_REUSEPORT`).
    Bind = 2,
    /// `(handle, backlog)`: listen; backlog capped at [`MAX_BACKLOG`].
    Listen = 3,
    /// `(handle)` → a new handle; the reply's address is the peer's.
    Accept = 4,
    /// `(handle, address)`: start connecting (`-EINPROGRESS` until [`Op::TakeError`] says how it
    /// ended); an address of family 0 disconnects a UDP socket.
    Connect = 5,
    /// `(handle, buffer, length, address)`: send up to [`MAX_TRANSFER`] bytes (to the address,
    /// unless its family is 0) → bytes sent.
    Send = 6,
    /// `(handle, buffer, length, peek)`: receive up to [`MAX_TRANSFER`] bytes → bytes received
    /// (0: the peer closed); the reply's address is the sender's.
    Receive = 7,
    /// `(handle, how)`: 0 read, 1 write, 2 both.
    Shutdown = 8,
    /// `(handle)`: close; the handle may be given out again.
    Close = 9,
    /// `(handle)` → the reply's address is the local one.
    LocalAddress = 10,
    /// `(handle)` → the reply's address is the peer's.
    PeerAddress = 11,
    /// `(handle, option, value)`: one of [`Opt`].
    SetOption = 12,
    /// `(handle, option)` → its value.
    GetOption = 13,
    /// `(entries, count, timeout µs or u64::MAX)`: `count` × [`PollEntry`] at `entries` in the
    /// workload's memory; sleeps until one is ready, the timeout passes or stdin has input (as
    /// WAIT), writes every entry's `ready` → how many are ready.
    Poll = 14,
    /// `(handle)` → the socket's pending error (`SO_ERROR`), negated, or 0.
    TakeError = 15,
    /// `(buffer, length)`: copies the workload's resolver files into the buffer as
    /// [`ResolverFiles`] lays them out → their length (`-ERANGE` if the buffer is shorter,
    /// `-EACCES` for a workload without name lookup). Only the VMM's copy of the files it was
    /// given is read; the guest parses and resolves.
    Resolver = 16,
}

impl Op {
    pub fn from_u32(raw: u32) -> Option<Self> {
        Some(match raw {
            1 => Op::Open,
            2 => Op::Bind,
            3 => Op::Listen,
            4 => Op::Accept,
            5 => Op::Connect,
            6 => Op::Send,
            7 => Op::Receive,
            8 => Op::Shutdown,
            9 => Op::Close,
            10 => Op::LocalAddress,
            11 => Op::PeerAddress,
            12 => Op::SetOption,
            13 => Op::GetOption,
            14 => Op::Poll,
            15 => Op::TakeError,
            16 => Op::Resolver,
            _ => return None,
        })
    }
}

/// The bytes [`Op::Resolver`] copies: `resolv.conf`'s length (u32, little-endian), its bytes,
/// then the hosts file's bytes; at most [`MAX_TRANSFER`] in all.
pub struct ResolverFiles;

impl ResolverFiles {
    /// `(resolv.conf, hosts)` of a copy.
    pub fn split(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
        let (length, rest) = bytes.split_first_chunk::<4>()?;
        let length = usize::try_from(u32::from_le_bytes(*length)).ok()?;
        (length <= rest.len()).then(|| rest.split_at(length))
    }

    /// The copy of `resolv_conf` and `hosts`, each cut to its first `MAX_TRANSFER / 2 - 4`
    /// bytes (the guest reads less of each).
    #[cfg(any(feature = "alloc", test))]
    pub fn join(resolv_conf: &[u8], hosts: &[u8]) -> alloc::vec::Vec<u8> {
        let cap = MAX_TRANSFER as usize / 2 - 4;
        let (resolv_conf, hosts) = (&resolv_conf[..resolv_conf.len().min(cap)], &hosts[..hosts.len().min(cap)]);
        let mut bytes = alloc::vec::Vec::with_capacity(4 + resolv_conf.len() + hosts.len());
        bytes.extend_from_slice(&(resolv_conf.len() as u32).to_le_bytes());
        bytes.extend_from_slice(resolv_conf);
        bytes.extend_from_slice(hosts);
        bytes
    }
}

/// [`Op::Open`]'s kind.
pub const TCP: u64 = 1;
pub const UDP: u64 = 2;

/// Socket options a workload may read and set; nothing else is reachable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Opt {
    KeepAlive = 1,
    /// Seconds.
    KeepIdle = 2,
    /// Seconds.
    KeepInterval = 3,
    KeepCount = 4,
    /// `IP_TTL` or `IPV6_UNICAST_HOPS`, by the socket's family.
    HopLimit = 5,
    /// Bytes, capped at [`MAX_BUFFER`]; reads give what the kernel reports.
    ReceiveBuffer = 6,
    SendBuffer = 7,
}

impl Opt {
    pub fn from_u64(raw: u64) -> Option<Self> {
        Some(match raw {
            1 => Opt::KeepAlive,
            2 => Opt::KeepIdle,
            3 => Opt::KeepInterval,
            4 => Opt::KeepCount,
            5 => Opt::HopLimit,
            6 => Opt::ReceiveBuffer,
            7 => Opt::SendBuffer,
            _ => return None,
        })
    }
}

/// An IP socket address in four words: `family (0 none, 4, 6) | port << 16 | flowinfo << 32`,
/// the address's 16 bytes (IPv4 in the first 4) as two words, `scope_id`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Address {
    pub family: u8,
    pub port: u16,
    pub flowinfo: u32,
    pub ip: [u8; 16],
    pub scope_id: u32,
}

impl Address {
    pub const WORDS: usize = 4;

    pub fn v4(ip: [u8; 4], port: u16) -> Self {
        let mut bytes = [0; 16];
        bytes[..4].copy_from_slice(&ip);
        Self { family: 4, port, flowinfo: 0, ip: bytes, scope_id: 0 }
    }

    pub fn to_words(self) -> [u64; Self::WORDS] {
        let (high, low) = self.ip.split_at(8);
        [
            u64::from(self.family) | u64::from(self.port) << 16 | u64::from(self.flowinfo) << 32,
            u64::from_le_bytes(high.try_into().unwrap_or_default()),
            u64::from_le_bytes(low.try_into().unwrap_or_default()),
            u64::from(self.scope_id),
        ]
    }

    pub fn from_words(words: &[u64]) -> Self {
        let word = |i: usize| words.get(i).copied().unwrap_or(0);
        let mut ip = [0; 16];
        ip[..8].copy_from_slice(&word(1).to_le_bytes());
        ip[8..].copy_from_slice(&word(2).to_le_bytes());
        Self {
            family: word(0) as u8,
            port: (word(0) >> 16) as u16,
            flowinfo: (word(0) >> 32) as u32,
            ip,
            scope_id: word(3) as u32,
        }
    }
}

/// A call's arguments, in the vCPU block's `message`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SocketCall {
    pub args: [u64; 8],
}

impl SocketCall {
    pub const SIZE: usize = 64;

    pub fn to_bytes(self) -> [u8; Self::SIZE] {
        let mut bytes = [0; Self::SIZE];
        for (chunk, word) in bytes.chunks_exact_mut(8).zip(self.args) {
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        bytes
    }

    pub fn from_bytes(raw: &[u8; Self::SIZE]) -> Self {
        let mut args = [0; 8];
        for (word, chunk) in args.iter_mut().zip(raw.chunks_exact(8)) {
            *word = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
        }
        Self { args }
    }
}

/// What the VMM writes over the arguments: `result` (≥ 0: a value; < 0: `-errno`) and, for
/// the calls that give one, an address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SocketReply {
    pub result: i64,
    pub address: Address,
}

impl SocketReply {
    pub const SIZE: usize = 8 + 8 * Address::WORDS;

    pub fn error(errno: i32) -> Self {
        Self { result: -i64::from(errno), address: Address::default() }
    }

    pub fn to_bytes(self) -> [u8; Self::SIZE] {
        let mut bytes = [0; Self::SIZE];
        bytes[..8].copy_from_slice(&self.result.to_le_bytes());
        for (chunk, word) in bytes[8..].chunks_exact_mut(8).zip(self.address.to_words()) {
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        bytes
    }

    pub fn from_bytes(raw: &[u8; Self::SIZE]) -> Self {
        let word = |i: usize| u64::from_le_bytes(raw[i * 8..i * 8 + 8].try_into().unwrap_or_default());
        let words = [word(1), word(2), word(3), word(4)];
        Self { result: word(0) as i64, address: Address::from_words(&words) }
    }
}

/// [`PollEntry`] interests and readiness.
pub const READABLE: u16 = 1;
pub const WRITABLE: u16 = 2;

/// One socket of an [`Op::Poll`]: 8 bytes, `handle u32, events u16, ready u16` (the VMM writes
/// `ready`: the events that are ready, or both if the socket has an error or hung up; an
/// unknown handle is ready at once with both).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PollEntry {
    pub handle: u32,
    pub events: u16,
    pub ready: u16,
}

impl PollEntry {
    pub const SIZE: usize = 8;

    pub fn to_bytes(self) -> [u8; Self::SIZE] {
        let mut bytes = [0; Self::SIZE];
        bytes[..4].copy_from_slice(&self.handle.to_le_bytes());
        bytes[4..6].copy_from_slice(&self.events.to_le_bytes());
        bytes[6..].copy_from_slice(&self.ready.to_le_bytes());
        bytes
    }

    pub fn from_bytes(raw: &[u8; Self::SIZE]) -> Self {
        Self {
            handle: u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]),
            events: u16::from_le_bytes([raw[4], raw[5]]),
            ready: u16::from_le_bytes([raw[6], raw[7]]),
        }
    }
}

/// Linux `errno` values the two sides name (generic numbering: x86-64 and arm64 alike).
pub mod errno {
    pub const EPERM: i32 = 1;
    pub const EINTR: i32 = 4;
    pub const EBADF: i32 = 9;
    pub const EAGAIN: i32 = 11;
    pub const ENOMEM: i32 = 12;
    pub const EACCES: i32 = 13;
    pub const EINVAL: i32 = 22;
    pub const ENFILE: i32 = 23;
    pub const EMFILE: i32 = 24;
    pub const EPIPE: i32 = 32;
    pub const ERANGE: i32 = 34;
    pub const ENOTSOCK: i32 = 88;
    pub const EDESTADDRREQ: i32 = 89;
    pub const EMSGSIZE: i32 = 90;
    pub const ENOPROTOOPT: i32 = 92;
    pub const EPROTONOSUPPORT: i32 = 93;
    pub const EOPNOTSUPP: i32 = 95;
    pub const EAFNOSUPPORT: i32 = 97;
    pub const EADDRINUSE: i32 = 98;
    pub const EADDRNOTAVAIL: i32 = 99;
    pub const ENETDOWN: i32 = 100;
    pub const ENETUNREACH: i32 = 101;
    pub const ECONNABORTED: i32 = 103;
    pub const ECONNRESET: i32 = 104;
    pub const ENOBUFS: i32 = 105;
    pub const EISCONN: i32 = 106;
    pub const ENOTCONN: i32 = 107;
    pub const ETIMEDOUT: i32 = 110;
    pub const ECONNREFUSED: i32 = 111;
    pub const EHOSTDOWN: i32 = 112;
    pub const EHOSTUNREACH: i32 = 113;
    pub const EALREADY: i32 = 114;
    pub const EINPROGRESS: i32 = 115;
}

const _: () = assert!(SocketCall::SIZE <= crate::control::MESSAGE_MAX);
const _: () = assert!(SocketReply::SIZE <= SocketCall::SIZE);
const _: () = assert!(SOCKET + 4 <= crate::control::X86_PORT_COUNT);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolver_files_split_as_joined_and_a_bad_length_splits_nothing() {
        let joined = ResolverFiles::join(b"nameserver 10.0.0.1\n", b"127.0.0.1 localhost\n");
        assert_eq!(ResolverFiles::split(&joined), Some((&b"nameserver 10.0.0.1\n"[..], &b"127.0.0.1 localhost\n"[..])));
        assert_eq!(ResolverFiles::join(&[b'#'; 1 << 20], &[b'#'; 1 << 20]).len() as u64, MAX_TRANSFER - 4);
        assert_eq!(ResolverFiles::split(&[9, 0, 0, 0, b'x']), None);
        assert_eq!(ResolverFiles::split(&[0, 0]), None);
    }

    #[test]
    fn calls_replies_and_entries_round_trip() {
        let call = SocketCall { args: [1, 2, u64::MAX, 4, 5, 6, 7, 8] };
        assert_eq!(SocketCall::from_bytes(&call.to_bytes()), call);
        let address = Address { family: 6, port: 8080, flowinfo: 7, ip: *b"0123456789abcdef", scope_id: 3 };
        assert_eq!(Address::from_words(&address.to_words()), address);
        let reply = SocketReply { result: -111, address };
        assert_eq!(SocketReply::from_bytes(&reply.to_bytes()), reply);
        let entry = PollEntry { handle: 9, events: READABLE | WRITABLE, ready: WRITABLE };
        assert_eq!(PollEntry::from_bytes(&entry.to_bytes()), entry);
        assert_eq!(Address::v4([127, 0, 0, 1], 80).ip[..4], [127, 0, 0, 1]);
    }

    #[test]
    fn unknown_numbers_are_no_operation_or_option() {
        assert_eq!(Op::from_u32(0), None);
        assert_eq!(Op::from_u32(17), None);
        assert_eq!(Op::from_u32(14), Some(Op::Poll));
        assert_eq!(Op::from_u32(16), Some(Op::Resolver));
        assert_eq!(Opt::from_u64(8), None);
        assert_eq!(Opt::from_u64(1), Some(Opt::KeepAlive));
    }
}

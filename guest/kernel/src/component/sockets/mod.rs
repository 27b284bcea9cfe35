//! `wasi:sockets` (network, instance-network, ip-name-lookup, tcp, udp) over the socket device
//! (`crate::net`): the sockets are the host kernel's, in the VMM's network namespace, and
//! everything answers as `wasmtime run -S inherit-network` does — the same state machine, the
//! same argument checks before any system call, the same mapping of the host's `errno` to
//! error codes. Names are looked up in the guest (`crate::net::lookup`) for a workload allowed
//! to (`wasmtime run -S allow-ip-name-lookup`); the lookup blocks the instance until it is done.
//!
//! A workload without a network still creates and configures sockets (with Linux's defaults),
//! but every address is denied, as `wasmtime run` without `-S inherit-network` answers.

mod tcp;
mod udp;

use super::bindings::wasi::sockets::network::{
    ErrorCode, IpAddressFamily, IpSocketAddress, Ipv4SocketAddress, Ipv6SocketAddress,
};
use super::bindings::wasi::sockets::{instance_network, ip_name_lookup, network};
use super::{ComponentCtx, IoError, Pollable};
use alloc::collections::VecDeque;
use alloc::string::String;
use core::net::IpAddr;
use ip_name_lookup::IpAddress;
use rand_chacha::rand_core::Rng;
use wasmcell_abi::socket::{errno, Address};
use wasmcell_guest_dns::{parse_host, Config, Host};
use wasmtime::component::Resource;

pub use tcp::{StreamFailure, TcpInput, TcpOutput, TcpSocket};
pub use udp::{IncomingDatagrams, OutgoingDatagrams, UdpSocket};

type SocketResult<T> = wasmtime::Result<Result<T, ErrorCode>>;

/// `wasi:sockets/network.network`: the one network of an instance.
pub struct Network;

/// The error code wasmtime gives for the host's `errno` (`wasmtime-wasi`'s table, Linux).
pub fn error_code(errno: i32) -> ErrorCode {
    match errno {
        errno::EPERM | errno::EACCES => ErrorCode::AccessDenied,
        errno::EADDRINUSE => ErrorCode::AddressInUse,
        errno::EADDRNOTAVAIL => ErrorCode::AddressNotBindable,
        errno::ETIMEDOUT => ErrorCode::Timeout,
        // WASI 0.2 has no `connection-broken`; wasmtime reports it as unknown (a write sees
        // the stream closed instead: `TcpOutput`).
        errno::ECONNREFUSED => ErrorCode::ConnectionRefused,
        errno::ECONNRESET => ErrorCode::ConnectionReset,
        errno::ECONNABORTED => ErrorCode::ConnectionAborted,
        errno::EINVAL => ErrorCode::InvalidArgument,
        errno::EHOSTUNREACH | errno::EHOSTDOWN | errno::ENETDOWN | errno::ENETUNREACH => ErrorCode::RemoteUnreachable,
        errno::EISCONN | errno::ENOTCONN | errno::EDESTADDRREQ => ErrorCode::InvalidState,
        errno::EMSGSIZE => ErrorCode::DatagramTooLarge,
        errno::ENOMEM | errno::ENOBUFS => ErrorCode::OutOfMemory,
        errno::EOPNOTSUPP | errno::ENOPROTOOPT | errno::EPROTONOSUPPORT | errno::EAFNOSUPPORT => {
            ErrorCode::NotSupported
        }
        errno::EMFILE => ErrorCode::NewSocketLimit,
        errno::EAGAIN => ErrorCode::WouldBlock,
        _ => ErrorCode::Unknown,
    }
}

fn family_number(family: IpAddressFamily) -> u8 {
    match family {
        IpAddressFamily::Ipv4 => 4,
        IpAddressFamily::Ipv6 => 6,
    }
}

/// The device's address of a WASI one.
fn to_device(address: &IpSocketAddress) -> Address {
    match *address {
        IpSocketAddress::Ipv4(Ipv4SocketAddress { port, address: (a, b, c, d) }) => Address::v4([a, b, c, d], port),
        IpSocketAddress::Ipv6(Ipv6SocketAddress { port, flow_info, address, scope_id }) => {
            let segments = [address.0, address.1, address.2, address.3, address.4, address.5, address.6, address.7];
            let mut ip = [0; 16];
            for (chunk, segment) in ip.chunks_exact_mut(2).zip(segments) {
                chunk.copy_from_slice(&segment.to_be_bytes());
            }
            Address { family: 6, port, flowinfo: flow_info, ip, scope_id }
        }
    }
}

/// The WASI address of a device one (IPv4-mapped IPv6 addresses stay IPv6, as on the host).
fn from_device(address: &Address) -> IpSocketAddress {
    let ip = address.ip;
    if address.family == 4 {
        return IpSocketAddress::Ipv4(Ipv4SocketAddress { port: address.port, address: (ip[0], ip[1], ip[2], ip[3]) });
    }
    let s = |i: usize| u16::from_be_bytes([ip[2 * i], ip[2 * i + 1]]);
    IpSocketAddress::Ipv6(Ipv6SocketAddress {
        port: address.port,
        flow_info: address.flowinfo,
        address: (s(0), s(1), s(2), s(3), s(4), s(5), s(6), s(7)),
        scope_id: address.scope_id,
    })
}

/// The IPv6 address as 16 bytes.
fn v6_bytes(address: &Address) -> Option<[u8; 16]> {
    (address.family == 6).then_some(address.ip)
}

/// An IPv4 address written inside IPv6 (`::ffff:a.b.c.d`, or the deprecated `::a.b.c.d`).
fn embedded_v4(ip: &[u8; 16]) -> Option<[u8; 4]> {
    let v4 = [ip[12], ip[13], ip[14], ip[15]];
    let mapped = ip[..10].iter().all(|&b| b == 0) && ip[10] == 0xff && ip[11] == 0xff;
    mapped.then_some(v4)
}

/// The canonical IPv4 address of `address`, if it is one (an IPv4-mapped IPv6 one too).
fn canonical_v4(address: &Address) -> Option<[u8; 4]> {
    match address.family {
        4 => Some([address.ip[0], address.ip[1], address.ip[2], address.ip[3]]),
        _ => v6_bytes(address).as_ref().and_then(embedded_v4),
    }
}

/// wasmtime's `is_valid_unicast_address`: not multicast, not the IPv4 broadcast address.
fn is_unicast(address: &Address) -> bool {
    match canonical_v4(address) {
        Some(v4) => !(224..=239).contains(&v4[0]) && v4 != [255; 4],
        None => address.ip[0] != 0xff,
    }
}

/// wasmtime's `is_valid_address_family`: the socket's family, and no IPv4 inside IPv6.
fn is_family(address: &Address, family: IpAddressFamily) -> bool {
    match (family, address.family) {
        (IpAddressFamily::Ipv4, 4) => true,
        (IpAddressFamily::Ipv6, 6) => {
            let ip = address.ip;
            let compatible = ip[..12].iter().all(|&b| b == 0) && !(ip[12..15].iter().all(|&b| b == 0) && ip[15] <= 1);
            !compatible && embedded_v4(&ip).is_none()
        }
        _ => false,
    }
}

/// wasmtime's `is_valid_remote_address`: a port, and not the unspecified address.
fn is_remote(address: &Address) -> bool {
    let unspecified = match canonical_v4(address) {
        Some(v4) => v4 == [0; 4],
        None => address.ip == [0; 16],
    };
    !unspecified && address.port != 0
}

impl network::Host for ComponentCtx {
    fn network_error_code(&mut self, error: Resource<IoError>) -> wasmtime::Result<Option<ErrorCode>> {
        Ok(match self.table.get(&error)? {
            IoError::Socket(code) => Some(*code),
            _ => None,
        })
    }
}

impl network::HostNetwork for ComponentCtx {
    fn drop(&mut self, network: Resource<Network>) -> wasmtime::Result<()> {
        self.table.delete(network)?;
        Ok(())
    }
}

impl instance_network::Host for ComponentCtx {
    fn instance_network(&mut self) -> wasmtime::Result<Resource<Network>> {
        Ok(self.table.push(Network)?)
    }
}

/// `wasi:sockets/ip-name-lookup.resolve-address-stream`: a lookup, done when first read.
pub enum ResolveAddressStream {
    /// A domain and the resolver files it is to be looked up with.
    Pending(String, Config),
    Done(Result<VecDeque<IpAddress>, ErrorCode>),
}

fn ip_address(ip: IpAddr) -> IpAddress {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            IpAddress::Ipv4((a, b, c, d))
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddress::Ipv6((s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]))
        }
    }
}

impl ComponentCtx {
    /// The lookup of `name` as far as it goes without a query: an address, an error, or a
    /// domain to ask about.
    fn start_lookup(&self, name: &str) -> Result<ResolveAddressStream, ErrorCode> {
        // Allowed first, as wasmtime (one call: the files come with the permission).
        let config = match crate::net::available().then(crate::net::lookup::resolver) {
            Some(Ok(config)) => config,
            _ => return Err(ErrorCode::PermanentResolverFailure),
        };
        let done = |ip: IpAddr| ResolveAddressStream::Done(Ok(VecDeque::from([ip_address(ip)])));
        match parse_host(name).map_err(|_| ErrorCode::InvalidArgument)? {
            Host::V4(v4) => Ok(done(IpAddr::V4(v4))),
            Host::V6(v6) => Ok(done(IpAddr::V6(v6))),
            Host::Domain(domain) => Ok(ResolveAddressStream::Pending(domain, config)),
        }
    }

    fn finish_lookup(&mut self, domain: &str, config: &Config) -> Result<VecDeque<IpAddress>, ErrorCode> {
        let clocks = &self.wasi.clocks;
        let rng = &mut self.wasi.rng;
        let now_ns = || clocks.monotonic_ns().unwrap_or(0);
        let mut id = || rng.next_u32() as u16;
        let found = crate::net::lookup::resolve(config, domain, &now_ns, &mut id).ok_or(ErrorCode::NameUnresolvable)?;
        Ok(found.into_iter().map(ip_address).collect())
    }
}

impl ip_name_lookup::Host for ComponentCtx {
    fn resolve_addresses(
        &mut self,
        network: Resource<Network>,
        name: String,
    ) -> SocketResult<Resource<ResolveAddressStream>> {
        self.table.get(&network)?;
        match self.start_lookup(&name) {
            Ok(stream) => Ok(Ok(self.table.push(stream)?)),
            Err(code) => Ok(Err(code)),
        }
    }
}

impl ip_name_lookup::HostResolveAddressStream for ComponentCtx {
    fn resolve_next_address(&mut self, stream: Resource<ResolveAddressStream>) -> SocketResult<Option<IpAddress>> {
        if let ResolveAddressStream::Pending(domain, config) = self.table.get(&stream)? {
            let (domain, config) = (domain.clone(), config.clone());
            let done = self.finish_lookup(&domain, &config);
            *self.table.get_mut(&stream)? = ResolveAddressStream::Done(done);
        }
        match self.table.get_mut(&stream)? {
            ResolveAddressStream::Done(Ok(addresses)) => Ok(Ok(addresses.pop_front())),
            ResolveAddressStream::Done(Err(code)) => Ok(Err(*code)),
            ResolveAddressStream::Pending(..) => Ok(Err(ErrorCode::WouldBlock)),
        }
    }

    // The lookup runs when the stream is read, so it is always ready to be read.
    fn subscribe(&mut self, stream: Resource<ResolveAddressStream>) -> wasmtime::Result<Resource<Pollable>> {
        Ok(self.table.push_child(Pollable::Ready, &stream)?)
    }

    fn drop(&mut self, stream: Resource<ResolveAddressStream>) -> wasmtime::Result<()> {
        self.table.delete(stream)?;
        Ok(())
    }
}

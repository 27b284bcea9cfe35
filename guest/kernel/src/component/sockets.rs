//! `wasi:sockets` before the guest has a network: every interface links so that components
//! built with networking in them instantiate, and they answer as `wasmtime run` does without
//! `-S inherit-network`: sockets can be created and configured, but every address is denied
//! (`access-denied` for bind and connect) and names do not resolve
//! (`permanent-resolver-failure`). The networking work replaces this file.

use super::bindings::wasi::sockets::network::{ErrorCode, IpAddressFamily, IpSocketAddress};
use super::bindings::wasi::sockets::{
    instance_network, ip_name_lookup, network, tcp, tcp_create_socket, udp, udp_create_socket,
};
use super::{ComponentCtx, InputStream, OutputStream, Pollable};
use alloc::vec::Vec;
use ip_name_lookup::{IpAddress, ResolveAddressStream};
use tcp::ShutdownType;
use udp::{IncomingDatagram, IncomingDatagramStream, OutgoingDatagram, OutgoingDatagramStream};
use wasmtime::component::Resource;

type SocketResult<T> = wasmtime::Result<Result<T, ErrorCode>>;

/// `wasi:sockets/network.network`: the one network of an instance.
pub struct Network;

/// A TCP socket that was never bound or connected (nothing can be).
pub struct TcpSocket {
    family: IpAddressFamily,
}

/// A UDP socket that was never bound (nothing can be).
pub struct UdpSocket {
    family: IpAddressFamily,
}

fn family_of(address: &IpSocketAddress) -> IpAddressFamily {
    match address {
        IpSocketAddress::Ipv4(_) => IpAddressFamily::Ipv4,
        IpSocketAddress::Ipv6(_) => IpAddressFamily::Ipv6,
    }
}

/// What binding or connecting to `address` answers: the family must match, and then every
/// address is denied.
fn denied(family: IpAddressFamily, address: &IpSocketAddress) -> Result<(), ErrorCode> {
    if family_of(address) != family {
        return Err(ErrorCode::InvalidArgument);
    }
    Err(ErrorCode::AccessDenied)
}

/// A socket option's setter: zero is invalid, anything else is accepted (and has no effect).
fn option(value: u64) -> Result<(), ErrorCode> {
    if value == 0 {
        Err(ErrorCode::InvalidArgument)
    } else {
        Ok(())
    }
}

impl network::Host for ComponentCtx {
    fn network_error_code(&mut self, _error: Resource<super::IoError>) -> wasmtime::Result<Option<ErrorCode>> {
        Ok(None)
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

impl ip_name_lookup::Host for ComponentCtx {
    fn resolve_addresses(
        &mut self,
        network: Resource<Network>,
        _name: alloc::string::String,
    ) -> SocketResult<Resource<ResolveAddressStream>> {
        self.table.get(&network)?;
        Ok(Err(ErrorCode::PermanentResolverFailure))
    }
}

impl ip_name_lookup::HostResolveAddressStream for ComponentCtx {
    fn resolve_next_address(&mut self, _stream: Resource<ResolveAddressStream>) -> SocketResult<Option<IpAddress>> {
        Ok(Err(ErrorCode::PermanentResolverFailure))
    }

    fn subscribe(&mut self, stream: Resource<ResolveAddressStream>) -> wasmtime::Result<Resource<Pollable>> {
        Ok(self.table.push_child(Pollable::Ready, &stream)?)
    }

    fn drop(&mut self, stream: Resource<ResolveAddressStream>) -> wasmtime::Result<()> {
        self.table.delete(stream)?;
        Ok(())
    }
}

impl tcp_create_socket::Host for ComponentCtx {
    fn create_tcp_socket(&mut self, family: IpAddressFamily) -> SocketResult<Resource<TcpSocket>> {
        Ok(Ok(self.table.push(TcpSocket { family })?))
    }
}

impl ComponentCtx {
    /// `answer`, once `socket` is known to be a live handle (a stale one traps, as in wasmtime).
    fn answer_for<S: 'static, T>(&self, socket: &Resource<S>, answer: Result<T, ErrorCode>) -> SocketResult<T> {
        self.table.get(socket)?;
        Ok(answer)
    }

    fn tcp_family(&self, socket: &Resource<TcpSocket>) -> wasmtime::Result<IpAddressFamily> {
        Ok(self.table.get(socket)?.family)
    }

    fn udp_family(&self, socket: &Resource<UdpSocket>) -> wasmtime::Result<IpAddressFamily> {
        Ok(self.table.get(socket)?.family)
    }
}

impl tcp::Host for ComponentCtx {}

impl tcp::HostTcpSocket for ComponentCtx {
    fn start_bind(
        &mut self,
        s: Resource<TcpSocket>,
        _: Resource<Network>,
        address: IpSocketAddress,
    ) -> SocketResult<()> {
        Ok(denied(self.tcp_family(&s)?, &address))
    }
    fn finish_bind(&mut self, s: Resource<TcpSocket>) -> SocketResult<()> {
        self.answer_for(&s, Err(ErrorCode::NotInProgress))
    }
    fn start_connect(
        &mut self,
        s: Resource<TcpSocket>,
        _: Resource<Network>,
        address: IpSocketAddress,
    ) -> SocketResult<()> {
        Ok(denied(self.tcp_family(&s)?, &address))
    }
    fn finish_connect(
        &mut self,
        s: Resource<TcpSocket>,
    ) -> SocketResult<(Resource<InputStream>, Resource<OutputStream>)> {
        self.answer_for(&s, Err(ErrorCode::NotInProgress))
    }
    fn start_listen(&mut self, s: Resource<TcpSocket>) -> SocketResult<()> {
        self.answer_for(&s, Err(ErrorCode::InvalidState))
    }
    fn finish_listen(&mut self, s: Resource<TcpSocket>) -> SocketResult<()> {
        self.answer_for(&s, Err(ErrorCode::NotInProgress))
    }
    fn accept(
        &mut self,
        s: Resource<TcpSocket>,
    ) -> SocketResult<(Resource<TcpSocket>, Resource<InputStream>, Resource<OutputStream>)> {
        self.answer_for(&s, Err(ErrorCode::InvalidState))
    }
    fn local_address(&mut self, s: Resource<TcpSocket>) -> SocketResult<IpSocketAddress> {
        self.answer_for(&s, Err(ErrorCode::InvalidState))
    }
    fn remote_address(&mut self, s: Resource<TcpSocket>) -> SocketResult<IpSocketAddress> {
        self.answer_for(&s, Err(ErrorCode::InvalidState))
    }
    fn is_listening(&mut self, s: Resource<TcpSocket>) -> wasmtime::Result<bool> {
        self.tcp_family(&s)?;
        Ok(false)
    }
    fn address_family(&mut self, s: Resource<TcpSocket>) -> wasmtime::Result<IpAddressFamily> {
        self.tcp_family(&s)
    }
    fn set_listen_backlog_size(&mut self, s: Resource<TcpSocket>, value: u64) -> SocketResult<()> {
        self.answer_for(&s, option(value))
    }
    fn keep_alive_enabled(&mut self, s: Resource<TcpSocket>) -> SocketResult<bool> {
        self.answer_for(&s, Ok(false))
    }
    fn set_keep_alive_enabled(&mut self, s: Resource<TcpSocket>, _: bool) -> SocketResult<()> {
        self.answer_for(&s, Ok(()))
    }
    // Linux's defaults, which a fresh host socket reports.
    fn keep_alive_idle_time(&mut self, s: Resource<TcpSocket>) -> SocketResult<u64> {
        self.answer_for(&s, Ok(7_200_000_000_000))
    }
    fn set_keep_alive_idle_time(&mut self, s: Resource<TcpSocket>, value: u64) -> SocketResult<()> {
        self.answer_for(&s, option(value))
    }
    fn keep_alive_interval(&mut self, s: Resource<TcpSocket>) -> SocketResult<u64> {
        self.answer_for(&s, Ok(75_000_000_000))
    }
    fn set_keep_alive_interval(&mut self, s: Resource<TcpSocket>, value: u64) -> SocketResult<()> {
        self.answer_for(&s, option(value))
    }
    fn keep_alive_count(&mut self, s: Resource<TcpSocket>) -> SocketResult<u32> {
        self.answer_for(&s, Ok(9))
    }
    fn set_keep_alive_count(&mut self, s: Resource<TcpSocket>, value: u32) -> SocketResult<()> {
        self.answer_for(&s, option(value.into()))
    }
    fn hop_limit(&mut self, s: Resource<TcpSocket>) -> SocketResult<u8> {
        self.answer_for(&s, Ok(64))
    }
    fn set_hop_limit(&mut self, s: Resource<TcpSocket>, value: u8) -> SocketResult<()> {
        self.answer_for(&s, option(value.into()))
    }
    fn receive_buffer_size(&mut self, s: Resource<TcpSocket>) -> SocketResult<u64> {
        self.answer_for(&s, Ok(131_072))
    }
    fn set_receive_buffer_size(&mut self, s: Resource<TcpSocket>, value: u64) -> SocketResult<()> {
        self.answer_for(&s, option(value))
    }
    fn send_buffer_size(&mut self, s: Resource<TcpSocket>) -> SocketResult<u64> {
        self.answer_for(&s, Ok(16_384))
    }
    fn set_send_buffer_size(&mut self, s: Resource<TcpSocket>, value: u64) -> SocketResult<()> {
        self.answer_for(&s, option(value))
    }
    fn subscribe(&mut self, s: Resource<TcpSocket>) -> wasmtime::Result<Resource<Pollable>> {
        Ok(self.table.push_child(Pollable::Ready, &s)?)
    }
    fn shutdown(&mut self, s: Resource<TcpSocket>, _: ShutdownType) -> SocketResult<()> {
        self.answer_for(&s, Err(ErrorCode::InvalidState))
    }
    fn drop(&mut self, s: Resource<TcpSocket>) -> wasmtime::Result<()> {
        self.table.delete(s)?;
        Ok(())
    }
}

impl udp_create_socket::Host for ComponentCtx {
    fn create_udp_socket(&mut self, family: IpAddressFamily) -> SocketResult<Resource<UdpSocket>> {
        Ok(Ok(self.table.push(UdpSocket { family })?))
    }
}

impl udp::Host for ComponentCtx {}

impl udp::HostUdpSocket for ComponentCtx {
    fn start_bind(
        &mut self,
        s: Resource<UdpSocket>,
        _: Resource<Network>,
        address: IpSocketAddress,
    ) -> SocketResult<()> {
        Ok(denied(self.udp_family(&s)?, &address))
    }
    fn finish_bind(&mut self, s: Resource<UdpSocket>) -> SocketResult<()> {
        self.answer_for(&s, Err(ErrorCode::NotInProgress))
    }
    fn stream(
        &mut self,
        s: Resource<UdpSocket>,
        _remote: Option<IpSocketAddress>,
    ) -> SocketResult<(Resource<IncomingDatagramStream>, Resource<OutgoingDatagramStream>)> {
        self.answer_for(&s, Err(ErrorCode::InvalidState))
    }
    fn local_address(&mut self, s: Resource<UdpSocket>) -> SocketResult<IpSocketAddress> {
        self.answer_for(&s, Err(ErrorCode::InvalidState))
    }
    fn remote_address(&mut self, s: Resource<UdpSocket>) -> SocketResult<IpSocketAddress> {
        self.answer_for(&s, Err(ErrorCode::InvalidState))
    }
    fn address_family(&mut self, s: Resource<UdpSocket>) -> wasmtime::Result<IpAddressFamily> {
        self.udp_family(&s)
    }
    fn unicast_hop_limit(&mut self, s: Resource<UdpSocket>) -> SocketResult<u8> {
        self.answer_for(&s, Ok(64))
    }
    fn set_unicast_hop_limit(&mut self, s: Resource<UdpSocket>, value: u8) -> SocketResult<()> {
        self.answer_for(&s, option(value.into()))
    }
    fn receive_buffer_size(&mut self, s: Resource<UdpSocket>) -> SocketResult<u64> {
        self.answer_for(&s, Ok(212_992))
    }
    fn set_receive_buffer_size(&mut self, s: Resource<UdpSocket>, value: u64) -> SocketResult<()> {
        self.answer_for(&s, option(value))
    }
    fn send_buffer_size(&mut self, s: Resource<UdpSocket>) -> SocketResult<u64> {
        self.answer_for(&s, Ok(212_992))
    }
    fn set_send_buffer_size(&mut self, s: Resource<UdpSocket>, value: u64) -> SocketResult<()> {
        self.answer_for(&s, option(value))
    }
    fn subscribe(&mut self, s: Resource<UdpSocket>) -> wasmtime::Result<Resource<Pollable>> {
        Ok(self.table.push_child(Pollable::Ready, &s)?)
    }
    fn drop(&mut self, s: Resource<UdpSocket>) -> wasmtime::Result<()> {
        self.table.delete(s)?;
        Ok(())
    }
}

// Datagram streams come only from `stream` on a bound socket, which never succeeds: a handle a
// component passes here was never handed out, and the table lookup fails (a trap).
impl udp::HostIncomingDatagramStream for ComponentCtx {
    fn receive(&mut self, s: Resource<IncomingDatagramStream>, _max: u64) -> SocketResult<Vec<IncomingDatagram>> {
        self.answer_for(&s, Err(ErrorCode::InvalidState))
    }
    fn subscribe(&mut self, s: Resource<IncomingDatagramStream>) -> wasmtime::Result<Resource<Pollable>> {
        Ok(self.table.push_child(Pollable::Ready, &s)?)
    }
    fn drop(&mut self, s: Resource<IncomingDatagramStream>) -> wasmtime::Result<()> {
        self.table.delete(s)?;
        Ok(())
    }
}

impl udp::HostOutgoingDatagramStream for ComponentCtx {
    fn check_send(&mut self, s: Resource<OutgoingDatagramStream>) -> SocketResult<u64> {
        self.answer_for(&s, Err(ErrorCode::InvalidState))
    }
    fn send(&mut self, s: Resource<OutgoingDatagramStream>, _datagrams: Vec<OutgoingDatagram>) -> SocketResult<u64> {
        self.answer_for(&s, Err(ErrorCode::InvalidState))
    }
    fn subscribe(&mut self, s: Resource<OutgoingDatagramStream>) -> wasmtime::Result<Resource<Pollable>> {
        Ok(self.table.push_child(Pollable::Ready, &s)?)
    }
    fn drop(&mut self, s: Resource<OutgoingDatagramStream>) -> wasmtime::Result<()> {
        self.table.delete(s)?;
        Ok(())
    }
}

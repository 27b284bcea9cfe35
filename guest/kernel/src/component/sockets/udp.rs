//! `wasi:sockets/udp` and `udp-create-socket`: wasmtime's rules (bind, `stream` to connect or
//! disconnect, the per-datagram address checks, at most [`MAX_DATAGRAMS`] per call) over the
//! socket device.

use super::{error_code, family_number, from_device, is_family, is_remote, to_device};
use super::{Network, SocketResult};
use crate::component::bindings::wasi::sockets::network::{ErrorCode, IpAddressFamily, IpSocketAddress};
use crate::component::bindings::wasi::sockets::{udp, udp_create_socket};
use crate::component::{ComponentCtx, Pollable};
use crate::net::{self, Handle};
use alloc::vec::Vec;
use udp::{IncomingDatagram, OutgoingDatagram};
use wasmcell_abi::socket::{errno, Address, Opt, READABLE, WRITABLE};
use wasmtime::component::Resource;

/// Datagrams one `receive` or `send` moves at most (wasmtime's).
const MAX_DATAGRAMS: usize = 16;
/// The largest datagram (wasmtime's).
const MAX_DATAGRAM: usize = u16::MAX as usize;

/// `wasi:sockets/udp.udp-socket`.
pub struct UdpSocket {
    family: IpAddressFamily,
    /// The device's socket (`None`: the workload has no network).
    handle: Option<Handle>,
    bound: bool,
    remote: Option<Address>,
    bind_in_progress: bool,
}

impl Drop for UdpSocket {
    fn drop(&mut self) {
        if let Some(handle) = self.handle {
            net::close(handle);
        }
    }
}

/// `incoming-datagram-stream`.
pub struct IncomingDatagrams {
    handle: Handle,
}

/// `outgoing-datagram-stream`: `permits` is what the last `check-send` allowed.
pub struct OutgoingDatagrams {
    handle: Handle,
    family: IpAddressFamily,
    remote: Option<Address>,
    permits: usize,
}

impl udp_create_socket::Host for ComponentCtx {
    fn create_udp_socket(&mut self, family: IpAddressFamily) -> SocketResult<Resource<UdpSocket>> {
        let handle = if net::available() {
            match net::open(family_number(family), false) {
                Ok(handle) => Some(handle),
                Err(e) => return Ok(Err(error_code(e))),
            }
        } else {
            None
        };
        let socket = UdpSocket { family, handle, bound: false, remote: None, bind_in_progress: false };
        Ok(Ok(self.table.push(socket)?))
    }
}

fn read_option(socket: &UdpSocket, option: Opt, default: u64) -> Result<u64, ErrorCode> {
    match socket.handle {
        Some(handle) => net::get_option(handle, option).map_err(error_code),
        None => Ok(default),
    }
}

fn write_option(socket: &UdpSocket, option: Opt, value: u64) -> Result<(), ErrorCode> {
    if value == 0 {
        return Err(ErrorCode::InvalidArgument);
    }
    match socket.handle {
        Some(handle) => net::set_option(handle, option, value).map_err(error_code),
        None => Ok(()),
    }
}

impl udp::Host for ComponentCtx {}

impl udp::HostUdpSocket for ComponentCtx {
    fn start_bind(
        &mut self,
        s: Resource<UdpSocket>,
        network: Resource<Network>,
        address: IpSocketAddress,
    ) -> SocketResult<()> {
        self.table.get(&network)?;
        let socket = self.table.get_mut(&s)?;
        if socket.bind_in_progress {
            return Ok(Err(ErrorCode::ConcurrencyConflict));
        }
        if socket.bound {
            return Ok(Err(ErrorCode::InvalidState));
        }
        let address = to_device(&address);
        if !is_family(&address, socket.family) {
            return Ok(Err(ErrorCode::InvalidArgument));
        }
        let Some(handle) = socket.handle else { return Ok(Err(ErrorCode::AccessDenied)) };
        match net::bind(handle, &address) {
            Ok(()) => {
                socket.bound = true;
                socket.bind_in_progress = true;
                Ok(Ok(()))
            }
            Err(errno::EAFNOSUPPORT) => Ok(Err(ErrorCode::InvalidArgument)),
            Err(e) => Ok(Err(error_code(e))),
        }
    }

    fn finish_bind(&mut self, s: Resource<UdpSocket>) -> SocketResult<()> {
        let socket = self.table.get_mut(&s)?;
        if !socket.bind_in_progress {
            return Ok(Err(ErrorCode::NotInProgress));
        }
        socket.bind_in_progress = false;
        Ok(Ok(()))
    }

    fn stream(
        &mut self,
        s: Resource<UdpSocket>,
        remote: Option<IpSocketAddress>,
    ) -> SocketResult<(Resource<IncomingDatagrams>, Resource<OutgoingDatagrams>)> {
        let streams_left = self
            .table
            .iter_children(&s)?
            .any(|child| child.is::<IncomingDatagrams>() || child.is::<OutgoingDatagrams>());
        if streams_left {
            wasmtime::bail!("UDP streams not dropped yet");
        }
        let socket = self.table.get_mut(&s)?;
        if !socket.bound {
            return Ok(Err(ErrorCode::InvalidState));
        }
        // Bound without a network cannot happen: binding was denied.
        let Some(handle) = socket.handle else { return Ok(Err(ErrorCode::InvalidState)) };
        match remote {
            Some(remote) => {
                let remote = to_device(&remote);
                if !is_family(&remote, socket.family) || !is_remote(&remote) {
                    return Ok(Err(ErrorCode::InvalidArgument));
                }
                let connected = net::connect(handle, &remote);
                socket.remote = net::peer_address(handle).ok().filter(|a| a.port != 0);
                if let Err(e) = connected {
                    return Ok(Err(error_code(e)));
                }
            }
            None if socket.remote.is_some() => {
                let disconnected = net::connect(handle, &Address::default());
                socket.remote = net::peer_address(handle).ok().filter(|a| a.port != 0);
                if let Err(e) = disconnected {
                    return Ok(Err(error_code(e)));
                }
            }
            None => {}
        }
        let (family, remote) = (socket.family, socket.remote);
        let incoming = self.table.push_child(IncomingDatagrams { handle }, &s)?;
        let outgoing = self.table.push_child(OutgoingDatagrams { handle, family, remote, permits: 0 }, &s)?;
        Ok(Ok((incoming, outgoing)))
    }

    fn local_address(&mut self, s: Resource<UdpSocket>) -> SocketResult<IpSocketAddress> {
        let socket = self.table.get(&s)?;
        Ok(match (socket.bound, socket.handle) {
            (true, Some(handle)) => net::local_address(handle).map(|a| from_device(&a)).map_err(error_code),
            _ => Err(ErrorCode::InvalidState),
        })
    }

    fn remote_address(&mut self, s: Resource<UdpSocket>) -> SocketResult<IpSocketAddress> {
        Ok(self.table.get(&s)?.remote.as_ref().map(from_device).ok_or(ErrorCode::InvalidState))
    }

    fn address_family(&mut self, s: Resource<UdpSocket>) -> wasmtime::Result<IpAddressFamily> {
        Ok(self.table.get(&s)?.family)
    }

    fn unicast_hop_limit(&mut self, s: Resource<UdpSocket>) -> SocketResult<u8> {
        Ok(read_option(self.table.get(&s)?, Opt::HopLimit, 64).map(|v| v.min(255) as u8))
    }

    fn set_unicast_hop_limit(&mut self, s: Resource<UdpSocket>, value: u8) -> SocketResult<()> {
        Ok(write_option(self.table.get(&s)?, Opt::HopLimit, value.into()))
    }

    fn receive_buffer_size(&mut self, s: Resource<UdpSocket>) -> SocketResult<u64> {
        Ok(read_option(self.table.get(&s)?, Opt::ReceiveBuffer, 425_984).map(|v| v / 2))
    }

    fn set_receive_buffer_size(&mut self, s: Resource<UdpSocket>, value: u64) -> SocketResult<()> {
        Ok(write_option(self.table.get(&s)?, Opt::ReceiveBuffer, value))
    }

    fn send_buffer_size(&mut self, s: Resource<UdpSocket>) -> SocketResult<u64> {
        Ok(read_option(self.table.get(&s)?, Opt::SendBuffer, 425_984).map(|v| v / 2))
    }

    fn set_send_buffer_size(&mut self, s: Resource<UdpSocket>, value: u64) -> SocketResult<()> {
        Ok(write_option(self.table.get(&s)?, Opt::SendBuffer, value))
    }

    fn subscribe(&mut self, s: Resource<UdpSocket>) -> wasmtime::Result<Resource<Pollable>> {
        Ok(self.table.push_child(Pollable::Ready, &s)?)
    }

    fn drop(&mut self, s: Resource<UdpSocket>) -> wasmtime::Result<()> {
        self.table.delete(s)?;
        Ok(())
    }
}

impl udp::HostIncomingDatagramStream for ComponentCtx {
    fn receive(&mut self, s: Resource<IncomingDatagrams>, max: u64) -> SocketResult<Vec<IncomingDatagram>> {
        let handle = self.table.get(&s)?.handle;
        let max = usize::try_from(max).unwrap_or(usize::MAX).min(MAX_DATAGRAMS);
        let mut datagrams = Vec::new();
        let mut buf = alloc::vec![0u8; MAX_DATAGRAM];
        while datagrams.len() < max {
            match net::receive(handle, &mut buf, false) {
                Ok((n, from)) => {
                    datagrams.push(IncomingDatagram { data: buf[..n].to_vec(), remote_address: from_device(&from) })
                }
                Err(errno::EAGAIN) => break,
                Err(_) if !datagrams.is_empty() => break,
                Err(e) => return Ok(Err(error_code(e))),
            }
        }
        Ok(Ok(datagrams))
    }

    fn subscribe(&mut self, s: Resource<IncomingDatagrams>) -> wasmtime::Result<Resource<Pollable>> {
        let handle = self.table.get(&s)?.handle;
        Ok(self.table.push_child(Pollable::Socket { handle, events: READABLE }, &s)?)
    }

    fn drop(&mut self, s: Resource<IncomingDatagrams>) -> wasmtime::Result<()> {
        self.table.delete(s)?;
        Ok(())
    }
}

impl udp::HostOutgoingDatagramStream for ComponentCtx {
    fn check_send(&mut self, s: Resource<OutgoingDatagrams>) -> SocketResult<u64> {
        let stream = self.table.get_mut(&s)?;
        let mut entry = [wasmcell_abi::socket::PollEntry { handle: stream.handle, events: WRITABLE, ready: 0 }];
        let writable = net::poll(&mut entry, Some(0)).unwrap_or(1) > 0;
        stream.permits = if writable { MAX_DATAGRAMS } else { 0 };
        Ok(Ok(stream.permits as u64))
    }

    fn send(&mut self, s: Resource<OutgoingDatagrams>, datagrams: Vec<OutgoingDatagram>) -> SocketResult<u64> {
        let stream = self.table.get_mut(&s)?;
        if datagrams.is_empty() {
            return Ok(Ok(0));
        }
        if datagrams.len() > stream.permits {
            wasmtime::bail!("unpermitted: argument exceeds permitted size");
        }
        stream.permits = 0;
        let mut sent = 0;
        for datagram in datagrams {
            match send_one(stream, &datagram) {
                Ok(()) => sent += 1,
                Err(ErrorCode::WouldBlock) => break,
                Err(_) if sent > 0 => break,
                Err(e) => return Ok(Err(e)),
            }
        }
        Ok(Ok(sent))
    }

    fn subscribe(&mut self, s: Resource<OutgoingDatagrams>) -> wasmtime::Result<Resource<Pollable>> {
        let handle = self.table.get(&s)?.handle;
        Ok(self.table.push_child(Pollable::Socket { handle, events: WRITABLE }, &s)?)
    }

    fn drop(&mut self, s: Resource<OutgoingDatagrams>) -> wasmtime::Result<()> {
        self.table.delete(s)?;
        Ok(())
    }
}

/// One datagram, with wasmtime's checks: a remote address must match the connected one; an
/// unconnected socket needs one.
fn send_one(stream: &OutgoingDatagrams, datagram: &OutgoingDatagram) -> Result<(), ErrorCode> {
    if datagram.data.len() > MAX_DATAGRAM {
        return Err(ErrorCode::DatagramTooLarge);
    }
    let to = match &datagram.remote_address {
        Some(address) => {
            let address = to_device(address);
            if !is_remote(&address) || !is_family(&address, stream.family) {
                return Err(ErrorCode::InvalidArgument);
            }
            if stream.remote.is_some_and(|remote| remote != address) {
                return Err(ErrorCode::InvalidArgument);
            }
            address
        }
        None => stream.remote.ok_or(ErrorCode::InvalidArgument)?,
    };
    // Connected: a plain send (the kernel knows where); otherwise to the address.
    let target = if stream.remote == Some(to) { None } else { Some(&to) };
    net::send(stream.handle, &datagram.data, target).map(drop).map_err(error_code)
}

//! `wasi:sockets/tcp` and `tcp-create-socket`: wasmtime's state machine (start/finish pairs,
//! `concurrency-conflict`, `not-in-progress`, `invalid-state`, the argument checks before any
//! system call) over the socket device, and the byte streams of a connection: reads take what
//! has arrived, writes are staged (at most [`MAX_SOCKET_WRITE`], what `check-write` permits)
//! and sent as the host socket takes them.

use super::{error_code, family_number, from_device, is_family, is_remote, is_unicast, to_device};
use super::{Network, SocketResult};
use crate::component::bindings::wasi::sockets::network::{ErrorCode, IpAddressFamily, IpSocketAddress};
use crate::component::bindings::wasi::sockets::{tcp, tcp_create_socket};
use crate::component::{ComponentCtx, InputStream, OutputStream, Pollable};
use crate::net::{self, Handle};
use alloc::vec::Vec;
use tcp::ShutdownType;
use wasmcell_abi::socket::{errno, Opt, PollEntry, READABLE, WRITABLE};
use wasmtime::component::Resource;

/// What `check-write` permits on a connection (wasmtime's 64 KiB).
pub const MAX_SOCKET_WRITE: usize = 64 * 1024;

/// Linux's defaults, which a fresh host socket reports (for a workload without a network).
const DEFAULT_KEEP_IDLE_NS: u64 = 7_200_000_000_000;
const DEFAULT_KEEP_INTERVAL_NS: u64 = 75_000_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Operation {
    Bind,
    Connect,
    Listen,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Default,
    Connecting,
    Connected,
    Listening,
    Closed(ErrorCode),
}

/// `wasi:sockets/tcp.tcp-socket`.
pub struct TcpSocket {
    family: IpAddressFamily,
    /// The device's socket (`None`: the workload has no network).
    handle: Option<Handle>,
    state: State,
    in_progress: Option<Operation>,
    /// A connection's outcome once known (`None` while the host is still connecting).
    connect_result: Option<Result<(), ErrorCode>>,
    backlog: u64,
    bound: bool,
    /// The connection's stream resources (their table indices), for `shutdown`.
    streams: Option<(u32, u32)>,
}

impl Drop for TcpSocket {
    fn drop(&mut self) {
        if let Some(handle) = self.handle {
            net::close(handle);
        }
    }
}

/// A connection's input stream.
pub struct TcpInput {
    handle: Handle,
    closed: bool,
}

impl Drop for TcpInput {
    fn drop(&mut self) {
        // As wasmtime: dropping the stream shuts the receiving side down.
        let _ = net::shutdown(self.handle, 0);
    }
}

/// How a connection's output ended.
#[derive(Clone, Copy, Debug)]
enum WriteEnd {
    Closed,
    Failed(ErrorCode),
}

/// A connection's output stream: bytes the host socket has not taken yet wait in `pending`.
pub struct TcpOutput {
    handle: Handle,
    pending: Vec<u8>,
    end: Option<WriteEnd>,
}

impl Drop for TcpOutput {
    fn drop(&mut self) {
        // What the socket takes now goes; then the sending side is shut down (wasmtime finishes
        // the write in the background; a guest has no background).
        let _ = self.send_pending();
        let _ = net::shutdown(self.handle, 1);
    }
}

/// Why a stream call moved no bytes.
pub enum StreamFailure {
    Closed,
    Failed(ErrorCode),
}

impl TcpInput {
    /// Up to `len` bytes that have arrived; with `block`, waits for at least one (or the end).
    pub fn read(&mut self, ctx: &mut crate::wasi::WasiCtx, len: u64, block: bool) -> Result<Vec<u8>, StreamFailure> {
        if self.closed {
            return Err(StreamFailure::Closed);
        }
        if len == 0 {
            return Ok(Vec::new());
        }
        let mut buf = alloc::vec![0; len.min(MAX_SOCKET_WRITE as u64) as usize];
        loop {
            match net::receive(self.handle, &mut buf, false) {
                Ok((0, _)) => {
                    self.closed = true;
                    return Err(StreamFailure::Closed);
                }
                Ok((n, _)) => {
                    buf.truncate(n);
                    return Ok(buf);
                }
                Err(errno::EAGAIN) if block => wait_for(ctx, self.handle, READABLE),
                Err(errno::EAGAIN) => return Ok(Vec::new()),
                Err(e) => {
                    self.closed = true;
                    return Err(StreamFailure::Failed(error_code(e)));
                }
            }
        }
    }
}

impl TcpSocket {
    /// What a pollable on the socket waits for, asked when it is polled (as wasmtime asks):
    /// a connection under way, or — once `finish-listen` was called — a pending connection;
    /// anything else is ready.
    pub fn waits_for(&self) -> Option<PollEntry> {
        let handle = self.handle?;
        match (self.in_progress, self.state) {
            (Some(Operation::Connect), _) if self.connect_result.is_none() => {
                Some(PollEntry { handle, events: WRITABLE, ready: 0 })
            }
            (None, State::Listening) => Some(PollEntry { handle, events: READABLE, ready: 0 }),
            _ => None,
        }
    }
}

impl TcpInput {
    /// A pollable for the stream: ready when bytes (or the end) arrived.
    pub fn pollable(&self) -> Pollable {
        if self.closed {
            Pollable::Ready
        } else {
            Pollable::Socket { handle: self.handle, events: READABLE }
        }
    }
}

impl TcpOutput {
    /// Sends what the host socket takes now; `Ok(true)` once nothing is pending.
    fn send_pending(&mut self) -> Result<bool, StreamFailure> {
        while !self.pending.is_empty() {
            match net::send(self.handle, &self.pending, None) {
                Ok(n) => drop(self.pending.drain(..n)),
                Err(errno::EAGAIN) => return Ok(false),
                Err(e) => {
                    self.pending.clear();
                    self.end = Some(if e == errno::EPIPE { WriteEnd::Closed } else { WriteEnd::Failed(error_code(e)) });
                    return Err(self.failure().unwrap_or(StreamFailure::Closed));
                }
            }
        }
        Ok(true)
    }

    fn failure(&self) -> Option<StreamFailure> {
        self.end.map(|end| match end {
            WriteEnd::Closed => StreamFailure::Closed,
            WriteEnd::Failed(code) => StreamFailure::Failed(code),
        })
    }

    /// `check-write`: 0 while earlier bytes are still pending.
    pub fn check_write(&mut self) -> Result<u64, StreamFailure> {
        if let Some(failure) = self.failure() {
            return Err(failure);
        }
        Ok(if self.send_pending()? { MAX_SOCKET_WRITE as u64 } else { 0 })
    }

    /// `write`: `Err(None)` for a write `check-write` did not permit (a trap, as in wasmtime).
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), Option<StreamFailure>> {
        if let Some(failure) = self.failure() {
            return Err(Some(failure));
        }
        if !self.pending.is_empty() || bytes.len() > MAX_SOCKET_WRITE {
            return Err(None);
        }
        self.pending.extend_from_slice(bytes);
        self.send_pending().map(drop).map_err(Some)
    }

    /// Sends every pending byte, waiting for the socket as long as it takes.
    pub fn drain(&mut self, ctx: &mut crate::wasi::WasiCtx) -> Result<(), StreamFailure> {
        if let Some(failure) = self.failure() {
            return Err(failure);
        }
        while !self.send_pending()? {
            wait_for(ctx, self.handle, WRITABLE);
        }
        Ok(())
    }

    /// Writes all of `bytes` (any size), waiting for the socket as long as it takes.
    pub fn write_all(&mut self, ctx: &mut crate::wasi::WasiCtx, bytes: &[u8]) -> Result<(), StreamFailure> {
        self.drain(ctx)?;
        for chunk in bytes.chunks(MAX_SOCKET_WRITE) {
            self.pending.extend_from_slice(chunk);
            self.drain(ctx)?;
        }
        Ok(())
    }

    /// Whether a pollable on the stream is ready; if not, the event to wait for.
    pub fn ready(&mut self) -> Result<bool, PollEntry> {
        match self.send_pending() {
            Ok(false) => Err(PollEntry { handle: self.handle, events: WRITABLE, ready: 0 }),
            _ => Ok(true),
        }
    }
}

/// Sleeps until `handle` has `events` (or stdin input, or a stop): one device poll. Output
/// queued on the console goes out first, as before any sleep.
fn wait_for(ctx: &mut crate::wasi::WasiCtx, handle: Handle, events: u16) {
    let _ = ctx.flush_output();
    let mut entry = [PollEntry { handle, events, ready: 0 }];
    let _ = net::poll(&mut entry, None);
}

impl tcp_create_socket::Host for ComponentCtx {
    fn create_tcp_socket(&mut self, family: IpAddressFamily) -> SocketResult<Resource<TcpSocket>> {
        let handle = if net::available() {
            match net::open(family_number(family), true) {
                Ok(handle) => Some(handle),
                Err(e) => return Ok(Err(error_code(e))),
            }
        } else {
            None
        };
        let socket = TcpSocket {
            family,
            handle,
            state: State::Default,
            in_progress: None,
            connect_result: None,
            backlog: 128,
            bound: false,
            streams: None,
        };
        Ok(Ok(self.table.push(socket)?))
    }
}

impl ComponentCtx {
    /// The connection's two streams, children of `socket`.
    fn connection_streams(
        &mut self,
        socket: &Resource<TcpSocket>,
        handle: Handle,
    ) -> wasmtime::Result<(Resource<InputStream>, Resource<OutputStream>)> {
        let input = self.table.push_child(InputStream::Tcp(TcpInput { handle, closed: false }), socket)?;
        let output = OutputStream::Tcp(TcpOutput { handle, pending: Vec::new(), end: None });
        let output = self.table.push_child(output, socket)?;
        self.table.get_mut(socket)?.streams = Some((input.rep(), output.rep()));
        Ok((input, output))
    }
}

/// A socket option's value for a workload without a network: checked as wasmtime checks it,
/// then Linux's default.
fn read_option(socket: &TcpSocket, option: Opt, default: u64) -> Result<u64, ErrorCode> {
    match socket.state {
        State::Connecting => return Err(ErrorCode::InvalidState),
        State::Closed(e) => return Err(e),
        _ => {}
    }
    match socket.handle {
        Some(handle) => net::get_option(handle, option).map_err(error_code),
        None => Ok(default),
    }
}

fn write_option(socket: &TcpSocket, option: Opt, value: u64) -> Result<(), ErrorCode> {
    match socket.state {
        State::Connecting => return Err(ErrorCode::InvalidState),
        State::Closed(e) => return Err(e),
        _ => {}
    }
    match socket.handle {
        Some(handle) => net::set_option(handle, option, value).map_err(error_code),
        None => Ok(()),
    }
}

/// wasmtime's clamp of keep-alive times (ns) to whole seconds in 1..=i16::MAX.
fn keep_alive_seconds(value: u64) -> u64 {
    (value / 1_000_000_000).clamp(1, i16::MAX as u64)
}

impl tcp::Host for ComponentCtx {}

impl tcp::HostTcpSocket for ComponentCtx {
    fn start_bind(
        &mut self,
        s: Resource<TcpSocket>,
        network: Resource<Network>,
        address: IpSocketAddress,
    ) -> SocketResult<()> {
        self.table.get(&network)?;
        let socket = self.table.get_mut(&s)?;
        if socket.in_progress.is_some() {
            return Ok(Err(ErrorCode::ConcurrencyConflict));
        }
        if socket.bound || socket.state != State::Default {
            return Ok(Err(ErrorCode::InvalidState));
        }
        let address = to_device(&address);
        if !is_unicast(&address) || !is_family(&address, socket.family) {
            return Ok(Err(ErrorCode::InvalidArgument));
        }
        let Some(handle) = socket.handle else { return Ok(Err(ErrorCode::AccessDenied)) };
        match net::bind(handle, &address) {
            Ok(()) => {
                socket.bound = true;
                socket.in_progress = Some(Operation::Bind);
                Ok(Ok(()))
            }
            Err(errno::EAFNOSUPPORT) => Ok(Err(ErrorCode::InvalidArgument)),
            Err(e) => Ok(Err(error_code(e))),
        }
    }

    fn finish_bind(&mut self, s: Resource<TcpSocket>) -> SocketResult<()> {
        Ok(finish(self.table.get_mut(&s)?, Operation::Bind))
    }

    fn start_connect(
        &mut self,
        s: Resource<TcpSocket>,
        network: Resource<Network>,
        address: IpSocketAddress,
    ) -> SocketResult<()> {
        self.table.get(&network)?;
        let socket = self.table.get_mut(&s)?;
        if socket.in_progress.is_some() {
            return Ok(Err(ErrorCode::ConcurrencyConflict));
        }
        if socket.state != State::Default {
            return Ok(Err(ErrorCode::InvalidState));
        }
        let address = to_device(&address);
        if !is_unicast(&address) || !is_remote(&address) || !is_family(&address, socket.family) {
            return Ok(Err(ErrorCode::InvalidArgument));
        }
        // The permission is checked as the connection goes, so it is `finish-connect` that
        // tells (as in wasmtime).
        socket.connect_result = match socket.handle {
            None => Some(Err(ErrorCode::AccessDenied)),
            Some(handle) => match net::connect(handle, &address) {
                Ok(()) => Some(Ok(())),
                Err(errno::EINPROGRESS) => None,
                Err(e) => Some(Err(error_code(e))),
            },
        };
        socket.state = State::Connecting;
        socket.in_progress = Some(Operation::Connect);
        Ok(Ok(()))
    }

    fn finish_connect(
        &mut self,
        s: Resource<TcpSocket>,
    ) -> SocketResult<(Resource<InputStream>, Resource<OutputStream>)> {
        let socket = self.table.get_mut(&s)?;
        if socket.in_progress != Some(Operation::Connect) {
            return Ok(Err(ErrorCode::NotInProgress));
        }
        let result = match (socket.connect_result, socket.handle) {
            (Some(result), _) => result,
            (None, Some(handle)) => {
                let mut entry = [PollEntry { handle, events: WRITABLE, ready: 0 }];
                if net::poll(&mut entry, Some(0)).unwrap_or(1) == 0 {
                    return Ok(Err(ErrorCode::WouldBlock));
                }
                net::take_error(handle).map_err(error_code)
            }
            (None, None) => Err(ErrorCode::AccessDenied),
        };
        socket.in_progress = None;
        socket.connect_result = None;
        let result = result.and_then(|()| socket.handle.ok_or(ErrorCode::AccessDenied));
        match result {
            Ok(handle) => {
                socket.state = State::Connected;
                socket.bound = true;
                Ok(Ok(self.connection_streams(&s, handle)?))
            }
            Err(e) => {
                socket.state = State::Closed(e);
                Ok(Err(e))
            }
        }
    }

    fn start_listen(&mut self, s: Resource<TcpSocket>) -> SocketResult<()> {
        let socket = self.table.get_mut(&s)?;
        if socket.in_progress.is_some() {
            return Ok(Err(ErrorCode::ConcurrencyConflict));
        }
        let bound = socket.bound || socket.state != State::Default;
        if !bound || socket.state != State::Default {
            return Ok(Err(ErrorCode::InvalidState));
        }
        let Some(handle) = socket.handle else { return Ok(Err(ErrorCode::AccessDenied)) };
        match net::listen(handle, socket.backlog) {
            Ok(()) => {
                socket.state = State::Listening;
                socket.in_progress = Some(Operation::Listen);
                Ok(Ok(()))
            }
            Err(e) => Ok(Err(error_code(e))),
        }
    }

    fn finish_listen(&mut self, s: Resource<TcpSocket>) -> SocketResult<()> {
        Ok(finish(self.table.get_mut(&s)?, Operation::Listen))
    }

    fn accept(
        &mut self,
        s: Resource<TcpSocket>,
    ) -> SocketResult<(Resource<TcpSocket>, Resource<InputStream>, Resource<OutputStream>)> {
        let socket = self.table.get(&s)?;
        let (State::Listening, Some(listener)) = (socket.state, socket.handle) else {
            return Ok(Err(ErrorCode::InvalidState));
        };
        let family = socket.family;
        let handle = match net::accept(listener) {
            Ok((handle, _peer)) => handle,
            Err(errno::EAGAIN) => return Ok(Err(ErrorCode::WouldBlock)),
            // As wasmtime on Linux: a connection that failed before it was taken is aborted.
            Err(
                errno::ECONNRESET
                | errno::EHOSTUNREACH
                | errno::EHOSTDOWN
                | errno::ENETDOWN
                | errno::ENETUNREACH
                | errno::ENOPROTOOPT
                | errno::EOPNOTSUPP,
            ) => return Ok(Err(ErrorCode::ConnectionAborted)),
            Err(e) => return Ok(Err(error_code(e))),
        };
        let accepted = TcpSocket {
            family,
            handle: Some(handle),
            state: State::Connected,
            in_progress: None,
            connect_result: None,
            backlog: 128,
            bound: true,
            streams: None,
        };
        let accepted = self.table.push(accepted)?;
        let (input, output) = self.connection_streams(&accepted, handle)?;
        Ok(Ok((accepted, input, output)))
    }

    fn local_address(&mut self, s: Resource<TcpSocket>) -> SocketResult<IpSocketAddress> {
        let socket = self.table.get(&s)?;
        if !socket.bound && socket.state == State::Default {
            return Ok(Err(ErrorCode::InvalidState));
        }
        Ok(match (socket.state, socket.handle) {
            (State::Connecting, _) => Err(ErrorCode::InvalidState),
            (State::Closed(e), _) => Err(e),
            (_, Some(handle)) => net::local_address(handle).map(|a| from_device(&a)).map_err(error_code),
            (_, None) => Err(ErrorCode::InvalidState),
        })
    }

    fn remote_address(&mut self, s: Resource<TcpSocket>) -> SocketResult<IpSocketAddress> {
        let socket = self.table.get(&s)?;
        Ok(match (socket.state, socket.handle) {
            (State::Connected, Some(handle)) => net::peer_address(handle).map(|a| from_device(&a)).map_err(error_code),
            (State::Closed(e), _) => Err(e),
            _ => Err(ErrorCode::InvalidState),
        })
    }

    fn is_listening(&mut self, s: Resource<TcpSocket>) -> wasmtime::Result<bool> {
        Ok(self.table.get(&s)?.state == State::Listening)
    }

    fn address_family(&mut self, s: Resource<TcpSocket>) -> wasmtime::Result<IpAddressFamily> {
        Ok(self.table.get(&s)?.family)
    }

    fn set_listen_backlog_size(&mut self, s: Resource<TcpSocket>, value: u64) -> SocketResult<()> {
        let socket = self.table.get_mut(&s)?;
        if value == 0 {
            return Ok(Err(ErrorCode::InvalidArgument));
        }
        let value = value.min(i32::MAX as u64);
        Ok(match (socket.state, socket.handle) {
            (State::Default, _) => {
                socket.backlog = value;
                Ok(())
            }
            (State::Listening, Some(handle)) => match net::listen(handle, value) {
                Ok(()) => {
                    socket.backlog = value;
                    Ok(())
                }
                Err(_) => Err(ErrorCode::NotSupported),
            },
            (State::Closed(e), _) => Err(e),
            _ => Err(ErrorCode::InvalidState),
        })
    }

    fn keep_alive_enabled(&mut self, s: Resource<TcpSocket>) -> SocketResult<bool> {
        Ok(read_option(self.table.get(&s)?, Opt::KeepAlive, 0).map(|v| v != 0))
    }

    fn set_keep_alive_enabled(&mut self, s: Resource<TcpSocket>, value: bool) -> SocketResult<()> {
        Ok(write_option(self.table.get(&s)?, Opt::KeepAlive, value.into()))
    }

    fn keep_alive_idle_time(&mut self, s: Resource<TcpSocket>) -> SocketResult<u64> {
        let default = DEFAULT_KEEP_IDLE_NS / 1_000_000_000;
        Ok(read_option(self.table.get(&s)?, Opt::KeepIdle, default).map(|secs| secs.saturating_mul(1_000_000_000)))
    }

    fn set_keep_alive_idle_time(&mut self, s: Resource<TcpSocket>, value: u64) -> SocketResult<()> {
        if value == 0 {
            return Ok(Err(ErrorCode::InvalidArgument));
        }
        Ok(write_option(self.table.get(&s)?, Opt::KeepIdle, keep_alive_seconds(value)))
    }

    fn keep_alive_interval(&mut self, s: Resource<TcpSocket>) -> SocketResult<u64> {
        let default = DEFAULT_KEEP_INTERVAL_NS / 1_000_000_000;
        Ok(read_option(self.table.get(&s)?, Opt::KeepInterval, default).map(|secs| secs.saturating_mul(1_000_000_000)))
    }

    fn set_keep_alive_interval(&mut self, s: Resource<TcpSocket>, value: u64) -> SocketResult<()> {
        if value == 0 {
            return Ok(Err(ErrorCode::InvalidArgument));
        }
        Ok(write_option(self.table.get(&s)?, Opt::KeepInterval, keep_alive_seconds(value)))
    }

    fn keep_alive_count(&mut self, s: Resource<TcpSocket>) -> SocketResult<u32> {
        Ok(read_option(self.table.get(&s)?, Opt::KeepCount, 9).map(|v| v as u32))
    }

    fn set_keep_alive_count(&mut self, s: Resource<TcpSocket>, value: u32) -> SocketResult<()> {
        if value == 0 {
            return Ok(Err(ErrorCode::InvalidArgument));
        }
        Ok(write_option(self.table.get(&s)?, Opt::KeepCount, value.clamp(1, i8::MAX as u32).into()))
    }

    fn hop_limit(&mut self, s: Resource<TcpSocket>) -> SocketResult<u8> {
        Ok(read_option(self.table.get(&s)?, Opt::HopLimit, 64).map(|v| v.min(255) as u8))
    }

    fn set_hop_limit(&mut self, s: Resource<TcpSocket>, value: u8) -> SocketResult<()> {
        if value == 0 {
            return Ok(Err(ErrorCode::InvalidArgument));
        }
        Ok(write_option(self.table.get(&s)?, Opt::HopLimit, value.into()))
    }

    fn receive_buffer_size(&mut self, s: Resource<TcpSocket>) -> SocketResult<u64> {
        // Linux reports twice what was set (its bookkeeping); wasmtime halves it back.
        Ok(read_option(self.table.get(&s)?, Opt::ReceiveBuffer, 262_144).map(|v| v / 2))
    }

    fn set_receive_buffer_size(&mut self, s: Resource<TcpSocket>, value: u64) -> SocketResult<()> {
        if value == 0 {
            return Ok(Err(ErrorCode::InvalidArgument));
        }
        Ok(write_option(self.table.get(&s)?, Opt::ReceiveBuffer, value))
    }

    fn send_buffer_size(&mut self, s: Resource<TcpSocket>) -> SocketResult<u64> {
        Ok(read_option(self.table.get(&s)?, Opt::SendBuffer, 32_768).map(|v| v / 2))
    }

    fn set_send_buffer_size(&mut self, s: Resource<TcpSocket>, value: u64) -> SocketResult<()> {
        if value == 0 {
            return Ok(Err(ErrorCode::InvalidArgument));
        }
        Ok(write_option(self.table.get(&s)?, Opt::SendBuffer, value))
    }

    fn subscribe(&mut self, s: Resource<TcpSocket>) -> wasmtime::Result<Resource<Pollable>> {
        Ok(self.table.push_child(Pollable::TcpSocket(s.rep()), &s)?)
    }

    fn shutdown(&mut self, s: Resource<TcpSocket>, how: ShutdownType) -> SocketResult<()> {
        let socket = self.table.get(&s)?;
        let (Some((input, output)), Some(handle)) = (socket.streams, socket.handle) else {
            return Ok(Err(ErrorCode::InvalidState));
        };
        if matches!(how, ShutdownType::Receive | ShutdownType::Both) {
            if let Ok(InputStream::Tcp(stream)) = self.table.get_mut(&Resource::<InputStream>::new_borrow(input)) {
                stream.closed = true;
            }
            let _ = net::shutdown(handle, 0);
        }
        if matches!(how, ShutdownType::Send | ShutdownType::Both) {
            if let Ok(OutputStream::Tcp(stream)) = self.table.get_mut(&Resource::<OutputStream>::new_borrow(output)) {
                // What is pending still goes, as far as the socket takes it now.
                let _ = stream.send_pending();
                stream.end.get_or_insert(WriteEnd::Closed);
            }
            let _ = net::shutdown(handle, 1);
        }
        Ok(Ok(()))
    }

    fn drop(&mut self, s: Resource<TcpSocket>) -> wasmtime::Result<()> {
        self.table.delete(s)?;
        Ok(())
    }
}

/// `finish-bind` / `finish-listen`: the operation must be the one in progress.
fn finish(socket: &mut TcpSocket, operation: Operation) -> Result<(), ErrorCode> {
    if socket.in_progress != Some(operation) {
        return Err(ErrorCode::NotInProgress);
    }
    socket.in_progress = None;
    Ok(())
}

//! `wasi:io` (error, poll, streams): the resources every other WASI 0.2 interface hands out.
//!
//! Streams are stdio on the console (the same path and the same queueing as preview 1's
//! `fd_read`/`fd_write`) or a position in a file of the tree. Output is never back-pressured:
//! a write is queued on the console (or stored in the file) at once, so `flush` has nothing to
//! wait for and every output stream is always ready. Pollables block the way `poll_oneoff`
//! does: one control-device WAIT until the earliest deadline, woken early by stdin.

use super::bindings::wasi::filesystem::types::ErrorCode;
use super::bindings::wasi::io::{error, poll, streams};
use super::node::Node;
use super::sockets::{StreamFailure, TcpInput, TcpOutput, TcpSocket};
use super::ComponentCtx;
use crate::net;
use crate::virtio::console::Output;
use crate::wasi::poll::{self as wasi_poll, SocketWait};
use crate::wasi::stdio;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use streams::StreamError;
use wasmcell_abi::socket::PollEntry;
use wasmtime::component::Resource;

type SocketError = super::bindings::wasi::sockets::network::ErrorCode;

/// What a pollable that is not ready waits for.
enum Wait {
    Ready,
    Deadline(u64),
    Stdin,
    Socket(PollEntry),
}

/// Most bytes one stream call moves (what `check-write` permits).
pub const MAX_TRANSFER: usize = 1 << 20;
/// What `blocking-write-and-flush` and `blocking-write-zeroes-and-flush` take at most.
const MAX_BLOCKING_WRITE: u64 = 4096;

/// An error a stream reports (`wasi:io/error.error`).
#[derive(Debug)]
pub enum IoError {
    /// A file-tree error (what `filesystem-error-code` reports).
    Fs(ErrorCode),
    /// The console failed.
    Console,
    /// A socket error (what `network-error-code` reports).
    Socket(SocketError),
    /// An HTTP body's error (what `http-error-code` reports).
    Http(super::http::HttpErrorCode),
}

/// Something a component can wait for (`wasi:io/poll.pollable`).
pub enum Pollable {
    /// Always ready: output streams, files.
    Ready,
    /// Ready when stdin has input or has ended.
    Stdin,
    /// Ready at this monotonic instant (ns).
    Deadline(u64),
    /// Ready when the device's socket `handle` has `events` (`wasmcell_abi::socket`).
    Socket { handle: net::Handle, events: u16 },
    /// Ready when the TCP output stream (its table index) has sent what it staged.
    TcpOutput(u32),
    /// Ready as the TCP socket (its table index) says when polled (`TcpSocket::waits_for`).
    TcpSocket(u32),
}

/// `wasi:io/streams.input-stream`.
pub enum InputStream {
    Stdin,
    Tcp(TcpInput),
    /// An incoming HTTP body: the request's being served, or an outgoing request's response.
    HttpBody(super::http::BodySource),
    /// `readable`: the descriptor was opened for reading (else reads fail, as an OS read of a
    /// write-only descriptor does).
    File {
        node: Node,
        position: u64,
        readable: bool,
    },
}

/// `wasi:io/streams.output-stream`.
pub enum OutputStream {
    Console(Output),
    Tcp(TcpOutput),
    /// An outgoing body's bytes (a response's, or an outgoing request's).
    HttpBody {
        sink: u32,
    },
    /// `writable`: the descriptor was opened for writing (else writes fail, as an OS write to a
    /// read-only descriptor does).
    File {
        node: Node,
        position: u64,
        append: bool,
        writable: bool,
    },
}

// SAFETY (both): `ResourceTable` asks for `Send`, and a file stream holds the file tree's `Rc`s,
// which are not. Nothing here crosses a thread: the guest runs one workload per vCPU, without
// threads, and a workload's store, its resources and its file tree are created, used and left
// on that vCPU only.
unsafe impl Send for InputStream {}
// SAFETY: as for `InputStream`.
unsafe impl Send for OutputStream {}

/// Why a stream call did not move bytes.
enum Failure {
    Closed,
    Error(IoError),
}

impl From<IoError> for Failure {
    fn from(error: IoError) -> Self {
        Failure::Error(error)
    }
}

impl From<StreamFailure> for Failure {
    fn from(failure: StreamFailure) -> Self {
        match failure {
            StreamFailure::Closed => Failure::Closed,
            StreamFailure::Failed(code) => Failure::Error(IoError::Socket(code)),
        }
    }
}

impl ComponentCtx {
    /// The stream error the component sees for `failure`.
    fn stream_error(&mut self, failure: Failure) -> wasmtime::Result<StreamError> {
        Ok(match failure {
            Failure::Closed => StreamError::Closed,
            Failure::Error(error) => StreamError::LastOperationFailed(self.table.push(error)?),
        })
    }

    fn answer<T>(&mut self, result: Result<T, Failure>) -> wasmtime::Result<Result<T, StreamError>> {
        match result {
            Ok(value) => Ok(Ok(value)),
            Err(failure) => Ok(Err(self.stream_error(failure)?)),
        }
    }

    /// Up to `len` bytes of `stream`; with `block`, waits for at least one (or the end).
    fn read(
        &mut self,
        stream: &Resource<InputStream>,
        len: u64,
        block: bool,
    ) -> wasmtime::Result<Result<Vec<u8>, Failure>> {
        let len = usize::try_from(len).unwrap_or(usize::MAX).min(MAX_TRANSFER);
        let result = match self.table.get_mut(stream)? {
            InputStream::Stdin => read_stdin(&mut self.wasi, len, block),
            InputStream::Tcp(input) => input.read(&mut self.wasi, len as u64, block).map_err(Failure::from),
            InputStream::HttpBody(source) => {
                let source = *source;
                match self.http_read(source, len, block) {
                    Ok(Some(bytes)) => Ok(bytes),
                    Ok(None) => Err(Failure::Closed),
                    Err(error) => Err(error.into()),
                }
            }
            InputStream::File { readable: false, .. } => Err(IoError::Fs(ErrorCode::BadDescriptor).into()),
            InputStream::File { node, position, .. } => {
                // No bigger than what is left: a large read near the end allocates little.
                let left = match node.size() {
                    Ok(size) => size.saturating_sub(*position),
                    Err(code) => return Ok(Err(IoError::Fs(code).into())),
                };
                let mut buf = vec![0; len.min(usize::try_from(left).unwrap_or(usize::MAX))];
                match node.read_at(*position, &mut buf) {
                    Ok(0) if len > 0 => Err(Failure::Closed),
                    Ok(n) => {
                        *position += n as u64;
                        buf.truncate(n);
                        Ok(buf)
                    }
                    Err(code) => Err(IoError::Fs(code).into()),
                }
            }
        };
        Ok(result)
    }

    /// Writes all of `bytes` to `stream` (any size, as wasmtime's stdio and file streams take;
    /// the console gets it in transfers of at most [`MAX_TRANSFER`]).
    fn write(&mut self, stream: &Resource<OutputStream>, bytes: &[u8]) -> wasmtime::Result<Result<(), Failure>> {
        let result = match self.table.get_mut(stream)? {
            OutputStream::Console(output) => {
                let output = *output;
                let console = stdio::console(&mut self.wasi);
                console
                    .and_then(|console| {
                        bytes
                            .chunks(MAX_TRANSFER)
                            .try_for_each(|chunk| console.write(output, chunk).map(drop))
                            .map_err(|_| crate::wasi::Errno::Io)
                    })
                    .map_err(|_| IoError::Console.into())
            }
            OutputStream::Tcp(output) => output.write_all(&mut self.wasi, bytes).map_err(Failure::from),
            OutputStream::HttpBody { sink } => {
                let sink = *sink;
                return Ok(self.http_write(sink, bytes).map_err(Failure::from));
            }
            OutputStream::File { writable: false, .. } => Err(IoError::Fs(ErrorCode::BadDescriptor).into()),
            OutputStream::File { node, position, append, .. } => {
                let now = self.wasi.clocks.realtime_ns();
                match node.write_at((!*append).then_some(*position), bytes, now) {
                    Ok(end) => {
                        *position = end;
                        Ok(())
                    }
                    Err(code) => Err(IoError::Fs(code).into()),
                }
            }
        };
        Ok(result)
    }

    /// Whether `pollable` is ready now; the deadline it waits for if it is not.
    fn ready(&mut self, pollable: &Resource<Pollable>) -> wasmtime::Result<(bool, Option<u64>)> {
        Ok(match self.wait_of(pollable)? {
            Wait::Ready => (true, None),
            Wait::Deadline(at) => (false, Some(at)),
            Wait::Stdin => (false, None),
            Wait::Socket(mut entry) => (net::poll(core::slice::from_mut(&mut entry), Some(0)).unwrap_or(1) > 0, None),
        })
    }

    /// What `pollable` waits for, if it is not ready now (sockets are asked the device).
    fn wait_of(&mut self, pollable: &Resource<Pollable>) -> wasmtime::Result<Wait> {
        Ok(match *self.table.get(pollable)? {
            Pollable::Socket { handle, events } => Wait::Socket(PollEntry { handle, events, ready: 0 }),
            Pollable::TcpOutput(stream) => match self.table.get_mut(&Resource::<OutputStream>::new_borrow(stream)) {
                Ok(OutputStream::Tcp(output)) => output.ready().map_or_else(Wait::Socket, |_| Wait::Ready),
                _ => Wait::Ready,
            },
            Pollable::TcpSocket(socket) => match self.table.get(&Resource::<TcpSocket>::new_borrow(socket)) {
                Ok(socket) => socket.waits_for().map_or(Wait::Ready, Wait::Socket),
                Err(_) => Wait::Ready,
            },
            _ => match self.plain_ready(pollable)? {
                (true, _) => Wait::Ready,
                (false, Some(at)) => Wait::Deadline(at),
                (false, None) => Wait::Stdin,
            },
        })
    }

    /// Readiness of the pollables that need no socket.
    fn plain_ready(&mut self, pollable: &Resource<Pollable>) -> wasmtime::Result<(bool, Option<u64>)> {
        Ok(match *self.table.get(pollable)? {
            Pollable::Socket { .. } | Pollable::TcpOutput(_) | Pollable::TcpSocket(_) => (true, None),
            Pollable::Ready => (true, None),
            Pollable::Stdin => (
                stdio::console(&mut self.wasi)
                    .and_then(|c| c.stdin_ready().map_err(|_| crate::wasi::Errno::Io))
                    .unwrap_or(true),
                None,
            ),
            Pollable::Deadline(at) => (at <= self.wasi.clocks.monotonic_ns().unwrap_or(u64::MAX), Some(at)),
        })
    }

    /// The indices of the ready pollables of `list`, waiting until there is at least one:
    /// sockets are asked the device in one poll, which also sleeps (to the earliest deadline,
    /// or until stdin has input) when nothing else is ready — one exit either way.
    fn poll_list(&mut self, list: &[Resource<Pollable>]) -> wasmtime::Result<Vec<u32>> {
        if list.is_empty() {
            wasmtime::bail!("poll: empty list of pollables");
        }
        loop {
            let mut ready = Vec::new();
            let mut next: Option<u64> = None;
            let mut sockets: Vec<(u32, PollEntry)> = Vec::new();
            for (index, pollable) in list.iter().enumerate() {
                match self.wait_of(pollable)? {
                    Wait::Ready => ready.push(index as u32),
                    Wait::Deadline(at) => next = Some(next.map_or(at, |n| n.min(at))),
                    Wait::Stdin => {}
                    Wait::Socket(entry) => sockets.push((index as u32, entry)),
                }
            }
            if sockets.is_empty() {
                if !ready.is_empty() {
                    return Ok(ready);
                }
                wasi_poll::sleep_until(&mut self.wasi, next).map_err(|e| wasmtime::format_err!("poll: {e:?}"))?;
                continue;
            }
            // Something ready already: the sockets are only looked at. Otherwise the device
            // sleeps until one is ready or the earliest deadline (output queued goes first).
            let wait = if ready.is_empty() { SocketWait::Sleep(next) } else { SocketWait::Look };
            let mut entries: Vec<PollEntry> = sockets.iter().map(|(_, e)| *e).collect();
            wasi_poll::poll_sockets(&mut self.wasi, &mut entries, wait)
                .map_err(|e| wasmtime::format_err!("poll: socket device error {e:?}"))?;
            ready.extend(sockets.iter().zip(&entries).filter(|(_, e)| e.ready != 0).map(|((i, _), _)| *i));
            if !ready.is_empty() {
                ready.sort_unstable();
                return Ok(ready);
            }
            // A deadline passed, stdin has input, or the sleep ended early: look again.
        }
    }
}

/// Reads stdin: without `block`, only what has arrived (possibly nothing).
fn read_stdin(wasi: &mut crate::wasi::WasiCtx, len: usize, block: bool) -> Result<Vec<u8>, Failure> {
    let console = stdio::console(wasi).map_err(|_| IoError::Console)?;
    if len == 0 || (!block && !console.stdin_ready().map_err(|_| IoError::Console)?) {
        return Ok(Vec::new());
    }
    let mut buf = vec![0; len];
    match console.read(&mut buf).map_err(|_| IoError::Console)? {
        0 => Err(Failure::Closed),
        n => {
            buf.truncate(n);
            Ok(buf)
        }
    }
}

impl error::Host for ComponentCtx {}

impl error::HostError for ComponentCtx {
    fn to_debug_string(&mut self, error: Resource<IoError>) -> wasmtime::Result<String> {
        Ok(match self.table.get(&error)? {
            IoError::Fs(code) => alloc::format!("{code:?}"),
            IoError::Socket(code) => alloc::format!("{code:?}"),
            IoError::Http(code) => alloc::format!("{code:?}"),
            IoError::Console => "the console failed".to_string(),
        })
    }

    fn drop(&mut self, error: Resource<IoError>) -> wasmtime::Result<()> {
        self.table.delete(error)?;
        Ok(())
    }
}

impl poll::Host for ComponentCtx {
    fn poll(&mut self, list: Vec<Resource<Pollable>>) -> wasmtime::Result<Vec<u32>> {
        self.poll_list(&list)
    }
}

impl poll::HostPollable for ComponentCtx {
    fn ready(&mut self, pollable: Resource<Pollable>) -> wasmtime::Result<bool> {
        Ok(ComponentCtx::ready(self, &pollable)?.0)
    }

    fn block(&mut self, pollable: Resource<Pollable>) -> wasmtime::Result<()> {
        self.poll_list(core::slice::from_ref(&pollable)).map(drop)
    }

    fn drop(&mut self, pollable: Resource<Pollable>) -> wasmtime::Result<()> {
        self.table.delete(pollable)?;
        Ok(())
    }
}

impl streams::Host for ComponentCtx {}

impl streams::HostInputStream for ComponentCtx {
    fn read(&mut self, stream: Resource<InputStream>, len: u64) -> wasmtime::Result<Result<Vec<u8>, StreamError>> {
        let result = ComponentCtx::read(self, &stream, len, false)?;
        self.answer(result)
    }

    fn blocking_read(
        &mut self,
        stream: Resource<InputStream>,
        len: u64,
    ) -> wasmtime::Result<Result<Vec<u8>, StreamError>> {
        let result = ComponentCtx::read(self, &stream, len, true)?;
        self.answer(result)
    }

    fn skip(&mut self, stream: Resource<InputStream>, len: u64) -> wasmtime::Result<Result<u64, StreamError>> {
        let result = ComponentCtx::read(self, &stream, len, false)?.map(|b| b.len() as u64);
        self.answer(result)
    }

    fn blocking_skip(&mut self, stream: Resource<InputStream>, len: u64) -> wasmtime::Result<Result<u64, StreamError>> {
        let result = ComponentCtx::read(self, &stream, len, true)?.map(|b| b.len() as u64);
        self.answer(result)
    }

    fn subscribe(&mut self, stream: Resource<InputStream>) -> wasmtime::Result<Resource<Pollable>> {
        let pollable = match self.table.get(&stream)? {
            InputStream::Stdin => Pollable::Stdin,
            InputStream::Tcp(input) => input.pollable(),
            InputStream::HttpBody(source) => self.http_body_pollable(*source),
            InputStream::File { .. } => Pollable::Ready,
        };
        Ok(self.table.push_child(pollable, &stream)?)
    }

    fn drop(&mut self, stream: Resource<InputStream>) -> wasmtime::Result<()> {
        self.table.delete(stream)?;
        Ok(())
    }
}

impl streams::HostOutputStream for ComponentCtx {
    fn check_write(&mut self, stream: Resource<OutputStream>) -> wasmtime::Result<Result<u64, StreamError>> {
        let result = match self.table.get_mut(&stream)? {
            OutputStream::Tcp(output) => output.check_write().map_err(Failure::from),
            _ => Ok(MAX_TRANSFER as u64),
        };
        self.answer(result)
    }

    fn write(
        &mut self,
        stream: Resource<OutputStream>,
        contents: Vec<u8>,
    ) -> wasmtime::Result<Result<(), StreamError>> {
        let result = match self.table.get_mut(&stream)? {
            OutputStream::Tcp(output) => match output.write(&contents) {
                Ok(()) => Ok(()),
                Err(Some(failure)) => Err(failure.into()),
                Err(None) => wasmtime::bail!("not permitted to write {} bytes", contents.len()),
            },
            _ => ComponentCtx::write(self, &stream, &contents)?,
        };
        self.answer(result)
    }

    fn blocking_write_and_flush(
        &mut self,
        stream: Resource<OutputStream>,
        contents: Vec<u8>,
    ) -> wasmtime::Result<Result<(), StreamError>> {
        if contents.len() as u64 > MAX_BLOCKING_WRITE {
            wasmtime::bail!("Buffer too large for blocking-write-and-flush (expected at most {MAX_BLOCKING_WRITE})");
        }
        let result = match ComponentCtx::write(self, &stream, &contents)? {
            Ok(()) => self.flush_http_body(&stream)?,
            failed => failed,
        };
        self.answer(result)
    }

    fn flush(&mut self, stream: Resource<OutputStream>) -> wasmtime::Result<Result<(), StreamError>> {
        // A connection's staged bytes go as the socket takes them; only a failure shows here.
        let result = match self.table.get_mut(&stream)? {
            OutputStream::Tcp(output) => output.check_write().map(drop).map_err(Failure::from),
            OutputStream::HttpBody { .. } => self.flush_http_body(&stream)?,
            _ => Ok(()),
        };
        self.answer(result)
    }

    fn blocking_flush(&mut self, stream: Resource<OutputStream>) -> wasmtime::Result<Result<(), StreamError>> {
        let result = match self.table.get_mut(&stream)? {
            OutputStream::Tcp(output) => output.drain(&mut self.wasi).map_err(Failure::from),
            OutputStream::HttpBody { .. } => self.flush_http_body(&stream)?,
            _ => Ok(()),
        };
        self.answer(result)
    }

    fn subscribe(&mut self, stream: Resource<OutputStream>) -> wasmtime::Result<Resource<Pollable>> {
        let pollable = match self.table.get(&stream)? {
            OutputStream::Tcp(_) => Pollable::TcpOutput(stream.rep()),
            _ => Pollable::Ready,
        };
        Ok(self.table.push_child(pollable, &stream)?)
    }

    fn write_zeroes(&mut self, stream: Resource<OutputStream>, len: u64) -> wasmtime::Result<Result<(), StreamError>> {
        // Zeroes are made here, from a number: bounded like every other transfer.
        if len > MAX_TRANSFER as u64 {
            wasmtime::bail!("write-zeroes of {len} bytes is more than check-write permitted ({MAX_TRANSFER})");
        }
        let zeroes = vec![0; len as usize];
        let result = ComponentCtx::write(self, &stream, &zeroes)?;
        self.answer(result)
    }

    fn blocking_write_zeroes_and_flush(
        &mut self,
        stream: Resource<OutputStream>,
        len: u64,
    ) -> wasmtime::Result<Result<(), StreamError>> {
        if len > MAX_BLOCKING_WRITE {
            wasmtime::bail!(
                "Buffer too large for blocking-write-zeroes-and-flush (expected at most {MAX_BLOCKING_WRITE})"
            );
        }
        let zeroes = vec![0; len as usize];
        let result = match ComponentCtx::write(self, &stream, &zeroes)? {
            Ok(()) => self.flush_http_body(&stream)?,
            failed => failed,
        };
        self.answer(result)
    }

    fn splice(
        &mut self,
        stream: Resource<OutputStream>,
        src: Resource<InputStream>,
        len: u64,
    ) -> wasmtime::Result<Result<u64, StreamError>> {
        self.splice_from(&stream, &src, len, false)
    }

    fn blocking_splice(
        &mut self,
        stream: Resource<OutputStream>,
        src: Resource<InputStream>,
        len: u64,
    ) -> wasmtime::Result<Result<u64, StreamError>> {
        self.splice_from(&stream, &src, len, true)
    }

    fn drop(&mut self, stream: Resource<OutputStream>) -> wasmtime::Result<()> {
        self.table.delete(stream)?;
        Ok(())
    }
}

impl ComponentCtx {
    /// Sends what an HTTP body stream has staged (the other streams never hold bytes back).
    fn flush_http_body(&mut self, stream: &Resource<OutputStream>) -> wasmtime::Result<Result<(), Failure>> {
        Ok(match self.table.get(stream)? {
            OutputStream::HttpBody { sink } => {
                let sink = *sink;
                self.http_flush(sink).map_err(Failure::from)
            }
            _ => Ok(()),
        })
    }

    fn splice_from(
        &mut self,
        stream: &Resource<OutputStream>,
        src: &Resource<InputStream>,
        len: u64,
        block: bool,
    ) -> wasmtime::Result<Result<u64, StreamError>> {
        let result = match ComponentCtx::read(self, src, len, block)? {
            Ok(bytes) => ComponentCtx::write(self, stream, &bytes)?.map(|()| bytes.len() as u64),
            Err(failure) => Err(failure),
        };
        self.answer(result)
    }
}

//! `wasi:io` (error, poll, streams): the resources every other WASI 0.2 interface hands out.
//!
//! Streams are stdio on the console (the same path and the same queueing as preview 1's
//! `fd_read`/`fd_write`) or a position in a file of the tree. Output is never back-pressured:
//! a write is queued on the console (or stored in the file) at once, so `flush` has nothing to
//! wait for and every output stream is always ready. Pollables block the way `poll_oneoff`
//! does: one control-device WAIT until the earliest deadline, woken early by stdin.

use super::bindings::wasi::filesystem::types::ErrorCode;
use super::bindings::wasi::io::{error, poll, streams};
use super::ComponentCtx;
use crate::virtio::console::Output;
use crate::wasi::{poll as wasi_poll, stdio};
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use streams::StreamError;
use wasmcell_guest_fs::NodeRef;
use wasmtime::component::Resource;

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
}

/// Something a component can wait for (`wasi:io/poll.pollable`).
pub enum Pollable {
    /// Always ready: output streams, files.
    Ready,
    /// Ready when stdin has input or has ended.
    Stdin,
    /// Ready at this monotonic instant (ns).
    Deadline(u64),
}

/// `wasi:io/streams.input-stream`.
pub enum InputStream {
    Stdin,
    /// `readable`: the descriptor was opened for reading (else reads fail, as an OS read of a
    /// write-only descriptor does).
    File {
        node: NodeRef,
        position: u64,
        readable: bool,
    },
}

/// `wasi:io/streams.output-stream`.
pub enum OutputStream {
    Console(Output),
    /// `writable`: the descriptor was opened for writing (else writes fail, as an OS write to a
    /// read-only descriptor does).
    File {
        node: NodeRef,
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
            InputStream::File { readable: false, .. } => Err(IoError::Fs(ErrorCode::BadDescriptor).into()),
            InputStream::File { node, position, .. } => {
                // No bigger than what is left: a large read near the end allocates little.
                let left = node.borrow().stat().size.saturating_sub(*position);
                let mut buf = vec![0; len.min(usize::try_from(left).unwrap_or(usize::MAX))];
                match node.borrow_mut().read_at(*position, &mut buf) {
                    Ok(0) if len > 0 => Err(Failure::Closed),
                    Ok(n) => {
                        *position += n as u64;
                        buf.truncate(n);
                        Ok(buf)
                    }
                    Err(e) => Err(IoError::Fs(e.into()).into()),
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
            OutputStream::File { writable: false, .. } => Err(IoError::Fs(ErrorCode::BadDescriptor).into()),
            OutputStream::File { node, position, append, .. } => {
                let now = self.wasi.clocks.realtime_ns();
                let mut node = node.borrow_mut();
                let at = if *append { node.stat().size } else { *position };
                match node.write_at(at, bytes, now) {
                    Ok(n) => {
                        *position = at + n as u64;
                        Ok(())
                    }
                    Err(e) => Err(IoError::Fs(e.into()).into()),
                }
            }
        };
        Ok(result)
    }

    /// Whether `pollable` is ready now; the deadline it waits for if it is not.
    fn ready(&mut self, pollable: &Resource<Pollable>) -> wasmtime::Result<(bool, Option<u64>)> {
        Ok(match *self.table.get(pollable)? {
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

    /// The indices of the ready pollables of `list`, waiting until there is at least one.
    fn poll_list(&mut self, list: &[Resource<Pollable>]) -> wasmtime::Result<Vec<u32>> {
        if list.is_empty() {
            wasmtime::bail!("poll: empty list of pollables");
        }
        loop {
            let mut ready = Vec::new();
            let mut next: Option<u64> = None;
            for (index, pollable) in list.iter().enumerate() {
                match self.ready(pollable)? {
                    (true, _) => ready.push(index as u32),
                    (false, deadline) => next = deadline.map(|d| next.map_or(d, |n| n.min(d))).or(next),
                }
            }
            if !ready.is_empty() {
                return Ok(ready);
            }
            wasi_poll::sleep_until(&mut self.wasi, next).map_err(|e| wasmtime::format_err!("poll: {e:?}"))?;
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
        self.table.get(&stream)?;
        Ok(Ok(MAX_TRANSFER as u64))
    }

    fn write(
        &mut self,
        stream: Resource<OutputStream>,
        contents: Vec<u8>,
    ) -> wasmtime::Result<Result<(), StreamError>> {
        let result = ComponentCtx::write(self, &stream, &contents)?;
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
        let result = ComponentCtx::write(self, &stream, &contents)?;
        self.answer(result)
    }

    fn flush(&mut self, stream: Resource<OutputStream>) -> wasmtime::Result<Result<(), StreamError>> {
        self.table.get(&stream)?;
        Ok(Ok(()))
    }

    fn blocking_flush(&mut self, stream: Resource<OutputStream>) -> wasmtime::Result<Result<(), StreamError>> {
        self.table.get(&stream)?;
        Ok(Ok(()))
    }

    fn subscribe(&mut self, stream: Resource<OutputStream>) -> wasmtime::Result<Resource<Pollable>> {
        Ok(self.table.push_child(Pollable::Ready, &stream)?)
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
        self.write_zeroes(stream, len)
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

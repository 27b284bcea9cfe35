//! One request on one connection, as its component sees it through `wasi:http`
//! (`crate::component::http`): the request body read from the socket as the component asks
//! for it, and the response written as the component produces it — the head when it sets its
//! response, body bytes staged and sent when it flushes (or a transfer's worth has gathered),
//! the last chunk when it finishes. Sends block the instance until the socket takes the bytes:
//! nothing here queues more than one transfer, whatever the component writes.

use crate::net::{self, Handle};
use alloc::string::String;
use alloc::vec::Vec;
use wasmcell_abi::socket::{errno, PollEntry, READABLE};
use wasmcell_guest_http::body::Decoder;
use wasmcell_guest_http::request::Head;
use wasmcell_guest_http::response::{self, Delimit};

/// Bytes staged before they are sent without waiting for a flush.
const STAGE: usize = 64 * 1024;
/// Bytes read from the socket at a time.
const READ: usize = 16 * 1024;

/// Why the exchange cannot go on: the connection failed or the client sent a broken body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireError {
    /// The client closed or reset the connection, or sending failed.
    Connection,
    /// The request body is malformed.
    Body,
}

/// Where the response is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Progress {
    /// The component has not set a response.
    NotStarted,
    /// Head sent or staged; the body is being written.
    Body(Delimit),
    /// The last byte is sent (or staged to be).
    Finished,
    /// The connection failed mid-response: it can only be closed.
    Broken,
}

pub struct Exchange {
    socket: Handle,
    head: Head,
    /// Bytes received after the head: the body's and whatever follows it.
    received: Vec<u8>,
    decoder: Decoder,
    continue_sent: bool,
    progress: Progress,
    staged: Vec<u8>,
}

impl Exchange {
    /// The exchange for `head`, whose body starts with `received`.
    pub fn new(socket: Handle, head: Head, received: Vec<u8>) -> Self {
        let decoder = Decoder::new(head.framing);
        Self {
            socket,
            head,
            received,
            decoder,
            continue_sent: false,
            progress: Progress::NotStarted,
            staged: Vec::new(),
        }
    }

    pub fn head(&self) -> &Head {
        &self.head
    }

    /// Up to `max` bytes of the request body: none without `block` if none have arrived;
    /// `Ok(None)` once it has all been read.
    pub fn read_body(&mut self, max: usize, block: bool) -> Result<Option<Vec<u8>>, WireError> {
        let mut out = Vec::new();
        loop {
            let used = self.decoder.decode(&self.received, &mut out, max).map_err(|_| WireError::Body)?;
            self.received.drain(..used);
            if !out.is_empty() || max == 0 {
                return Ok(Some(out));
            }
            if self.decoder.done() {
                return Ok(None);
            }
            if self.head.expect_continue && !self.continue_sent && self.progress == Progress::NotStarted {
                self.continue_sent = true;
                self.send(b"HTTP/1.1 100 Continue\r\n\r\n")?;
            }
            if !self.receive(block)? {
                return Ok(Some(out));
            }
        }
    }

    /// Whether reading the body would return at once (bytes or its end are here).
    pub fn body_ready(&self) -> bool {
        self.decoder.done() || !self.received.is_empty()
    }

    /// The socket and what to wait for when the body is not ready.
    pub fn body_wait(&self) -> PollEntry {
        PollEntry { handle: self.socket, events: READABLE, ready: 0 }
    }

    /// Receives more of the connection; `false` if nothing has arrived (without `block`).
    fn receive(&mut self, block: bool) -> Result<bool, WireError> {
        match net::receive_into(self.socket, &mut self.received, READ, block) {
            Ok(0) => Err(WireError::Connection),
            Ok(_) => Ok(true),
            Err(errno::EAGAIN) => Ok(false),
            Err(_) => Err(WireError::Connection),
        }
    }

    /// The component set its response: its head goes out with the first body bytes.
    /// `length` is the body's length if known (its `Content-Length`, or a body that ended
    /// before the response was set).
    pub fn start(&mut self, status: u16, headers: &[(String, Vec<u8>)], length: Option<u64>) {
        if self.progress != Progress::NotStarted {
            return;
        }
        let delimit = if !response::may_have_body(status) || self.head.method == "HEAD" {
            Delimit::None
        } else if let Some(length) = length {
            Delimit::Length(length)
        } else if self.head.http10 {
            self.head.keep_alive = false;
            Delimit::Close
        } else {
            Delimit::Chunked
        };
        self.staged = response::head(status, headers, delimit, self.head.keep_alive);
        self.progress = Progress::Body(delimit);
    }

    /// Body bytes, in the response's framing; sent once a transfer's worth is staged.
    pub fn write_body(&mut self, bytes: &[u8]) -> Result<(), WireError> {
        match self.progress {
            Progress::Body(Delimit::Chunked) => response::chunk(&mut self.staged, bytes),
            Progress::Body(Delimit::None) => {}
            Progress::Body(_) => self.staged.extend_from_slice(bytes),
            Progress::Broken => return Err(WireError::Connection),
            Progress::NotStarted | Progress::Finished => return Ok(()),
        }
        if self.staged.len() >= STAGE {
            self.flush()?;
        }
        Ok(())
    }

    /// Sends everything staged.
    pub fn flush(&mut self) -> Result<(), WireError> {
        if self.progress == Progress::Broken {
            return Err(WireError::Connection);
        }
        let staged = core::mem::take(&mut self.staged);
        self.send(&staged)
    }

    /// The body ended: the last chunk with `trailers` (chunked), then everything is sent.
    pub fn finish(&mut self, trailers: &[(String, Vec<u8>)]) -> Result<(), WireError> {
        if let Progress::Body(delimit) = self.progress {
            if delimit == Delimit::Chunked {
                response::last_chunk(&mut self.staged, trailers);
            }
            self.flush()?;
            self.progress = Progress::Finished;
        }
        Ok(())
    }

    /// How the exchange ended: whether the connection can carry the next request, and the
    /// bytes received after this request's body (a pipelined request). A response that was
    /// never set, or never finished, closes the connection (the client sees no response, or
    /// a cut one), as a failed handler does in `wasmtime serve`.
    pub fn end(mut self) -> Option<(Handle, Vec<u8>)> {
        if self.progress != Progress::Finished || !self.head.keep_alive {
            return None;
        }
        // The rest of a body the component did not read, if it is already here or small.
        let mut unread = 0usize;
        while !self.decoder.done() {
            match self.read_body(READ, false) {
                Ok(Some(bytes)) if !bytes.is_empty() => unread += bytes.len(),
                _ => return None,
            }
            if unread > STAGE {
                return None;
            }
        }
        Some((self.socket, self.received))
    }

    /// Sends all of `bytes`; a failure breaks the exchange.
    fn send(&mut self, bytes: &[u8]) -> Result<(), WireError> {
        net::send_all(self.socket, bytes).map_err(|_| {
            self.progress = Progress::Broken;
            WireError::Connection
        })
    }
}

//! One outgoing HTTP/1.1 request (`wasi:http/outgoing-handler`) on a connection of its own,
//! made with the workload's sockets (so the policy and limits of its own sockets apply, and
//! the VMM sees only socket calls): connect, the request head and body as the component
//! writes it, then the response head and body as the component reads them. Plain HTTP only:
//! there is no TLS in the guest.

use super::{close, connect, open, poll, receive_into, send_all, take_error, Errno, Handle};
use alloc::vec::Vec;
use wasmcell_abi::socket::{errno, Address, PollEntry, READABLE, WRITABLE};
use wasmcell_guest_http::body::{Decoder, Framing};
use wasmcell_guest_http::client::{parse_response, ParsedResponse, ResponseHead};
use wasmcell_guest_http::response;

/// Bytes read from the connection at a time.
const READ: usize = 16 * 1024;
/// Bytes staged before they are sent without waiting for a flush.
const STAGE: usize = 64 * 1024;

/// Why an outgoing request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientError {
    Refused,
    Timeout,
    /// The workload may not connect there (no network, or the policy).
    Denied,
    Unreachable,
    /// The connection ended or failed mid-exchange.
    Terminated,
    /// The server's response is malformed.
    Protocol,
    /// The socket device refused (e.g. the workload's socket limit).
    Device(Errno),
}

fn connect_error(errno: Errno) -> ClientError {
    match errno {
        errno::ECONNREFUSED => ClientError::Refused,
        errno::ETIMEDOUT => ClientError::Timeout,
        errno::EACCES | errno::EPERM => ClientError::Denied,
        errno::ENETUNREACH | errno::EHOSTUNREACH | errno::EADDRNOTAVAIL => ClientError::Unreachable,
        other => ClientError::Device(other),
    }
}

pub struct ClientExchange {
    socket: Handle,
    head_request: bool,
    /// How the request body is framed (`None`: it has none).
    body: Option<Framing>,
    staged: Vec<u8>,
    received: Vec<u8>,
    /// The response head once it has arrived and until it is taken.
    response: Option<ResponseHead>,
    decoder: Option<Decoder>,
    /// The server stopped taking the request (it may have answered early, before the body
    /// was all sent, as HTTP allows): the rest of the request is dropped, and the response,
    /// if it came, is still read — as hyper's client does for wasmtime.
    request_refused: bool,
}

impl ClientExchange {
    /// Connects to `address` (waiting at most `timeout_us`) and stages `head`.
    pub fn open(
        address: &Address,
        timeout_us: Option<u64>,
        head: Vec<u8>,
        head_request: bool,
        body: Option<Framing>,
    ) -> Result<Self, ClientError> {
        let socket = open(address.family, true).map_err(connect_error)?;
        let exchange = Self {
            socket,
            head_request,
            body,
            staged: head,
            received: Vec::new(),
            response: None,
            decoder: None,
            request_refused: false,
        };
        match connect(socket, address) {
            Ok(()) => {}
            Err(errno::EINPROGRESS) => {
                let mut entry = [PollEntry { handle: socket, events: WRITABLE, ready: 0 }];
                match poll(&mut entry, timeout_us) {
                    Ok(0) => return Err(ClientError::Timeout),
                    Ok(_) => take_error(socket).map_err(connect_error)?,
                    Err(e) => return Err(ClientError::Device(e)),
                }
            }
            Err(e) => return Err(connect_error(e)),
        }
        Ok(exchange)
    }

    /// Request body bytes, in its framing; sent once a transfer's worth is staged.
    pub fn write_body(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        match self.body {
            Some(Framing::Chunked) => response::chunk(&mut self.staged, bytes),
            Some(_) => self.staged.extend_from_slice(bytes),
            None => {}
        }
        if self.staged.len() >= STAGE {
            self.flush()?;
        }
        Ok(())
    }

    /// Sends what is staged. A server that no longer takes it is not an error here: whether
    /// it answered is the response's to say (`Terminated` there if it did not).
    pub fn flush(&mut self) -> Result<(), ClientError> {
        let staged = core::mem::take(&mut self.staged);
        if !self.request_refused && send_all(self.socket, &staged).is_err() {
            self.request_refused = true;
        }
        Ok(())
    }

    /// The request body ended: the last chunk, then everything is sent.
    pub fn finish(&mut self, trailers: &[(alloc::string::String, Vec<u8>)]) -> Result<(), ClientError> {
        if self.body == Some(Framing::Chunked) {
            response::last_chunk(&mut self.staged, trailers);
        }
        self.flush()
    }

    /// The response head, if it has arrived (waiting for it with `block`); taken once.
    pub fn response(&mut self, block: bool) -> Result<Option<ResponseHead>, ClientError> {
        // What the request still has staged goes first: the server may wait for it.
        self.flush()?;
        loop {
            if self.decoder.is_some() {
                return Ok(self.response.take());
            }
            match parse_response(&self.received, self.head_request).map_err(|_| ClientError::Protocol)? {
                ParsedResponse::Informational(len) => {
                    self.received.drain(..len);
                    continue;
                }
                ParsedResponse::Complete(head, len) => {
                    self.received.drain(..len);
                    self.decoder = Some(Decoder::new(head.framing));
                    self.response = Some(head);
                    continue;
                }
                ParsedResponse::Partial => {}
            }
            if !self.receive(block)? {
                return Ok(None);
            }
        }
    }

    /// Up to `max` bytes of the response body (`Ok(None)`: its end).
    pub fn read_body(&mut self, max: usize, block: bool) -> Result<Option<Vec<u8>>, ClientError> {
        let mut out = Vec::new();
        loop {
            let decoder = self.decoder.as_mut().ok_or(ClientError::Protocol)?;
            let used = decoder.decode(&self.received, &mut out, max).map_err(|_| ClientError::Protocol)?;
            self.received.drain(..used);
            if !out.is_empty() || max == 0 {
                return Ok(Some(out));
            }
            if decoder.done() {
                return Ok(None);
            }
            match self.receive(block) {
                Ok(true) => {}
                Ok(false) => return Ok(Some(out)),
                // The connection's end ends a body delimited by it, and cuts any other.
                Err(ClientError::Terminated) => {
                    let decoder = self.decoder.as_mut().ok_or(ClientError::Protocol)?;
                    decoder.end_of_input().map_err(|_| ClientError::Terminated)?;
                    return Ok(None);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Whether reading (the head or the body) would return at once.
    pub fn ready(&self) -> bool {
        !self.received.is_empty() || self.decoder.as_ref().is_some_and(Decoder::done)
    }

    /// What to wait for otherwise.
    pub fn wait_entry(&self) -> PollEntry {
        PollEntry { handle: self.socket, events: READABLE, ready: 0 }
    }

    /// Receives more; `false` if nothing has arrived (without `block`).
    fn receive(&mut self, block: bool) -> Result<bool, ClientError> {
        match receive_into(self.socket, &mut self.received, READ, block) {
            Ok(0) => Err(ClientError::Terminated),
            Ok(_) => Ok(true),
            Err(errno::EAGAIN) => Ok(false),
            Err(_) => Err(ClientError::Terminated),
        }
    }
}

impl Drop for ClientExchange {
    fn drop(&mut self) {
        close(self.socket);
    }
}

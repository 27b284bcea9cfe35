//! The host side of `wasi:http/types`: fields, requests, responses and bodies.

use super::bindings::wasi::http::types::{self, ErrorCode, HeaderError, Method, Scheme, StatusCode};
use super::{
    body_size_error, BodySource, Fields, FutureIncomingResponse, FutureTrailers, IncomingBody, IncomingRequest,
    IncomingResponse, OutgoingBody, OutgoingRequest, OutgoingResponse, RequestOptions, ResponseOutparam,
    MAX_UNSENT_BODY,
};
use crate::component::bindings::wasi::clocks::monotonic_clock::Duration;
use crate::component::{ComponentCtx, InputStream, IoError, OutputStream, Pollable};
use crate::serve::WireError;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use wasmcell_guest_http::fields::{is_forbidden, valid_name, valid_value};
use wasmtime::component::Resource;

/// The method a request line names.
pub(super) fn method(name: &str) -> Method {
    match name {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "CONNECT" => Method::Connect,
        "OPTIONS" => Method::Options,
        "TRACE" => Method::Trace,
        "PATCH" => Method::Patch,
        other => Method::Other(other.to_string()),
    }
}

/// A name and value a component may put in fields, lowercased.
fn checked(name: &str, value: &[u8]) -> Result<String, HeaderError> {
    if !valid_name(name) || !valid_value(value) {
        return Err(HeaderError::InvalidSyntax);
    }
    if is_forbidden(name) {
        return Err(HeaderError::Forbidden);
    }
    Ok(name.to_ascii_lowercase())
}

/// Roughly the bytes a mutable `fields` may hold (wasmtime-wasi-http's default limit, counted
/// the same way: each name and value plus a fixed cost per entry); more traps, as there.
const FIELDS_SIZE_LIMIT: usize = 128 * 1024;
const ENTRY_COST: usize = 72;

fn fields_size(entries: &[(String, Vec<u8>)]) -> usize {
    entries.iter().map(|(name, value)| name.len() + value.len() + ENTRY_COST).sum()
}

/// Adds an entry to mutable fields: one `content-length` at most (two would make the framing
/// ambiguous), and within the size limit.
fn add_entry(fields: &mut Fields, name: String, value: Vec<u8>) -> wasmtime::Result<Result<(), HeaderError>> {
    if name == "content-length" && fields.entries.iter().any(|(n, _)| *n == name) {
        return Ok(Err(HeaderError::InvalidSyntax));
    }
    if fields_size(&fields.entries) + name.len() + value.len() + ENTRY_COST > FIELDS_SIZE_LIMIT {
        wasmtime::bail!("header fields exceed {FIELDS_SIZE_LIMIT} bytes");
    }
    fields.entries.push((name, value));
    Ok(Ok(()))
}

impl ComponentCtx {
    fn fields_mut(&mut self, fields: &Resource<Fields>) -> wasmtime::Result<Result<&mut Fields, HeaderError>> {
        let fields = self.table.get_mut(fields)?;
        Ok(if fields.mutable { Ok(fields) } else { Err(HeaderError::Immutable) })
    }

    /// Takes the entries of an owned `fields` handed over to a request or response.
    fn take_fields(&mut self, fields: Resource<Fields>) -> wasmtime::Result<Fields> {
        let mut fields = self.table.delete(fields)?;
        fields.mutable = false;
        Ok(fields)
    }

    /// Body bytes for `sink`: to the exchange if its response was set, else kept (bounded).
    pub(in crate::component) fn http_write(&mut self, sink: u32, bytes: &[u8]) -> Result<(), IoError> {
        let http = &mut self.http;
        let Some(state) = http.sinks.get_mut(&sink) else {
            return Err(IoError::Http(ErrorCode::InternalError(Some("the body is finished".into()))));
        };
        let written = state.written.saturating_add(bytes.len() as u64);
        if state.length.is_some_and(|length| written > length) {
            return Err(IoError::Http(body_size_error(written)));
        }
        state.written = written;
        if let Some(client) = state.client {
            let exchange = http.clients.get_mut(&client).ok_or(IoError::Http(ErrorCode::ConnectionTerminated))?;
            return exchange.write_body(bytes).map_err(|e| IoError::Http(super::outgoing::error_code(e)));
        }
        if http.sent_sink == Some(sink) {
            let exchange = http.exchange.as_mut().ok_or(IoError::Http(ErrorCode::ConnectionTerminated))?;
            return exchange.write_body(bytes).map_err(|_| IoError::Http(ErrorCode::ConnectionTerminated));
        }
        if state.unsent.len() + bytes.len() > MAX_UNSENT_BODY {
            return Err(IoError::Http(ErrorCode::InternalError(Some(alloc::format!(
                "more than {MAX_UNSENT_BODY} bytes written before the response was set"
            )))));
        }
        state.unsent.extend_from_slice(bytes);
        Ok(())
    }

    /// Sends what `sink` has staged, if its response was set.
    pub(in crate::component) fn http_flush(&mut self, sink: u32) -> Result<(), IoError> {
        let client = self.http.sinks.get(&sink).and_then(|s| s.client);
        if let Some(exchange) = client.and_then(|c| self.http.clients.get_mut(&c)) {
            return exchange.flush().map_err(|e| IoError::Http(super::outgoing::error_code(e)));
        }
        if self.http.sent_sink != Some(sink) {
            return Ok(());
        }
        match self.http.exchange.as_mut() {
            Some(exchange) => exchange.flush().map_err(|_| IoError::Http(ErrorCode::ConnectionTerminated)),
            None => Ok(()),
        }
    }

    /// Up to `len` bytes of an incoming body (`Ok(None)`: its end).
    pub(in crate::component) fn http_read(
        &mut self,
        source: BodySource,
        len: usize,
        block: bool,
    ) -> Result<Option<Vec<u8>>, IoError> {
        if let BodySource::Response(client) = source {
            let Some(exchange) = self.http.clients.get_mut(&client) else { return Ok(None) };
            return exchange.read_body(len, block).map_err(|e| IoError::Http(super::outgoing::error_code(e)));
        }
        let exchange = self.http.exchange.as_mut().ok_or(IoError::Http(ErrorCode::ConnectionTerminated))?;
        exchange.read_body(len, block).map_err(|e| {
            IoError::Http(match e {
                WireError::Body => ErrorCode::HttpProtocolError,
                WireError::Connection => ErrorCode::ConnectionTerminated,
            })
        })
    }

    /// What reading an incoming body would wait for.
    pub(in crate::component) fn http_body_pollable(&self, source: BodySource) -> Pollable {
        if let BodySource::Response(client) = source {
            return self.http.client_pollable(client);
        }
        match self.http.exchange.as_ref() {
            Some(exchange) if !exchange.body_ready() => {
                let entry = exchange.body_wait();
                Pollable::Socket { handle: entry.handle, events: entry.events }
            }
            _ => Pollable::Ready,
        }
    }
}

impl types::Host for ComponentCtx {
    fn http_error_code(&mut self, error: Resource<IoError>) -> wasmtime::Result<Option<ErrorCode>> {
        Ok(match self.table.get(&error)? {
            IoError::Http(code) => Some(code.clone()),
            _ => None,
        })
    }
}

impl types::HostFields for ComponentCtx {
    fn new(&mut self) -> wasmtime::Result<Resource<Fields>> {
        Ok(self.table.push(Fields { entries: Vec::new(), mutable: true })?)
    }

    fn from_list(
        &mut self,
        entries: Vec<(String, Vec<u8>)>,
    ) -> wasmtime::Result<Result<Resource<Fields>, HeaderError>> {
        let mut fields = Fields { entries: Vec::new(), mutable: true };
        for (name, value) in entries {
            let added = match checked(&name, &value) {
                Ok(name) => add_entry(&mut fields, name, value)?,
                Err(error) => Err(error),
            };
            if let Err(error) = added {
                return Ok(Err(error));
            }
        }
        Ok(Ok(self.table.push(fields)?))
    }

    fn get(&mut self, fields: Resource<Fields>, name: String) -> wasmtime::Result<Vec<Vec<u8>>> {
        let name = name.to_ascii_lowercase();
        let fields = self.table.get(&fields)?;
        Ok(fields.entries.iter().filter(|(n, _)| *n == name).map(|(_, v)| v.clone()).collect())
    }

    fn has(&mut self, fields: Resource<Fields>, name: String) -> wasmtime::Result<bool> {
        let name = name.to_ascii_lowercase();
        Ok(self.table.get(&fields)?.entries.iter().any(|(n, _)| *n == name))
    }

    fn set(
        &mut self,
        fields: Resource<Fields>,
        name: String,
        values: Vec<Vec<u8>>,
    ) -> wasmtime::Result<Result<(), HeaderError>> {
        let lower = match values.iter().try_for_each(|v| checked(&name, v).map(drop)).and_then(|()| checked(&name, b""))
        {
            Ok(lower) => lower,
            Err(error) => return Ok(Err(error)),
        };
        let fields = match self.fields_mut(&fields)? {
            Ok(fields) => fields,
            Err(error) => return Ok(Err(error)),
        };
        let kept: Vec<_> = fields.entries.iter().filter(|(n, _)| *n != lower).cloned().collect();
        let mut replaced = Fields { entries: kept, mutable: true };
        for value in values {
            if let Err(error) = add_entry(&mut replaced, lower.clone(), value)? {
                return Ok(Err(error));
            }
        }
        fields.entries = replaced.entries;
        Ok(Ok(()))
    }

    fn delete(&mut self, fields: Resource<Fields>, name: String) -> wasmtime::Result<Result<(), HeaderError>> {
        let lower = match checked(&name, b"") {
            Ok(lower) => lower,
            Err(error) => return Ok(Err(error)),
        };
        let fields = match self.fields_mut(&fields)? {
            Ok(fields) => fields,
            Err(error) => return Ok(Err(error)),
        };
        fields.entries.retain(|(n, _)| *n != lower);
        Ok(Ok(()))
    }

    fn append(
        &mut self,
        fields: Resource<Fields>,
        name: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), HeaderError>> {
        let lower = match checked(&name, &value) {
            Ok(lower) => lower,
            Err(error) => return Ok(Err(error)),
        };
        let fields = match self.fields_mut(&fields)? {
            Ok(fields) => fields,
            Err(error) => return Ok(Err(error)),
        };
        add_entry(fields, lower, value)
    }

    fn entries(&mut self, fields: Resource<Fields>) -> wasmtime::Result<Vec<(String, Vec<u8>)>> {
        Ok(self.table.get(&fields)?.entries.clone())
    }

    fn clone(&mut self, fields: Resource<Fields>) -> wasmtime::Result<Resource<Fields>> {
        let copy = Fields { entries: self.table.get(&fields)?.entries.clone(), mutable: true };
        Ok(self.table.push(copy)?)
    }

    fn drop(&mut self, fields: Resource<Fields>) -> wasmtime::Result<()> {
        self.table.delete(fields)?;
        Ok(())
    }
}

impl types::HostIncomingRequest for ComponentCtx {
    fn method(&mut self, request: Resource<IncomingRequest>) -> wasmtime::Result<Method> {
        Ok(self.table.get(&request)?.method.clone())
    }

    fn path_with_query(&mut self, request: Resource<IncomingRequest>) -> wasmtime::Result<Option<String>> {
        Ok(Some(self.table.get(&request)?.path.clone()))
    }

    fn scheme(&mut self, _request: Resource<IncomingRequest>) -> wasmtime::Result<Option<Scheme>> {
        Ok(Some(Scheme::Http))
    }

    fn authority(&mut self, request: Resource<IncomingRequest>) -> wasmtime::Result<Option<String>> {
        Ok(self.table.get(&request)?.authority.clone())
    }

    fn headers(&mut self, request: Resource<IncomingRequest>) -> wasmtime::Result<Resource<Fields>> {
        let headers = self.table.get(&request)?.headers.clone();
        Ok(self.table.push_child(headers, &request)?)
    }

    fn consume(&mut self, request: Resource<IncomingRequest>) -> wasmtime::Result<Result<Resource<IncomingBody>, ()>> {
        let request_ref = self.table.get_mut(&request)?;
        if core::mem::replace(&mut request_ref.consumed, true) {
            return Ok(Err(()));
        }
        Ok(Ok(self.table.push(IncomingBody { source: BodySource::Request, stream_taken: false })?))
    }

    fn drop(&mut self, request: Resource<IncomingRequest>) -> wasmtime::Result<()> {
        self.table.delete(request)?;
        Ok(())
    }
}

impl types::HostOutgoingRequest for ComponentCtx {
    fn new(&mut self, headers: Resource<Fields>) -> wasmtime::Result<Resource<OutgoingRequest>> {
        let headers = self.take_fields(headers)?;
        let sink = self.http.new_sink(headers.content_length());
        let request = OutgoingRequest {
            method: Method::Get,
            scheme: None,
            authority: None,
            path: None,
            headers,
            body_taken: false,
            sink,
        };
        Ok(self.table.push(request)?)
    }

    fn body(&mut self, request: Resource<OutgoingRequest>) -> wasmtime::Result<Result<Resource<OutgoingBody>, ()>> {
        let request_ref = self.table.get_mut(&request)?;
        if core::mem::replace(&mut request_ref.body_taken, true) {
            return Ok(Err(()));
        }
        let body = OutgoingBody { sink: request_ref.sink, stream_taken: false };
        Ok(Ok(self.table.push(body)?))
    }

    fn method(&mut self, request: Resource<OutgoingRequest>) -> wasmtime::Result<Method> {
        Ok(self.table.get(&request)?.method.clone())
    }

    fn set_method(&mut self, request: Resource<OutgoingRequest>, method: Method) -> wasmtime::Result<Result<(), ()>> {
        if let Method::Other(name) = &method {
            if !valid_name(name) {
                return Ok(Err(()));
            }
        }
        self.table.get_mut(&request)?.method = method;
        Ok(Ok(()))
    }

    fn path_with_query(&mut self, request: Resource<OutgoingRequest>) -> wasmtime::Result<Option<String>> {
        Ok(self.table.get(&request)?.path.clone())
    }

    fn set_path_with_query(
        &mut self,
        request: Resource<OutgoingRequest>,
        path: Option<String>,
    ) -> wasmtime::Result<Result<(), ()>> {
        if path.as_deref().is_some_and(|p| p.bytes().any(|b| b <= b' ' || b == 0x7f)) {
            return Ok(Err(()));
        }
        self.table.get_mut(&request)?.path = path;
        Ok(Ok(()))
    }

    fn scheme(&mut self, request: Resource<OutgoingRequest>) -> wasmtime::Result<Option<Scheme>> {
        Ok(self.table.get(&request)?.scheme.clone())
    }

    fn set_scheme(
        &mut self,
        request: Resource<OutgoingRequest>,
        scheme: Option<Scheme>,
    ) -> wasmtime::Result<Result<(), ()>> {
        if let Some(Scheme::Other(name)) = &scheme {
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b)) {
                return Ok(Err(()));
            }
        }
        self.table.get_mut(&request)?.scheme = scheme;
        Ok(Ok(()))
    }

    fn authority(&mut self, request: Resource<OutgoingRequest>) -> wasmtime::Result<Option<String>> {
        Ok(self.table.get(&request)?.authority.clone())
    }

    fn set_authority(
        &mut self,
        request: Resource<OutgoingRequest>,
        authority: Option<String>,
    ) -> wasmtime::Result<Result<(), ()>> {
        if authority.as_deref().is_some_and(|a| a.bytes().any(|b| b <= b' ' || b"/?#@".contains(&b) || b == 0x7f)) {
            return Ok(Err(()));
        }
        self.table.get_mut(&request)?.authority = authority;
        Ok(Ok(()))
    }

    fn headers(&mut self, request: Resource<OutgoingRequest>) -> wasmtime::Result<Resource<Fields>> {
        let headers = self.table.get(&request)?.headers.clone();
        Ok(self.table.push_child(headers, &request)?)
    }

    fn drop(&mut self, request: Resource<OutgoingRequest>) -> wasmtime::Result<()> {
        let request = self.table.delete(request)?;
        self.http.sinks.remove(&request.sink);
        Ok(())
    }
}

impl types::HostRequestOptions for ComponentCtx {
    fn new(&mut self) -> wasmtime::Result<Resource<RequestOptions>> {
        Ok(self.table.push(RequestOptions::default())?)
    }

    fn connect_timeout(&mut self, options: Resource<RequestOptions>) -> wasmtime::Result<Option<Duration>> {
        Ok(self.table.get(&options)?.connect)
    }

    fn set_connect_timeout(
        &mut self,
        options: Resource<RequestOptions>,
        duration: Option<Duration>,
    ) -> wasmtime::Result<Result<(), ()>> {
        self.table.get_mut(&options)?.connect = duration;
        Ok(Ok(()))
    }

    fn first_byte_timeout(&mut self, options: Resource<RequestOptions>) -> wasmtime::Result<Option<Duration>> {
        Ok(self.table.get(&options)?.first_byte)
    }

    fn set_first_byte_timeout(
        &mut self,
        options: Resource<RequestOptions>,
        duration: Option<Duration>,
    ) -> wasmtime::Result<Result<(), ()>> {
        self.table.get_mut(&options)?.first_byte = duration;
        Ok(Ok(()))
    }

    fn between_bytes_timeout(&mut self, options: Resource<RequestOptions>) -> wasmtime::Result<Option<Duration>> {
        Ok(self.table.get(&options)?.between_bytes)
    }

    fn set_between_bytes_timeout(
        &mut self,
        options: Resource<RequestOptions>,
        duration: Option<Duration>,
    ) -> wasmtime::Result<Result<(), ()>> {
        self.table.get_mut(&options)?.between_bytes = duration;
        Ok(Ok(()))
    }

    fn drop(&mut self, options: Resource<RequestOptions>) -> wasmtime::Result<()> {
        self.table.delete(options)?;
        Ok(())
    }
}

impl types::HostResponseOutparam for ComponentCtx {
    fn set(
        &mut self,
        param: Resource<ResponseOutparam>,
        response: Result<Resource<OutgoingResponse>, ErrorCode>,
    ) -> wasmtime::Result<()> {
        self.table.delete(param)?;
        let Ok(response) = response else {
            // An error for a response: the connection closes without one (the exchange never
            // starts), as wasmtime serve's hyper does with a failed service.
            return Ok(());
        };
        let response = self.table.delete(response)?;
        let sink = self.http.sinks.get_mut(&response.sink);
        let (length, unsent, finished) = match sink {
            Some(sink) => {
                let finished = sink.finished.take();
                let length = response.headers.content_length().or(finished.as_ref().map(|_| sink.written));
                (length, core::mem::take(&mut sink.unsent), finished)
            }
            None => (response.headers.content_length(), Vec::new(), None),
        };
        self.http.sent_sink = Some(response.sink);
        let exchange = self.exchange()?;
        exchange.start(response.status, &response.headers.entries, length);
        // A failed connection shows on the body's next write; nothing to report here.
        let _ = exchange.write_body(&unsent);
        if let Some(trailers) = finished {
            let _ = exchange.finish(&trailers);
            self.http.sinks.remove(&response.sink);
        }
        Ok(())
    }

    /// Unstable in WASI 0.2 and never linked (its `LinkOptions` flag stays off).
    fn send_informational(
        &mut self,
        _param: Resource<ResponseOutparam>,
        _status: u16,
        _headers: Resource<Fields>,
    ) -> wasmtime::Result<Result<(), ErrorCode>> {
        wasmtime::bail!("informational responses are not offered")
    }

    fn drop(&mut self, param: Resource<ResponseOutparam>) -> wasmtime::Result<()> {
        self.table.delete(param)?;
        Ok(())
    }
}

impl types::HostIncomingResponse for ComponentCtx {
    fn status(&mut self, response: Resource<IncomingResponse>) -> wasmtime::Result<StatusCode> {
        Ok(self.table.get(&response)?.status)
    }

    fn headers(&mut self, response: Resource<IncomingResponse>) -> wasmtime::Result<Resource<Fields>> {
        let headers = self.table.get(&response)?.headers.clone();
        Ok(self.table.push_child(headers, &response)?)
    }

    fn consume(
        &mut self,
        response: Resource<IncomingResponse>,
    ) -> wasmtime::Result<Result<Resource<IncomingBody>, ()>> {
        let response_ref = self.table.get_mut(&response)?;
        if core::mem::replace(&mut response_ref.consumed, true) {
            return Ok(Err(()));
        }
        let body = IncomingBody { source: BodySource::Response(response_ref.client), stream_taken: false };
        Ok(Ok(self.table.push(body)?))
    }

    fn drop(&mut self, response: Resource<IncomingResponse>) -> wasmtime::Result<()> {
        let response = self.table.delete(response)?;
        if !response.consumed {
            self.http.clients.remove(&response.client);
        }
        Ok(())
    }
}

impl types::HostIncomingBody for ComponentCtx {
    fn stream(&mut self, body: Resource<IncomingBody>) -> wasmtime::Result<Result<Resource<InputStream>, ()>> {
        let body_ref = self.table.get_mut(&body)?;
        if core::mem::replace(&mut body_ref.stream_taken, true) {
            return Ok(Err(()));
        }
        let source = body_ref.source;
        Ok(Ok(self.table.push_child(InputStream::HttpBody(source), &body)?))
    }

    fn finish(&mut self, body: Resource<IncomingBody>) -> wasmtime::Result<Resource<FutureTrailers>> {
        let body = self.table.delete(body)?;
        self.http.end_body(body.source);
        Ok(self.table.push(FutureTrailers)?)
    }

    fn drop(&mut self, body: Resource<IncomingBody>) -> wasmtime::Result<()> {
        let body = self.table.delete(body)?;
        self.http.end_body(body.source);
        Ok(())
    }
}

impl types::HostFutureTrailers for ComponentCtx {
    fn subscribe(&mut self, trailers: Resource<FutureTrailers>) -> wasmtime::Result<Resource<Pollable>> {
        Ok(self.table.push_child(Pollable::Ready, &trailers)?)
    }

    #[allow(clippy::type_complexity, reason = "the WIT's own type")]
    fn get(
        &mut self,
        trailers: Resource<FutureTrailers>,
    ) -> wasmtime::Result<Option<Result<Result<Option<Resource<Fields>>, ErrorCode>, ()>>> {
        self.table.get(&trailers)?;
        Ok(Some(Ok(Ok(None))))
    }

    fn drop(&mut self, trailers: Resource<FutureTrailers>) -> wasmtime::Result<()> {
        self.table.delete(trailers)?;
        Ok(())
    }
}

impl types::HostOutgoingResponse for ComponentCtx {
    fn new(&mut self, headers: Resource<Fields>) -> wasmtime::Result<Resource<OutgoingResponse>> {
        let headers = self.take_fields(headers)?;
        let sink = self.http.new_sink(headers.content_length());
        Ok(self.table.push(OutgoingResponse { status: 200, headers, body_taken: false, sink })?)
    }

    fn status_code(&mut self, response: Resource<OutgoingResponse>) -> wasmtime::Result<StatusCode> {
        Ok(self.table.get(&response)?.status)
    }

    fn set_status_code(
        &mut self,
        response: Resource<OutgoingResponse>,
        status: StatusCode,
    ) -> wasmtime::Result<Result<(), ()>> {
        if !(100..=999).contains(&status) {
            return Ok(Err(()));
        }
        self.table.get_mut(&response)?.status = status;
        Ok(Ok(()))
    }

    fn headers(&mut self, response: Resource<OutgoingResponse>) -> wasmtime::Result<Resource<Fields>> {
        let headers = self.table.get(&response)?.headers.clone();
        Ok(self.table.push_child(headers, &response)?)
    }

    fn body(&mut self, response: Resource<OutgoingResponse>) -> wasmtime::Result<Result<Resource<OutgoingBody>, ()>> {
        let response_ref = self.table.get_mut(&response)?;
        if core::mem::replace(&mut response_ref.body_taken, true) {
            return Ok(Err(()));
        }
        let body = OutgoingBody { sink: response_ref.sink, stream_taken: false };
        Ok(Ok(self.table.push(body)?))
    }

    fn drop(&mut self, response: Resource<OutgoingResponse>) -> wasmtime::Result<()> {
        self.table.delete(response)?;
        Ok(())
    }
}

impl types::HostOutgoingBody for ComponentCtx {
    fn write(&mut self, body: Resource<OutgoingBody>) -> wasmtime::Result<Result<Resource<OutputStream>, ()>> {
        let body_ref = self.table.get_mut(&body)?;
        if core::mem::replace(&mut body_ref.stream_taken, true) {
            return Ok(Err(()));
        }
        let stream = OutputStream::HttpBody { sink: body_ref.sink };
        Ok(Ok(self.table.push_child(stream, &body)?))
    }

    fn finish(
        &mut self,
        body: Resource<OutgoingBody>,
        trailers: Option<Resource<Fields>>,
    ) -> wasmtime::Result<Result<(), ErrorCode>> {
        let body = self.table.delete(body)?;
        let trailers = match trailers {
            Some(trailers) => self.take_fields(trailers)?.entries,
            None => Vec::new(),
        };
        let Some(sink) = self.http.sinks.get_mut(&body.sink) else {
            return Ok(Ok(()));
        };
        if sink.length.is_some_and(|length| length != sink.written) {
            let written = sink.written;
            self.http.sinks.remove(&body.sink);
            return Ok(Err(body_size_error(written)));
        }
        if let Some(client) = sink.client {
            self.http.sinks.remove(&body.sink);
            let Some(exchange) = self.http.clients.get_mut(&client) else {
                return Ok(Err(ErrorCode::ConnectionTerminated));
            };
            return Ok(exchange.finish(&trailers).map_err(super::outgoing::error_code));
        }
        if self.http.sent_sink != Some(body.sink) {
            sink.finished = Some(trailers);
            return Ok(Ok(()));
        }
        self.http.sinks.remove(&body.sink);
        let result = self.exchange()?.finish(&trailers);
        Ok(result.map_err(|_| ErrorCode::ConnectionTerminated))
    }

    fn drop(&mut self, body: Resource<OutgoingBody>) -> wasmtime::Result<()> {
        // Unfinished: the response (if it was set) is cut off when the handler returns.
        let body = self.table.delete(body)?;
        self.http.sinks.remove(&body.sink);
        Ok(())
    }
}

impl types::HostFutureIncomingResponse for ComponentCtx {
    fn subscribe(&mut self, future: Resource<FutureIncomingResponse>) -> wasmtime::Result<Resource<Pollable>> {
        let future_ref = self.table.get(&future)?;
        let pollable = if future_ref.taken { Pollable::Ready } else { self.http.client_pollable(future_ref.client) };
        Ok(self.table.push_child(pollable, &future)?)
    }

    #[allow(clippy::type_complexity, reason = "the WIT's own type")]
    fn get(
        &mut self,
        future: Resource<FutureIncomingResponse>,
    ) -> wasmtime::Result<Option<Result<Result<Resource<IncomingResponse>, ErrorCode>, ()>>> {
        let future_ref = self.table.get(&future)?;
        if future_ref.taken {
            return Ok(Some(Err(())));
        }
        let client = future_ref.client;
        let answer = match self.http.clients.get_mut(&client) {
            None => Err(ErrorCode::ConnectionTerminated),
            Some(exchange) => match exchange.response(false) {
                Ok(None) => return Ok(None),
                Ok(Some(head)) => Ok(head),
                Err(error) => Err(super::outgoing::error_code(error)),
            },
        };
        self.table.get_mut(&future)?.taken = true;
        let head = match answer {
            Ok(head) => head,
            Err(code) => {
                self.http.clients.remove(&client);
                return Ok(Some(Ok(Err(code))));
            }
        };
        let headers = head.headers.into_iter().filter(|(name, _)| !is_forbidden(name)).collect();
        let response = IncomingResponse {
            status: head.status,
            headers: Fields { entries: headers, mutable: false },
            client,
            consumed: false,
        };
        Ok(Some(Ok(Ok(self.table.push(response)?))))
    }

    fn drop(&mut self, future: Resource<FutureIncomingResponse>) -> wasmtime::Result<()> {
        let future = self.table.delete(future)?;
        if !future.taken {
            self.http.clients.remove(&future.client);
        }
        Ok(())
    }
}

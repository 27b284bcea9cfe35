//! `wasi:http/outgoing-handler`: a component's request sent over plain HTTP/1.1 on a
//! connection of its own (`crate::net::http_client`), from the workload's sockets — the same
//! network, policy and limits as its `wasi:sockets`. The authority's name is looked up in the
//! guest with the workload's resolver (a pod's resolv.conf and hosts); IP literals need none.
//! `https` (and a request without a scheme, which wasmtime sends as `https`) is refused with an
//! error naming the limitation: the guest has no TLS stack.

use super::bindings::wasi::http::outgoing_handler;
use super::bindings::wasi::http::types::{DnsErrorPayload, ErrorCode, Method, Scheme};
use super::{FutureIncomingResponse, OutgoingRequest, RequestOptions};
use crate::component::ComponentCtx;
use crate::net::http_client::{ClientError, ClientExchange};
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::net::IpAddr;
use wasmcell_abi::socket::Address;
use wasmcell_guest_dns::{parse_host, Host};
use wasmcell_guest_http::body::Framing;
use wasmtime::component::Resource;

/// wasmtime-wasi-http's default connect timeout.
const CONNECT_TIMEOUT_NS: u64 = 600_000_000_000;

/// The error code a failed exchange reports.
pub(super) fn error_code(error: ClientError) -> ErrorCode {
    match error {
        ClientError::Refused => ErrorCode::ConnectionRefused,
        ClientError::Timeout => ErrorCode::ConnectionTimeout,
        ClientError::Denied => ErrorCode::HttpRequestDenied,
        ClientError::Unreachable => ErrorCode::DestinationUnavailable,
        ClientError::Terminated => ErrorCode::ConnectionTerminated,
        ClientError::Protocol => ErrorCode::HttpProtocolError,
        ClientError::Device(wasmcell_abi::socket::errno::EMFILE) => ErrorCode::ConnectionLimitReached,
        ClientError::Device(errno) => ErrorCode::InternalError(Some(alloc::format!("socket error {errno}"))),
    }
}

fn method_name(method: &Method) -> &str {
    match method {
        Method::Get => "GET",
        Method::Head => "HEAD",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Delete => "DELETE",
        Method::Connect => "CONNECT",
        Method::Options => "OPTIONS",
        Method::Trace => "TRACE",
        Method::Patch => "PATCH",
        Method::Other(other) => other,
    }
}

fn dns_error(reason: &str) -> ErrorCode {
    ErrorCode::DnsError(DnsErrorPayload { rcode: Some(reason.to_string()), info_code: Some(0) })
}

/// `host[:port]` → the host and the port (80 by default).
fn split_authority(authority: &str) -> Result<(&str, u16), ErrorCode> {
    let (host, port) = match authority.rsplit_once(':') {
        // A bare IPv6 literal's colons are not a port.
        Some((host, port)) if !port.contains(']') && (host.starts_with('[') || !host.contains(':')) => {
            (host, port.parse().map_err(|_| ErrorCode::HttpRequestUriInvalid)?)
        }
        _ => (authority, 80),
    };
    if host.is_empty() {
        return Err(ErrorCode::HttpRequestUriInvalid);
    }
    Ok((host, port))
}

impl ComponentCtx {
    /// The address to connect to for `host` (a literal, or the first address of a lookup).
    fn resolve_authority(&mut self, host: &str) -> Result<IpAddr, ErrorCode> {
        let domain = match parse_host(host).map_err(|_| ErrorCode::HttpRequestUriInvalid)? {
            Host::V4(v4) => return Ok(IpAddr::V4(v4)),
            Host::V6(v6) => return Ok(IpAddr::V6(v6)),
            Host::Domain(domain) => domain,
        };
        let config = match crate::net::available().then(crate::net::lookup::resolver) {
            Some(Ok(config)) => config,
            _ => return Err(dns_error("name lookup is not allowed")),
        };
        let clocks = &self.wasi.clocks;
        let rng = &mut self.wasi.rng;
        let now_ns = || clocks.monotonic_ns().unwrap_or(0);
        let mut id = || {
            use rand_chacha::rand_core::Rng;
            rng.next_u32() as u16
        };
        let found = crate::net::lookup::resolve(&config, &domain, &now_ns, &mut id);
        found.and_then(|addresses| addresses.into_iter().next()).ok_or_else(|| dns_error("address not available"))
    }

    fn send_request(
        &mut self,
        request: OutgoingRequest,
        options: Option<RequestOptions>,
    ) -> Result<Resource<FutureIncomingResponse>, ErrorCode> {
        match &request.scheme {
            Some(Scheme::Http) => {}
            Some(Scheme::Other(_)) => return Err(ErrorCode::HttpProtocolError),
            Some(Scheme::Https) | None => {
                return Err(ErrorCode::InternalError(Some(String::from(
                    "HTTPS is not supported by wasmcell yet: the guest has no TLS stack (use http://)",
                ))))
            }
        }
        let authority = request.authority.clone().ok_or(ErrorCode::HttpRequestUriInvalid)?;
        let (host, port) = split_authority(&authority)?;
        let ip = self.resolve_authority(host)?;
        let address = match ip {
            IpAddr::V4(v4) => Address::v4(v4.octets(), port),
            IpAddr::V6(v6) => Address { family: 6, port, flowinfo: 0, ip: v6.octets(), scope_id: 0 },
        };
        let sink = self.http.sinks.get_mut(&request.sink);
        let (unsent, finished) = match sink {
            Some(sink) => (core::mem::take(&mut sink.unsent), sink.finished.take()),
            None => (Vec::new(), None),
        };
        let framing = if !request.body_taken {
            None
        } else if finished.is_some() {
            Some(Framing::Length(unsent.len() as u64)).filter(|f| *f != Framing::Length(0))
        } else if let Some(length) = request.headers.content_length() {
            Some(Framing::Length(length))
        } else {
            Some(Framing::Chunked)
        };
        let method = method_name(&request.method);
        let target = request.path.as_deref().unwrap_or("/");
        let head =
            wasmcell_guest_http::client::request_head(method, target, &authority, &request.headers.entries, framing);
        let timeout_ns = options.and_then(|o| o.connect).unwrap_or(CONNECT_TIMEOUT_NS);
        let mut exchange =
            ClientExchange::open(&address, Some(timeout_ns.div_ceil(1000)), head, method == "HEAD", framing)
                .map_err(error_code)?;
        exchange.write_body(&unsent).map_err(error_code)?;
        // The head goes now, as hyper sends it: a component may wait for the response before
        // it writes (or without ever writing) the body.
        exchange.flush().map_err(error_code)?;
        match finished {
            Some(trailers) => {
                exchange.finish(&trailers).map_err(error_code)?;
                self.http.sinks.remove(&request.sink);
            }
            None => {
                if let Some(sink) = self.http.sinks.get_mut(&request.sink) {
                    sink.client = Some(self.http.next_client);
                }
            }
        }
        let client = self.http.next_client;
        self.http.next_client = self.http.next_client.wrapping_add(1);
        self.http.clients.insert(client, exchange);
        self.table
            .push(FutureIncomingResponse { client, taken: false })
            .map_err(|e| ErrorCode::InternalError(Some(e.to_string())))
    }
}

impl outgoing_handler::Host for ComponentCtx {
    fn handle(
        &mut self,
        request: Resource<OutgoingRequest>,
        options: Option<Resource<RequestOptions>>,
    ) -> wasmtime::Result<Result<Resource<FutureIncomingResponse>, ErrorCode>> {
        let request = self.table.delete(request)?;
        let options = options.map(|o| self.table.delete(o)).transpose()?;
        let sink = request.sink;
        let result = self.send_request(request, options);
        if result.is_err() {
            self.http.sinks.remove(&sink);
        }
        Ok(result)
    }
}

//! `wasi:http` (types, outgoing-handler, and the incoming-handler export) for components: those
//! `wasmcell serve` runs, and any that call out. With the semantics of wasmtime-wasi-http 48 where a component can
//! tell: forbidden headers refused and stripped, immutable request and response headers,
//! `Content-Length` enforced on the body written, a response whose body is dropped unfinished
//! is cut off.
//!
//! In the flow: [`crate::serve`] makes an [`Exchange`] of each request and a store whose
//! [`ComponentCtx`] holds it ([`ComponentCtx::for_request`]); [`Proxy::handle`] instantiates the
//! component and calls `handle` with an `incoming-request` that reads the exchange and a
//! `response-outparam` that writes it. Body bytes written before the response is set wait in
//! their body's [`Sink`] (bounded); after, they go to the exchange. An outgoing request is a
//! `ClientExchange` of its own (`crate::net::http_client`, `outgoing`).

mod outgoing;
mod types;

use super::bindings::wasi::clocks::monotonic_clock::Duration;
use super::{ComponentCtx, Pollable};
use crate::net::http_client::ClientExchange;
use crate::serve::Exchange;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store};

pub(super) mod bindings {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "wasi:http/proxy",
        imports: { default: trappable },
        with: {
            "wasi:io": crate::component::bindings::wasi::io,
            "wasi:clocks": crate::component::bindings::wasi::clocks,
            "wasi:random": crate::component::bindings::wasi::random,
            "wasi:cli": crate::component::bindings::wasi::cli,
            "wasi:http/types.fields": crate::component::http::Fields,
            "wasi:http/types.incoming-request": crate::component::http::IncomingRequest,
            "wasi:http/types.outgoing-request": crate::component::http::OutgoingRequest,
            "wasi:http/types.request-options": crate::component::http::RequestOptions,
            "wasi:http/types.response-outparam": crate::component::http::ResponseOutparam,
            "wasi:http/types.incoming-response": crate::component::http::IncomingResponse,
            "wasi:http/types.incoming-body": crate::component::http::IncomingBody,
            "wasi:http/types.future-trailers": crate::component::http::FutureTrailers,
            "wasi:http/types.outgoing-response": crate::component::http::OutgoingResponse,
            "wasi:http/types.outgoing-body": crate::component::http::OutgoingBody,
            "wasi:http/types.future-incoming-response": crate::component::http::FutureIncomingResponse,
        },
    });
}

use bindings::wasi::http::types::{ErrorCode, Method, Scheme};

/// Bytes a body may hold before its response is set (a component writing a large body first
/// and setting the response last is served, up to this).
const MAX_UNSENT_BODY: usize = 1 << 20;

/// `wasi:http/types.fields`: names lowercased, in the order added.
#[derive(Clone, Debug, Default)]
pub struct Fields {
    entries: Vec<(String, Vec<u8>)>,
    mutable: bool,
}

pub struct IncomingRequest {
    method: Method,
    path: String,
    authority: Option<String>,
    headers: Fields,
    consumed: bool,
}

pub struct OutgoingRequest {
    method: Method,
    scheme: Option<Scheme>,
    authority: Option<String>,
    path: Option<String>,
    headers: Fields,
    body_taken: bool,
    sink: u32,
}

#[derive(Default)]
pub struct RequestOptions {
    connect: Option<Duration>,
    first_byte: Option<Duration>,
    between_bytes: Option<Duration>,
}

/// The one response a request gets.
pub struct ResponseOutparam;

/// The response to an outgoing request: its exchange by number.
pub struct IncomingResponse {
    status: u16,
    headers: Fields,
    client: u32,
    consumed: bool,
}

/// Whose body an incoming body is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodySource {
    /// The request being served.
    Request,
    /// The response to outgoing exchange N.
    Response(u32),
}

pub struct IncomingBody {
    source: BodySource,
    stream_taken: bool,
}

/// An incoming body's trailers, which are read past and dropped: always ready, always none.
pub struct FutureTrailers;

pub struct OutgoingResponse {
    status: u16,
    headers: Fields,
    body_taken: bool,
    sink: u32,
}

/// The `outgoing-body` of a response or request: its [`Sink`] by number.
pub struct OutgoingBody {
    sink: u32,
    stream_taken: bool,
}

/// The response an outgoing exchange is waiting for.
pub struct FutureIncomingResponse {
    client: u32,
    taken: bool,
}

// SAFETY (all): `ResourceTable` asks for `Send`; as for the other component resources, nothing
// crosses a thread (one workload per vCPU, no threads).
unsafe impl Send for IncomingRequest {}
// SAFETY: as above.
unsafe impl Send for OutgoingRequest {}

/// Where an outgoing body's bytes go.
#[derive(Default)]
struct Sink {
    /// Its `Content-Length`, which the bytes written must match.
    length: Option<u64>,
    written: u64,
    /// Written before its response was set.
    unsent: Vec<u8>,
    /// Finished (with these trailers) before its response was set (or its request sent).
    finished: Option<Vec<(String, Vec<u8>)>>,
    /// The outgoing exchange its bytes go to (a request's body, once the request was sent).
    client: Option<u32>,
}

/// A request's HTTP state, in its store's [`ComponentCtx`].
#[derive(Default)]
pub struct HttpState {
    exchange: Option<Exchange>,
    /// The sink of the response that was set: its bytes go to the exchange.
    sent_sink: Option<u32>,
    sinks: BTreeMap<u32, Sink>,
    next_sink: u32,
    /// Outgoing requests' exchanges, by number; dropping one closes its connection.
    clients: BTreeMap<u32, ClientExchange>,
    next_client: u32,
}

impl HttpState {
    /// What waiting on outgoing exchange `client` (its response head or body) waits for.
    fn client_pollable(&self, client: u32) -> Pollable {
        match self.clients.get(&client) {
            Some(exchange) if !exchange.ready() => {
                let entry = exchange.wait_entry();
                Pollable::Socket { handle: entry.handle, events: entry.events }
            }
            _ => Pollable::Ready,
        }
    }

    /// An incoming body is done with: a response's connection closes.
    fn end_body(&mut self, source: BodySource) {
        if let BodySource::Response(client) = source {
            self.clients.remove(&client);
        }
    }

    fn new_sink(&mut self, length: Option<u64>) -> u32 {
        let id = self.next_sink;
        self.next_sink = self.next_sink.wrapping_add(1);
        self.sinks.insert(id, Sink { length, ..Sink::default() });
        id
    }
}

impl Fields {
    /// The value of `content-length`, if it is one number.
    fn content_length(&self) -> Option<u64> {
        let mut values = self.entries.iter().filter(|(n, _)| n == "content-length");
        let (_, value) = values.next()?;
        core::str::from_utf8(value).ok()?.trim().parse().ok()
    }
}

impl ComponentCtx {
    /// This context, serving `exchange` with a fresh resource table.
    pub fn for_request(mut self, exchange: Exchange) -> Self {
        self.table = ResourceTable::new();
        self.http = HttpState { exchange: Some(exchange), ..HttpState::default() };
        self
    }

    /// The context back from a request's store, and its exchange.
    pub fn end_request(mut self) -> (Self, Option<Exchange>) {
        let exchange = self.http.exchange.take();
        self.http = HttpState::default();
        self.table = ResourceTable::new();
        (self, exchange)
    }

    fn exchange(&mut self) -> wasmtime::Result<&mut Exchange> {
        self.http.exchange.as_mut().ok_or_else(|| wasmtime::format_err!("no request is being served"))
    }
}

/// A `wasi:http/proxy` component ready to be instantiated for each request.
pub struct Proxy {
    pre: bindings::ProxyPre<ComponentCtx>,
}

impl Proxy {
    /// Links what `component` imports and checks that it exports `wasi:http/incoming-handler`.
    pub fn new(linker: &mut Linker<ComponentCtx>, component: &Component) -> Result<Self, String> {
        super::link(linker, component)?;
        let pre = linker.instantiate_pre(component).map_err(|e| format!("{e:#}"))?;
        let pre = bindings::ProxyPre::new(pre)
            .map_err(|_| String::from("the component exports no `wasi:http/incoming-handler`: it cannot be served"))?;
        Ok(Self { pre })
    }

    pub fn engine(&self) -> &Engine {
        self.pre.engine()
    }

    /// Instantiates the component in `store` and hands it the store's request.
    pub fn handle(&self, store: &mut Store<ComponentCtx>) -> wasmtime::Result<()> {
        let proxy = self.pre.instantiate(&mut *store)?;
        let ctx = store.data_mut();
        let head = ctx.exchange()?.head();
        let request = IncomingRequest {
            method: types::method(&head.method),
            path: head.target.clone(),
            authority: head.authority.clone(),
            headers: Fields {
                entries: head
                    .headers
                    .iter()
                    .filter(|(name, _)| !wasmcell_guest_http::fields::is_forbidden(name))
                    .cloned()
                    .collect(),
                mutable: false,
            },
            consumed: false,
        };
        let request = ctx.table.push(request)?;
        let out = ctx.table.push(ResponseOutparam)?;
        proxy.wasi_http_incoming_handler().call_handle(&mut *store, request, out)
    }
}

/// How a body write or finish failed, as `http-error-code` reports it.
fn body_size_error(written: u64) -> ErrorCode {
    ErrorCode::HttpResponseBodySize(Some(written))
}

/// Links `wasi:http/types` (for [`super::INTERFACES`]).
pub(super) fn add_types(linker: &mut Linker<ComponentCtx>) -> wasmtime::Result<()> {
    bindings::wasi::http::types::add_to_linker::<_, super::Host>(linker, &Default::default(), |c| c)
}

/// Links `wasi:http/outgoing-handler` (for [`super::INTERFACES`]).
pub(super) fn add_outgoing_handler(linker: &mut Linker<ComponentCtx>) -> wasmtime::Result<()> {
    bindings::wasi::http::outgoing_handler::add_to_linker::<_, super::Host>(linker, |c| c)
}

pub use bindings::wasi::http::types::ErrorCode as HttpErrorCode;

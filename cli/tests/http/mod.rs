//! What the `wasmcell serve` tests and benchmark share: the reference (`wasmtime serve`'s own
//! parts — wasmtime-wasi-http 48 on hyper, an instance per request, in-process on loopback),
//! `wasmcell serve` started in the background, and a small HTTP/1.1 client that keeps its
//! connection and reads responses byte-exactly (status, headers, decoded body), so that both
//! servers can be asked the same thing and their answers compared.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use wasmcell_guest_http::body::{Decoder, Framing};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// `wasmcell serve --addr 127.0.0.1:0 COMPONENT` in the background, and the port it serves on
/// (from its `Serving HTTP on http://IP:PORT/` line).
pub fn spawn_wasmcell_serve(component: &str, cache_dir: &str) -> (Child, u16) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wasmcell"))
        .args(["serve", "--cache-dir", cache_dir, "--addr", "127.0.0.1:0", component])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start wasmcell serve");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let port = line
        .trim()
        .strip_prefix("Serving HTTP on http://127.0.0.1:")
        .and_then(|rest| rest.strip_suffix('/'))
        .unwrap_or_else(|| panic!("not a serving line: {line:?}"))
        .parse()
        .unwrap();
    // The rest of stderr (trap reports) is kept readable by the caller through a thread.
    std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = stderr.read_to_string(&mut rest);
        eprint!("{rest}");
    });
    (child, port)
}

/// The reference server: the component served by wasmtime-wasi-http on hyper, as `wasmtime
/// serve` does (keep-alive, an instance per request), on a port of loopback.
pub fn spawn_host_serve(component: &str) -> u16 {
    let engine = Engine::default();
    let component = Component::from_file(&engine, component).unwrap();
    let mut linker = Linker::<Host>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).unwrap();
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).unwrap();
    let pre = ProxyPre::new(linker.instantiate_pre(&component).unwrap()).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let pre = Arc::new(pre);
            loop {
                let (client, _) = listener.accept().await.unwrap();
                let pre = pre.clone();
                tokio::task::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let pre = pre.clone();
                        async move { handle(&pre, request).await }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(client), service)
                        .await;
                });
            }
        });
    });
    port
}

async fn handle(
    pre: &ProxyPre<Host>,
    request: hyper::Request<hyper::body::Incoming>,
) -> wasmtime::Result<hyper::Response<HyperOutgoingBody>> {
    let host =
        Host { wasi: WasiCtx::builder().build(), http: WasiHttpCtx::new(), table: ResourceTable::new(), hooks: Hooks };
    let mut store = Store::new(pre.engine(), host);
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let request = store.data_mut().http().new_incoming_request(Scheme::Http, request)?;
    let out = store.data_mut().http().new_response_outparam(sender)?;
    let pre = pre.clone();
    let task = tokio::task::spawn(async move {
        let proxy = pre.instantiate_async(&mut store).await?;
        proxy.wasi_http_incoming_handler().call_handle(&mut store, request, out).await
    });
    match receiver.await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(error)) => Err(error.into()),
        Err(_) => {
            let error = match task.await {
                Ok(Ok(())) => wasmtime::format_err!("guest never invoked `response-outparam::set` method"),
                Ok(Err(error)) => error,
                Err(error) => error.into(),
            };
            Err(error.context("guest never invoked `response-outparam::set` method"))
        }
    }
}

struct Host {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: Hooks,
}

/// wasmtime-wasi-http's defaults (forbidden headers, schemes), and outgoing requests sent over
/// plain HTTP/1.1 with hyper as its default sender sends them (that sender is a feature that
/// brings TLS, which the tests leave out).
struct Hooks;

type SendResult = wasmtime_wasi_http::Result<(
    hyper::Response<wasmtime_wasi_http::WasiBody>,
    Box<dyn std::future::Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
)>;

impl wasmtime_wasi_http::WasiHttpHooks for Hooks {
    fn send_request(
        &mut self,
        _request: hyper::Request<wasmtime_wasi_http::WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _body: Box<dyn std::future::Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> Box<dyn std::future::Future<Output = SendResult> + Send> {
        use http_body_util::BodyExt;
        use wasmtime_wasi_http::Error;
        Box::new(async move {
            let mut request = _request;
            let authority = request.uri().authority().ok_or(Error::HttpRequestUriInvalid)?.to_string();
            let stream = tokio::net::TcpStream::connect(&authority).await.map_err(|e| match e.kind() {
                std::io::ErrorKind::ConnectionRefused => Error::ConnectionRefused,
                _ => Error::ConnectionTerminated,
            })?;
            let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            let io = async move { connection.await.map_err(Error::from) };
            // Origin form on the wire, as wasmtime's sender sends it.
            let path = request.uri().path_and_query().map_or("/", |p| p.as_str()).to_string();
            *request.uri_mut() = path.parse().map_err(|_| Error::HttpRequestUriInvalid)?;
            let host = hyper::header::HeaderValue::from_str(&authority).map_err(|_| Error::HttpRequestUriInvalid)?;
            request.headers_mut().insert(hyper::header::HOST, host);
            let task = tokio::task::spawn(io);
            let response = sender.send_request(request).await?;
            let worker = async move { task.await.map_err(|_| Error::ConnectionTerminated)? };
            Ok((
                response.map(|body| body.map_err(Error::from).boxed_unsync()),
                Box::new(worker) as Box<dyn std::future::Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
            ))
        })
    }
}

impl WasiView for Host {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for Host {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.hooks }
    }
}

/// A response as the client read it.
#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Headers, names lowercased, in the order sent.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// What two servers must agree on: status, body, and the headers that are not the
    /// server's own (framing, connection, `date`).
    pub fn comparable(&self) -> (u16, Vec<(String, String)>, String) {
        let own = ["date", "content-length", "transfer-encoding", "connection"];
        let headers = self.headers.iter().filter(|(n, _)| !own.contains(&n.as_str())).cloned().collect();
        (self.status, headers, String::from_utf8_lossy(&self.body).into_owned())
    }
}

/// One keep-alive connection.
pub struct Client {
    stream: TcpStream,
    /// Bytes read past the last response.
    buffered: Vec<u8>,
}

impl Client {
    pub fn connect(port: u16) -> Self {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        stream.set_nodelay(true).unwrap();
        Self { stream, buffered: Vec::new() }
    }

    /// Sends raw bytes (a request, or several, or garbage).
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// `METHOD PATH` with `headers` and `body` (a `content-length` is added for a body).
    pub fn request(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Option<Response> {
        self.send(&request_bytes(method, path, headers, body));
        self.response(method == "HEAD")
    }

    /// Reads one response; `None` if the server closed the connection first.
    pub fn response(&mut self, head_only: bool) -> Option<Response> {
        let (status, headers, mut at) = loop {
            let mut lines = [httparse::EMPTY_HEADER; 64];
            let mut parsed = httparse::Response::new(&mut lines);
            if let httparse::Status::Complete(len) = parsed.parse(&self.buffered).expect("a valid response head") {
                let headers: Vec<(String, String)> = parsed
                    .headers
                    .iter()
                    .map(|h| (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).into_owned()))
                    .collect();
                break (parsed.code.unwrap(), headers, len);
            }
            if !self.fill() {
                return None;
            }
        };
        let header = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
        let framing = if head_only || status == 204 || status == 304 {
            Framing::Length(0)
        } else if header("transfer-encoding").is_some() {
            Framing::Chunked
        } else if let Some(length) = header("content-length") {
            Framing::Length(length.parse().unwrap())
        } else {
            // Delimited by the connection's end.
            while self.fill() {}
            Framing::Length((self.buffered.len() - at) as u64)
        };
        let mut decoder = Decoder::new(framing);
        let mut body = Vec::new();
        loop {
            at += decoder.decode(&self.buffered[at..], &mut body, usize::MAX).expect("a valid body");
            if decoder.done() {
                break;
            }
            assert!(self.fill(), "the connection closed inside a body");
        }
        self.buffered.drain(..at);
        Some(Response { status, headers, body })
    }

    /// Whether the server has closed the connection (after what was already read).
    pub fn closed(&mut self) -> bool {
        !self.fill() && self.buffered.is_empty()
    }

    fn fill(&mut self) -> bool {
        let mut buf = [0; 16384];
        match self.stream.read(&mut buf) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buffered.extend_from_slice(&buf[..n]);
                true
            }
        }
    }
}

pub fn request_bytes(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut text = format!("{method} {path} HTTP/1.1\r\nhost: test.local\r\n");
    for (name, value) in headers {
        text += &format!("{name}: {value}\r\n");
    }
    if !body.is_empty() && !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding")) {
        text += &format!("content-length: {}\r\n", body.len());
    }
    text += "\r\n";
    let mut bytes = text.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

//! WASI 0.2 only: a `wasi:http/proxy` component (what `wasmcell serve` and `wasmtime serve`
//! run), answering by path:
//! - `/` — `hello from wasi:http` with a `content-length`;
//! - `/echo` — the request's method, path, authority and sorted headers (without `host` and
//!   `user-agent`, which clients add), then its body, streamed back without a length;
//! - `/status/N` — an empty response with status N;
//! - `/counter` — how many requests this instance has served (1: an instance per request);
//! - `/env` — the environment, `KEY=VALUE` lines, sorted;
//! - `/fill` and `/scan` — grow memory by 64 pages; fill them with 0xAB, or count their
//!   non-zero bytes (0 unless one request's memory reaches another);
//! - `/trap` — traps before answering; `/no-response` — returns without answering;
//! - `/bad-header` — tries to set a forbidden header and reports the error;
//! - `/fetch?URL` — GETs `URL` with `wasi:http/outgoing-handler` (POSTs `/echo`'s body when
//!   the request has one) and answers `STATUS` and the body it got, or the error.
use std::sync::atomic::{AtomicU32, Ordering};
use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    ErrorCode, Fields, HeaderError, IncomingRequest, Method, OutgoingBody, OutgoingRequest, OutgoingResponse,
    ResponseOutparam, Scheme,
};

wasip2::http::proxy::export!(Hello);

struct Hello;

static SERVED: AtomicU32 = AtomicU32::new(0);

const GROWTH_PAGES: usize = 64;

fn respond(out: ResponseOutparam, status: u16, headers: &[(&str, &[u8])], body: &[u8]) {
    let fields = Fields::new();
    for (name, value) in headers {
        fields.append(name, value).unwrap();
    }
    let response = OutgoingResponse::new(fields);
    response.set_status_code(status).unwrap();
    let outgoing = response.body().unwrap();
    ResponseOutparam::set(out, Ok(response));
    let stream = outgoing.write().unwrap();
    for chunk in body.chunks(4096) {
        stream.blocking_write_and_flush(chunk).unwrap();
    }
    drop(stream);
    OutgoingBody::finish(outgoing, None).unwrap();
}

/// Grows memory by `GROWTH_PAGES` and returns the new pages.
fn grow() -> &'static mut [u8] {
    let before = core::arch::wasm32::memory_grow(0, GROWTH_PAGES);
    assert_ne!(before, usize::MAX, "memory.grow failed");
    // SAFETY: the pages were just added to memory 0 and nothing else refers to them.
    unsafe { std::slice::from_raw_parts_mut((before * 65536) as *mut u8, GROWTH_PAGES * 65536) }
}

fn method_name(method: &Method) -> String {
    match method {
        Method::Get => "GET".into(),
        Method::Head => "HEAD".into(),
        Method::Post => "POST".into(),
        Method::Put => "PUT".into(),
        Method::Delete => "DELETE".into(),
        Method::Connect => "CONNECT".into(),
        Method::Options => "OPTIONS".into(),
        Method::Trace => "TRACE".into(),
        Method::Patch => "PATCH".into(),
        Method::Other(other) => other.clone(),
    }
}

/// Streams the request's body back after a summary of its head, with no length (chunked).
fn echo(request: IncomingRequest, out: ResponseOutparam) {
    let mut head = format!(
        "{} {} {}\n",
        method_name(&request.method()),
        request.path_with_query().unwrap_or_default(),
        request.authority().unwrap_or_default()
    );
    let mut headers = request.headers().entries();
    headers.retain(|(name, _)| name != "host" && name != "user-agent");
    headers.sort();
    for (name, value) in headers {
        head += &format!("{name}: {}\n", String::from_utf8_lossy(&value));
    }
    let response = OutgoingResponse::new(Fields::new());
    let outgoing = response.body().unwrap();
    ResponseOutparam::set(out, Ok(response));
    let stream = outgoing.write().unwrap();
    stream.blocking_write_and_flush(head.as_bytes()).unwrap();
    let incoming = request.consume().unwrap();
    let input = incoming.stream().unwrap();
    while let Ok(bytes) = input.blocking_read(4096) {
        stream.blocking_write_and_flush(&bytes).unwrap();
    }
    drop(input);
    drop(stream);
    OutgoingBody::finish(outgoing, None).unwrap();
}

/// GETs `url` (or POSTs `body`) → the status and body of the response.
fn fetch(url: &str, body: Option<Vec<u8>>) -> Result<(u16, Vec<u8>), ErrorCode> {
    let (scheme, rest) = match url.split_once("://") {
        Some(("http", rest)) => (Scheme::Http, rest),
        Some(("https", rest)) => (Scheme::Https, rest),
        _ => (Scheme::Other(url.into()), ""),
    };
    let (authority, path) = rest.find('/').map_or((rest, "/"), |at| (&rest[..at], &rest[at..]));
    let request = OutgoingRequest::new(Fields::new());
    request.set_scheme(Some(&scheme)).unwrap();
    request.set_authority(Some(authority)).unwrap();
    request.set_path_with_query(Some(path)).unwrap();
    let outgoing = body.as_ref().map(|_| {
        request.set_method(&Method::Post).unwrap();
        request.body().unwrap()
    });
    let future = outgoing_handler::handle(request, None)?;
    if let (Some(outgoing), Some(body)) = (outgoing, body) {
        let stream = outgoing.write().unwrap();
        for chunk in body.chunks(4096) {
            stream.blocking_write_and_flush(chunk).unwrap();
        }
        drop(stream);
        OutgoingBody::finish(outgoing, None)?;
    }
    future.subscribe().block();
    let response = future.get().unwrap().unwrap()?;
    let status = response.status();
    let incoming = response.consume().unwrap();
    let stream = incoming.stream().unwrap();
    let mut bytes = Vec::new();
    while let Ok(chunk) = stream.blocking_read(65536) {
        bytes.extend(chunk);
    }
    Ok((status, bytes))
}

/// The request's body, read to its end.
fn read_body(request: &IncomingRequest) -> Vec<u8> {
    let incoming = request.consume().unwrap();
    let stream = incoming.stream().unwrap();
    let mut bytes = Vec::new();
    while let Ok(chunk) = stream.blocking_read(65536) {
        bytes.extend(chunk);
    }
    bytes
}

impl wasip2::exports::http::incoming_handler::Guest for Hello {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let served = SERVED.fetch_add(1, Ordering::Relaxed) + 1;
        let path = request.path_with_query().unwrap_or_default();
        match path.as_str() {
            "/" => respond(
                out,
                200,
                &[("content-type", b"text/plain"), ("content-length", b"21")],
                b"hello from wasi:http\n",
            ),
            "/echo" => echo(request, out),
            "/counter" => respond(out, 200, &[], format!("{served}\n").as_bytes()),
            "/env" => {
                let mut vars: Vec<String> = std::env::vars().map(|(k, v)| format!("{k}={v}\n")).collect();
                vars.sort();
                respond(out, 200, &[], vars.concat().as_bytes());
            }
            "/fill" => {
                grow().fill(0xab);
                respond(out, 200, &[], b"filled\n");
            }
            "/scan" => {
                let dirty = grow().iter().filter(|&&b| b != 0).count();
                respond(out, 200, &[], format!("{dirty}\n").as_bytes());
            }
            "/trap" => core::arch::wasm32::unreachable(),
            "/no-response" => {}
            "/bad-header" => {
                let fields = Fields::new();
                let answer = match fields.append("connection", b"close") {
                    Err(HeaderError::Forbidden) => "forbidden\n",
                    Err(_) => "another error\n",
                    Ok(()) => "accepted\n",
                };
                respond(out, 200, &[], answer.as_bytes());
            }
            _ if path.starts_with("/fetch?") => {
                let body = read_body(&request);
                let answer = fetch(&path["/fetch?".len()..], (!body.is_empty()).then_some(body));
                match answer {
                    Ok((status, bytes)) => {
                        let mut text = format!("{status}\n").into_bytes();
                        text.extend(bytes);
                        respond(out, 200, &[], &text);
                    }
                    Err(code) => respond(out, 502, &[], format!("{code:?}\n").as_bytes()),
                }
            }
            _ => match path.strip_prefix("/status/").and_then(|s| s.parse::<u16>().ok()) {
                Some(status) => respond(out, status, &[], b""),
                None => respond(out, 404, &[], b"not found\n"),
            },
        }
    }
}

fn main() {
    eprintln!("http_hello is a wasi:http/proxy component: serve it with `wasmcell serve`");
}

//! `wasmcell serve`: a `wasi:http/proxy` component answering HTTP/1.1 from a microVM, compared
//! request by request with the same component under `wasmtime serve`'s parts (host
//! wasmtime-wasi-http on hyper); many keep-alive clients at once; pipelined requests; hostile
//! request heads; an instance per request whose memory never shows another's; bad input; a
//! stop that frees the port.

mod common;
mod http;

use common::*;
use http::{request_bytes, spawn_host_serve, spawn_wasmcell_serve, Client};
use std::net::TcpListener;
use std::process::Child;

/// A served `http_hello`, stopped (SIGTERM) when dropped.
struct Served {
    child: Child,
    port: u16,
}

impl Served {
    fn start() -> Self {
        require_kvm();
        let (child, port) = spawn_wasmcell_serve(&component("http_hello"), &cache_dir());
        Self { child, port }
    }

    /// Stops the server as a user would: its exit status.
    fn stop(mut self) -> Option<i32> {
        // SAFETY: plain kill(2) of our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().unwrap().code();
        std::mem::forget(self);
        status
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A request: method, path, headers, body.
type Request = (&'static str, &'static str, &'static [(&'static str, &'static str)], &'static [u8]);

/// Requests whose answers must match `wasmtime serve`'s.
const REQUESTS: &[Request] = &[
    ("GET", "/", &[], b""),
    ("GET", "/nope", &[], b""),
    ("GET", "/status/204", &[], b""),
    ("GET", "/status/418", &[], b""),
    ("GET", "/status/301", &[], b""),
    ("GET", "/bad-header", &[], b""),
    ("POST", "/echo", &[("x-custom", "one"), ("X-Other", "Two"), ("connection", "keep-alive")], b"a body"),
    ("PUT", "/echo?q=1&r=%20", &[("transfer-encoding", "chunked")], b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
    ("DELETE", "/echo", &[], b""),
    ("PATCH", "/echo", &[("content-type", "application/json")], b"{\"a\":1}"),
    ("HEAD", "/", &[], b""),
    ("GET", "/counter", &[], b""),
    ("GET", "/counter", &[], b""),
    ("GET", "/env", &[], b""),
    ("GET", "/fill", &[], b""),
    ("GET", "/scan", &[], b""),
];

#[test]
fn answers_as_wasmtime_serve_does() {
    let served = Served::start();
    let host_port = spawn_host_serve(&component("http_hello"));
    // Ours on one kept-alive connection; the reference on a connection per request (hyper
    // closes a connection whose chunked request body's end the component never polled).
    let mut ours = Client::connect(served.port);
    for (method, path, headers, body) in REQUESTS {
        let mut theirs = Client::connect(host_port);
        let mine = ours.request(method, path, headers, body).unwrap_or_else(|| panic!("{method} {path}: closed"));
        let reference = theirs
            .request(method, path, headers, body)
            .unwrap_or_else(|| panic!("{method} {path}: the reference closed"));
        assert_eq!(mine.comparable(), reference.comparable(), "{method} {path}");
    }
    // A big body, streamed back.
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let mine = ours.request("POST", "/echo", &[], &big).unwrap();
    let reference = Client::connect(host_port).request("POST", "/echo", &[], &big).unwrap();
    assert_eq!(mine.comparable(), reference.comparable());
    assert!(mine.body.ends_with(&big));
    // A handler that traps, or returns without a response: no response, the connection closes.
    for path in ["/trap", "/no-response"] {
        let mut ours = Client::connect(served.port);
        let mut theirs = Client::connect(host_port);
        assert_eq!(ours.request("GET", path, &[], b""), None, "{path}");
        assert_eq!(theirs.request("GET", path, &[], b""), None, "{path}");
    }
    // And the server goes on.
    assert_eq!(ours.request("GET", "/", &[], b"").unwrap().body, b"hello from wasi:http\n");
}

#[test]
fn an_instance_per_request_and_no_memory_shared_between_them() {
    let served = Served::start();
    let mut client = Client::connect(served.port);
    for _ in 0..3 {
        let fill = client.request("GET", "/fill", &[], b"").unwrap();
        assert_eq!(fill.body, b"filled\n");
        // The next instance grows memory into the span the last one filled: it must be zero.
        assert_eq!(client.request("GET", "/scan", &[], b"").unwrap().body, b"0\n");
        assert_eq!(client.request("GET", "/counter", &[], b"").unwrap().body, b"1\n");
    }
}

#[test]
fn many_keep_alive_clients_and_pipelined_requests() {
    let served = Served::start();
    let port = served.port;
    let clients: Vec<_> = (0..64)
        .map(|client| {
            std::thread::spawn(move || {
                let mut connection = Client::connect(port);
                for request in 0..20 {
                    let body = format!("client {client} request {request}");
                    let response = connection.request("POST", "/echo", &[], body.as_bytes()).unwrap();
                    assert_eq!(response.status, 200);
                    assert!(response.body.ends_with(body.as_bytes()), "{:?}", String::from_utf8_lossy(&response.body));
                }
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    // Ten requests in one write: ten responses, in order.
    let mut client = Client::connect(port);
    let batch: Vec<u8> =
        (0..10).flat_map(|i| request_bytes("POST", "/echo", &[], format!("#{i}").as_bytes())).collect();
    client.send(&batch);
    for i in 0..10 {
        let response = client.response(false).unwrap();
        assert!(response.body.ends_with(format!("#{i}").as_bytes()));
    }
}

#[test]
fn hostile_request_heads_are_refused_and_the_server_goes_on() {
    let served = Served::start();
    let refused = |bytes: &[u8]| {
        let mut client = Client::connect(served.port);
        client.send(bytes);
        let response = client.response(false).map(|r| (r.status, r.header("connection").map(str::to_string)));
        (response, client.closed())
    };
    let closing = Some("close".to_string());
    assert_eq!(refused(b"GARBAGE\r\n\r\n"), (Some((400, closing.clone())), true));
    assert_eq!(refused(b"GET / HTTP/2.0\r\n\r\n"), (Some((400, closing.clone())), true));
    let smuggle = b"POST /echo HTTP/1.1\r\nhost: a\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n";
    assert_eq!(refused(smuggle), (Some((400, closing.clone())), true));
    assert_eq!(
        refused(b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: gzip\r\n\r\n"),
        (Some((501, closing.clone())), true)
    );
    let huge = format!("GET / HTTP/1.1\r\nhost: a\r\nx-big: {}\r\n\r\n", "b".repeat(64 * 1024));
    assert_eq!(refused(huge.as_bytes()), (Some((431, closing.clone())), true));
    let many: String = (0..200).map(|i| format!("x-{i}: v\r\n")).collect();
    assert_eq!(refused(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes()), (Some((431, closing)), true));
    // A broken chunked body: the handler's read fails, the connection closes.
    let mut client = Client::connect(served.port);
    client.send(b"POST /echo HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n");
    while client.response(false).is_some() {}
    assert!(client.closed());
    let mut client = Client::connect(served.port);
    assert_eq!(client.request("GET", "/", &[], b"").unwrap().status, 200);
}

#[test]
fn what_cannot_be_served_is_refused_with_one_line() {
    require_kvm();
    let module = wasmcell(&["serve", "--cache-dir", &cache_dir(), &sample("hello")]);
    let command = wasmcell(&["serve", "--cache-dir", &cache_dir(), "--addr", "127.0.0.1:0", &component("hello")]);
    let missing = wasmcell(&["serve", "/nonexistent/app.wasm"]);
    for (out, expected) in [
        (&module, "Only a component can be served"),
        (&command, "The component cannot be served: it exports no `wasi:http/incoming-handler`"),
        (&missing, "Cannot read module /nonexistent/app.wasm"),
    ] {
        assert_eq!(out.status.code(), Some(1), "{}", stderr(out));
        assert_eq!(stderr(out).lines().count(), 1, "{}", stderr(out));
        assert!(stderr(out).contains(expected), "{}", stderr(out));
    }
    // A port that is taken fails the start, saying so.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = wasmcell(&["serve", "--cache-dir", &cache_dir(), "--addr", &addr, &component("http_hello")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(&format!("cannot serve on {addr}: the address is in use")), "{}", stderr(&out));
}

#[test]
fn a_stop_with_connections_open_frees_the_port() {
    let served = Served::start();
    let port = served.port;
    let mut client = Client::connect(port);
    assert_eq!(client.request("GET", "/", &[], b"").unwrap().status, 200);
    assert_eq!(served.stop(), Some(128 + libc::SIGTERM), "stopped by SIGTERM, as `wasmcell run` is");
    assert!(client.closed(), "the kept-alive connection ended with the VM");
    TcpListener::bind(("127.0.0.1", port)).expect("the port is free again");
}

#[test]
fn outgoing_requests_answer_as_in_wasmtime_serve() {
    let served = Served::start();
    let reference = spawn_host_serve(&component("http_hello"));
    // The upstream both call: the reference server itself.
    let upstream = format!("http://127.0.0.1:{reference}");
    let refused = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    let cases: [(String, &[u8]); 5] = [
        (format!("/fetch?{upstream}/echo"), b""),
        (format!("/fetch?{upstream}/status/204"), b""),
        (format!("/fetch?{upstream}/echo?x=1"), b"a posted body"),
        (format!("/fetch?{upstream}/echo"), &big),
        (format!("/fetch?http://127.0.0.1:{refused}/"), b""),
    ];
    let mut ours = Client::connect(served.port);
    for (path, body) in &cases {
        let mine = ours.request("POST", path, &[], body).unwrap_or_else(|| panic!("{path}: closed"));
        let theirs = Client::connect(reference).request("POST", path, &[], body).unwrap();
        assert_eq!(mine.comparable(), theirs.comparable(), "{path}");
    }
    let first = ours.request("GET", &format!("/fetch?{upstream}/echo"), &[], b"").unwrap();
    assert!(String::from_utf8_lossy(&first.body).starts_with("200\nGET /echo 127.0.0.1:"), "{first:?}");
    // No TLS in the guest: said plainly.
    let https = ours.request("GET", "/fetch?https://127.0.0.1:1/", &[], b"").unwrap();
    assert_eq!(https.status, 502);
    assert!(String::from_utf8_lossy(&https.body).contains("HTTPS is not supported by wasmcell yet"), "{https:?}");
}

#[test]
fn at_the_connection_limit_a_new_client_takes_an_idle_connections_place() {
    let served = Served::start();
    // As many kept-alive connections as the server holds (three quarters of the socket limit),
    // each idle after one request.
    let limit = wasmcell_abi::socket::MAX_SOCKETS as usize * 3 / 4;
    let mut idle: Vec<Client> = (0..limit)
        .map(|_| {
            let mut client = Client::connect(served.port);
            assert_eq!(client.request("GET", "/", &[], b"").unwrap().status, 200);
            client
        })
        .collect();
    // One more is served (not left in the backlog), and the least recently used gave way.
    let mut newcomer = Client::connect(served.port);
    assert_eq!(newcomer.request("GET", "/", &[], b"").unwrap().status, 200);
    assert!(idle[0].closed(), "the oldest idle connection was closed to make room");
    assert_eq!(idle[limit - 1].request("GET", "/", &[], b"").unwrap().status, 200, "a recent one still works");
}

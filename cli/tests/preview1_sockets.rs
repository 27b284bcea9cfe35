//! Preview 1's sockets (`wasmcell run --tcplisten`): a preview-1 module serves on the TCP
//! listeners the command line preopens, with Rust's std (blocking) and with `poll_oneoff`
//! (non-blocking, every client at once), and every socket call answers at its edges as
//! wasi-common, the implementation behind `wasmtime run --tcplisten` up to wasmtime 46, does.
//! wasmtime 48 has no preview-1 sockets, so the expected answers are wasi-common's, read from
//! its source (`sync/net.rs`, `snapshots/preview_1.rs`), not a live reference.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

/// A port free on loopback now (the module cannot say which port it got: preview 1 has no
/// `getsockname`, so the test picks one).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running `wasmcell run … p1_server`, killed if a test fails before it ended (else it would
/// wait for clients forever, holding the test's output open).
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until the server printed `ready` → the lines it printed before, and its stdout.
fn wait_ready(server: &mut Server) -> (Vec<String>, BufReader<ChildStdout>) {
    let child = &mut server.0;
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut before = Vec::new();
    loop {
        let mut line = String::new();
        if stdout.read_line(&mut line).unwrap_or(0) == 0 {
            let status = child.wait();
            panic!("the server ended ({status:?}) before it was ready: {before:?}");
        }
        if line.trim() == "ready" {
            return (before, stdout);
        }
        before.push(line.trim().to_string());
    }
}

/// `wasmcell run EXTRA… p1_server -- ARGS…`, started in the background.
fn spawn(extra: &[&str], args: &[&str]) -> Server {
    require_kvm();
    let child = Command::new(env!("CARGO_BIN_EXE_wasmcell"))
        .args(["run", "--cache-dir", &cache_dir()])
        .args(extra)
        .arg(sample("p1_server"))
        .arg("--")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run wasmcell");
    Server(child)
}

/// The rest of the server's stdout and its exit status.
fn finish(mut server: Server, mut stdout: BufReader<ChildStdout>) -> (String, Option<i32>) {
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    (rest, server.0.wait().unwrap().code())
}

#[test]
fn a_blocking_std_server_on_a_preopened_listener_echoes_every_client() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut server = spawn(&["--tcplisten", &listen], &["echo", "12"]);
    let (_, stdout) = wait_ready(&mut server);
    // Served one at a time (std, blocking): the others wait in the listener's backlog.
    echo_clients(port, 12, 300_000);
    assert_eq!(finish(server, stdout), ("served 12\n".to_string(), Some(0)));
}

#[test]
fn a_poll_oneoff_server_echoes_many_clients_at_once() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut server = spawn(&["--tcplisten", &listen], &["poll", "48"]);
    let (_, stdout) = wait_ready(&mut server);
    echo_clients(port, 48, 200_000);
    assert_eq!(finish(server, stdout), ("served 48\n".to_string(), Some(0)));
}

#[test]
fn the_socket_calls_answer_at_their_edges_as_wasi_common_does() {
    let port = free_port();
    let (listen, other) = (format!("127.0.0.1:{port}"), format!("127.0.0.1:{}", free_port()));
    let data = Fixture::create();
    let dir = data.dir_arg();
    let extra = ["--tcplisten", &listen, "--tcplisten", &other, "--dir", &dir];
    let mut server = spawn(&extra, &["probe"]);
    let (before, mut stdout) = wait_ready(&mut server);
    let expected_before = [
        // Descriptors 3 and 4 are the listeners, in command-line order; the directory follows.
        // Non-blocking as wasmtime made them; read and write rights, nothing to inherit.
        "fdstat 3: filetype=6 flags=4 rights=0x42/0x0",
        "fdstat 4: filetype=6 flags=4 rights=0x42/0x0",
        "prestat 5: 0",
        "filestat listener: 0 filetype=6",
        "accept pending none: 6", // AGAIN
        "accept bad flags: 28",   // INVAL: only NONBLOCK
        "accept stdout: 57",      // NOTSOCK (wasmtime 48's answer for a descriptor that is no socket)
        "accept closed: 8",       // BADF
        "recv listener: 8",       // BADF: a listener neither receives…
        "send listener: 8",       // …nor sends…
        "shutdown listener: 8",   // …nor shuts down
        "set flags append: 28",   // INVAL: only NONBLOCK
        "seek listener: 8",       // BADF
        "read listener: 8",       // BADF
        "poll idle: [2]",         // nothing pending: the clock fires
        "poll many: [2]",         // 300 subscriptions of one socket are one device entry
        "set flags blocking: 0",
        "fdstat blocking listener: filetype=6 flags=0 rights=0x42/0x0",
    ];
    assert_eq!(before, expected_before);
    let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    client.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    // In two pieces: RECV_WAITALL waits for the second.
    client.write_all(b"hello").unwrap();
    client.flush().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    client.write_all(b" world").unwrap();
    let mut reply = Vec::new();
    client.read_to_end(&mut reply).unwrap();
    assert_eq!(reply, b"HELLO WORLD", "the reply, then the server's shutdown");
    drop(client);
    let mut after = String::new();
    stdout.read_to_string(&mut after).unwrap();
    let expected_after = [
        "fdstat connection: filetype=6 flags=0 rights=0x42/0x0",
        "recv bad flags: 58", // NOTSUP: only PEEK and WAITALL
        "recv fault: 21",     // FAULT, and nothing taken from the socket (the peek sees it all)
        "peek: hello",
        "waitall: hello world",
        "send flags: 58", // NOTSUP: no send flags
        "send fault: 21", // FAULT, and nothing sent (the reply is exactly what follows)
        "send: ok 11",
        "shutdown bad how: 28", // INVAL
        "shutdown write: 0",
        "read to end: 0",
    ];
    assert_eq!(after.lines().collect::<Vec<_>>(), expected_after);
    assert_eq!(finish(server, stdout).1, Some(0));
}

#[test]
fn listeners_that_cannot_be_had_are_refused_with_one_line() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let out = run(&["--tcplisten", &address, &sample("p1_server"), "--", "echo", "1"]);
    assert_eq!(out.status.code(), Some(1));
    let server = sample("p1_server");
    assert_eq!(
        stderr(&out),
        format!("wasmcell: error: Cannot run {server}: cannot listen on {address}: the address is in use\n")
    );
    let out = run(&["--tcplisten", "127.0.0.1:0", &component("hello")]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "wasmcell: error: A component cannot be given preopened TCP listeners: it opens its own with `wasi:sockets`\n"
    );
    let out = run(&["--tcplisten", "localhost:80", &sample("hello")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).starts_with("wasmcell: error: invalid value 'localhost:80' for '--tcplisten <IP:PORT>'"));
}

#[test]
fn a_stop_with_a_client_connected_ends_cleanly_and_frees_the_port() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut server = spawn(&["--tcplisten", &listen, "--timeout", "2s"], &["echo", "5"]);
    let (_, stdout) = wait_ready(&mut server);
    let mut held = TcpStream::connect(("127.0.0.1", port)).unwrap();
    held.write_all(b"still here").unwrap();
    held.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut echoed = [0u8; 10];
    held.read_exact(&mut echoed).unwrap();
    assert_eq!(&echoed, b"still here");
    assert_eq!(finish(server, stdout).1, Some(124), "stopped by its timeout");
    let mut rest = Vec::new();
    assert!(matches!(held.read_to_end(&mut rest), Ok(0) | Err(_)), "the connection ended with the VM");
    TcpListener::bind(("127.0.0.1", port)).expect("the port is free again");
}

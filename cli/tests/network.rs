//! Networking (`wasmcell run --inherit-network`): components serve and connect over real
//! sockets on loopback, through the socket device, and answer as host wasmtime with
//! `inherit_network` does (the reference runs the same component in-process). Also the limits
//! a tenant meets: sockets per workload, and a stop with connections open frees everything.

mod common;
mod host_network;

use common::*;
use host_network::{host_port, host_run, spawn_on_host};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// `wasmcell run --inherit-network COMPONENT ARGS…` started in the background, stdout piped.
fn spawn_in_microvm(component: &str, args: &[&str], extra: &[&str]) -> Child {
    require_kvm();
    Command::new(env!("CARGO_BIN_EXE_wasmcell"))
        .args(["run", "--cache-dir", &cache_dir(), "--inherit-network"])
        .args(extra)
        .arg(component)
        .arg("--")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run wasmcell")
}

/// The port a server printed as `listening on PORT`, and the rest of its stdout.
fn listening_port(child: &mut Child) -> (u16, BufReader<std::process::ChildStdout>) {
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let port = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("not a port line: {line:?}"));
    (port.parse().unwrap(), stdout)
}

#[test]
fn a_component_echo_server_answers_concurrent_clients_as_on_the_host() {
    let (clients, bytes) = (16, 100_000);
    let count = clients.to_string();
    let mut server = spawn_in_microvm(&component("tcp_echo"), &["127.0.0.1:0", &count], &[]);
    let (port, mut rest) = listening_port(&mut server);
    assert_ne!(port, 0, "bind to port 0 reports the port actually bound");
    echo_clients(port, clients, bytes);
    let mut tail = String::new();
    rest.read_to_string(&mut tail).unwrap();
    assert!(server.wait().unwrap().success());

    let (host, host_out) = spawn_on_host(&component("tcp_echo"), &["127.0.0.1:0", &count]);
    echo_clients(host_port(&host_out), clients, bytes);
    assert_eq!(host.join().unwrap(), 0);
    let host_text = String::from_utf8_lossy(&host_out.contents()).into_owned();
    assert_eq!(tail, host_text.split_once('\n').unwrap().1, "the same report as host wasmtime");
    assert_eq!(tail, format!("echoed {} bytes over {clients} connections\n", clients * bytes));
}

/// An upper-casing server on loopback for the client samples, answering `connections` clients.
fn upper_server(connections: usize) -> (u16, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let thread = std::thread::spawn(move || {
        for stream in listener.incoming().take(connections) {
            let mut stream = stream.unwrap();
            let mut text = String::new();
            stream.read_to_string(&mut text).unwrap();
            stream.write_all(text.to_uppercase().as_bytes()).unwrap();
        }
    });
    (port, thread)
}

#[test]
fn a_component_client_connects_out_and_sees_refusals_as_on_the_host() {
    let (port, server) = upper_server(2);
    let address = format!("127.0.0.1:{port}");
    let out = run(&["--inherit-network", &component("tcp_client"), "--", &address, "ping"]);
    let expected = "connected from a local port: true\nreply: PING\n";
    assert_eq!((out.status.code(), stdout(&out).as_str()), (Some(0), expected), "{}", stderr(&out));
    assert_eq!(host_run(&component("tcp_client"), &[&address, "ping"]), (0, expected.to_string()));
    server.join().unwrap();

    // A port nobody listens on: refused, the same way.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let out = run(&["--inherit-network", &component("tcp_client"), "--", &closed]);
    let host = host_run(&component("tcp_client"), &[&closed]);
    assert_eq!((out.status.code().unwrap(), stdout(&out)), host);
    assert_eq!(host.1, "connect: ConnectionRefused\n");
}

#[test]
fn datagrams_go_out_and_come_back() {
    let mut server = spawn_in_microvm(&component("udp_echo"), &["127.0.0.1:0", "3"], &[]);
    let (port, mut rest) = listening_port(&mut server);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    for word in ["one", "two", "three"] {
        socket.send_to(word.as_bytes(), ("127.0.0.1", port)).unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = socket.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from.port()), (word.to_uppercase().as_bytes(), port));
    }
    let mut tail = String::new();
    rest.read_to_string(&mut tail).unwrap();
    assert_eq!(tail, "answered 3 datagrams\n");
    assert!(server.wait().unwrap().success());
}

#[test]
fn the_network_samples_answer_as_host_wasmtime_with_inherit_network() {
    let out = run(&["--inherit-network", &component("net_denied")]);
    let host = host_run(&component("net_denied"), &[]);
    assert_eq!((out.status.code().unwrap(), stdout(&out)), host);
    assert!(host.1.starts_with("bind tcp 127.0.0.1:0: ok\n"), "{}", host.1);
}

#[test]
fn a_workload_holds_at_most_its_socket_limit() {
    let out = run(&["--inherit-network", &component("socket_flood")]);
    let limit = wasmcell_abi::socket::MAX_SOCKETS;
    assert!(stdout(&out).starts_with(&format!("opened {limit} sockets, then: ")), "{}", stdout(&out));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

/// A component waiting on one socket more often than the device takes sockets in one poll
/// (its 256) is answered as on the host: the guest asks the device about each socket once.
#[test]
fn a_poll_naming_one_socket_300_times_answers_as_on_the_host() {
    let out = run(&["--inherit-network", &component("poll_many")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "ready: [300]\n");
    assert_eq!(host_run(&component("poll_many"), &[]), (0, stdout(&out)));
}

#[test]
fn a_stop_with_connections_open_closes_them_and_frees_the_port() {
    let mut server = spawn_in_microvm(&component("tcp_echo"), &["127.0.0.1:0", "5"], &["--timeout", "2s"]);
    let (port, _rest) = listening_port(&mut server);
    let mut held = TcpStream::connect(("127.0.0.1", port)).unwrap();
    held.write_all(b"still here").unwrap();
    held.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut echoed = [0u8; 10];
    held.read_exact(&mut echoed).unwrap();
    assert_eq!(server.wait().unwrap().code(), Some(124), "stopped by its timeout");
    let mut rest = Vec::new();
    assert!(matches!(held.read_to_end(&mut rest), Ok(0) | Err(_)), "the connection ended with the VM");
    TcpListener::bind(("127.0.0.1", port)).expect("the port is free again");
}

/// The wasmcell process's peak resident memory (`VmHWM`, KiB) after `tcp_echo` served `clients`
/// concurrent clients of `bytes` each: read while it waits for one last connection, which then
/// ends it.
fn peak_memory_serving(clients: usize, bytes: usize) -> u64 {
    let count = (clients + 1).to_string();
    let mut server = spawn_in_microvm(&component("tcp_echo"), &["127.0.0.1:0", &count], &[]);
    let (port, _rest) = listening_port(&mut server);
    echo_clients(port, clients, bytes);
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.id())).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap().to_string();
    echo_clients(port, 1, 1);
    assert!(server.wait().unwrap().success());
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// 200 connections at once moving 200 MiB each way: the VMM buffers nothing of its own, so its
/// peak memory grows only by the guest pages the workload's own buffers touch (about 9 MiB
/// here), nowhere near the traffic — a VMM that queued bytes would show it.
#[test]
fn a_flood_of_connections_and_bytes_does_not_grow_the_vmm() {
    let quiet = peak_memory_serving(1, 1024);
    let flood = peak_memory_serving(200, 1 << 20);
    assert!(flood < quiet + 32 * 1024, "peak {quiet} KiB serving one client, {flood} KiB serving the flood");
}

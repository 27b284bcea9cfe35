//! WASI 0.2 only (a component): a TCP echo server written straight on `wasi:sockets` and
//! `wasi:io/poll`, serving its connections concurrently from one thread. Listens on ADDR
//! (default `127.0.0.1:0`), prints `listening on PORT` (the port actually bound), echoes every
//! byte of each connection until its client closes it, and exits after COUNT connections
//! (default 1) have ended, printing how many bytes it echoed.
use std::net::SocketAddr;
use wasip2::io::poll::{poll, Pollable};
use wasip2::io::streams::{InputStream, OutputStream, StreamError};
use wasip2::sockets::instance_network::instance_network;
use wasip2::sockets::network::{IpAddressFamily, IpSocketAddress, Ipv4SocketAddress, Ipv6SocketAddress};
use wasip2::sockets::tcp::TcpSocket;
use wasip2::sockets::tcp_create_socket::create_tcp_socket;

/// One client: what it sent that is not echoed yet waits in `pending`. The streams are
/// declared (so dropped) before their socket: a socket with live streams cannot be dropped.
struct Connection {
    input: InputStream,
    output: OutputStream,
    _socket: TcpSocket,
    pending: Vec<u8>,
    done_reading: bool,
}

fn wasi_address(address: SocketAddr) -> IpSocketAddress {
    match address {
        SocketAddr::V4(a) => {
            let [x, y, z, w] = a.ip().octets();
            IpSocketAddress::Ipv4(Ipv4SocketAddress { port: a.port(), address: (x, y, z, w) })
        }
        SocketAddr::V6(a) => {
            let s = a.ip().segments();
            IpSocketAddress::Ipv6(Ipv6SocketAddress {
                port: a.port(),
                flow_info: 0,
                address: (s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]),
                scope_id: 0,
            })
        }
    }
}

fn port(address: &IpSocketAddress) -> u16 {
    match address {
        IpSocketAddress::Ipv4(a) => a.port,
        IpSocketAddress::Ipv6(a) => a.port,
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let address: SocketAddr = args.next().as_deref().unwrap_or("127.0.0.1:0").parse().expect("an address");
    let count: usize = args.next().map_or(1, |c| c.parse().expect("a count"));
    let family = if address.is_ipv4() { IpAddressFamily::Ipv4 } else { IpAddressFamily::Ipv6 };
    let network = instance_network();
    let listener = create_tcp_socket(family).expect("create");
    listener.start_bind(&network, wasi_address(address)).expect("bind");
    listener.subscribe().block();
    listener.finish_bind().expect("finish bind");
    listener.start_listen().expect("listen");
    listener.subscribe().block();
    listener.finish_listen().expect("finish listen");
    println!("listening on {}", port(&listener.local_address().expect("local address")));

    let accept_ready = listener.subscribe();
    let mut connections: Vec<Connection> = Vec::new();
    let (mut ended, mut echoed) = (0, 0u64);
    while ended < count {
        // What each connection waits for: bytes to read, or room to write what is pending.
        let pollables: Vec<Pollable> = connections
            .iter()
            .map(|c| if c.pending.is_empty() { c.input.subscribe() } else { c.output.subscribe() })
            .collect();
        let mut list: Vec<&Pollable> = vec![&accept_ready];
        list.extend(pollables.iter());
        let ready = poll(&list);
        drop(pollables);
        if ready.contains(&0) {
            match listener.accept() {
                Ok((socket, input, output)) => connections.push(Connection {
                    input,
                    output,
                    _socket: socket,
                    pending: Vec::new(),
                    done_reading: false,
                }),
                Err(e) => eprintln!("accept: {e:?}"),
            }
        }
        for &index in ready.iter().filter(|&&i| i > 0) {
            let c = &mut connections[index as usize - 1];
            if c.pending.is_empty() {
                match c.input.read(64 * 1024) {
                    Ok(bytes) => c.pending = bytes,
                    Err(StreamError::Closed) => c.done_reading = true,
                    Err(StreamError::LastOperationFailed(e)) => {
                        eprintln!("read: {}", e.to_debug_string());
                        c.done_reading = true;
                    }
                }
            } else if let Ok(permit) = c.output.check_write() {
                let n = (permit as usize).min(c.pending.len());
                if n > 0 && c.output.write(&c.pending[..n]).is_ok() {
                    echoed += n as u64;
                    c.pending.drain(..n);
                }
            }
        }
        let before = connections.len();
        connections.retain(|c| !(c.done_reading && c.pending.is_empty()));
        ended += before - connections.len();
    }
    println!("echoed {echoed} bytes over {count} connections");
}

//! Tries the network and prints what each attempt answered: binding a TCP listener, connecting
//! out, sending a UDP datagram and resolving a name. With no network given (wasmcell today,
//! `wasmtime run` without `-S inherit-network`) every one must fail, the same way.
use std::net::{TcpListener, TcpStream, ToSocketAddrs, UdpSocket};

fn report<T>(what: &str, result: std::io::Result<T>) {
    match result {
        Ok(_) => println!("{what}: ok"),
        Err(e) => println!("{what}: {:?} ({e})", e.kind()),
    }
}

fn main() {
    report("bind tcp 127.0.0.1:0", TcpListener::bind("127.0.0.1:0"));
    report("connect tcp 127.0.0.1:9", TcpStream::connect("127.0.0.1:9"));
    report("bind udp [::1]:0", UdpSocket::bind("[::1]:0"));
    report("resolve localhost", ("localhost", 80).to_socket_addrs());
}

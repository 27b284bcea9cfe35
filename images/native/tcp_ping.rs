//! A static native TCP program for the runc side of the networking end-to-end test.
//! `tcp_ping ADDR`: connects to ADDR, sends "ping from runc", closes its sending side and
//! prints the reply. `tcp_ping serve PORT`: prints "listening", answers one connection with
//! "pong: " and what it sent (once it closed its side), and exits.
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("serve") {
        let port = args.get(1).expect("a port");
        let listener = TcpListener::bind(format!("0.0.0.0:{port}")).expect("bind");
        println!("listening");
        let (mut stream, _) = listener.accept().expect("accept");
        let mut message = String::new();
        stream.read_to_string(&mut message).expect("read");
        stream.write_all(format!("pong: {message}").as_bytes()).expect("write");
        println!("answered: {message}");
        return;
    }
    let address = args.first().expect("an address");
    let mut stream = TcpStream::connect(address).expect("connect");
    stream.write_all(b"ping from runc").expect("write");
    stream.shutdown(Shutdown::Write).expect("shutdown");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).expect("read");
    println!("runc got: {reply}");
}

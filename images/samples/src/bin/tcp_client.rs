//! Connects to ADDR over TCP with std (`wasi:sockets` underneath), sends MESSAGE, closes its
//! sending side and prints what came back; or prints what the connection answered (refused,
//! denied, …) as `connect: KIND`.
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};

fn main() {
    let mut args = std::env::args().skip(1);
    let address = args.next().expect("an address");
    let message = args.next().unwrap_or_else(|| "hello".into());
    let mut stream = match TcpStream::connect(&address) {
        Ok(stream) => stream,
        Err(e) => {
            println!("connect: {:?}", e.kind());
            std::process::exit(1);
        }
    };
    println!("connected from a local port: {}", stream.local_addr().map(|a| a.port() != 0).unwrap_or(false));
    stream.write_all(message.as_bytes()).expect("write");
    stream.shutdown(Shutdown::Write).expect("shutdown");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).expect("read");
    println!("reply: {reply}");
}

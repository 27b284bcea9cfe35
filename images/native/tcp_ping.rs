//! A static native TCP client for the runc side of the networking end-to-end test: connects to
//! ADDR, sends "ping from runc", closes its sending side and prints the reply.
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};

fn main() {
    let address = std::env::args().nth(1).expect("an address");
    let mut stream = TcpStream::connect(&address).expect("connect");
    stream.write_all(b"ping from runc").expect("write");
    stream.shutdown(Shutdown::Write).expect("shutdown");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).expect("read");
    println!("runc got: {reply}");
}

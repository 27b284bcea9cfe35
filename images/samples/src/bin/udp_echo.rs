//! Binds a UDP socket on ADDR (default `127.0.0.1:0`) with std, prints `listening on PORT`, and
//! sends COUNT (default 1) datagrams back to whoever sent them, upper-cased.
use std::net::UdpSocket;

fn main() {
    let mut args = std::env::args().skip(1);
    let address = args.next().unwrap_or_else(|| "127.0.0.1:0".into());
    let count: usize = args.next().map_or(1, |c| c.parse().expect("a count"));
    let socket = UdpSocket::bind(&address).expect("bind");
    println!("listening on {}", socket.local_addr().expect("local address").port());
    let mut buf = [0u8; 2048];
    for _ in 0..count {
        let (n, from) = socket.recv_from(&mut buf).expect("receive");
        let reply = buf[..n].to_ascii_uppercase();
        socket.send_to(&reply, from).expect("send");
    }
    println!("answered {count} datagrams");
}

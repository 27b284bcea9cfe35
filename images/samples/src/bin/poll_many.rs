//! WASI 0.2 only (a component): waits with `wasi:io/poll.poll` on an idle TCP listener's
//! pollable 300 times over — more sockets than the socket device takes in one poll — and on a
//! 10 ms timer, and prints the indices that were ready: only the timer's, 300.
use wasip2::clocks::monotonic_clock::subscribe_duration;
use wasip2::io::poll::{poll, Pollable};
use wasip2::sockets::instance_network::instance_network;
use wasip2::sockets::network::{IpAddressFamily, IpSocketAddress, Ipv4SocketAddress};
use wasip2::sockets::tcp_create_socket::create_tcp_socket;

fn main() {
    let network = instance_network();
    let listener = create_tcp_socket(IpAddressFamily::Ipv4).expect("create");
    let any = IpSocketAddress::Ipv4(Ipv4SocketAddress { port: 0, address: (127, 0, 0, 1) });
    listener.start_bind(&network, any).expect("bind");
    listener.subscribe().block();
    listener.finish_bind().expect("finish bind");
    listener.start_listen().expect("listen");
    listener.subscribe().block();
    listener.finish_listen().expect("finish listen");
    let waits: Vec<Pollable> = (0..300).map(|_| listener.subscribe()).collect();
    let timer = subscribe_duration(10_000_000);
    let list: Vec<&Pollable> = waits.iter().chain(std::iter::once(&timer)).collect();
    println!("ready: {:?}", poll(&list));
}

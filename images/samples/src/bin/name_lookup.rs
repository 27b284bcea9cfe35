//! Looks up each NAME with `wasi:sockets/ip-name-lookup` and prints `NAME: ADDRESS…` (sorted:
//! the order is the resolver's) or `NAME: ERROR`, waiting on the stream's pollable as a
//! component should while a lookup is under way.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use wasip2::sockets::instance_network::instance_network;
use wasip2::sockets::ip_name_lookup::resolve_addresses;
use wasip2::sockets::network::{ErrorCode, IpAddress, Network};

fn main() {
    let network = instance_network();
    for name in std::env::args().skip(1) {
        match lookup(&network, &name) {
            Ok(mut addresses) => {
                addresses.sort();
                let text: Vec<String> = addresses.iter().map(IpAddr::to_string).collect();
                println!("{name}: {}", text.join(" "));
            }
            Err(code) => println!("{name}: {code:?}"),
        }
    }
}

fn lookup(network: &Network, name: &str) -> Result<Vec<IpAddr>, ErrorCode> {
    let stream = resolve_addresses(network, name)?;
    let mut found = Vec::new();
    loop {
        match stream.resolve_next_address() {
            Ok(Some(IpAddress::Ipv4((a, b, c, d)))) => found.push(IpAddr::V4(Ipv4Addr::new(a, b, c, d))),
            Ok(Some(IpAddress::Ipv6((a, b, c, d, e, f, g, h)))) => {
                found.push(IpAddr::V6(Ipv6Addr::new(a, b, c, d, e, f, g, h)))
            }
            Ok(None) => return Ok(found),
            Err(ErrorCode::WouldBlock) => stream.subscribe().block(),
            Err(code) => return Err(code),
        }
    }
}

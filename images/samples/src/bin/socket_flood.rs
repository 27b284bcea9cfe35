//! Opens TCP listeners on 127.0.0.1 until the runtime refuses one, holding them all, and prints
//! how many it got and what the refusal was (a tenant that tries to exhaust the host's sockets).
use std::net::TcpListener;

fn main() {
    let mut held = Vec::new();
    loop {
        match TcpListener::bind("127.0.0.1:0") {
            Ok(listener) => held.push(listener),
            Err(e) => {
                println!("opened {} sockets, then: {:?}", held.len(), e.kind());
                break;
            }
        }
        if held.len() >= 100_000 {
            println!("opened {} sockets and no limit", held.len());
            break;
        }
    }
}

//! `wasmcell serve` inside the guest: a `wasi:http/proxy` component answering HTTP/1.1 on a
//! socket of the workload's own (the socket device: a real socket in the VMM's network
//! namespace), as `wasmtime serve` does.
//!
//! Flow: the runtime binds the address the workload blob names ([`Listener::bind`], before
//! boot-done, so a taken port fails the start) → [`serve`]: one device poll sleeps on the
//! listener and every idle connection → a complete request head ([`wasmcell_guest_http`])
//! becomes an [`Exchange`] → a new instance of the component, in a new store, handles it
//! (`wasi:http/incoming-handler.handle`) → the store is dropped (its memories go back to the
//! pool zeroed, `crate::runtime::memory`) → the connection goes back to waiting, or closes.
//! Requests are served one at a time, in the order their heads complete; an instance per
//! request keeps requests from seeing each other's state, as in `wasmtime serve`.

mod exchange;

pub use exchange::{Exchange, WireError};

use crate::component::http::Proxy;
use crate::component::ComponentCtx;
use crate::net::{self, Handle};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::net::SocketAddr;
use wasmcell_abi::socket::{errno, PollEntry, MAX_SOCKETS, READABLE};
use wasmcell_guest_http::request::{self, Parsed, Refusal};
use wasmcell_guest_http::response::{self, Delimit};
use wasmtime::Store;

/// Connections open at once; at this many, a new client takes the place of the least
/// recently used idle one, or waits in the backlog. Leaves the component a quarter of the
/// workload's sockets.
const MAX_CONNECTIONS: usize = (MAX_SOCKETS as usize) * 3 / 4;
/// Bytes read from a connection at a time while its head arrives.
const READ: usize = 16 * 1024;
/// The listener's backlog.
const BACKLOG: u64 = 128;

/// The bound, listening socket.
pub struct Listener {
    socket: Handle,
    /// What it is bound to (the port the kernel chose for port 0).
    pub local: SocketAddr,
}

impl Listener {
    /// Binds and listens on `address` (`IP:PORT`, as the host's `SocketAddr` prints it).
    pub fn bind(address: &[u8]) -> Result<Self, String> {
        let (socket, local) = net::listen_on(address, BACKLOG, "serve")?;
        Ok(Self { socket, local })
    }
}

/// A connection between requests, with what it has sent of the next head.
struct Connection {
    socket: Handle,
    received: Vec<u8>,
    /// The serve loop's turn when it was last accepted or served (the least recent idle one
    /// makes room when the limit is reached and a new client waits).
    last_used: u64,
}

impl Connection {
    /// Between requests, nothing of the next one received.
    fn idle(&self) -> bool {
        self.received.is_empty()
    }
}

/// Serves `proxy`'s component on `listener` until the VM is stopped; returns only if the
/// socket device fails.
pub fn serve(proxy: &Proxy, ctx: ComponentCtx, listener: Listener) -> String {
    // The context moves into each request's store and back out of it.
    let mut ctx = Some(ctx);
    let mut connections: Vec<Connection> = Vec::new();
    let mut turn = 0u64;
    loop {
        turn += 1;
        if let Some(ctx) = ctx.as_mut() {
            let _ = ctx.wasi.flush_output();
        }
        // At the limit, a new client still gets in if an idle keep-alive connection can make
        // room; only when every connection is mid-request do new clients wait in the backlog.
        let accepting = connections.len() < MAX_CONNECTIONS || connections.iter().any(Connection::idle);
        let mut entries: Vec<PollEntry> =
            connections.iter().map(|c| PollEntry { handle: c.socket, events: READABLE, ready: 0 }).collect();
        if accepting {
            entries.push(PollEntry { handle: listener.socket, events: READABLE, ready: 0 });
        }
        if let Err(e) = net::poll(&mut entries, None) {
            return format!("the socket device failed to poll (errno {e})");
        }
        // Connections with input (the first `polled` entries), highest index first so that
        // removing one keeps the others' places.
        let polled = connections.len();
        let ready: Vec<usize> = (0..polled).filter(|&i| entries[i].ready != 0).collect();
        let clients_wait = accepting && entries[polled].ready != 0;
        for index in ready.into_iter().rev() {
            let connection = connections.swap_remove(index);
            if let Some(mut kept) = serve_connection(proxy, &mut ctx, connection) {
                kept.last_used = turn;
                connections.push(kept);
            }
        }
        if clients_wait {
            if connections.len() >= MAX_CONNECTIONS {
                evict_least_recent_idle(&mut connections, turn);
            }
            accept(&listener, &mut connections, turn);
        }
    }
}

/// Closes the idle connection used least recently (not one served in this `turn`).
fn evict_least_recent_idle(connections: &mut Vec<Connection>, turn: u64) {
    let oldest = connections
        .iter()
        .enumerate()
        .filter(|(_, c)| c.idle() && c.last_used < turn)
        .min_by_key(|(_, c)| c.last_used)
        .map(|(index, _)| index);
    if let Some(index) = oldest {
        net::close(connections.swap_remove(index).socket);
    }
}

/// Takes the clients waiting on the listener, up to the connection limit.
fn accept(listener: &Listener, connections: &mut Vec<Connection>, turn: u64) {
    while connections.len() < MAX_CONNECTIONS {
        match net::accept(listener.socket) {
            Ok((socket, _peer)) => connections.push(Connection { socket, received: Vec::new(), last_used: turn }),
            // EAGAIN: nobody else waits; anything else (EMFILE…): try again on the next wake.
            Err(_) => return,
        }
    }
}

/// Reads what `connection` sent and serves every complete request in it; the connection back
/// if it stays open.
fn serve_connection(proxy: &Proxy, ctx: &mut Option<ComponentCtx>, mut connection: Connection) -> Option<Connection> {
    match net::receive_into(connection.socket, &mut connection.received, READ, false) {
        Ok(0) => return close(connection.socket),
        Ok(_) => {}
        Err(errno::EAGAIN) => return Some(connection),
        Err(_) => return close(connection.socket),
    }
    // Pipelined requests are served in order, each after the one before has been answered.
    loop {
        match request::parse(&connection.received) {
            Ok(Parsed::Partial) => return Some(connection),
            Ok(Parsed::Complete(head, len)) => {
                let body = connection.received.split_off(len);
                let exchange = Exchange::new(connection.socket, head, body);
                let (socket, received) = handle(proxy, ctx, exchange).or_else(|| close(connection.socket))?;
                connection = Connection { socket, received, last_used: connection.last_used };
                if connection.received.is_empty() {
                    return Some(connection);
                }
            }
            Err(refusal) => {
                refuse(connection.socket, refusal);
                return close(connection.socket);
            }
        }
    }
}

/// Runs one request through a new instance; the connection and its unread bytes if it stays
/// open.
fn handle(proxy: &Proxy, ctx: &mut Option<ComponentCtx>, exchange: Exchange) -> Option<(Handle, Vec<u8>)> {
    let mut store = Store::new(proxy.engine(), ctx.take()?.for_request(exchange));
    let result = proxy.handle(&mut store);
    let (mut done, exchange) = store.into_data().end_request();
    if let Err(error) = result {
        let message = match error.downcast_ref::<wasmtime::Trap>() {
            Some(_) => format!("Error: {error:?}\n"),
            None => format!("Error: {error:#}\n"),
        };
        done.wasi.write_stderr(message.as_bytes());
    }
    *ctx = Some(done);
    exchange?.end()
}

/// Answers a head that cannot be served (the connection closes after it).
fn refuse(socket: Handle, refusal: Refusal) {
    let (status, _) = refusal.status();
    let none: [(&str, &[u8]); 0] = [];
    let head = response::head(status, &none, Delimit::Length(0), false);
    let _ = net::send(socket, &head, None);
}

fn close<T>(socket: Handle) -> Option<T> {
    net::close(socket);
    None
}

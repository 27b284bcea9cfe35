//! Name lookup for `wasi:sockets/ip-name-lookup`, without I/O: the guest kernel (`net::lookup`)
//! asks the VMM for the workload's resolver files once per lookup, reads a name as wasmtime does
//! ([`parse_host`]), answers from the hosts file first, then sends the [`query`]s of the
//! [`candidates`] over UDP sockets of the socket device and reads each [`parse_reply`].
//!
//! Replies come from the network, so every byte of them is hostile: a reply is read only
//! within its length, compression pointers may only point backwards, names are at most 255
//! bytes, and a reply to another question (or with another id) is not an answer. What a hostile
//! reply reaches is the workload's own guest: no host code reads it.

#![no_std]

extern crate alloc;

mod config;
mod message;
mod name;

pub use config::{Config, MAX_FILE};
pub use message::{parse_reply, query, Reply, TYPE_A, TYPE_AAAA};
pub use name::{parse_host, Host, InvalidName};

use alloc::string::String;
use alloc::vec::Vec;

/// The names to query for `name`, in glibc's order: a name ending in a dot is only itself;
/// one with at least `ndots` dots is tried as given before the search domains, any other
/// after them.
pub fn candidates(name: &str, config: &Config) -> Vec<String> {
    if let Some(absolute) = name.strip_suffix('.') {
        return alloc::vec![String::from(absolute)];
    }
    let searched = config.search.iter().map(|domain| alloc::format!("{name}.{domain}"));
    let dots = name.bytes().filter(|&b| b == b'.').count();
    if dots >= usize::from(config.ndots) {
        core::iter::once(String::from(name)).chain(searched).collect()
    } else {
        searched.chain(core::iter::once(String::from(name))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_enough_dots_are_tried_first_as_given() {
        let config = Config::parse(b"search ns.svc.cluster.local svc.cluster.local\noptions ndots:2\n", b"");
        assert_eq!(candidates("db", &config), ["db.ns.svc.cluster.local", "db.svc.cluster.local", "db"]);
        assert_eq!(candidates("a.b.c", &config), ["a.b.c", "a.b.c.ns.svc.cluster.local", "a.b.c.svc.cluster.local"]);
        assert_eq!(candidates("example.com.", &config), ["example.com"]);
    }
}

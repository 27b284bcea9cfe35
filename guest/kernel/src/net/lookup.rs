//! Name lookup for `wasi:sockets/ip-name-lookup`, done in the guest: the resolver files come
//! from the VMM ([`resolver`], one call), the hosts file answers first, then each candidate
//! name (resolv.conf's search domains and `ndots`) is asked of each name server in turn, A and
//! AAAA together over one UDP socket of the workload's own, `attempts` rounds of `timeout`
//! seconds each — glibc's stub resolver, without its TCP retry for truncated replies. The
//! queries are the workload's socket calls, so they pass the same policy and limits as its
//! own, and a lookup blocks only the instance that asked.

use super::{close, connect, open, poll, receive, send, Errno, Handle};
use alloc::vec;
use alloc::vec::Vec;
use core::net::IpAddr;
use wasmcell_abi::socket::{errno, Address, Op, PollEntry, ResolverFiles, MAX_TRANSFER, READABLE};
use wasmcell_guest_dns::{candidates, parse_reply, query, Config, Reply, TYPE_A, TYPE_AAAA};

/// The workload's resolver configuration (`Err(EACCES)`: it may not look names up).
pub fn resolver() -> Result<Config, Errno> {
    let mut files = vec![0u8; MAX_TRANSFER as usize];
    let len = super::result(super::call(Op::Resolver, super::args(&[files.as_mut_ptr() as u64, MAX_TRANSFER], None)))?;
    files.truncate(len as usize);
    let (resolv_conf, hosts) = ResolverFiles::split(&files).ok_or(errno::EINVAL)?;
    Ok(Config::parse(resolv_conf, hosts))
}

/// The addresses of `domain` (lower-case ASCII), IPv4 first → `None`: unresolvable.
/// `now_ns` is the monotonic clock; `id` gives each query its random id.
pub fn resolve(
    config: &Config,
    domain: &str,
    now_ns: &dyn Fn() -> u64,
    id: &mut dyn FnMut() -> u16,
) -> Option<Vec<IpAddr>> {
    let from_hosts = config.hosts_addresses(domain);
    if !from_hosts.is_empty() {
        return Some(from_hosts.into_iter().map(|ip| ip.to_canonical()).collect());
    }
    for name in candidates(domain, config) {
        match ask_servers(config, &name, now_ns, id) {
            Answer::Found(addresses) => return Some(addresses),
            Answer::Absent => continue,
            // As glibc: a server that does not answer ends the search (each further candidate
            // would wait as long again).
            Answer::Silent => return None,
        }
    }
    None
}

enum Answer {
    Found(Vec<IpAddr>),
    /// The name does not exist, or has no addresses.
    Absent,
    /// No server answered.
    Silent,
}

fn ask_servers(config: &Config, name: &str, now_ns: &dyn Fn() -> u64, id: &mut dyn FnMut() -> u16) -> Answer {
    for _ in 0..config.attempts {
        for server in &config.nameservers {
            let questions = [(id(), TYPE_A), (id(), TYPE_AAAA)];
            let Some(replies) = ask(*server, name, &questions, u64::from(config.timeout_s) * 1_000_000, now_ns) else {
                continue;
            };
            let failed = replies.contains(&Reply::Failed);
            let absent = replies.contains(&Reply::NoSuchName);
            let addresses: Vec<IpAddr> = replies
                .into_iter()
                .flat_map(|reply| match reply {
                    Reply::Addresses(found) => found,
                    Reply::NoSuchName | Reply::Failed => Vec::new(),
                })
                .map(|ip| ip.to_canonical())
                .collect();
            if !addresses.is_empty() {
                return Answer::Found(addresses);
            }
            // NXDOMAIN, or a name with no address of either kind: the next candidate. A
            // server that failed: the next server.
            if absent || !failed {
                return Answer::Absent;
            }
        }
    }
    Answer::Silent
}

/// Both replies from `server` within `timeout_us`, or `None`.
fn ask(
    server: IpAddr,
    name: &str,
    questions: &[(u16, u16); 2],
    timeout_us: u64,
    now_ns: &dyn Fn() -> u64,
) -> Option<[Reply; 2]> {
    let messages: Vec<Vec<u8>> = questions.iter().map(|&(id, kind)| query(id, name, kind)).collect::<Option<_>>()?;
    let address = match server {
        IpAddr::V4(v4) => Address::v4(v4.octets(), 53),
        IpAddr::V6(v6) => Address { family: 6, port: 53, flowinfo: 0, ip: v6.octets(), scope_id: 0 },
    };
    let handle = open(address.family, false).ok()?;
    let replies = exchange(handle, &address, name, questions, &messages, timeout_us, now_ns);
    close(handle);
    replies
}

fn exchange(
    handle: Handle,
    server: &Address,
    name: &str,
    questions: &[(u16, u16); 2],
    messages: &[Vec<u8>],
    timeout_us: u64,
    now_ns: &dyn Fn() -> u64,
) -> Option<[Reply; 2]> {
    connect(handle, server).ok()?;
    for message in messages {
        send(handle, message, None).ok()?;
    }
    let deadline = now_ns().saturating_add(timeout_us * 1000);
    let mut replies: [Option<Reply>; 2] = [None, None];
    let mut buf = vec![0u8; 1500];
    while replies.iter().any(Option::is_none) {
        let left_us = deadline.saturating_sub(now_ns()) / 1000;
        if left_us == 0 {
            return None;
        }
        let mut entry = [PollEntry { handle, events: READABLE, ready: 0 }];
        poll(&mut entry, Some(left_us)).ok()?;
        loop {
            let n = match receive(handle, &mut buf, false) {
                Ok((n, _)) => n,
                Err(errno::EAGAIN) => break,
                // An ICMP "port unreachable" from a server that is not there.
                Err(_) => return None,
            };
            for (slot, &(id, kind)) in replies.iter_mut().zip(questions) {
                if slot.is_none() {
                    *slot = parse_reply(&buf[..n], id, name, kind);
                }
            }
        }
    }
    let [a, b] = replies;
    Some([a?, b?])
}

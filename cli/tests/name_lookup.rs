//! Name lookup (`wasmcell run --inherit-network --allow-ip-name-lookup`): names parse and
//! literal addresses answer as in host wasmtime; domains are resolved in the guest with the
//! resolver files of the network namespace it runs in. The namespace is the test's own
//! (`ip netns`), with its own `resolv.conf` and hosts (`ip netns exec` mounts
//! `/etc/netns/NAME/*` over `/etc`, as a pod's files are mounted) and a DNS server the test
//! runs on its loopback: no query leaves the namespace.

mod common;
mod host_network;

use common::*;
use host_network::host_run_with_lookup;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, TcpListener, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[test]
fn names_and_literal_addresses_parse_as_in_host_wasmtime() {
    // Only literals, invalid names and the hosts file's `localhost`: nothing is asked of DNS.
    let names =
        ["localhost", "127.1", "0x7f.0.0.1", "[::1]", "::1", "[::ffff:1.2.3.4]", "a b", "%zz", "a:b", "", "1.2.3.256"];
    let sample = component("name_lookup");
    let args: Vec<&str> =
        ["--inherit-network", "--allow-ip-name-lookup", &sample, "--"].into_iter().chain(names).collect();
    let out = run(&args);
    let host = host_run_with_lookup(&component("name_lookup"), &names);
    assert_eq!((out.status.code().unwrap(), stdout(&out)), host, "{}", stderr(&out));
    assert!(host.1.starts_with("localhost: 127.0.0.1"), "{}", host.1);
    assert!(host.1.contains("127.1: 127.0.0.1\n"), "{}", host.1);
}

#[test]
fn without_permission_every_lookup_is_a_permanent_resolver_failure() {
    let sample = component("name_lookup");
    for extra in [&["--inherit-network"][..], &[]] {
        let args: Vec<&str> = extra.iter().copied().chain([sample.as_str(), "--", "localhost", "127.0.0.1"]).collect();
        let out = run(&args);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert_eq!(stdout(&out).matches("permanent-resolver-failure").count(), 2, "{}", stdout(&out));
    }
}

/// A network namespace of the test's own with a loopback, a `resolv.conf` and a hosts file;
/// removed with everything in it when dropped.
struct TestNetns {
    name: String,
}

impl TestNetns {
    fn new(resolv_conf: &str, hosts: &str) -> Self {
        let name = format!("wasmcell-dns-{}", std::process::id());
        let files = format!("/etc/netns/{name}");
        std::fs::create_dir_all(&files).unwrap();
        std::fs::write(format!("{files}/resolv.conf"), resolv_conf).unwrap();
        std::fs::write(format!("{files}/hosts"), hosts).unwrap();
        let netns = Self { name };
        ip(&["netns", "add", &netns.name]);
        ip(&["-n", &netns.name, "link", "set", "lo", "up"]);
        netns
    }

    /// `f` on a thread of its own that has entered the namespace (a thread's network namespace
    /// is its own: the rest of the test stays where it was).
    fn spawn<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> std::thread::JoinHandle<T> {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let netns = std::fs::File::open(&path).unwrap();
            // SAFETY: a descriptor of a network namespace; only this thread moves into it.
            assert_eq!(unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) }, 0, "setns");
            f()
        })
    }

    /// `wasmcell run ARGS…` inside the namespace, with its files over `/etc` (stopped by its
    /// own timeout if it hangs).
    fn wasmcell(&self, args: &[&str]) -> Output {
        require_kvm();
        let wasmcell = env!("CARGO_BIN_EXE_wasmcell");
        let run = [wasmcell, "run", "--timeout", "60s", "--cache-dir", &cache_dir()];
        Command::new("ip").args(["netns", "exec", &self.name]).args(run).args(args).output().unwrap()
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
        let _ = std::fs::remove_dir_all(format!("/etc/netns/{}", self.name));
        // Only when empty: another namespace's files stay.
        let _ = std::fs::remove_dir("/etc/netns");
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip (iproute2) runs");
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// What the test's DNS server knows: a name's A and AAAA records, or a CNAME. Names it does
/// not know get NXDOMAIN; `silent.test` gets nothing at all.
#[derive(Clone)]
enum Record {
    Addresses(Vec<Ipv4Addr>, Vec<Ipv6Addr>),
    Alias(&'static str),
}

/// A DNS server on `127.0.0.1:53` inside the namespace: answers until `stop`, and notes every
/// question it was asked (`NAME TYPE`).
fn dns_server(
    netns: &TestNetns,
    zone: BTreeMap<&'static str, Record>,
    stop: Arc<AtomicBool>,
    asked: Arc<Mutex<Vec<String>>>,
) -> std::thread::JoinHandle<()> {
    netns.spawn(move || {
        let socket = UdpSocket::bind("127.0.0.1:53").unwrap();
        socket.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let mut buf = [0u8; 512];
        while !stop.load(Ordering::Relaxed) {
            let Ok((n, from)) = socket.recv_from(&mut buf) else { continue };
            let Some((name, kind, question_end)) = question(&buf[..n]) else { continue };
            asked.lock().unwrap().push(format!("{name} {kind}"));
            if name == "silent.test" {
                continue;
            }
            let mut reply = buf[..question_end].to_vec();
            reply[2] = 0x81;
            reply[3] = 0x80;
            reply[6..12].fill(0);
            let mut answers = 0u8;
            let mut owner = name.clone();
            loop {
                match zone.get(owner.as_str()) {
                    None if answers == 0 => reply[3] |= 3,
                    None => {}
                    Some(Record::Alias(target)) => {
                        record(&mut reply, &owner, 5, &encode(target));
                        answers += 1;
                        owner = target.to_string();
                        continue;
                    }
                    Some(Record::Addresses(v4, v6)) => {
                        let data: Vec<Vec<u8>> = match kind {
                            1 => v4.iter().map(|a| a.octets().to_vec()).collect(),
                            28 => v6.iter().map(|a| a.octets().to_vec()).collect(),
                            _ => Vec::new(),
                        };
                        for d in data {
                            record(&mut reply, &owner, kind, &d);
                            answers += 1;
                        }
                    }
                }
                break;
            }
            reply[7] = answers;
            socket.send_to(&reply, from).unwrap();
        }
    })
}

/// The question of a query: its name, type and where it ends.
fn question(message: &[u8]) -> Option<(String, u16, usize)> {
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = *message.get(at)? as usize;
        at += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(message.get(at..at + len)?).to_lowercase());
        at += len;
    }
    let kind = u16::from_be_bytes([*message.get(at)?, *message.get(at + 1)?]);
    Some((labels.join("."), kind, at + 4))
}

fn encode(name: &str) -> Vec<u8> {
    let mut wire = Vec::new();
    for label in name.split('.') {
        wire.push(label.len() as u8);
        wire.extend_from_slice(label.as_bytes());
    }
    wire.push(0);
    wire
}

fn record(reply: &mut Vec<u8>, owner: &str, kind: u16, data: &[u8]) {
    reply.extend_from_slice(&encode(owner));
    reply.extend_from_slice(&kind.to_be_bytes());
    reply.extend_from_slice(&[0, 1, 0, 0, 0, 30]);
    reply.extend_from_slice(&(data.len() as u16).to_be_bytes());
    reply.extend_from_slice(data);
}

#[test]
fn names_resolve_with_the_namespaces_resolv_conf_hosts_and_dns_server() {
    let netns = TestNetns::new(
        "search corp.test\nnameserver 127.0.0.1\noptions ndots:1 timeout:1 attempts:1\n",
        "127.0.0.1 localhost\n10.9.9.9 pinned.test\n",
    );
    let zone = BTreeMap::from([
        ("db.corp.test", Record::Addresses(vec![Ipv4Addr::new(10, 1, 2, 3)], vec!["fd00::3".parse().unwrap()])),
        ("www.test", Record::Alias("lb.test")),
        ("lb.test", Record::Addresses(vec![Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2)], vec![])),
        ("loop.test", Record::Addresses(vec![Ipv4Addr::LOCALHOST], vec![])),
        ("v6only.test", Record::Addresses(vec![], vec!["fd00::6".parse().unwrap()])),
        ("mapped.test", Record::Addresses(vec![], vec!["::ffff:10.6.6.6".parse().unwrap()])),
    ]);
    let (stop, asked) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(Vec::new())));
    let server = dns_server(&netns, zone, stop.clone(), asked.clone());

    let names =
        ["db", "www.test", "pinned.test", "v6only.test", "mapped.test", "nothing.test", "silent.test", "db.corp.test."];
    let sample = component("name_lookup");
    let args: Vec<&str> =
        ["--inherit-network", "--allow-ip-name-lookup", &sample, "--"].into_iter().chain(names).collect();
    let out = netns.wasmcell(&args);
    let expected = "db: 10.1.2.3 fd00::3\n\
        www.test: 10.0.0.1 10.0.0.2\n\
        pinned.test: 10.9.9.9\n\
        v6only.test: fd00::6\n\
        mapped.test: 10.6.6.6\n\
        nothing.test: ErrorCode { code: 18, name: \"name-unresolvable\", message: \"Name does not exist or has no suitable associated IP addresses.\" }\n\
        silent.test: ErrorCode { code: 18, name: \"name-unresolvable\", message: \"Name does not exist or has no suitable associated IP addresses.\" }\n\
        db.corp.test.: 10.1.2.3 fd00::3\n";
    assert_eq!((out.status.code(), stdout(&out).as_str()), (Some(0), expected), "{}", stderr(&out));

    // The search domain first for a name with fewer dots than ndots (found there: never asked
    // as given); the hosts file without a query; a name with enough dots as given first, then
    // searched; a silent server asked once (attempts:1), ending the search.
    let asked = asked.lock().unwrap().clone();
    let first_asked = |name: &str| asked.iter().position(|q| q.starts_with(&format!("{name} ")));
    assert_eq!((first_asked("db.corp.test"), first_asked("db")), (Some(0), None), "{asked:?}");
    assert_eq!(first_asked("pinned.test"), None, "{asked:?}");
    assert!(first_asked("nothing.test") < first_asked("nothing.test.corp.test"), "{asked:?}");
    assert_eq!(asked.iter().filter(|q| q.as_str() == "silent.test 1").count(), 1, "{asked:?}");
    assert_eq!(first_asked("silent.test.corp.test"), None, "{asked:?}");

    // std's `TcpStream::connect("loop.test:PORT")` (wasi-libc's getaddrinfo) reaches a server
    // in the namespace by name.
    let listener = netns.spawn(|| TcpListener::bind("127.0.0.1:0").unwrap()).join().unwrap();
    let port = listener.local_addr().unwrap().port();
    let echo = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        stream.write_all(text.to_uppercase().as_bytes()).unwrap();
    });
    let target = format!("loop.test:{port}");
    let out = netns.wasmcell(&[
        "--inherit-network",
        "--allow-ip-name-lookup",
        &component("tcp_client"),
        "--",
        &target,
        "ping",
    ]);
    assert_eq!(stdout(&out), "connected from a local port: true\nreply: PING\n", "{}", stderr(&out));
    echo.join().unwrap();

    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
}

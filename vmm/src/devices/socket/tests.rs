//! The socket device against real loopback sockets, driven as a (possibly hostile) guest
//! drives it: calls with their words, buffers in guest memory.

use super::*;
use vm_memory::GuestAddress;

/// Guest memory the device may touch: 1 MiB at 1 MiB.
const BASE: u64 = 1 << 20;

fn device(network: Network) -> SocketDevice {
    let memory = GuestMemory::from_ranges(&[(GuestAddress(BASE), 1 << 20)]).unwrap();
    SocketDevice::new(memory, network)
}

fn call(dev: &mut SocketDevice, op: Op, args: &[u64]) -> SocketReply {
    let mut words = [0; 8];
    words[..args.len()].copy_from_slice(args);
    dev.call(op, &SocketCall { args: words }).unwrap()
}

fn with_address(first: &[u64], address: Address) -> Vec<u64> {
    first.iter().copied().chain(address.to_words()).collect()
}

fn loopback(port: u16) -> Address {
    Address::v4([127, 0, 0, 1], port)
}

/// A listener on an ephemeral loopback port: its handle and port.
fn listener(dev: &mut SocketDevice) -> (u64, u16) {
    let handle = call(dev, Op::Open, &[4, TCP]).result as u64;
    assert_eq!(call(dev, Op::Bind, &with_address(&[handle], loopback(0))).result, 0);
    assert_eq!(call(dev, Op::Listen, &[handle, 1 << 40]).result, 0, "a huge backlog is capped, not refused");
    let port = call(dev, Op::LocalAddress, &[handle]).address.port;
    assert_ne!(port, 0, "binding port 0 reports the port the kernel chose");
    (handle, port)
}

/// Polls `handle` for `events`, waiting up to 5 s.
fn wait_for(dev: &SocketDevice, handle: u64, events: u16) -> u16 {
    let entry = PollEntry { handle: handle as u32, events, ready: 0 };
    dev.memory.write_slice(&entry.to_bytes(), GuestAddress(BASE)).unwrap();
    let mut set = dev.poll_set(&SocketCall { args: [BASE, 1, 0, 0, 0, 0, 0, 0] }).unwrap();
    // SAFETY: live pollfds; a bounded timeout.
    unsafe { libc::poll(set.fds.as_mut_ptr(), 1, 5000) };
    assert_eq!(dev.finish_poll(set).unwrap().result, 1);
    let mut raw = [0u8; PollEntry::SIZE];
    dev.memory.read_slice(&mut raw, GuestAddress(BASE)).unwrap();
    PollEntry::from_bytes(&raw).ready
}

#[test]
fn a_connection_moves_bytes_between_guest_memory_and_the_host() {
    let mut dev = device(Network::default());
    let (listener, port) = listener(&mut dev);
    let mut peer = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    assert_eq!(wait_for(&dev, listener, READABLE), READABLE);
    let accepted = call(&mut dev, Op::Accept, &[listener]);
    assert!(accepted.result >= 0);
    assert_eq!(accepted.address.port, peer.local_addr().unwrap().port(), "the peer's address");
    let conn = accepted.result as u64;

    std::io::Write::write_all(&mut peer, b"from the host").unwrap();
    assert_eq!(wait_for(&dev, conn, READABLE), READABLE);
    let at = BASE + 0x1000;
    assert_eq!(call(&mut dev, Op::Receive, &[conn, at, 4096, 0]).result, 13);
    let mut got = [0u8; 13];
    dev.memory.read_slice(&mut got, GuestAddress(at)).unwrap();
    assert_eq!(&got, b"from the host");

    dev.memory.write_slice(b"from the guest", GuestAddress(at)).unwrap();
    assert_eq!(call(&mut dev, Op::Send, &[conn, at, 14]).result, 14);
    let mut back = [0u8; 14];
    std::io::Read::read_exact(&mut peer, &mut back).unwrap();
    assert_eq!(&back, b"from the guest");

    assert_eq!(call(&mut dev, Op::Receive, &[conn, at, 16, 0]).result, -i64::from(errno::EAGAIN), "never blocks");
    assert_eq!(call(&mut dev, Op::Close, &[conn]).result, 0);
    let mut rest = Vec::new();
    assert_eq!(std::io::Read::read_to_end(&mut peer, &mut rest).unwrap(), 0, "closed on the host too");
    assert_eq!(call(&mut dev, Op::Close, &[conn]).result, -i64::from(errno::EBADF), "closed once");
}

#[test]
fn buffers_outside_the_workloads_memory_end_the_workload() {
    let mut dev = device(Network::default());
    let (handle, _) = listener(&mut dev);
    let call = |dev: &mut SocketDevice, op, args: [u64; 4]| {
        dev.call(op, &SocketCall { args: [args[0], args[1], args[2], args[3], 0, 0, 0, 0] })
    };
    for addr in [0, BASE - 1, BASE + (1 << 20) - 4, u64::MAX - 2] {
        assert!(matches!(call(&mut dev, Op::Send, [handle, addr, 64, 0]), Err(SocketError::BufferOutside { .. })));
        assert!(matches!(call(&mut dev, Op::Receive, [handle, addr, 64, 0]), Err(SocketError::BufferOutside { .. })));
    }
    let too_long = SocketCall { args: [BASE, MAX_POLL + 1, 0, 0, 0, 0, 0, 0] };
    assert!(matches!(dev.poll_set(&too_long), Err(SocketError::PollTooLong { .. })));
    let outside = SocketCall { args: [0, 4, 0, 0, 0, 0, 0, 0] };
    assert!(matches!(dev.poll_set(&outside), Err(SocketError::BufferOutside { .. })));
}

#[test]
fn a_workload_gets_at_most_its_sockets_and_only_ip_tcp_and_udp() {
    let mut dev = device(Network::default());
    for _ in 0..MAX_SOCKETS {
        assert!(call(&mut dev, Op::Open, &[4, UDP]).result >= 0);
    }
    assert_eq!(call(&mut dev, Op::Open, &[4, TCP]).result, -i64::from(errno::EMFILE));
    assert_eq!(dev.open_sockets(), MAX_SOCKETS as usize);
    assert_eq!(call(&mut dev, Op::Close, &[7]).result, 0);
    assert_eq!(call(&mut dev, Op::Open, &[6, TCP]).result, 7, "a freed handle is given out again");

    let mut fresh = device(Network::default());
    assert_eq!(call(&mut fresh, Op::Open, &[1, TCP]).result, -i64::from(errno::EAFNOSUPPORT), "no AF_UNIX");
    assert_eq!(call(&mut fresh, Op::Open, &[4, 3]).result, -i64::from(errno::EPROTONOSUPPORT), "no raw sockets");
    assert_eq!(call(&mut fresh, Op::Bind, &with_address(&[0], loopback(0))).result, -i64::from(errno::EBADF));
    assert_eq!(call(&mut fresh, Op::Listen, &[u64::MAX, 1]).result, -i64::from(errno::EBADF));
}

#[test]
fn options_are_an_allow_list_with_capped_buffers() {
    let mut dev = device(Network::default());
    let tcp = call(&mut dev, Op::Open, &[4, TCP]).result as u64;
    let udp = call(&mut dev, Op::Open, &[4, UDP]).result as u64;
    assert_eq!(call(&mut dev, Op::SetOption, &[tcp, Opt::KeepAlive as u64, 1]).result, 0);
    assert_eq!(call(&mut dev, Op::GetOption, &[tcp, Opt::KeepAlive as u64]).result, 1);
    assert_eq!(call(&mut dev, Op::SetOption, &[tcp, Opt::ReceiveBuffer as u64, u64::MAX]).result, 0);
    let got = call(&mut dev, Op::GetOption, &[tcp, Opt::ReceiveBuffer as u64]).result as u64;
    assert!(got <= 2 * MAX_BUFFER, "capped: the kernel reports {got} (twice what was set at most)");
    assert_eq!(call(&mut dev, Op::SetOption, &[tcp, 99, 1]).result, -i64::from(errno::ENOPROTOOPT));
    assert_eq!(call(&mut dev, Op::SetOption, &[udp, Opt::KeepCount as u64, 3]).result, -i64::from(errno::ENOPROTOOPT));
    assert_eq!(call(&mut dev, Op::SetOption, &[udp, Opt::HopLimit as u64, 7]).result, 0);
    assert_eq!(call(&mut dev, Op::GetOption, &[udp, Opt::HopLimit as u64]).result, 7);
}

#[test]
fn a_denied_network_refuses_to_connect_or_send_out_but_serves() {
    let mut dev = device(Network { outgoing: Outgoing::Denied, ..Network::default() });
    let (_, port) = listener(&mut dev);
    let tcp = call(&mut dev, Op::Open, &[4, TCP]).result as u64;
    assert_eq!(call(&mut dev, Op::Connect, &with_address(&[tcp], loopback(port))).result, -i64::from(errno::EACCES));
    let udp = call(&mut dev, Op::Open, &[4, UDP]).result as u64;
    let send = [&[udp, BASE, 4][..], &loopback(port).to_words()].concat();
    assert_eq!(call(&mut dev, Op::Send, &send).result, -i64::from(errno::EACCES));
    let v6 = Address { family: 6, port, ..Default::default() };
    let open = device(Network::default()).call(Op::Connect, &SocketCall { args: [tcp, 0, 0, 0, 0, 0, 0, 0] });
    assert_eq!(open.unwrap().result, -i64::from(errno::EBADF), "another device's handle means nothing");
    let mut allowed = device(Network::default());
    let tcp = call(&mut allowed, Op::Open, &[4, TCP]).result as u64;
    let wrong = call(&mut allowed, Op::Connect, &with_address(&[tcp], v6)).result;
    assert_eq!(wrong, -i64::from(errno::EAFNOSUPPORT), "an address of the other family");
    let started = call(&mut allowed, Op::Connect, &with_address(&[tcp], loopback(port))).result;
    assert!(started == 0 || started == -i64::from(errno::EINPROGRESS), "{started}");
    assert_eq!(wait_for(&allowed, tcp, WRITABLE), WRITABLE);
    assert_eq!(call(&mut allowed, Op::TakeError, &[tcp]).result, 0, "connected");
}

#[test]
fn the_resolver_files_are_copied_only_to_a_workload_allowed_to_look_up_names_and_only_into_its_memory() {
    let mut refused = device(Network::default());
    assert_eq!(call(&mut refused, Op::Resolver, &[BASE, MAX_TRANSFER]).result, -i64::from(errno::EACCES));
    let resolver = Resolver::new(b"nameserver 10.96.0.10\n", b"10.0.0.1 db\n");
    let mut dev = device(Network { name_lookup: Some(resolver.clone()), ..Network::default() });
    let len = resolver.files().len() as u64;
    assert_eq!(call(&mut dev, Op::Resolver, &[BASE, len - 1]).result, -i64::from(errno::ERANGE));
    assert_eq!(call(&mut dev, Op::Resolver, &[BASE, MAX_TRANSFER]).result, len as i64);
    let mut copied = vec![0; len as usize];
    dev.memory.read_slice(&mut copied, GuestAddress(BASE)).unwrap();
    assert_eq!(copied, resolver.files());
    let outside = dev.call(Op::Resolver, &SocketCall { args: [BASE + (1 << 20) - 4, MAX_TRANSFER, 0, 0, 0, 0, 0, 0] });
    assert!(matches!(outside, Err(SocketError::BufferOutside { .. })), "{outside:?}");
}

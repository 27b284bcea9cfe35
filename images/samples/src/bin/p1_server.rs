//! A WASI preview 1 TCP server on the listener its runtime preopens as descriptor 3
//! (`wasmcell run --tcplisten ADDR`, `wasmtime run --tcplisten` before 47). Modes (first
//! argument), each ending after the number of connections given second:
//! - `echo N`: Rust's std, blocking: accepts, echoes every byte until the client shuts its
//!   side, shuts its own (`sock_accept`, `fd_read`, `fd_write`, `sock_shutdown`).
//! - `poll N`: non-blocking, every client at once: one `poll_oneoff` over the listener and
//!   every connection, `sock_recv` and `sock_send`; echoes until each client shuts its side.
//! - `probe`: prints what the socket calls answer at their edges (one `name: value` line each;
//!   run it with two listeners and a directory), then serves one client: a peeked and a
//!   `RECV_WAITALL` read, a reply, a shutdown.
//!
//! Each mode prints `ready` on stdout before it accepts.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::wasi::io::FromRawFd;

/// The preopened listener.
const LISTENER: u32 = 3;
/// WASI values.
const NONBLOCK: u16 = 4;
const AGAIN: i32 = 6;
const EVENTTYPE_CLOCK: u8 = 0;
const EVENTTYPE_FD_READ: u8 = 1;
const EVENTTYPE_FD_WRITE: u8 = 2;

#[link(wasm_import_module = "wasi_snapshot_preview1")]
extern "C" {
    fn sock_accept(fd: u32, flags: u32, out: *mut u32) -> i32;
    fn sock_recv(fd: u32, iovs: *const Iovec, n: u32, flags: u32, out: *mut u32, out_flags: *mut u16) -> i32;
    fn sock_send(fd: u32, iovs: *const Iovec, n: u32, flags: u32, out: *mut u32) -> i32;
    fn sock_shutdown(fd: u32, how: u32) -> i32;
    fn fd_fdstat_get(fd: u32, out: *mut [u8; 24]) -> i32;
    fn fd_fdstat_set_flags(fd: u32, flags: u32) -> i32;
    fn fd_close(fd: u32) -> i32;
    fn fd_read(fd: u32, iovs: *const Iovec, n: u32, out: *mut u32) -> i32;
    fn fd_seek(fd: u32, offset: i64, whence: u32, out: *mut u64) -> i32;
    fn fd_filestat_get(fd: u32, out: *mut [u8; 64]) -> i32;
    fn fd_prestat_get(fd: u32, out: *mut [u8; 8]) -> i32;
    fn poll_oneoff(subs: *const [u8; 48], events: *mut [u8; 32], n: u32, out: *mut u32) -> i32;
}

#[repr(C)]
struct Iovec {
    buf: *const u8,
    len: usize,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let count: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1);
    match args.get(1).map(String::as_str) {
        Some("echo") => echo(count),
        Some("poll") => poll(count),
        Some("probe") => probe(),
        _ => {
            eprintln!("usage: p1_server echo|poll|probe [CONNECTIONS]");
            std::process::exit(2);
        }
    }
}

fn ready() {
    println!("ready");
    std::io::stdout().flush().unwrap();
}

fn echo(count: usize) {
    // SAFETY: descriptor 3 is the preopened listener, owned by nothing else in this program.
    let listener = unsafe { TcpListener::from_raw_fd(LISTENER as i32) };
    // Preopened listeners start non-blocking, as wasmtime made them.
    listener.set_nonblocking(false).unwrap();
    ready();
    for _ in 0..count {
        let (mut stream, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4096];
        loop {
            let n = stream.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            stream.write_all(&buf[..n]).unwrap();
        }
        stream.shutdown(Shutdown::Write).unwrap();
    }
    println!("served {count}");
}

/// A subscription: `userdata, tag, fd` or a relative clock timeout.
fn subscription(userdata: u64, kind: u8, fd_or_timeout: u64) -> [u8; 48] {
    let mut s = [0u8; 48];
    s[0..8].copy_from_slice(&userdata.to_le_bytes());
    s[8] = kind;
    if kind == EVENTTYPE_CLOCK {
        s[16..20].copy_from_slice(&1u32.to_le_bytes()); // monotonic
        s[24..32].copy_from_slice(&fd_or_timeout.to_le_bytes());
    } else {
        s[16..20].copy_from_slice(&(fd_or_timeout as u32).to_le_bytes());
    }
    s
}

/// Waits for `subs` → `(userdata, error, type, nbytes)` of each event.
fn wait(subs: &[[u8; 48]]) -> Vec<(u64, u16, u8, u64)> {
    let mut events = vec![[0u8; 32]; subs.len()];
    let mut n = 0;
    // SAFETY: the pointers are to live arrays of the sizes given.
    let e = unsafe { poll_oneoff(subs.as_ptr(), events.as_mut_ptr(), subs.len() as u32, &mut n) };
    assert_eq!(e, 0, "poll_oneoff");
    events[..n as usize]
        .iter()
        .map(|e| {
            let userdata = u64::from_le_bytes(e[0..8].try_into().unwrap());
            (userdata, u16::from_le_bytes([e[8], e[9]]), e[10], u64::from_le_bytes(e[16..24].try_into().unwrap()))
        })
        .collect()
}

fn accept(flags: u16) -> Result<u32, i32> {
    let mut fd = 0;
    // SAFETY: `fd` outlives the call.
    match unsafe { sock_accept(LISTENER, flags.into(), &mut fd) } {
        0 => Ok(fd),
        e => Err(e),
    }
}

fn recv(fd: u32, buf: &mut [u8], flags: u32) -> Result<usize, i32> {
    let iov = Iovec { buf: buf.as_mut_ptr(), len: buf.len() };
    let (mut n, mut out_flags) = (0, 0);
    // SAFETY: the iovec points into `buf`, which outlives the call.
    match unsafe { sock_recv(fd, &iov, 1, flags, &mut n, &mut out_flags) } {
        0 => Ok(n as usize),
        e => Err(e),
    }
}

fn send(fd: u32, bytes: &[u8], flags: u32) -> Result<usize, i32> {
    let iov = Iovec { buf: bytes.as_ptr(), len: bytes.len() };
    let mut n = 0;
    // SAFETY: the iovec points into `bytes`, which outlives the call.
    match unsafe { sock_send(fd, &iov, 1, flags, &mut n) } {
        0 => Ok(n as usize),
        e => Err(e),
    }
}

/// A connection of the poll server: bytes received and not yet sent back.
struct Client {
    fd: u32,
    pending: Vec<u8>,
    done_reading: bool,
}

fn poll(count: usize) {
    ready();
    let mut clients: Vec<Client> = Vec::new();
    let mut accepted = 0;
    let mut finished = 0;
    while finished < count {
        let mut subs = Vec::new();
        if accepted < count {
            subs.push(subscription(u64::MAX, EVENTTYPE_FD_READ, LISTENER.into()));
        }
        for (i, client) in clients.iter().enumerate() {
            if !client.pending.is_empty() {
                subs.push(subscription(i as u64, EVENTTYPE_FD_WRITE, client.fd.into()));
            } else if !client.done_reading {
                subs.push(subscription(i as u64, EVENTTYPE_FD_READ, client.fd.into()));
            }
        }
        for (userdata, error, _, _) in wait(&subs) {
            assert_eq!(error, 0, "event error");
            if userdata == u64::MAX {
                // Readiness may be stale by now: AGAIN is an answer, not a failure.
                while let Ok(fd) = accept(NONBLOCK) {
                    clients.push(Client { fd, pending: Vec::new(), done_reading: false });
                    accepted += 1;
                }
                continue;
            }
            let client = &mut clients[userdata as usize];
            if !client.pending.is_empty() {
                match send(client.fd, &client.pending, 0) {
                    Ok(n) => drop(client.pending.drain(..n)),
                    Err(AGAIN) => {}
                    Err(e) => panic!("sock_send: {e}"),
                }
            } else {
                let mut buf = [0u8; 8192];
                match recv(client.fd, &mut buf, 0) {
                    Ok(0) => client.done_reading = true,
                    Ok(n) => client.pending.extend_from_slice(&buf[..n]),
                    Err(AGAIN) => {}
                    Err(e) => panic!("sock_recv: {e}"),
                }
            }
        }
        clients.retain(|client| {
            let over = client.done_reading && client.pending.is_empty();
            if over {
                // SAFETY: plain calls on a descriptor this program owns.
                unsafe {
                    assert_eq!(sock_shutdown(client.fd, 2), 0);
                    assert_eq!(fd_close(client.fd), 0);
                }
                finished += 1;
            }
            !over
        });
    }
    println!("served {count}");
}

fn fdstat(fd: u32) -> String {
    let mut stat = [0u8; 24];
    // SAFETY: `stat` outlives the call.
    match unsafe { fd_fdstat_get(fd, &mut stat) } {
        0 => format!(
            "filetype={} flags={} rights={:#x}/{:#x}",
            stat[0],
            u16::from_le_bytes([stat[2], stat[3]]),
            u64::from_le_bytes(stat[8..16].try_into().unwrap()),
            u64::from_le_bytes(stat[16..24].try_into().unwrap())
        ),
        e => format!("errno {e}"),
    }
}

fn probe() {
    let errno = |e: Result<usize, i32>| e.map_or_else(|e| e.to_string(), |n| format!("ok {n}"));
    // The listeners from 3, then the preopened directories.
    println!("fdstat 3: {}", fdstat(LISTENER));
    println!("fdstat 4: {}", fdstat(LISTENER + 1));
    let mut prestat = [0u8; 8];
    // SAFETY: `prestat` outlives the call.
    println!("prestat 5: {}", unsafe { fd_prestat_get(LISTENER + 2, &mut prestat) });
    let mut stat = [0u8; 64];
    // SAFETY: `stat` outlives the call.
    let e = unsafe { fd_filestat_get(LISTENER, &mut stat) };
    println!("filestat listener: {e} filetype={}", stat[16]);
    println!("accept pending none: {}", errno(accept(0).map(|fd| fd as usize)));
    println!("accept bad flags: {}", errno(accept(1).map(|fd| fd as usize)));
    println!("accept stdout: {}", errno(accept_on(1)));
    println!("accept closed: {}", errno(accept_on(99)));
    println!("recv listener: {}", errno(recv(LISTENER, &mut [0; 4], 0)));
    println!("send listener: {}", errno(send(LISTENER, b"x", 0)));
    // SAFETY: plain calls with valid out-pointers.
    unsafe {
        println!("shutdown listener: {}", sock_shutdown(LISTENER, 2));
        println!("set flags append: {}", fd_fdstat_set_flags(LISTENER, 1));
        let mut position = 0;
        println!("seek listener: {}", fd_seek(LISTENER, 0, 0, &mut position));
        let mut byte = [0u8; 1];
        let iov = Iovec { buf: byte.as_mut_ptr(), len: 1 };
        let mut n = 0;
        println!("read listener: {}", fd_read(LISTENER, &iov, 1, &mut n));
    }
    // Nothing is pending: the clock fires first.
    let events =
        wait(&[subscription(1, EVENTTYPE_FD_READ, LISTENER.into()), subscription(2, EVENTTYPE_CLOCK, 10_000_000)]);
    println!("poll idle: {:?}", events.iter().map(|e| e.0).collect::<Vec<_>>());
    // One socket subscribed more often than the socket device takes entries in one poll.
    let mut many = vec![subscription(1, EVENTTYPE_FD_READ, LISTENER.into()); 300];
    many.push(subscription(2, EVENTTYPE_CLOCK, 10_000_000));
    println!("poll many: {:?}", wait(&many).iter().map(|e| e.0).collect::<Vec<_>>());
    // SAFETY: a plain call.
    println!("set flags blocking: {}", unsafe { fd_fdstat_set_flags(LISTENER, 0) });
    println!("fdstat blocking listener: {}", fdstat(LISTENER));
    ready();
    let fd = accept(0).expect("accept");
    println!("fdstat connection: {}", fdstat(fd));
    // The client sends "hello world" and waits for the reply.
    let mut buf = [0u8; 11];
    println!("recv bad flags: {}", errno(recv(fd, &mut buf, 4)));
    // An iovec past the end of memory: refused before any byte leaves the socket.
    let mut first = [0u8; 5];
    let iovs = [Iovec { buf: first.as_mut_ptr(), len: 5 }, Iovec { buf: usize::MAX as *const u8, len: 5 }];
    let (mut n, mut out_flags) = (0, 0);
    // SAFETY: the first iovec points into `first`; the runtime refuses the second.
    println!("recv fault: {}", unsafe { sock_recv(fd, iovs.as_ptr(), 2, 0, &mut n, &mut out_flags) });
    let peeked = recv(fd, &mut buf[..5], 1).expect("peek");
    println!("peek: {}", String::from_utf8_lossy(&buf[..peeked]));
    let n = recv(fd, &mut buf, 2).expect("waitall");
    println!("waitall: {}", String::from_utf8_lossy(&buf[..n]));
    println!("send flags: {}", errno(send(fd, b"x", 1)));
    // The same on the way out: nothing of the first iovec is sent.
    let iovs = [Iovec { buf: b"JUNK".as_ptr(), len: 4 }, Iovec { buf: usize::MAX as *const u8, len: 4 }];
    let mut sent = 0;
    // SAFETY: the first iovec points into a static; the runtime refuses the second.
    println!("send fault: {}", unsafe { sock_send(fd, iovs.as_ptr(), 2, 0, &mut sent) });
    println!("send: {}", errno(send(fd, b"HELLO WORLD", 0)));
    // SAFETY: plain calls on a descriptor this program owns.
    unsafe {
        println!("shutdown bad how: {}", sock_shutdown(fd, 0));
        println!("shutdown write: {}", sock_shutdown(fd, 2));
    }
    // The client closes once it has the reply: the end of input reads as 0 bytes.
    // SAFETY: `fd` is a connection this program owns; `stream` takes it over.
    let mut stream = unsafe { TcpStream::from_raw_fd(fd as i32) };
    let mut rest = Vec::new();
    println!("read to end: {}", stream.read_to_end(&mut rest).map_or_else(|e| e.to_string(), |n| n.to_string()));
}

fn accept_on(fd: u32) -> Result<usize, i32> {
    let mut out = 0;
    // SAFETY: `out` outlives the call.
    match unsafe { sock_accept(fd, 0, &mut out) } {
        0 => Ok(out as usize),
        e => Err(e),
    }
}

//! `poll_oneoff`: clock subscriptions and readiness of descriptors (files are always ready,
//! sockets as the socket device's poll says). Waiting happens in the VMM (control-device WAIT,
//! or the device's poll when a socket is among the subscriptions), which also wakes the guest
//! when stdin becomes readable.

use super::errno::{to_errno, Errno};
use super::fd::Fd;
use super::socket::{self, Socket};
use super::stdio::console;
use super::{memory, write_bytes, write_u32, WasiCtx, WasiLinker, MODULE};
use crate::{control, net};
use alloc::vec::Vec;
use wasmcell_abi::socket::{PollEntry, READABLE, WRITABLE};
use wasmtime::Caller;

const SUBSCRIPTION_SIZE: usize = 48;
const EVENT_SIZE: usize = 32;
const EVENTTYPE_CLOCK: u8 = 0;
const EVENTTYPE_FD_READ: u8 = 1;
const EVENTTYPE_FD_WRITE: u8 = 2;
const SUBCLOCKFLAGS_ABSTIME: u16 = 1;
const EVENTRWFLAGS_HANGUP: u16 = 1;

enum Kind {
    /// Fires at this monotonic deadline (ns since boot).
    Clock(u64),
    FdRead(u32),
    FdWrite(u32),
}

struct Subscription {
    userdata: u64,
    kind: Kind,
}

struct Event {
    userdata: u64,
    error: Errno,
    kind: u8,
    nbytes: u64,
    hangup: bool,
}

impl Event {
    fn bytes(&self) -> [u8; EVENT_SIZE] {
        let mut e = [0u8; EVENT_SIZE];
        e[0..8].copy_from_slice(&self.userdata.to_le_bytes());
        e[8..10].copy_from_slice(&(self.error as u16).to_le_bytes());
        e[10] = self.kind;
        e[16..24].copy_from_slice(&self.nbytes.to_le_bytes());
        let flags = if self.hangup { EVENTRWFLAGS_HANGUP } else { 0 };
        e[24..26].copy_from_slice(&flags.to_le_bytes());
        e
    }
}

fn read_subscriptions(caller: &mut Caller<'_, WasiCtx>, ptr: u32, count: u32) -> Result<Vec<Subscription>, Errno> {
    let now = caller.data().clocks.monotonic_ns().ok_or(Errno::NoSys)?;
    let realtime_base = caller.data().clocks.realtime_at_boot_ns();
    let memory = memory(caller)?;
    let data = memory.data(&*caller);
    let len = (count as usize).checked_mul(SUBSCRIPTION_SIZE).ok_or(Errno::Overflow)?;
    let raw = data.get(ptr as usize..(ptr as usize).checked_add(len).ok_or(Errno::Fault)?).ok_or(Errno::Fault)?;
    let u64_at = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().expect("8 bytes"));
    let u32_at = |s: &[u8], at: usize| u32::from_le_bytes(s[at..at + 4].try_into().expect("4 bytes"));
    raw.chunks_exact(SUBSCRIPTION_SIZE)
        .map(|s| {
            let userdata = u64_at(s, 0);
            let kind = match s[8] {
                EVENTTYPE_CLOCK => {
                    let (id, timeout) = (u32_at(s, 16), u64_at(s, 24));
                    let flags = u16::from_le_bytes([s[40], s[41]]);
                    let deadline = if flags & SUBCLOCKFLAGS_ABSTIME == 0 {
                        now.saturating_add(timeout)
                    } else if id == 0 {
                        timeout.saturating_sub(realtime_base)
                    } else {
                        timeout
                    };
                    if id > 3 {
                        return Err(Errno::Inval);
                    }
                    Kind::Clock(deadline)
                }
                EVENTTYPE_FD_READ => Kind::FdRead(u32_at(s, 16)),
                EVENTTYPE_FD_WRITE => Kind::FdWrite(u32_at(s, 16)),
                _ => return Err(Errno::Inval),
            };
            Ok(Subscription { userdata, kind })
        })
        .collect()
}

/// What one sweep over the subscriptions found.
struct Sweep {
    /// The events ready now, sockets aside.
    events: Vec<Event>,
    /// The earliest clock deadline still ahead.
    next_deadline: Option<u64>,
    /// The socket subscriptions, for the device: `(index in the subscriptions, entry)`.
    sockets: Vec<(usize, PollEntry)>,
}

/// The events that are ready now (sockets aside), the earliest deadline, and the sockets.
fn sweep(ctx: &mut WasiCtx, subs: &[Subscription]) -> Result<Sweep, Errno> {
    let now = ctx.clocks.monotonic_ns().ok_or(Errno::NoSys)?;
    let mut events = Vec::new();
    let mut next_deadline: Option<u64> = None;
    let mut sockets = Vec::new();
    for (index, sub) in subs.iter().enumerate() {
        let event = |kind, error, nbytes, hangup| Event { userdata: sub.userdata, error, kind, nbytes, hangup };
        match sub.kind {
            Kind::Clock(deadline) if deadline <= now => events.push(event(EVENTTYPE_CLOCK, Errno::Success, 0, false)),
            Kind::Clock(deadline) => next_deadline = Some(next_deadline.map_or(deadline, |d| d.min(deadline))),
            Kind::FdRead(fd) => match ctx.fds.get(fd) {
                Ok(Fd::Stdin) => {
                    let console = console(ctx)?;
                    if console.stdin_ready().map_err(|_| Errno::Io)? {
                        let pending = console.stdin_pending() as u64;
                        events.push(event(EVENTTYPE_FD_READ, Errno::Success, pending, pending == 0));
                    }
                }
                Ok(Fd::Socket(socket)) => sockets.push((index, entry(socket, READABLE))),
                // A file is always readable: report what is left after its position.
                Ok(Fd::File(file)) if file.readable => {
                    let left = file.node.borrow().stat().size.saturating_sub(file.position);
                    events.push(event(EVENTTYPE_FD_READ, Errno::Success, left, false));
                }
                // A volume's file too; what is left is not asked (an exit each).
                Ok(Fd::HostFile(file)) if file.readable => {
                    events.push(event(EVENTTYPE_FD_READ, Errno::Success, 0, false))
                }
                _ => events.push(event(EVENTTYPE_FD_READ, Errno::BadF, 0, false)),
            },
            Kind::FdWrite(fd) => match ctx.fds.get(fd) {
                Ok(Fd::Stdout | Fd::Stderr) => events.push(event(EVENTTYPE_FD_WRITE, Errno::Success, 1 << 16, false)),
                Ok(Fd::File(file)) if file.writable => events.push(event(EVENTTYPE_FD_WRITE, Errno::Success, 0, false)),
                Ok(Fd::HostFile(file)) if file.writable => {
                    events.push(event(EVENTTYPE_FD_WRITE, Errno::Success, 0, false))
                }
                Ok(Fd::Socket(socket)) => sockets.push((index, entry(socket, WRITABLE))),
                _ => events.push(event(EVENTTYPE_FD_WRITE, Errno::BadF, 0, false)),
            },
        }
    }
    Ok(Sweep { events, next_deadline, sockets })
}

fn entry(socket: &Socket, events: u16) -> PollEntry {
    PollEntry { handle: socket.handle(), events, ready: 0 }
}

/// The events of the sockets the device found ready: as wasi-common, a readable socket
/// reports at least one byte (the device does not count them; the read tells), a writable one
/// none.
fn socket_events<'a>(subs: &'a [Subscription], sockets: &'a [(usize, PollEntry)]) -> impl Iterator<Item = Event> + 'a {
    sockets.iter().filter(|(_, entry)| entry.ready & entry.events != 0).map(|(index, entry)| {
        let read = entry.events == READABLE;
        Event {
            userdata: subs[*index].userdata,
            error: Errno::Success,
            kind: if read { EVENTTYPE_FD_READ } else { EVENTTYPE_FD_WRITE },
            nbytes: u64::from(read),
            hangup: false,
        }
    })
}

fn poll_oneoff(
    caller: &mut Caller<'_, WasiCtx>,
    input: u32,
    output: u32,
    count: u32,
    nevents: u32,
) -> Result<(), Errno> {
    if count == 0 {
        return Err(Errno::Inval);
    }
    let subs = read_subscriptions(caller, input, count)?;
    loop {
        let Sweep { mut events, next_deadline, mut sockets } = sweep(caller.data_mut(), &subs)?;
        if !sockets.is_empty() {
            // One device poll: a look if something else is ready, else the sleep itself.
            let wait = if events.is_empty() { SocketWait::Sleep(next_deadline) } else { SocketWait::Look };
            let mut entries: Vec<PollEntry> = sockets.iter().map(|(_, entry)| *entry).collect();
            poll_sockets(caller.data_mut(), &mut entries, wait)?;
            for ((_, entry), polled) in sockets.iter_mut().zip(entries) {
                *entry = polled;
            }
            events.extend(socket_events(&subs, &sockets));
            if events.is_empty() {
                continue;
            }
        }
        if !events.is_empty() {
            for (i, event) in events.iter().enumerate() {
                let at = output.checked_add((i * EVENT_SIZE) as u32).ok_or(Errno::Fault)?;
                write_bytes(caller, at, &event.bytes())?;
            }
            return write_u32(caller, nevents, events.len() as u32);
        }
        sleep_until(caller.data_mut(), next_deadline)?;
    }
}

/// Sleeps in the VMM until the monotonic `deadline` (ns; `None`: until woken) or until stdin
/// has input: one control-device WAIT. Also what WASI 0.2 pollables block with.
pub(crate) fn sleep_until(ctx: &mut WasiCtx, deadline: Option<u64>) -> Result<(), Errno> {
    // Output queued before the sleep is out before it, and the sleep is not cut short by it.
    ctx.flush_output()?;
    let micros = timeout_us(ctx, deadline)?.unwrap_or(u64::from(u32::MAX));
    control::wait(micros.min(u64::from(u32::MAX - 1)) as u32);
    Ok(())
}

/// What [`poll_sockets`] does when no socket is ready.
pub(crate) enum SocketWait {
    /// Returns at once.
    Look,
    /// Sleeps until one is, the monotonic deadline (ns; `None`: none) passes or stdin has
    /// input.
    Sleep(Option<u64>),
}

/// Asks the socket device about `entries` in one poll — one exit — and sets every entry's
/// `ready`; before a sleep, the workload's queued output goes out. Each socket is asked once:
/// a workload may wait on one many times, and the device takes at most `MAX_POLL` entries (a
/// longer list would end the workload with a device error). What preview 1's `poll_oneoff`
/// and WASI 0.2's `poll` block with when sockets are among what they wait for.
pub(crate) fn poll_sockets(ctx: &mut WasiCtx, entries: &mut [PollEntry], wait: SocketWait) -> Result<(), Errno> {
    let timeout = match wait {
        SocketWait::Look => Some(0),
        SocketWait::Sleep(deadline) => {
            ctx.flush_output()?;
            timeout_us(ctx, deadline)?
        }
    };
    let mut unique: Vec<PollEntry> = Vec::new();
    for entry in entries.iter() {
        match unique.iter_mut().find(|u| u.handle == entry.handle) {
            Some(u) => u.events |= entry.events,
            None => unique.push(*entry),
        }
    }
    net::poll(&mut unique, timeout).map_err(socket::from_linux)?;
    for entry in entries.iter_mut() {
        entry.ready = unique.iter().find(|u| u.handle == entry.handle).map_or(0, |u| u.ready & entry.events);
    }
    Ok(())
}

/// The time (µs, at least 1) until the monotonic `deadline`: `None` for none.
fn timeout_us(ctx: &WasiCtx, deadline: Option<u64>) -> Result<Option<u64>, Errno> {
    let now = ctx.clocks.monotonic_ns().ok_or(Errno::NoSys)?;
    Ok(deadline.map(|d| d.saturating_sub(now).div_ceil(1000).max(1)))
}

pub fn add_to_linker(linker: &mut WasiLinker<'_>) -> wasmtime::Result<()> {
    linker.func_wrap(
        MODULE,
        "poll_oneoff",
        |mut c: Caller<'_, WasiCtx>, input: u32, output: u32, n: u32, out: u32| {
            to_errno(poll_oneoff(&mut c, input, output, n, out))
        },
    )?;
    Ok(())
}

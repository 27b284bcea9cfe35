//! What the shim and a pod's VMM say to each other over the VMM's control channel (a socket
//! pair the shim made when it spawned the VMM; the VMM's end is its fd 3): one JSON object per
//! line each way. The shim asks; the VMM answers a start, and reports each workload's exit. A
//! start carries the workload's files as descriptors (`SCM_RIGHTS` on the line's first byte,
//! [`send_with_fds`], [`Receiver`]): the VMM, in its jail, opens nothing by name.
//! Every line is at most [`MAX_MESSAGE`] bytes, sent or received: neither side buffers without
//! bound what the other writes, and a longer line ends the channel.

use crate::plan::WorkloadPlan;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::io::{BufRead, Read, Write};
#[cfg(test)]
use std::os::fd::AsFd;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

/// The VMM's end of the channel in its process.
pub const CHANNEL_FD: i32 = 3;

/// The longest line either side sends or accepts, newline included. A start carries a
/// container's arguments, environment and paths: a few KiB, rarely more than a few hundred;
/// 1 MiB leaves room for large environments and still bounds what a broken or compromised peer
/// makes the other side hold.
pub const MAX_MESSAGE: usize = 1 << 20;

/// The most descriptors one message carries (a start: module, files, three streams and the
/// served volumes).
pub const MAX_FDS: usize = 8 + crate::plan::MAX_SERVED_VOLUMES;
/// The most descriptors received and not yet taken by a message.
const MAX_QUEUED_FDS: usize = 64;

/// Shim → VMM.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(clippy::large_enum_variant, reason = "made and sent once per workload: a box would save nothing")]
pub enum Request {
    /// Start container `id`'s workload: answered by [`Event::Started`] or [`Event::Failed`].
    /// Sent with [`WorkloadPlan::descriptors`] descriptors, in [`WorkloadPlan::descriptor_order`].
    Start { id: String, workload: WorkloadPlan },
    /// Stop container `id`'s workload; its exit status will say `signal`.
    Kill { id: String, signal: u32 },
}

/// VMM → shim.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// The pod's VM is up (sent once, first).
    Ready { boot_ms: f64 },
    /// The pod's VM could not be started (sent instead of `Ready`; the VMM then exits).
    NotReady { message: String },
    /// The workload runs.
    Started { id: String },
    /// The workload could not be started (a one-line reason).
    Failed { id: String, message: String },
    /// The workload ended with this exit status.
    Exited { id: String, status: u32 },
}

/// Writes `message` as one line. A message longer than [`MAX_MESSAGE`] is refused before
/// anything is written (`InvalidInput`): the channel stays usable.
pub fn send<T: Serialize>(out: &mut impl Write, message: &T) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(message).map_err(std::io::Error::other)?;
    line.push(b'\n');
    if line.len() > MAX_MESSAGE {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("the message is {} bytes, more than the channel's {MAX_MESSAGE}", line.len()),
        ));
    }
    out.write_all(&line)
}

/// Writes `message` as one line, with `fds` attached to its first byte.
pub fn send_with_fds<T: Serialize>(stream: &UnixStream, message: &T, fds: &[BorrowedFd<'_>]) -> std::io::Result<()> {
    let mut line = Vec::new();
    send(&mut line, message)?;
    if fds.len() > MAX_FDS {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "too many descriptors for one message"));
    }
    let raw: Vec<libc::c_int> = fds.iter().map(|fd| fd.as_raw_fd()).collect();
    let sent = sendmsg(stream, &line, &raw)?;
    // The rest of a long line, if the socket took only part of it (the descriptors went first).
    (&*stream).write_all(&line[sent..])
}

/// One `sendmsg` of `bytes` with `raw` descriptors attached; the bytes sent.
fn sendmsg(stream: &UnixStream, bytes: &[u8], raw: &[libc::c_int]) -> std::io::Result<usize> {
    let mut space = vec![0u8; cmsg_space(raw.len())];
    let mut iov = libc::iovec { iov_base: bytes.as_ptr().cast_mut().cast(), iov_len: bytes.len() };
    // SAFETY: a zeroed msghdr is valid; every pointer set below points at a live buffer of the
    // length given, for the duration of `sendmsg`, which only reads the data.
    let sent = unsafe {
        let mut header: libc::msghdr = std::mem::zeroed();
        header.msg_iov = &mut iov;
        header.msg_iovlen = 1;
        if !raw.is_empty() {
            header.msg_control = space.as_mut_ptr().cast();
            header.msg_controllen = space.len() as _;
            let cmsg = libc::CMSG_FIRSTHDR(&header);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of_val(raw) as u32) as _;
            std::ptr::copy_nonoverlapping(raw.as_ptr(), libc::CMSG_DATA(cmsg).cast(), raw.len());
        }
        libc::sendmsg(stream.as_raw_fd(), &header, libc::MSG_NOSIGNAL)
    };
    if sent < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(sent as usize)
}

fn cmsg_space(fds: usize) -> usize {
    // SAFETY: CMSG_SPACE only computes a size.
    unsafe { libc::CMSG_SPACE((fds * size_of::<libc::c_int>()) as u32) as usize }
}

/// The VMM's reading end of the channel: lines, and the descriptors that came with them, in
/// order. Bounded like [`receive`]: a line of at most [`MAX_MESSAGE`] bytes, at most
/// [`MAX_FDS`] descriptors a message and [`MAX_QUEUED_FDS`] waiting.
pub struct Receiver {
    stream: UnixStream,
    buffer: Vec<u8>,
    fds: VecDeque<OwnedFd>,
}

impl Receiver {
    pub fn new(stream: UnixStream) -> Self {
        Self { stream, buffer: Vec::new(), fds: VecDeque::new() }
    }

    /// The next message; `None` at end of stream.
    pub fn receive<T: for<'de> Deserialize<'de>>(&mut self) -> std::io::Result<Option<T>> {
        loop {
            if let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                return serde_json::from_slice(&line).map(Some).map_err(std::io::Error::other);
            }
            if self.buffer.len() >= MAX_MESSAGE {
                return Err(invalid(format!("a message longer than the channel's {MAX_MESSAGE} bytes")));
            }
            if self.read_some()? == 0 {
                return Ok(None);
            }
        }
    }

    /// The first `count` descriptors received and not taken yet, if that many came.
    pub fn take_fds(&mut self, count: usize) -> Option<Vec<OwnedFd>> {
        (self.fds.len() >= count).then(|| self.fds.drain(..count).collect())
    }

    /// One `recvmsg`: appends its bytes and queues its descriptors; the bytes read.
    fn read_some(&mut self) -> std::io::Result<usize> {
        let mut chunk = vec![0u8; (MAX_MESSAGE - self.buffer.len()).min(64 << 10)];
        let mut space = vec![0u8; cmsg_space(MAX_FDS)];
        let mut iov = libc::iovec { iov_base: chunk.as_mut_ptr().cast(), iov_len: chunk.len() };
        // SAFETY: as in `send_with_fds`: the header points at live buffers of the given lengths.
        let (read, header) = unsafe {
            let mut header: libc::msghdr = std::mem::zeroed();
            header.msg_iov = &mut iov;
            header.msg_iovlen = 1;
            header.msg_control = space.as_mut_ptr().cast();
            header.msg_controllen = space.len() as _;
            (libc::recvmsg(self.stream.as_raw_fd(), &mut header, libc::MSG_CMSG_CLOEXEC), header)
        };
        if read < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // Take ownership of every descriptor that came, even from a message refused below.
        // SAFETY: the kernel filled the control buffer; CMSG_* walk it within its length, and
        // each SCM_RIGHTS descriptor is new in this process and owned by nobody else.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&header);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                    let bytes = (*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                    let data = libc::CMSG_DATA(cmsg).cast::<libc::c_int>();
                    for i in 0..bytes / size_of::<libc::c_int>() {
                        self.fds.push_back(OwnedFd::from_raw_fd(data.add(i).read_unaligned()));
                    }
                }
                cmsg = libc::CMSG_NXTHDR(&header, cmsg);
            }
        }
        if header.msg_flags & libc::MSG_CTRUNC != 0 {
            return Err(invalid(format!("more than {MAX_FDS} descriptors with one message")));
        }
        if self.fds.len() > MAX_QUEUED_FDS {
            return Err(invalid(format!("more than {MAX_QUEUED_FDS} descriptors not taken by a message")));
        }
        self.buffer.extend_from_slice(&chunk[..read as usize]);
        Ok(read as usize)
    }
}

fn invalid(message: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message)
}

/// Reads the next message; `None` at end of stream. A line that does not parse or is longer
/// than [`MAX_MESSAGE`] (read no further than that) is an error: the peer is our own binary,
/// so it means a broken channel, which the caller closes.
pub fn receive<T: for<'de> Deserialize<'de>>(input: &mut impl BufRead) -> std::io::Result<Option<T>> {
    let mut line = Vec::new();
    let read = input.by_ref().take(MAX_MESSAGE as u64).read_until(b'\n', &mut line)?;
    if read == 0 {
        return Ok(None);
    }
    if line.len() == MAX_MESSAGE && line.last() != Some(&b'\n') {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("a message longer than the channel's {MAX_MESSAGE} bytes"),
        ));
    }
    serde_json::from_slice(&line).map(Some).map_err(std::io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_travel_one_per_line() {
        let workload = WorkloadPlan {
            artifact: "/cache/m.cwasm".into(),
            cpu_features: 5,
            args: vec!["/app.wasm".into(), "x y".into()],
            env: vec!["A=1".into()],
            memory_mib: 64,
            files: true,
            stdin: String::new(),
            stdout: "/fifo/out".into(),
            stderr: "/fifo/err".into(),
            resolv_conf: "nameserver 10.96.0.10\n".into(),
            hosts: String::new(),
            serve: None,
            listen: vec!["0.0.0.0:7000".parse().unwrap()],
            volumes: Vec::new(),
        };
        let requests = [Request::Start { id: "c1".into(), workload }, Request::Kill { id: "c1".into(), signal: 15 }];
        let mut wire = Vec::new();
        for r in &requests {
            send(&mut wire, r).unwrap();
        }
        assert_eq!(wire.iter().filter(|&&b| b == b'\n').count(), 2);
        let mut input = std::io::Cursor::new(wire);
        for r in &requests {
            assert_eq!(receive::<Request>(&mut input).unwrap().as_ref(), Some(r));
        }
        assert_eq!(receive::<Request>(&mut input).unwrap(), None);
        assert!(receive::<Event>(&mut std::io::Cursor::new(b"{\"nonsense\":1}\n".to_vec())).is_err());
    }

    #[test]
    fn messages_are_bounded_both_ways() {
        let fits = |len: usize| Event::Failed { id: "c".into(), message: "x".repeat(len) };
        // What surrounds the message: the JSON around it and the newline.
        let mut wire = Vec::new();
        send(&mut wire, &fits(0)).unwrap();
        let overhead = wire.len();
        wire.clear();
        send(&mut wire, &fits(MAX_MESSAGE - overhead)).unwrap();
        assert_eq!(wire.len(), MAX_MESSAGE, "the largest message");
        assert_eq!(receive::<Event>(&mut std::io::Cursor::new(&wire)).unwrap(), Some(fits(MAX_MESSAGE - overhead)));

        let err = send(&mut Vec::new(), &fits(MAX_MESSAGE)).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "refused before writing: {err}");

        // A peer that never ends its line: refused after MAX_MESSAGE bytes, not buffered on.
        let endless = std::io::repeat(b'x');
        let mut input = std::io::BufReader::new(endless);
        let err = receive::<Event>(&mut input).unwrap_err();
        assert_eq!(err.to_string(), "a message longer than the channel's 1048576 bytes");
    }

    #[test]
    fn descriptors_travel_with_their_message() {
        let (shim, vmm) = UnixStream::pair().unwrap();
        let mut receiver = Receiver::new(vmm);
        let files: Vec<std::fs::File> = (0..3).map(|_| tempfile()).collect();
        let borrowed: Vec<BorrowedFd<'_>> = files.iter().map(|f| f.as_fd()).collect();
        let first = Request::Kill { id: "a".into(), signal: 9 };
        let second = Request::Kill { id: "b".into(), signal: 15 };
        send_with_fds(&shim, &first, &borrowed[..2]).unwrap();
        send_with_fds(&shim, &second, &borrowed[2..]).unwrap();
        assert_eq!(receiver.receive::<Request>().unwrap(), Some(first));
        let got = receiver.take_fds(2).unwrap();
        assert_eq!(receiver.receive::<Request>().unwrap(), Some(second));
        let last = receiver.take_fds(1).unwrap();
        assert!(receiver.take_fds(1).is_none(), "no more came");
        // The same open files: what one writes, the other's descriptor sees.
        use std::io::Seek;
        for (ours, theirs) in files.iter().zip(got.iter().chain(&last)) {
            (&*ours).write_all(b"xyz").unwrap();
            let mut theirs = std::fs::File::from(theirs.try_clone().unwrap());
            assert_eq!(theirs.stream_position().unwrap(), 3);
        }
        drop(shim);
        assert_eq!(receiver.receive::<Request>().unwrap(), None);
    }

    #[test]
    fn too_many_descriptors_are_refused() {
        let (shim, vmm) = UnixStream::pair().unwrap();
        let files: Vec<std::fs::File> = (0..MAX_FDS + 1).map(|_| tempfile()).collect();
        let borrowed: Vec<BorrowedFd<'_>> = files.iter().map(|f| f.as_fd()).collect();
        let message = Request::Kill { id: "a".into(), signal: 9 };
        assert!(send_with_fds(&shim, &message, &borrowed).is_err(), "the sender refuses");
        // A sender that does not: the descriptors past the receiver's room are cut off, and the
        // message refused.
        let raw: Vec<libc::c_int> = files.iter().map(|f| f.as_raw_fd()).collect();
        sendmsg(&shim, b"{\"kill\":{\"id\":\"a\",\"signal\":9}}\n", &raw).unwrap();
        let err = Receiver::new(vmm).receive::<Request>().unwrap_err();
        assert_eq!(err.to_string(), format!("more than {MAX_FDS} descriptors with one message"));
    }

    fn tempfile() -> std::fs::File {
        let dir = std::env::temp_dir().join(format!("wasmcell-protocol-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!(
            "{}",
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
        ));
        let file = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        file
    }
}

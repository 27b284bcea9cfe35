//! Where the workload's stdout and stderr go, written without ever blocking the vCPU thread.
//!
//! A reader that stops reading (a full pipe, a FIFO nobody drains, a terminal on ^S) must slow
//! the guest, never the VMM: a vCPU thread stuck in `write` could not be stopped. So every
//! stream that can block is written through a file description of our own with `O_NONBLOCK`
//! (reopened through `/proc/self/fd`, so the flag never reaches the stream the user or the
//! shell shares with us, whose other writers — our own error messages among them — expect it
//! blocking), or with `MSG_DONTWAIT` for a socket. A write that would block takes nothing; the
//! device keeps its place and the guest waits in the VMM for the stream to drain
//! (`Console::output_blocked_fds`). Regular files and block devices never block and are written
//! as they are.

use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileTypeExt;
use std::time::{Duration, Instant};

/// What a write did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    /// It took this many bytes (at least one).
    Took(usize),
    /// The stream is full: nothing was taken, try again when it is writable.
    WouldBlock,
}

/// One output stream of a workload.
pub struct Output {
    stream: Stream,
    /// A FIFO whose reader may attach late (containerd's): at the workload's end, wait (bounded)
    /// for what is in it to be read, since it is gone once nobody holds the FIFO.
    linger: bool,
}

/// How long a finished workload's output waits for a late reader of its FIFO.
pub const LINGER: Duration = Duration::from_secs(2);

enum Stream {
    /// A file that never blocks (regular file, block device).
    File(std::fs::File),
    /// A private non-blocking description of a pipe, FIFO or character device, and the fd we
    /// were given, kept open as it was (a FIFO opened read-write keeps its read end).
    NonBlocking { own: std::fs::File, _given: std::fs::File },
    /// A socket, written with `MSG_DONTWAIT`.
    Socket(OwnedFd),
    /// The same description as the caller's, made non-blocking until this output is dropped
    /// (when `/proc` cannot give us one of our own).
    Borrowed { fd: OwnedFd, flags: libc::c_int },
    /// An in-process writer that never blocks (a test's capture, a sink).
    Writer(Box<dyn Write + Send>),
    /// Nobody will ever read (a FIFO or pipe without a reader): bytes are dropped.
    Closed,
}

impl Output {
    /// Bytes go nowhere.
    pub fn null() -> Self {
        Self { stream: Stream::Closed, linger: false }
    }

    /// An in-process writer. It must never block: it is called on the vCPU thread.
    pub fn writer(writer: Box<dyn Write + Send>) -> Self {
        Self { stream: Stream::Writer(writer), linger: false }
    }

    /// A FIFO (containerd's stdio), open on `fd` read-write: as [`Output::from_fd`], and at a
    /// workload's natural end [`Output::finish`] waits (at most [`LINGER`]) until its reader has
    /// taken what was written. A FIFO's buffer lives only while someone holds it: without the
    /// wait, a workload that ends before its reader attaches (`ctr run` opens its end
    /// asynchronously) would lose its output.
    pub fn fifo(fd: OwnedFd) -> Self {
        let mut output = Self::from_fd(fd);
        output.linger = true;
        output
    }

    /// The stream `fd` is open on (a file, pipe, FIFO, terminal or socket).
    pub fn from_fd(fd: OwnedFd) -> Self {
        let file = std::fs::File::from(fd);
        let Ok(kind) = file.metadata().map(|m| m.file_type()) else {
            return Self { stream: Stream::File(file), linger: false };
        };
        let stream = if kind.is_file() || kind.is_block_device() {
            Stream::File(file)
        } else if kind.is_socket() {
            Stream::Socket(file.into())
        } else {
            match reopen_nonblocking(file.as_raw_fd()) {
                Ok(own) => Stream::NonBlocking { own, _given: file },
                // A FIFO or pipe with no reader: writing would only ever fail.
                Err(e) if e.raw_os_error() == Some(libc::ENXIO) => Stream::Closed,
                Err(_) => borrow_nonblocking(file.into()),
            }
        };
        Self { stream, linger: false }
    }

    /// Writes some of `bytes` without blocking. A stream that fails (its reader went away)
    /// takes everything from then on: the guest is not stopped because its user stopped
    /// listening, as for a program whose output is closed.
    pub fn write(&mut self, bytes: &[u8]) -> Written {
        if bytes.is_empty() {
            return Written::Took(0);
        }
        let result = loop {
            let result = match &mut self.stream {
                Stream::File(file) | Stream::NonBlocking { own: file, .. } => file.write(bytes),
                Stream::Borrowed { fd, .. } => write_fd(fd.as_raw_fd(), bytes),
                Stream::Socket(fd) => send_fd(fd.as_raw_fd(), bytes),
                Stream::Writer(writer) => writer.write(bytes),
                Stream::Closed => Ok(bytes.len()),
            };
            match result {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        match result {
            Ok(0) => Written::WouldBlock,
            Ok(n) => Written::Took(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Written::WouldBlock,
            Err(_) => {
                self.stream = Stream::Closed;
                Written::Took(bytes.len())
            }
        }
    }

    /// The fd to poll for `POLLOUT` while a write would block; `None` if it never blocks.
    pub fn poll_fd(&self) -> Option<RawFd> {
        match &self.stream {
            Stream::NonBlocking { own, .. } => Some(own.as_raw_fd()),
            Stream::Socket(fd) | Stream::Borrowed { fd, .. } => Some(fd.as_raw_fd()),
            Stream::File(_) | Stream::Writer(_) | Stream::Closed => None,
        }
    }

    /// Pushes an in-process writer's buffer out (files and streams keep nothing).
    pub fn flush(&mut self) {
        if let Stream::Writer(writer) = &mut self.stream {
            let _ = writer.flush();
        }
    }

    /// The workload ended by itself: for a FIFO, waits at most [`LINGER`] for its reader to take
    /// what is still in it. Never called for a stopped workload: a stop is immediate.
    pub fn finish(&mut self) {
        self.finish_by(Instant::now() + LINGER);
    }

    fn finish_by(&mut self, deadline: Instant) {
        let Some(fd) = self.poll_fd().filter(|_| self.linger) else { return };
        while unread(fd) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        if let Stream::Borrowed { fd, flags } = &self.stream {
            // SAFETY: F_SETFL on an fd we own, back to the flags it had when we got it.
            unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, *flags) };
        }
    }
}

/// A new open file description of what `fd` is open on, write-only and non-blocking.
fn reopen_nonblocking(fd: RawFd) -> io::Result<std::fs::File> {
    let path = std::ffi::CString::new(format!("/proc/self/fd/{fd}")).expect("no NUL in a number");
    let flags = libc::O_WRONLY | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY;
    // SAFETY: `path` is a valid NUL-terminated string; `open` returns a new fd we then own.
    let own = unsafe { libc::open(path.as_ptr(), flags) };
    if own < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `own` was just returned by `open` and nothing else holds it.
    Ok(unsafe { std::fs::File::from_raw_fd(own) })
}

/// `fd` itself made non-blocking (its flags restored on drop).
fn borrow_nonblocking(fd: OwnedFd) -> Stream {
    // SAFETY: F_GETFL/F_SETFL on an fd we own.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Stream::Closed;
    }
    Stream::Borrowed { fd, flags }
}

/// Bytes in the pipe behind `fd` that no reader has taken yet (0 if unknown).
fn unread(fd: RawFd) -> usize {
    let mut count: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer, which is valid for the call.
    let rc = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut count) };
    if rc < 0 {
        0
    } else {
        count.max(0) as usize
    }
}

fn write_fd(fd: RawFd, bytes: &[u8]) -> io::Result<usize> {
    // SAFETY: `bytes` is a valid buffer of its length; `fd` is open for the call.
    let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

fn send_fd(fd: RawFd, bytes: &[u8]) -> io::Result<usize> {
    // SAFETY: as in `write_fd`; `send` with these flags never blocks nor raises SIGPIPE.
    let n = unsafe { libc::send(fd, bytes.as_ptr().cast(), bytes.len(), libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn pipe() -> (std::fs::File, OwnedFd) {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two fds `pipe2` writes.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: both fds were just created and are owned here.
        unsafe { (std::fs::File::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
    }

    fn flags(fd: RawFd) -> libc::c_int {
        // SAFETY: F_GETFL on an open fd.
        unsafe { libc::fcntl(fd, libc::F_GETFL) }
    }

    #[test]
    fn a_full_pipe_takes_nothing_instead_of_blocking_and_drains_later() {
        let (mut reader, writer) = pipe();
        let shared = writer.as_raw_fd();
        let mut output = Output::from_fd(writer.try_clone().unwrap());
        let chunk = [7u8; 4096];
        let mut total = 0;
        while let Written::Took(n) = output.write(&chunk) {
            total += n;
            assert!(total < 16 << 20, "a pipe holds far less than this: the write never blocked");
        }
        assert!(total >= 4096, "the pipe took something first");
        assert_eq!(flags(shared) & libc::O_NONBLOCK, 0, "the caller's description stays blocking");
        let mut buf = vec![0u8; total];
        reader.read_exact(&mut buf).unwrap();
        assert_eq!(output.write(b"more"), Written::Took(4));
        assert!(output.poll_fd().is_some());
    }

    #[test]
    fn a_pipe_without_a_reader_swallows_output() {
        let (reader, writer) = pipe();
        let mut output = Output::from_fd(writer);
        drop(reader);
        assert_eq!(output.write(b"nobody listens"), Written::Took(14));
        assert_eq!(output.write(b"still nobody"), Written::Took(12));
    }

    #[test]
    fn files_and_writers_never_block() {
        let file = tempfile_in_tmp();
        let mut output = Output::from_fd(file.try_clone().unwrap().into());
        assert_eq!(output.write(b"abc"), Written::Took(3));
        assert!(output.poll_fd().is_none());
        let mut sink = Output::writer(Box::new(std::io::sink()));
        assert_eq!(sink.write(b"x"), Written::Took(1));
        assert_eq!(Output::null().write(b"y"), Written::Took(1));
    }

    #[test]
    fn a_finished_fifo_waits_for_its_reader_a_bounded_time() {
        let (mut reader, writer) = pipe();
        let mut output = Output::fifo(writer);
        assert_eq!(output.write(b"late reader"), Written::Took(11));
        // The reader takes the bytes meanwhile: the wait ends then, long before its bound.
        let taker = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            let mut buf = [0u8; 11];
            reader.read_exact(&mut buf).unwrap();
            buf
        });
        let started = Instant::now();
        output.finish_by(started + Duration::from_secs(10));
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(&taker.join().unwrap(), b"late reader");
        // Nobody reads: the wait gives up at its bound.
        let (_reader, writer) = pipe();
        let mut output = Output::fifo(writer);
        output.write(b"nobody");
        let started = Instant::now();
        output.finish_by(started + Duration::from_millis(100));
        assert!(started.elapsed() >= Duration::from_millis(100));
        // An ordinary stream never waits.
        let (_reader, writer) = pipe();
        let mut output = Output::from_fd(writer);
        output.write(b"x");
        let started = Instant::now();
        output.finish_by(started + Duration::from_secs(10));
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    fn tempfile_in_tmp() -> std::fs::File {
        let path = std::env::temp_dir().join(format!("wasmcell-output-{}", std::process::id()));
        let file = std::fs::OpenOptions::new().create(true).truncate(true).read(true).write(true).open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        file
    }
}

//! Where the workload's stdin comes from: nothing (immediate end of file) or a host fd, read
//! only when `poll` says it will not block.

use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// A stdin source.
pub enum Input {
    /// End of file right away.
    Empty,
    /// A host file descriptor (a pipe, a terminal, a file, a FIFO).
    Fd(std::fs::File),
}

impl Input {
    pub fn from_fd(fd: OwnedFd) -> Self {
        Input::Fd(fd.into())
    }

    pub fn raw_fd(&self) -> Option<RawFd> {
        match self {
            Input::Empty => None,
            Input::Fd(f) => Some(f.as_raw_fd()),
        }
    }

    /// Whether a read would return at once (data, end of file or an error).
    pub fn ready(&self) -> bool {
        match self {
            Input::Empty => true,
            Input::Fd(f) => {
                let mut pfd = libc::pollfd { fd: f.as_raw_fd(), events: libc::POLLIN, revents: 0 };
                // SAFETY: one valid pollfd, zero timeout.
                unsafe { libc::poll(&mut pfd, 1, 0) > 0 }
            }
        }
    }

    /// Reads what is there; 0 means end of file (errors count as end of file too).
    pub fn read(&mut self, buf: &mut [u8]) -> usize {
        match self {
            Input::Empty => 0,
            Input::Fd(f) => loop {
                match f.read(buf) {
                    Ok(n) => return n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => return 0,
                }
            },
        }
    }
}

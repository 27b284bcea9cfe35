//! A directory walked by descriptor (`openat`, `fstatat`, `readlinkat`): every name is looked up
//! relative to a directory already open and never through a symlink, so a tree that changes
//! while it is packed — a directory swapped for a symlink out of it — cannot redirect a read.
//! Files are opened `O_NONBLOCK`, so a FIFO swapped in after its `stat` cannot block the open.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// An open directory.
pub struct Dir(OwnedFd);

/// What `fstatat` says of a name, without following it.
#[derive(Clone, Copy, Debug)]
pub struct Stat {
    pub kind: StatKind,
    pub dev: u64,
    pub ino: u64,
    pub nlink: u64,
    pub size: u64,
    pub mtime_ns: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatKind {
    File,
    Dir,
    Symlink,
    /// FIFOs, sockets, devices: never opened.
    Other,
}

impl Stat {
    fn from_raw(raw: &libc::stat) -> Self {
        let kind = match raw.st_mode & libc::S_IFMT {
            libc::S_IFREG => StatKind::File,
            libc::S_IFDIR => StatKind::Dir,
            libc::S_IFLNK => StatKind::Symlink,
            _ => StatKind::Other,
        };
        let mtime_ns = u64::try_from(raw.st_mtime)
            .ok()
            .and_then(|s| s.checked_mul(1_000_000_000))
            .and_then(|ns| ns.checked_add(raw.st_mtime_nsec as u64))
            .unwrap_or(0);
        Self { kind, dev: raw.st_dev, ino: raw.st_ino, nlink: nlink(raw), size: raw.st_size.max(0) as u64, mtime_ns }
    }

    /// Whether `other` is the same file.
    pub fn same_file(&self, other: &Stat) -> bool {
        (self.dev, self.ino) == (other.dev, other.ino)
    }
}

fn cvt(result: libc::c_int) -> io::Result<libc::c_int> {
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(result)
    }
}

impl Dir {
    /// Opens the directory at `path`, following symlinks: the caller chose it.
    pub fn open(path: &Path) -> io::Result<Self> {
        let path = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
        // SAFETY: `path` is NUL-terminated; the returned descriptor is new and ours.
        let fd = cvt(unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) })?;
        // SAFETY: `fd` was just returned by the kernel and nothing else owns it.
        Ok(Self(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Opens subdirectory `name`; fails (`ELOOP`, `ENOTDIR`) if it is no longer a directory.
    pub fn open_dir(&self, name: &CStr) -> io::Result<Self> {
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: `name` is NUL-terminated and `self.0` an open directory.
        let fd = cvt(unsafe { libc::openat(self.0.as_raw_fd(), name.as_ptr(), flags) })?;
        // SAFETY: as in `open`.
        Ok(Self(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Opens file `name` for reading, without following a symlink or blocking on a FIFO.
    pub fn open_file(&self, name: &CStr) -> io::Result<File> {
        let flags = libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC;
        // SAFETY: as in `open_dir`.
        let fd = cvt(unsafe { libc::openat(self.0.as_raw_fd(), name.as_ptr(), flags) })?;
        // SAFETY: as in `open`.
        Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// `name`'s metadata, not following a symlink.
    pub fn stat(&self, name: &CStr) -> io::Result<Stat> {
        // SAFETY: `stat` is plain data; zero is a valid value for every field.
        let mut raw: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: `name` is NUL-terminated, `raw` a valid out-parameter.
        cvt(unsafe { libc::fstatat(self.0.as_raw_fd(), name.as_ptr(), &mut raw, libc::AT_SYMLINK_NOFOLLOW) })?;
        Ok(Stat::from_raw(&raw))
    }

    /// The directory's own metadata.
    pub fn stat_self(&self) -> io::Result<Stat> {
        stat_fd(&self.0)
    }

    /// Symlink `name`'s target; `Ok(None)` if it is longer than `max` bytes.
    pub fn read_link(&self, name: &CStr, max: usize) -> io::Result<Option<Vec<u8>>> {
        let mut target = vec![0u8; max + 1];
        // SAFETY: `target` has room for `target.len()` bytes; `name` is NUL-terminated.
        let len =
            unsafe { libc::readlinkat(self.0.as_raw_fd(), name.as_ptr(), target.as_mut_ptr().cast(), target.len()) };
        if len < 0 {
            return Err(io::Error::last_os_error());
        }
        let len = len as usize;
        if len > max {
            return Ok(None);
        }
        target.truncate(len);
        Ok(Some(target))
    }

    /// Makes subdirectory `name` (the tests build trees too deep for paths).
    #[cfg(test)]
    pub fn make_dir(&self, name: &CStr) -> io::Result<()> {
        // SAFETY: `name` is NUL-terminated and `self.0` an open directory.
        cvt(unsafe { libc::mkdirat(self.0.as_raw_fd(), name.as_ptr(), 0o755) }).map(drop)
    }

    /// The names in the directory (not `.` and `..`), in the order the filesystem gives them.
    pub fn names(&self) -> io::Result<Names> {
        // `fdopendir` takes the descriptor over: give it a duplicate.
        let dup = self.0.try_clone()?;
        // SAFETY: `dup` is an open directory descriptor; on success the stream owns it.
        let stream = unsafe { libc::fdopendir(dup.as_raw_fd()) };
        if stream.is_null() {
            return Err(io::Error::last_os_error());
        }
        std::mem::forget(dup);
        Ok(Names(stream))
    }
}

/// A file's metadata through its descriptor.
pub fn stat_fd(fd: &impl AsRawFd) -> io::Result<Stat> {
    // SAFETY: as in `Dir::stat`.
    let mut raw: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is open, `raw` a valid out-parameter.
    cvt(unsafe { libc::fstat(fd.as_raw_fd(), &mut raw) })?;
    Ok(Stat::from_raw(&raw))
}

/// A directory stream ([`Dir::names`]).
pub struct Names(*mut libc::DIR);

impl Iterator for Names {
    type Item = io::Result<CString>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            // `readdir` says end of stream and error alike with NULL: errno tells them apart.
            // SAFETY: `__errno_location` returns this thread's errno.
            unsafe { *libc::__errno_location() = 0 };
            // SAFETY: `self.0` is an open stream, used by this thread only.
            let entry = unsafe { libc::readdir(self.0) };
            if entry.is_null() {
                let error = io::Error::last_os_error();
                return (error.raw_os_error() != Some(0)).then_some(Err(error));
            }
            // SAFETY: `d_name` is NUL-terminated and valid until the next `readdir` call; it
            // is copied before that.
            let name = unsafe { CStr::from_ptr((*entry).d_name.as_ptr()) };
            if name.to_bytes() != b"." && name.to_bytes() != b".." {
                return Some(Ok(name.to_owned()));
            }
        }
    }
}

impl Drop for Names {
    fn drop(&mut self) {
        // SAFETY: `self.0` is an open stream, closed once here (with its descriptor).
        unsafe { libc::closedir(self.0) };
    }
}

/// A link count as `u64` (`nlink_t` is `u64` on x86-64 and `u32` on aarch64).
#[allow(clippy::useless_conversion)]
fn nlink(stat: &libc::stat) -> u64 {
    u64::from(stat.st_nlink)
}

//! The file device of one workload (`wasmcell_abi::file`): the host directories and files it
//! was given as volumes, read and written through. A FILE write to the control device reaches
//! [`FileDevice::call`] on the vCPU's thread; the call is carried out at once and its reply
//! written over its arguments.
//!
//! What a hostile workload controls and what it costs the host at most: [`MAX_HANDLES`]
//! descriptors, a path of [`MAX_PATH`] bytes copied per name, and per exit one transfer of at
//! most [`MAX_TRANSFER`] bytes straight between its own stack or heap and the file — the VMM
//! buffers nothing else. What it reaches: the files beneath its volumes' roots (`host`
//! resolves every path with `RESOLVE_BENEATH`), nothing else — the VMM holds only the volumes'
//! descriptors, opened before its jail closed or handed over the pod's channel, and its mount
//! namespace has no other host path. Only directories and regular files are opened: a FIFO,
//! socket or device in a volume answers `ENXIO` (opened non-blocking and closed at once, with the
//! jail's unprivileged identity). Disk space is the volume's own business: an emptyDir's limit
//! is the kubelet's to enforce, as for runc containers.

mod host;
#[cfg(test)]
mod tests;

use super::slots::Slots;
use crate::memory::GuestMemory;
use host::{Errno, Last};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};
use wasmcell_abi::file::{
    kind, open, times, Dirent, FileCall, FileReply, Op, Stat, Volume, APPEND, MAX_HANDLES, MAX_PATH, MAX_TRANSFER,
};

/// A host directory or file a workload sees at `guest`, write-through.
#[derive(Debug)]
pub struct HostVolume {
    /// The absolute path the guest sees it at.
    pub guest: String,
    pub kind: Volume,
    /// The directory (read) or the file (read and write).
    root: OwnedFd,
}

impl AsFd for HostVolume {
    /// The volume's root (to send it to a pod's VMM).
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.root.as_fd()
    }
}

/// A volume that cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("Cannot open volume {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("Volume {path} is not a directory")]
    NotDirectory { path: PathBuf },
    #[error("Volume {path} is not a regular file or a directory")]
    NotFile { path: PathBuf },
    #[error("Volume destination {guest:?} is not an absolute path")]
    Destination { guest: String },
}

impl HostVolume {
    /// Opens `host` to be seen at `guest`: a directory for [`Volume::Dir`] and
    /// [`Volume::ReadOnlyDir`], a regular file for [`Volume::File`] and [`Volume::ReadOnlyFile`].
    ///
    /// What the path names is pinned first without being opened (`O_PATH`) and checked to be
    /// what `kind` says, so a device or FIFO source is never opened. Then, where the caller may
    /// (`CAP_SYS_ADMIN`: the shim, a VMM before its jail), the volume is reached through a
    /// private, detached copy of its mount marked `nodev`, `nosuid`, `noexec`: a device node
    /// someone puts in the volume later (a pod's other container) cannot be opened through it.
    /// Without the capability (`wasmcell run` as a user) the user's own mount is used.
    pub fn open(host: &Path, guest: &str, kind: Volume) -> Result<Self, VolumeError> {
        let open_error = |errno: i32| VolumeError::Open {
            path: host.to_path_buf(),
            source: std::io::Error::from_raw_os_error(errno),
        };
        let path = std::ffi::CString::new(host.as_os_str().as_encoded_bytes()).map_err(|_| open_error(libc::EINVAL))?;
        // SAFETY: open on a NUL-terminated path; a new descriptor or -1.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(VolumeError::Open { path: host.to_path_buf(), source: std::io::Error::last_os_error() });
        }
        // SAFETY: the descriptor open just returned, owned by nothing else.
        let pinned = unsafe { OwnedFd::from_raw_fd(fd) };
        let stat = host::fstat(pinned.as_raw_fd()).map_err(open_error)?;
        check_kind(kind, stat.kind, host)?;
        let through = host::nodev_clone(pinned.as_raw_fd()).unwrap_or(pinned);
        let flags = match kind {
            Volume::Dir | Volume::ReadOnlyDir => libc::O_RDONLY | libc::O_DIRECTORY,
            Volume::File => libc::O_RDWR | libc::O_NONBLOCK,
            Volume::ReadOnlyFile => libc::O_RDONLY | libc::O_NONBLOCK,
        };
        let root = host::reopen(through.as_raw_fd(), flags).map_err(open_error)?;
        let opened = host::fstat(root.as_raw_fd()).map_err(open_error)?;
        if (opened.dev, opened.ino) != (stat.dev, stat.ino) {
            return Err(open_error(libc::EAGAIN));
        }
        Self::from_fd(root, host, guest, kind)
    }

    /// Opens `host`, a directory or a regular file, whichever it is.
    pub fn open_either(host: &Path, guest: &str, read_only: bool) -> Result<Self, VolumeError> {
        let meta = std::fs::metadata(host).map_err(|source| VolumeError::Open { path: host.to_path_buf(), source })?;
        if !meta.is_dir() && !meta.is_file() {
            // Not even opened: a FIFO would wait for a peer, a device could act on its open.
            return Err(VolumeError::NotFile { path: host.to_path_buf() });
        }
        let kind = match (meta.is_dir(), read_only) {
            (true, false) => Volume::Dir,
            (true, true) => Volume::ReadOnlyDir,
            (false, false) => Volume::File,
            (false, true) => Volume::ReadOnlyFile,
        };
        Self::open(host, guest, kind)
    }

    /// A volume from a descriptor opened elsewhere (a pod's shim), checked as [`Self::open`]
    /// checks; `host` names it in errors.
    pub fn from_fd(root: OwnedFd, host: &Path, guest: &str, kind: Volume) -> Result<Self, VolumeError> {
        if !guest.starts_with('/') {
            return Err(VolumeError::Destination { guest: guest.to_string() });
        }
        let stat = host::fstat(root.as_raw_fd()).map_err(|e| VolumeError::Open {
            path: host.to_path_buf(),
            source: std::io::Error::from_raw_os_error(e),
        })?;
        check_kind(kind, stat.kind, host)?;
        Ok(Self { guest: guest.to_string(), kind, root })
    }
}

/// Whether a file of `found` kind can be a volume of `kind`.
fn check_kind(kind: Volume, found: u8, host: &Path) -> Result<(), VolumeError> {
    match (kind, found) {
        (Volume::File | Volume::ReadOnlyFile, kind::REGULAR_FILE)
        | (Volume::Dir | Volume::ReadOnlyDir, kind::DIRECTORY) => Ok(()),
        (Volume::File | Volume::ReadOnlyFile, _) => Err(VolumeError::NotFile { path: host.to_path_buf() }),
        _ => Err(VolumeError::NotDirectory { path: host.to_path_buf() }),
    }
}

/// A driver broke the device's contract in a way no correct driver does.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    #[error("a buffer at {addr:#x} ({len} bytes) lies outside the workload's stack and heap")]
    BufferOutside { addr: u64, len: u64 },
}

/// One open host file or directory.
struct Handle {
    fd: OwnedFd,
    /// The volume it was opened in (renames and links stay in one).
    volume: usize,
    read_only: bool,
    writable: bool,
}

/// The volumes and open files of one workload.
pub struct FileDevice {
    /// The workload's stack and heap: every path and buffer must lie there.
    memory: GuestMemory,
    /// The volumes first, in order.
    handles: Slots<Handle>,
    volumes: usize,
}

type Reply = Result<FileReply, FileError>;

fn value(result: Result<u64, Errno>) -> FileReply {
    match result {
        Ok(value) => FileReply { result: value as i64, stat: Stat::default() },
        Err(e) => FileReply::error(e),
    }
}

fn with_stat(result: Result<(u64, Stat), Errno>) -> FileReply {
    match result {
        Ok((value, stat)) => FileReply { result: value as i64, stat },
        Err(e) => FileReply::error(e),
    }
}

impl FileDevice {
    pub fn new(memory: GuestMemory, volumes: Vec<HostVolume>) -> Self {
        let count = volumes.len();
        let handles = volumes
            .into_iter()
            .enumerate()
            .map(|(index, v)| {
                let read_only = matches!(v.kind, Volume::ReadOnlyDir | Volume::ReadOnlyFile);
                Handle { fd: v.root, volume: index, read_only, writable: v.kind == Volume::File }
            })
            .collect();
        Self { memory, handles, volumes: count }
    }

    /// Handles open now, volumes included.
    pub fn open_handles(&self) -> usize {
        self.handles.count()
    }

    /// Carries out `op`; `Err` only for a driver that broke the contract (the workload then
    /// ends).
    pub fn call(&mut self, op: Op, call: &FileCall) -> Reply {
        let [a, b, c, d, e, f, g, close_first] = call.args;
        if close_first != 0 {
            // A handle the guest dropped; an unknown one changes nothing.
            let _ = self.close(close_first - 1);
        }
        Ok(match op {
            Op::Open => {
                let path = self.path(b, c)?;
                with_stat(path.and_then(|path| self.open(a, &path, d)))
            }
            Op::Close => value(self.close(a).map(|()| 0)),
            Op::Read => {
                let (ptr, len) = self.buffer(b, c)?;
                // SAFETY: `ptr..ptr+len` is window memory this device keeps mapped (it holds the
                // region through the console slot); the guest's vCPU is stopped in this exit.
                value(self.fd(a).and_then(|fd| unsafe { host::pread(fd, ptr, len, d) }).map(|n| n as u64))
            }
            Op::Write => {
                let (ptr, len) = self.buffer(b, c)?;
                let offset = (d != APPEND).then_some(d);
                let written = self.writable_fd(a).and_then(|fd| {
                    // SAFETY: as for Read; the kernel only reads the buffer.
                    unsafe { host::pwrite(fd, ptr, len, offset) }
                });
                value(written.map(|n| n as u64))
            }
            Op::Stat => {
                let path = self.path(b, c)?;
                with_stat(path.and_then(|path| self.stat(a, &path, d != 0)).map(|stat| (0, stat)))
            }
            Op::SetSize => value(self.writable_fd(a).and_then(|fd| host::ftruncate(fd, b)).map(|()| 0)),
            Op::SetTimes => {
                let path = self.path(b, c)?;
                value(path.and_then(|path| self.set_times(a, &path, d != 0, [e, f], g)).map(|()| 0))
            }
            Op::Sync => value(self.fd(a).and_then(host::fsync).map(|()| 0)),
            Op::ReadDir => {
                let (ptr, len) = self.buffer(b, c)?;
                value(self.read_dir(a, ptr, len, d))
            }
            Op::CreateDir => self.change(a, b, c, host::mkdir)?,
            Op::Unlink => self.change(a, b, c, |at| {
                if at.trailing_slash {
                    // "file/" names no file; "dir/" is a directory either way.
                    return Err(if at.stat().is_ok_and(is_dir) { libc::EISDIR } else { libc::ENOTDIR });
                }
                host::unlink(at, false)
            })?,
            Op::RemoveDir => self.change(a, b, c, |at| host::unlink(at, true))?,
            Op::Rename => self.change_two(op, a, (b, c), d, (e, f), host::rename)?,
            Op::Link => self.change_two(op, a, (b, c), d, (e, f), host::link)?,
            Op::Symlink => {
                let target = self.path(a, b)?;
                let result = target.and_then(|target| match target.first() {
                    None => Err(libc::ENOENT),
                    // As wasmtime: a symlink made inside a volume never names an absolute path.
                    Some(b'/') => Err(libc::EPERM),
                    Some(_) => Ok(target),
                });
                match result {
                    Ok(target) => self.change(c, d, e, |at| host::symlink(&target, at))?,
                    Err(e) => FileReply::error(e),
                }
            }
            Op::ReadLink => {
                let path = self.path(b, c)?;
                let (ptr, len) = self.buffer(d, e)?;
                let result = path.and_then(|path| {
                    let at = Last::resolve(self.fd(a)?, &path)?;
                    if at.trailing_slash {
                        // "link/" names what the link points to, which is no symlink here.
                        at.check_trailing_slash()?;
                        return Err(libc::EINVAL);
                    }
                    // SAFETY: as for Read: window memory this device keeps mapped, written by the
                    // kernel straight from the link (null only with `len` 0, then refused).
                    unsafe { host::read_link(&at, ptr, len) }.map(|n| n as u64)
                });
                value(result)
            }
        })
    }

    fn handle(&self, handle: u64) -> Result<&Handle, Errno> {
        self.handles.get(handle).ok_or(libc::EBADF)
    }

    fn fd(&self, handle: u64) -> Result<RawFd, Errno> {
        self.handle(handle).map(|h| h.fd.as_raw_fd())
    }

    /// A handle that may be written (`EBADF` otherwise, as the kernel would answer).
    fn writable_fd(&self, handle: u64) -> Result<RawFd, Errno> {
        let handle = self.handle(handle)?;
        if handle.writable {
            Ok(handle.fd.as_raw_fd())
        } else {
            Err(libc::EBADF)
        }
    }

    /// A directory handle whose tree may be changed: `EPERM` in a read-only volume.
    fn changeable_dir(&self, handle: u64) -> Result<(RawFd, usize), Errno> {
        let handle = self.handle(handle)?;
        if handle.read_only {
            return Err(libc::EPERM);
        }
        Ok((handle.fd.as_raw_fd(), handle.volume))
    }

    /// The path at `addr..addr+len` (`ENAMETOOLONG` past [`MAX_PATH`]).
    fn path(&self, addr: u64, len: u64) -> Result<Result<Vec<u8>, Errno>, FileError> {
        if len > MAX_PATH {
            return Ok(Err(libc::ENAMETOOLONG));
        }
        if len == 0 {
            // An empty slice's address means nothing (a guest's dangling pointer).
            return Ok(Ok(Vec::new()));
        }
        let mut path = vec![0; len as usize];
        self.memory.read_slice(&mut path, GuestAddress(addr)).map_err(|_| FileError::BufferOutside { addr, len })?;
        Ok(Ok(path))
    }

    /// The host memory of the guest buffer `addr..addr+len` (`len` capped at [`MAX_TRANSFER`]).
    fn buffer(&self, addr: u64, len: u64) -> Result<(*mut u8, usize), FileError> {
        let len = len.min(MAX_TRANSFER);
        if len == 0 {
            return Ok((std::ptr::null_mut(), 0));
        }
        let slice = self
            .memory
            .get_slice(GuestAddress(addr), len as usize)
            .map_err(|_| FileError::BufferOutside { addr, len })?;
        Ok((slice.ptr_guard_mut().as_ptr(), len as usize))
    }

    fn open(&mut self, dir: u64, path: &[u8], flags: u64) -> Result<(u64, Stat), Errno> {
        if flags & !open::ALL != 0 {
            return Err(libc::EINVAL);
        }
        let handle = self.handle(dir)?;
        let (read_only, volume) = (handle.read_only, handle.volume);
        let wants_write = flags & (open::WRITE | open::APPEND) != 0;
        if read_only && (wants_write || flags & (open::CREATE | open::TRUNCATE) != 0) {
            return Err(libc::EPERM);
        }
        if self.open_handles() >= MAX_HANDLES as usize {
            return Err(libc::EMFILE);
        }
        let mut os_flags = match (flags & open::READ != 0, wants_write) {
            (true, true) => libc::O_RDWR,
            (false, true) => libc::O_WRONLY,
            _ => libc::O_RDONLY,
        };
        for (bit, os) in [
            (open::APPEND, libc::O_APPEND),
            (open::CREATE, libc::O_CREAT),
            (open::EXCLUSIVE, libc::O_EXCL),
            (open::TRUNCATE, libc::O_TRUNC),
            (open::DIRECTORY, libc::O_DIRECTORY),
            (open::NOFOLLOW, libc::O_NOFOLLOW),
        ] {
            if flags & bit != 0 {
                os_flags |= os;
            }
        }
        // What the path names now, looked at without opening it: a FIFO, socket or device is
        // refused before any open (a nodev volume could not open a device anyway).
        let pin = if flags & open::NOFOLLOW != 0 { libc::O_PATH | libc::O_NOFOLLOW } else { libc::O_PATH };
        match host::open_beneath(handle.fd.as_raw_fd(), path, pin, 0).and_then(|fd| host::fstat(fd.as_raw_fd())) {
            Ok(stat) if stat.kind != kind::DIRECTORY && stat.kind != kind::REGULAR_FILE => {
                // A symlink is what O_NOFOLLOW refuses; anything else is no file to open.
                return Err(if stat.kind == kind::SYMBOLIC_LINK { libc::ELOOP } else { libc::ENXIO });
            }
            Ok(_) | Err(libc::ENOENT) => {}
            Err(e) => return Err(e),
        }
        // Non-blocking: a FIFO swapped in meanwhile must not hold the vCPU (it is refused below).
        let fd = host::open_beneath(handle.fd.as_raw_fd(), path, os_flags | libc::O_NONBLOCK, 0o666)?;
        let stat = host::fstat(fd.as_raw_fd())?;
        if stat.kind != kind::DIRECTORY && stat.kind != kind::REGULAR_FILE {
            return Err(libc::ENXIO);
        }
        Ok((self.handles.insert(Handle { fd, volume, read_only, writable: wants_write }), stat))
    }

    fn close(&mut self, handle: u64) -> Result<(), Errno> {
        if handle < self.volumes as u64 {
            // A volume stays open for the workload's life.
            return Err(libc::EBADF);
        }
        self.handles.remove(handle).map(drop).ok_or(libc::EBADF)
    }

    fn stat(&self, dir: u64, path: &[u8], follow: bool) -> Result<Stat, Errno> {
        let fd = self.fd(dir)?;
        if path.is_empty() {
            return host::fstat(fd);
        }
        let flags = libc::O_PATH | if follow { 0 } else { libc::O_NOFOLLOW };
        host::fstat(host::open_beneath(fd, path, flags, 0)?.as_raw_fd())
    }

    fn set_times(
        &self,
        dir: u64,
        path: &[u8],
        follow: bool,
        [atime, mtime]: [u64; 2],
        flags: u64,
    ) -> Result<(), Errno> {
        let timespec = |set: u64, now: u64, at: u64| {
            if flags & set != 0 && flags & now != 0 {
                return Err(libc::EINVAL);
            }
            let nsec = if flags & now != 0 {
                libc::UTIME_NOW
            } else if flags & set != 0 {
                return Ok(libc::timespec {
                    tv_sec: (at / 1_000_000_000) as libc::time_t,
                    tv_nsec: (at % 1_000_000_000) as libc::c_long,
                });
            } else {
                libc::UTIME_OMIT
            };
            Ok(libc::timespec { tv_sec: 0, tv_nsec: nsec })
        };
        if flags & !0xf != 0 {
            return Err(libc::EINVAL);
        }
        let spec = [timespec(times::ATIME, times::ATIME_NOW, atime)?, timespec(times::MTIME, times::MTIME_NOW, mtime)?];
        let (fd, _) = self.changeable_dir(dir)?;
        if path.is_empty() {
            return host::set_times(fd, &spec);
        }
        // Pinned beneath the volume without being opened (a symlink itself without follow),
        // then changed through that descriptor: nothing is resolved twice.
        let pin = if follow { libc::O_PATH } else { libc::O_PATH | libc::O_NOFOLLOW };
        host::set_times(host::open_beneath(fd, path, pin, 0)?.as_raw_fd(), &spec)
    }

    fn read_dir(&self, handle: u64, ptr: *mut u8, len: usize, cookie: u64) -> Result<u64, Errno> {
        let fd = self.fd(handle)?;
        let mut written = 0usize;
        host::read_dir(fd, cookie, |name, ino, d_type, next| {
            let size = Dirent::SIZE + name.len();
            if written + size > len {
                return false;
            }
            let header = Dirent::header(next, ino, host::kind_of_dirent(d_type), name.len() as u32);
            // SAFETY: `ptr..ptr+len` is window memory this device keeps mapped (see Read), and
            // `written + size <= len`.
            unsafe {
                std::ptr::copy_nonoverlapping(header.as_ptr(), ptr.add(written), header.len());
                std::ptr::copy_nonoverlapping(name.as_ptr(), ptr.add(written + header.len()), name.len());
            }
            written += size;
            true
        })?;
        Ok(written as u64)
    }

    /// A change to the last component of the path at `(addr, len)` beneath `dir`.
    fn change(&self, dir: u64, addr: u64, len: u64, act: impl FnOnce(&Last) -> Result<(), Errno>) -> Reply {
        let path = self.path(addr, len)?;
        let result = path.and_then(|path| {
            let (fd, _) = self.changeable_dir(dir)?;
            let at = Last::resolve(fd, &path)?;
            at.check_trailing_slash()?;
            act(&at)
        });
        Ok(value(result.map(|()| 0)))
    }

    /// A change naming two paths (rename, link), which must be in one volume (`EXDEV`).
    fn change_two(
        &self,
        op: Op,
        from_dir: u64,
        from: (u64, u64),
        to_dir: u64,
        to: (u64, u64),
        act: fn(&Last, &Last) -> Result<(), Errno>,
    ) -> Reply {
        let (from_path, to_path) = (self.path(from.0, from.1)?, self.path(to.0, to.1)?);
        let result = from_path.and_then(|from_path| {
            let to_path = to_path?;
            let (from_fd, from_volume) = self.changeable_dir(from_dir)?;
            let (to_fd, to_volume) = self.changeable_dir(to_dir)?;
            if from_volume != to_volume {
                return Err(libc::EXDEV);
            }
            let (from, to) = (Last::resolve(from_fd, &from_path)?, Last::resolve(to_fd, &to_path)?);
            from.check_trailing_slash()?;
            if to.trailing_slash {
                if op == Op::Link {
                    // A new name ending in `/` names no file the link could be.
                    return Err(if to.stat().is_ok() { libc::EEXIST } else { libc::ENOENT });
                }
                if from.stat().is_ok_and(|s| !is_dir(s)) {
                    return Err(libc::ENOTDIR);
                }
            }
            act(&from, &to)
        });
        Ok(value(result.map(|()| 0)))
    }
}

fn is_dir(stat: libc::stat) -> bool {
    stat.st_mode & libc::S_IFMT == libc::S_IFDIR
}

//! The host side of the file device: the system calls it makes on the descriptors it holds.
//! Every path a guest names is resolved by `openat2` with `RESOLVE_BENEATH |
//! RESOLVE_NO_MAGICLINKS` from a descriptor of the volume: the kernel refuses `..` past it,
//! absolute paths and symlinks that lead out, and checks again if the tree changes during the
//! walk. Calls on a last component (create, remove, rename, link, readlink) first pin its parent
//! that way, then act on the name alone, never following it. Every function returns the call's
//! `errno` on failure; none blocks on anything but the disk.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use wasmcell_abi::file::{kind, Stat};

pub type Errno = i32;

/// `struct open_how` of `openat2(2)`.
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_BENEATH: u64 = 0x08;
/// Tries of a walk the kernel restarts because the tree changed under it (`EAGAIN`).
const WALK_TRIES: u32 = 16;

fn last_errno() -> Errno {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EINVAL)
}

fn check(ret: libc::c_long) -> Result<libc::c_long, Errno> {
    if ret < 0 {
        Err(last_errno())
    } else {
        Ok(ret)
    }
}

/// `path` as a C string; a NUL inside is `EINVAL` (WASI has no way to name it either).
pub fn c_path(path: &[u8]) -> Result<CString, Errno> {
    CString::new(path).map_err(|_| libc::EINVAL)
}

/// Opens `path` beneath `dir` with `flags` (`O_CLOEXEC` added, and `O_NOCTTY` but to an
/// `O_PATH` open, which takes no other flag). Leaving the tree is `EPERM`, as wasmtime answers.
pub fn open_beneath(dir: RawFd, path: &[u8], flags: i32, mode: u32) -> Result<OwnedFd, Errno> {
    let path = if path.is_empty() { c".".to_owned() } else { c_path(path)? };
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC | if flags & libc::O_PATH == 0 { libc::O_NOCTTY } else { 0 }) as u64,
        mode: if flags & libc::O_CREAT != 0 { u64::from(mode) } else { 0 },
        resolve: RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
    };
    for _ in 0..WALK_TRIES {
        // SAFETY: openat2 reads the NUL-terminated path and the `open_how` of the size given,
        // both alive for the call; it returns a new descriptor or -1.
        let ret = unsafe {
            libc::syscall(libc::SYS_openat2, dir, path.as_ptr(), &raw const how, std::mem::size_of::<OpenHow>())
        };
        match check(ret) {
            // SAFETY: a descriptor openat2 just returned, owned by nothing else.
            Ok(fd) => return Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) }),
            Err(libc::EAGAIN) => continue,
            Err(libc::EXDEV) => return Err(libc::EPERM),
            Err(e) => return Err(e),
        }
    }
    Err(libc::EAGAIN)
}

/// A path split for a call on its last component: the parent pinned beneath `dir`, and the
/// name (no slash in it), and whether the path ended in `/` (then the name must be a
/// directory).
pub struct Last {
    pub parent: OwnedFd,
    pub name: CString,
    pub trailing_slash: bool,
}

impl Last {
    pub fn resolve(dir: RawFd, path: &[u8]) -> Result<Self, Errno> {
        let trimmed = path.iter().rposition(|&b| b != b'/').map(|end| &path[..=end]);
        let Some(trimmed) = trimmed else {
            // "" names nothing; "/" (or "//") is absolute: outside.
            return Err(if path.is_empty() { libc::ENOENT } else { libc::EPERM });
        };
        let (parent, name) = match trimmed.iter().rposition(|&b| b == b'/') {
            Some(slash) => (&trimmed[..slash.max(1)], &trimmed[slash + 1..]),
            None => (&b""[..], trimmed),
        };
        if parent.first() == Some(&b'/') {
            return Err(libc::EPERM);
        }
        if name == b".." {
            // The kernel would act on the parent's parent: it must be beneath too.
            open_beneath(dir, trimmed, libc::O_PATH, 0)?;
        }
        let parent = open_beneath(dir, parent, libc::O_PATH | libc::O_DIRECTORY, 0)?;
        Ok(Self { parent, name: c_path(name)?, trailing_slash: trimmed.len() < path.len() })
    }

    /// The name's own stat, not following it.
    pub fn stat(&self) -> Result<libc::stat, Errno> {
        // SAFETY: an all-zero stat is a valid value for fstatat to overwrite.
        let mut stat: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: fstatat on a descriptor we hold with a NUL-terminated name; it writes `stat`.
        let ret =
            unsafe { libc::fstatat(self.parent.as_raw_fd(), self.name.as_ptr(), &mut stat, libc::AT_SYMLINK_NOFOLLOW) };
        check(ret.into()).map(|_| stat)
    }

    /// With a trailing slash the name must be a directory (`ENOTDIR`), as the kernel would
    /// require; a missing one is left for the call to report.
    pub fn check_trailing_slash(&self) -> Result<(), Errno> {
        match self.stat() {
            Ok(stat) if self.trailing_slash && stat.st_mode & libc::S_IFMT != libc::S_IFDIR => Err(libc::ENOTDIR),
            _ => Ok(()),
        }
    }

    pub fn fd(&self) -> RawFd {
        self.parent.as_raw_fd()
    }
}

pub fn fstat(fd: RawFd) -> Result<Stat, Errno> {
    // SAFETY: an all-zero stat is a valid value for fstat to overwrite.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat writes `stat`, which lives for the call.
    check(unsafe { libc::fstat(fd, &mut stat) }.into())?;
    Ok(to_stat(&stat))
}

pub fn to_stat(stat: &libc::stat) -> Stat {
    let ns = |secs: i64, nsecs: i64| (secs.max(0) as u64).saturating_mul(1_000_000_000).saturating_add(nsecs as u64);
    Stat {
        dev: stat.st_dev,
        ino: stat.st_ino,
        kind: kind_of(stat.st_mode),
        nlink: nlink(stat),
        size: stat.st_size.max(0) as u64,
        atime_ns: ns(stat.st_atime, stat.st_atime_nsec),
        mtime_ns: ns(stat.st_mtime, stat.st_mtime_nsec),
        ctime_ns: ns(stat.st_ctime, stat.st_ctime_nsec),
    }
}

fn kind_of(mode: libc::mode_t) -> u8 {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => kind::DIRECTORY,
        libc::S_IFREG => kind::REGULAR_FILE,
        libc::S_IFLNK => kind::SYMBOLIC_LINK,
        libc::S_IFBLK => kind::BLOCK_DEVICE,
        libc::S_IFCHR => kind::CHARACTER_DEVICE,
        libc::S_IFSOCK => kind::SOCKET,
        _ => kind::UNKNOWN,
    }
}

/// `d_type` as a WASI file type.
pub fn kind_of_dirent(d_type: u8) -> u8 {
    match d_type {
        libc::DT_DIR => kind::DIRECTORY,
        libc::DT_REG => kind::REGULAR_FILE,
        libc::DT_LNK => kind::SYMBOLIC_LINK,
        libc::DT_BLK => kind::BLOCK_DEVICE,
        libc::DT_CHR => kind::CHARACTER_DEVICE,
        libc::DT_SOCK => kind::SOCKET,
        _ => kind::UNKNOWN,
    }
}

/// # Safety
/// `ptr..ptr+len` must be writable host memory for the duration of the call.
pub unsafe fn pread(fd: RawFd, ptr: *mut u8, len: usize, offset: u64) -> Result<usize, Errno> {
    let offset = i64::try_from(offset).map_err(|_| libc::EINVAL)?;
    // SAFETY: the caller's contract; the kernel writes at most `len` bytes.
    check(unsafe { libc::pread(fd, ptr.cast(), len, offset) } as libc::c_long).map(|n| n as usize)
}

/// Writes at `offset`, or at the end for `None`.
///
/// # Safety
/// `ptr..ptr+len` must be readable host memory for the duration of the call.
pub unsafe fn pwrite(fd: RawFd, ptr: *const u8, len: usize, offset: Option<u64>) -> Result<usize, Errno> {
    let ret = match offset {
        // SAFETY: the caller's contract; the kernel reads at most `len` bytes.
        Some(offset) => unsafe { libc::pwrite(fd, ptr.cast(), len, i64::try_from(offset).map_err(|_| libc::EFBIG)?) },
        None => {
            // The device is the descriptor's only user: nothing moves the offset in between.
            // SAFETY: lseek has no memory arguments.
            check(unsafe { libc::lseek(fd, 0, libc::SEEK_END) })?;
            // SAFETY: the caller's contract.
            unsafe { libc::write(fd, ptr.cast(), len) }
        }
    };
    check(ret as libc::c_long).map(|n| n as usize)
}

/// Reads the directory `fd` from `cookie` (0: the start; else an entry's `d_off`) into
/// `(name, ino, d_type, next)` entries until `take` says stop, without `.` and `..`.
pub fn read_dir(fd: RawFd, cookie: u64, mut take: impl FnMut(&[u8], u64, u8, u64) -> bool) -> Result<(), Errno> {
    let cookie = i64::try_from(cookie).map_err(|_| libc::EINVAL)?;
    // SAFETY: lseek has no memory arguments.
    check(unsafe { libc::lseek(fd, cookie, libc::SEEK_SET) })?;
    let mut buf = [0u64; 4096];
    loop {
        // SAFETY: getdents64 writes at most the buffer's size into it.
        let n = check(unsafe { libc::syscall(libc::SYS_getdents64, fd, buf.as_mut_ptr(), size_of_val(&buf)) })?;
        if n == 0 {
            return Ok(());
        }
        // SAFETY: the buffer holds `n` initialised bytes; u8 has no alignment needs.
        let bytes = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n as usize) };
        let mut at = 0;
        while at + 19 <= bytes.len() {
            // struct linux_dirent64 { u64 d_ino; i64 d_off; u16 d_reclen; u8 d_type; char d_name[]; }
            let ino = u64::from_ne_bytes(bytes[at..at + 8].try_into().unwrap_or_default());
            let next = u64::from_ne_bytes(bytes[at + 8..at + 16].try_into().unwrap_or_default());
            let reclen = usize::from(u16::from_ne_bytes([bytes[at + 16], bytes[at + 17]]));
            let d_type = bytes[at + 18];
            let Some(record) = bytes.get(at + 19..at + reclen).filter(|_| reclen > 19) else {
                return Err(libc::EIO);
            };
            let name = &record[..record.iter().position(|&b| b == 0).unwrap_or(record.len())];
            at += reclen;
            if name != b"." && name != b".." && !take(name, ino, d_type, next) {
                return Ok(());
            }
        }
    }
}

pub fn ftruncate(fd: RawFd, size: u64) -> Result<(), Errno> {
    let size = i64::try_from(size).map_err(|_| libc::EFBIG)?;
    // SAFETY: no memory arguments.
    check(unsafe { libc::ftruncate(fd, size) }.into()).map(drop)
}

pub fn fsync(fd: RawFd) -> Result<(), Errno> {
    // SAFETY: no memory arguments.
    check(unsafe { libc::fsync(fd) }.into()).map(drop)
}

/// Sets the times of what `fd` is (an open descriptor or an `O_PATH` one, a symlink's too).
pub fn set_times(fd: RawFd, times: &[libc::timespec; 2]) -> Result<(), Errno> {
    let flags = libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW;
    // SAFETY: utimensat reads the empty name and the two timespecs, alive for the call.
    check(unsafe { libc::utimensat(fd, c"".as_ptr(), times.as_ptr(), flags) }.into()).map(drop)
}

/// A private, detached copy of the mount `fd` is on (and of those beneath it), reaching what
/// `fd` names, with `nodev`, `nosuid` and `noexec` set (`open_tree`, `mount_setattr`). `None`
/// without `CAP_SYS_ADMIN` or a kernel that has them (< 5.12).
pub fn nodev_clone(fd: RawFd) -> Option<OwnedFd> {
    const OPEN_TREE_CLONE: u32 = 1;
    const MOUNT_ATTR_NOSUID: u64 = 0x2;
    const MOUNT_ATTR_NODEV: u64 = 0x4;
    const MOUNT_ATTR_NOEXEC: u64 = 0x8;
    /// `struct mount_attr`.
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as u32 | (libc::AT_EMPTY_PATH | libc::AT_RECURSIVE) as u32;
    // SAFETY: open_tree reads the empty path; it returns a new descriptor or -1.
    let tree = unsafe { libc::syscall(libc::SYS_open_tree, fd, c"".as_ptr(), flags) };
    // SAFETY: a descriptor open_tree just returned, owned by nothing else.
    let tree = unsafe { OwnedFd::from_raw_fd(check(tree).ok()? as RawFd) };
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_NODEV | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let flags = (libc::AT_EMPTY_PATH | libc::AT_RECURSIVE) as libc::c_uint;
    // SAFETY: mount_setattr reads the empty path and the struct of the size given, alive for
    // the call; it changes only the detached copy.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            flags,
            &raw const attr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    check(ret).ok().map(|_| tree)
}

/// Opens what the `O_PATH` descriptor `fd` names, with `flags` (`O_CLOEXEC | O_NOCTTY` added),
/// through `/proc/self/fd` (before a jail: it has no `/proc`).
pub fn reopen(fd: RawFd, flags: i32) -> Result<OwnedFd, Errno> {
    let path = CString::new(format!("/proc/self/fd/{fd}")).map_err(|_| libc::EINVAL)?;
    // SAFETY: open on a NUL-terminated path; a new descriptor or -1.
    let ret = unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC | libc::O_NOCTTY) };
    // SAFETY: a descriptor open just returned, owned by nothing else.
    check(ret.into()).map(|fd| unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

pub fn mkdir(at: &Last) -> Result<(), Errno> {
    // SAFETY: a NUL-terminated name on a descriptor we hold.
    check(unsafe { libc::mkdirat(at.fd(), at.name.as_ptr(), 0o777) }.into()).map(drop)
}

pub fn unlink(at: &Last, dir: bool) -> Result<(), Errno> {
    let flags = if dir { libc::AT_REMOVEDIR } else { 0 };
    // SAFETY: as for mkdir.
    check(unsafe { libc::unlinkat(at.fd(), at.name.as_ptr(), flags) }.into()).map(drop)
}

pub fn rename(from: &Last, to: &Last) -> Result<(), Errno> {
    // renameat2 with no flags: plain renameat, which arm64 has no number for.
    // SAFETY: two NUL-terminated names on descriptors we hold.
    check(unsafe { libc::syscall(libc::SYS_renameat2, from.fd(), from.name.as_ptr(), to.fd(), to.name.as_ptr(), 0) })
        .map(drop)
}

pub fn link(from: &Last, to: &Last) -> Result<(), Errno> {
    // Flags 0: a symlink is linked itself, never what it points to.
    // SAFETY: as for rename.
    check(unsafe { libc::linkat(from.fd(), from.name.as_ptr(), to.fd(), to.name.as_ptr(), 0) }.into()).map(drop)
}

pub fn symlink(target: &[u8], at: &Last) -> Result<(), Errno> {
    let target = c_path(target)?;
    // SAFETY: two NUL-terminated strings and a descriptor we hold.
    check(unsafe { libc::symlinkat(target.as_ptr(), at.fd(), at.name.as_ptr()) }.into()).map(drop)
}

/// The target of the symlink `at`, into `ptr..ptr+len` (cut to it) → its length written.
///
/// # Safety
/// `ptr..ptr+len` must be writable host memory for the duration of the call.
pub unsafe fn read_link(at: &Last, ptr: *mut u8, len: usize) -> Result<usize, Errno> {
    // SAFETY: the caller's contract; readlinkat writes at most `len` bytes.
    let n = unsafe { libc::readlinkat(at.fd(), at.name.as_ptr(), ptr.cast(), len) };
    check(n as libc::c_long).map(|n| n as usize)
}

/// A link count as `u64` (`nlink_t` is `u64` on x86-64 and `u32` on aarch64).
#[allow(clippy::useless_conversion)]
fn nlink(stat: &libc::stat) -> u64 {
    u64::from(stat.st_nlink)
}

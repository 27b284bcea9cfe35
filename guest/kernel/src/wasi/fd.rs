//! The file descriptor table and the calls that act on a descriptor itself, whatever it is:
//! close, renumber, fdstat, filestat, prestat, sync, advise. 0–2 are the standard streams, the
//! preopened TCP listeners follow from 3 (`--tcplisten` order, as wasmtime numbered them), then
//! the preopened directories, in `--dir` order.

use super::errno::{to_errno, Errno};
use super::host::{self, HostDir, HostFile};
use super::socket::Socket;
use super::{write_bytes, WasiCtx, WasiLinker, MODULE};
use alloc::vec::Vec;
use wasmcell_guest_fs::{FileType, NodeRef, Stat};
use wasmtime::Caller;

/// Most descriptors open at once.
const MAX_FDS: usize = 4096;

/// `fdflags::append`.
pub const FDFLAGS_APPEND: u16 = 1;
const FDFLAGS_DSYNC: u16 = 2;
pub const FDFLAGS_NONBLOCK: u16 = 4;
const FDFLAGS_RSYNC: u16 = 8;
const FDFLAGS_SYNC: u16 = 16;
/// The flags a descriptor keeps from its `path_open` and reports (nothing to sync in memory).
pub const FDFLAGS_KEPT: u16 = FDFLAGS_DSYNC | FDFLAGS_NONBLOCK | FDFLAGS_RSYNC | FDFLAGS_SYNC;

// `rights` bits.
const FD_DATASYNC: u64 = 1 << 0;
pub const FD_READ: u64 = 1 << 1;
const FD_SEEK: u64 = 1 << 2;
const FD_FDSTAT_SET_FLAGS: u64 = 1 << 3;
const FD_SYNC: u64 = 1 << 4;
const FD_TELL: u64 = 1 << 5;
pub const FD_WRITE: u64 = 1 << 6;
const FD_ADVISE: u64 = 1 << 7;
pub const FD_ALLOCATE: u64 = 1 << 8;
/// `path_create_directory` up to `path_filestat_set_times` (bits 9–20).
const PATH_RIGHTS: u64 = ((1 << 21) - 1) & !((1 << 9) - 1) & !FD_READDIR;
pub const FD_READDIR: u64 = 1 << 14;
const FD_FILESTAT_GET: u64 = 1 << 21;
pub const FD_FILESTAT_SET_SIZE: u64 = 1 << 22;
const FD_FILESTAT_SET_TIMES: u64 = 1 << 23;
/// `path_symlink`, `path_remove_directory`, `path_unlink_file`.
const PATH_RIGHTS_2: u64 = (1 << 24) | (1 << 25) | (1 << 26);
const POLL_FD_READWRITE: u64 = 1 << 27;
/// Every right of preview 1 (bits 0–29).
const ALL_RIGHTS: u64 = (1 << 30) - 1;
const PATH_FILESTAT_SET_SIZE: u64 = 1 << 19;
const FILE_RIGHTS: u64 = FD_DATASYNC
    | FD_READ
    | FD_SEEK
    | FD_FDSTAT_SET_FLAGS
    | FD_SYNC
    | FD_TELL
    | FD_WRITE
    | FD_ADVISE
    | FD_ALLOCATE
    | FD_FILESTAT_GET
    | FD_FILESTAT_SET_SIZE
    | FD_FILESTAT_SET_TIMES
    | POLL_FD_READWRITE;
/// A preopened directory's rights, as wasmtime hard-codes them ("expected by many userlands").
const PREOPEN_RIGHTS: u64 =
    (PATH_RIGHTS & !PATH_FILESTAT_SET_SIZE) | FD_READDIR | FD_FILESTAT_GET | FD_FILESTAT_SET_TIMES | PATH_RIGHTS_2;

// `filetype` values. Standard streams are never terminals here (wasmcell has no TTY): wasmtime
// gives `unknown` for one that is not.
const UNKNOWN: u8 = 0;
const DIRECTORY: u8 = 3;
const REGULAR_FILE: u8 = 4;
const SOCKET_STREAM: u8 = 6;
const SYMBOLIC_LINK: u8 = 7;

/// The `filetype` of a node.
pub fn filetype(file_type: FileType) -> u8 {
    match file_type {
        FileType::RegularFile => REGULAR_FILE,
        FileType::Directory => DIRECTORY,
        FileType::SymbolicLink => SYMBOLIC_LINK,
    }
}

/// A preopened directory's root: the in-memory tree's, or volume `index`'s.
pub enum Preopen {
    Tree(NodeRef),
    Volume(u32),
}

/// One open descriptor.
pub enum Fd {
    Stdin,
    Stdout,
    Stderr,
    Dir {
        node: NodeRef,
        /// The guest path, for a preopened directory.
        preopen: Option<&'static [u8]>,
        /// `FD_READ` was asked for when it was opened (what `fd_fdstat_get` reports).
        read_right: bool,
        /// [`FDFLAGS_KEPT`] flags it was opened with.
        flags: u16,
    },
    File(OpenFile),
    Socket(Socket),
    /// A directory of a volume the host serves (`host`).
    HostDir(HostDir),
    /// A file of a volume the host serves.
    HostFile(HostFile),
}

/// An open regular file.
pub struct OpenFile {
    pub node: NodeRef,
    pub position: u64,
    pub readable: bool,
    pub writable: bool,
    pub append: bool,
    /// `FD_READ` and `FD_WRITE` were asked for when it was opened (what `fd_fdstat_get`
    /// reports, as wasmtime derives it).
    pub read_right: bool,
    pub write_right: bool,
    /// [`FDFLAGS_KEPT`] flags it was opened with, or set since (NONBLOCK).
    pub flags: u16,
}

/// The descriptor table.
pub struct FdTable {
    slots: Vec<Option<Fd>>,
}

impl FdTable {
    /// The standard streams, then the preopened listeners, then the preopened directories:
    /// the in-memory tree's, then the volumes'.
    pub fn new(listeners: Vec<Socket>, preopens: Vec<(&'static [u8], NodeRef)>, volumes: Vec<Fd>) -> Self {
        let mut slots = alloc::vec![Some(Fd::Stdin), Some(Fd::Stdout), Some(Fd::Stderr)];
        slots.extend(listeners.into_iter().map(|listener| Some(Fd::Socket(listener))));
        let preopen = |(name, node)| Some(Fd::Dir { node, preopen: Some(name), read_right: true, flags: 0 });
        slots.extend(preopens.into_iter().map(preopen));
        slots.extend(volumes.into_iter().map(Some));
        Self { slots }
    }

    pub fn get(&self, fd: u32) -> Result<&Fd, Errno> {
        self.slots.get(fd as usize).and_then(Option::as_ref).ok_or(Errno::BadF)
    }

    pub fn get_mut(&mut self, fd: u32) -> Result<&mut Fd, Errno> {
        self.slots.get_mut(fd as usize).and_then(Option::as_mut).ok_or(Errno::BadF)
    }

    /// The directory `fd` refers to, for a `path_*` call.
    /// The preopened directories, in descriptor order: `(guest path, root)` each.
    pub fn preopens(&self) -> impl Iterator<Item = (&'static [u8], Preopen)> + '_ {
        self.slots.iter().filter_map(|slot| match slot {
            Some(Fd::Dir { node, preopen: Some(name), .. }) => Some((*name, Preopen::Tree(node.clone()))),
            Some(Fd::HostDir(HostDir { handle, preopen: Some(name), .. })) => {
                Some((*name, Preopen::Volume(handle.raw() as u32)))
            }
            _ => None,
        })
    }

    pub fn dir(&self, fd: u32) -> Result<NodeRef, Errno> {
        match self.get(fd)? {
            Fd::Dir { node, .. } => Ok(node.clone()),
            _ => Err(Errno::NotDir),
        }
    }

    /// The volume directory `fd` refers to, if it is one (`None` for any other descriptor).
    pub fn host_dir(&self, fd: u32) -> Option<&HostDir> {
        match self.get(fd) {
            Ok(Fd::HostDir(dir)) => Some(dir),
            _ => None,
        }
    }

    /// Adds `fd` at the lowest free number.
    pub fn insert(&mut self, fd: Fd) -> Result<u32, Errno> {
        let number = match self.slots.iter().position(Option::is_none) {
            Some(free) => free,
            None if self.slots.len() < MAX_FDS => {
                self.slots.push(None);
                self.slots.len() - 1
            }
            None => return Err(Errno::MFile),
        };
        self.slots[number] = Some(fd);
        Ok(number as u32)
    }

    pub fn remove(&mut self, fd: u32) -> Result<Fd, Errno> {
        self.slots.get_mut(fd as usize).and_then(Option::take).ok_or(Errno::BadF)
    }
}

/// `filestat` as WASI lays it out (64 bytes).
pub fn filestat_bytes(filetype: u8, stat: Option<&Stat>) -> [u8; 64] {
    let mut out = [0u8; 64];
    out[16] = filetype;
    if let Some(stat) = stat {
        out[8..16].copy_from_slice(&stat.ino.to_le_bytes());
        out[24..32].copy_from_slice(&1u64.to_le_bytes());
        out[32..40].copy_from_slice(&stat.size.to_le_bytes());
        out[40..48].copy_from_slice(&stat.atime_ns.to_le_bytes());
        out[48..56].copy_from_slice(&stat.mtime_ns.to_le_bytes());
        out[56..64].copy_from_slice(&stat.mtime_ns.to_le_bytes());
    }
    out
}

/// Applies `fstflags` (`atim`, `atim_now`, `mtim`, `mtim_now`) to a node.
pub fn set_times(node: &NodeRef, atim: u64, mtim: u64, flags: u16, now_ns: u64) -> Result<(), Errno> {
    let (atim_set, atim_now, mtim_set, mtim_now) = (flags & 1 != 0, flags & 2 != 0, flags & 4 != 0, flags & 8 != 0);
    if (atim_set && atim_now) || (mtim_set && mtim_now) || flags > 0xf {
        return Err(Errno::Inval);
    }
    let time = |set: bool, now: bool, at: u64| (set || now).then_some(if now { now_ns } else { at });
    node.borrow_mut().set_times(time(atim_set, atim_now, atim), time(mtim_set, mtim_now, mtim));
    Ok(())
}

fn fd_close(ctx: &mut WasiCtx, fd: u32) -> Result<(), Errno> {
    ctx.fds.remove(fd).map(drop)
}

fn fd_renumber(ctx: &mut WasiCtx, from: u32, to: u32) -> Result<(), Errno> {
    ctx.fds.get(to)?;
    let moved = ctx.fds.remove(from)?;
    ctx.fds.slots[to as usize] = Some(moved);
    Ok(())
}

fn fd_fdstat_get(caller: &mut Caller<'_, WasiCtx>, fd: u32, ptr: u32) -> Result<(), Errno> {
    // As wasmtime reports them: fixed rights for the standard streams and preopens; for an opened
    // file or directory every right, less what its kind or its open mode rules out.
    let (filetype, flags, base, inheriting) = match caller.data().fds.get(fd)? {
        Fd::Stdin => (UNKNOWN, 0, FD_READ, FD_READ),
        Fd::Stdout | Fd::Stderr => (UNKNOWN, 0, FD_WRITE, FD_WRITE),
        Fd::Dir { preopen: Some(_), .. } | Fd::HostDir(HostDir { preopen: Some(_), .. }) => {
            (DIRECTORY, 0, PREOPEN_RIGHTS, PREOPEN_RIGHTS | FILE_RIGHTS)
        }
        Fd::Dir { read_right, flags, .. } | Fd::HostDir(HostDir { read_right, flags, .. }) => {
            let mut rights = ALL_RIGHTS & !(FD_SEEK | FD_FILESTAT_SET_SIZE | PATH_FILESTAT_SET_SIZE | FD_WRITE);
            if !read_right {
                rights &= !(FD_READ | FD_READDIR);
            }
            (DIRECTORY, *flags, rights, rights)
        }
        Fd::File(OpenFile { read_right, write_right, append, flags, .. })
        | Fd::HostFile(HostFile { read_right, write_right, append, flags, .. }) => {
            let mut rights = ALL_RIGHTS;
            if !read_right {
                rights &= !(FD_READ | FD_READDIR);
            }
            if !write_right {
                rights &= !FD_WRITE;
            }
            let flags = flags | if *append { FDFLAGS_APPEND } else { 0 };
            (REGULAR_FILE, flags, rights, rights)
        }
        // As wasi-common: read and write, nothing to inherit.
        Fd::Socket(socket) => (SOCKET_STREAM, socket.flags(), FD_READ | FD_WRITE, 0),
    };
    // struct fdstat { u8 filetype; u16 flags @2; u64 rights_base @8; u64 rights_inheriting @16 }
    let mut stat = [0u8; 24];
    stat[0] = filetype;
    stat[2..4].copy_from_slice(&flags.to_le_bytes());
    stat[8..16].copy_from_slice(&base.to_le_bytes());
    stat[16..24].copy_from_slice(&inheriting.to_le_bytes());
    write_bytes(caller, ptr, &stat)
}

/// As wasmtime: only an open file's flags change, and only APPEND (and NONBLOCK, which
/// changes nothing here); the SYNC family is refused. A socket's NONBLOCK is all it has.
fn fd_fdstat_set_flags(ctx: &mut WasiCtx, fd: u32, flags: u32) -> Result<(), Errno> {
    let (append, kept) = match ctx.fds.get_mut(fd)? {
        Fd::File(file) => (&mut file.append, &mut file.flags),
        Fd::HostFile(file) => (&mut file.append, &mut file.flags),
        Fd::Socket(socket) => return socket.set_flags(u16::try_from(flags).map_err(|_| Errno::Inval)?),
        _ => return Err(Errno::BadF),
    };
    if flags as u16 & (FDFLAGS_DSYNC | FDFLAGS_RSYNC | FDFLAGS_SYNC) != 0 {
        return Err(Errno::Inval);
    }
    *append = flags as u16 & FDFLAGS_APPEND != 0;
    *kept = (*kept & !FDFLAGS_NONBLOCK) | (flags as u16 & FDFLAGS_NONBLOCK);
    Ok(())
}

fn fd_filestat_get(caller: &mut Caller<'_, WasiCtx>, fd: u32, ptr: u32) -> Result<(), Errno> {
    let bytes = match caller.data().fds.get(fd)? {
        Fd::Stdin | Fd::Stdout | Fd::Stderr => filestat_bytes(UNKNOWN, None),
        Fd::Socket(_) => filestat_bytes(SOCKET_STREAM, None),
        Fd::Dir { node, .. } | Fd::File(OpenFile { node, .. }) => {
            let stat = node.borrow().stat();
            filestat_bytes(filetype(stat.file_type), Some(&stat))
        }
        Fd::HostDir(HostDir { handle, .. }) | Fd::HostFile(HostFile { handle, .. }) => {
            host::filestat_bytes(&crate::volume::stat(handle, b"", false).map_err(host::from_linux)?)
        }
    };
    write_bytes(caller, ptr, &bytes)
}

fn fd_filestat_set_size(ctx: &mut WasiCtx, fd: u32, size: u64) -> Result<(), Errno> {
    let now = ctx.clocks.realtime_ns();
    match ctx.fds.get(fd)? {
        Fd::File(file) if file.writable => Ok(file.node.borrow_mut().set_size(size, now)?),
        Fd::HostFile(file) if file.writable => crate::volume::set_size(&file.handle, size).map_err(host::from_linux),
        // As wasmtime: a file not opened for writing cannot be resized.
        Fd::File(_) | Fd::HostFile(_) => Err(Errno::Inval),
        Fd::Dir { .. } | Fd::HostDir(_) | Fd::Socket(_) => Err(Errno::BadF),
        Fd::Stdin | Fd::Stdout | Fd::Stderr => Err(Errno::Inval),
    }
}

fn fd_filestat_set_times(ctx: &mut WasiCtx, fd: u32, atim: u64, mtim: u64, flags: u32) -> Result<(), Errno> {
    let now = ctx.clocks.realtime_ns();
    match ctx.fds.get(fd)? {
        Fd::Dir { node, .. } | Fd::File(OpenFile { node, .. }) => set_times(node, atim, mtim, flags as u16, now),
        Fd::HostDir(HostDir { handle, .. }) | Fd::HostFile(HostFile { handle, .. }) => {
            crate::volume::set_times(handle, b"", false, atim, mtim, flags.into()).map_err(host::from_linux)
        }
        Fd::Stdin | Fd::Stdout | Fd::Stderr | Fd::Socket(_) => Err(Errno::BadF),
    }
}

/// The guest path of a preopened directory.
fn preopen_name(ctx: &WasiCtx, fd: u32) -> Result<&'static [u8], Errno> {
    match ctx.fds.get(fd)? {
        Fd::Dir { preopen: Some(name), .. } | Fd::HostDir(HostDir { preopen: Some(name), .. }) => Ok(name),
        _ => Err(Errno::BadF),
    }
}

fn fd_prestat_get(caller: &mut Caller<'_, WasiCtx>, fd: u32, ptr: u32) -> Result<(), Errno> {
    let name = preopen_name(caller.data(), fd)?;
    // struct prestat { u8 tag (0: dir); u32 name_len @4 }
    let mut prestat = [0u8; 8];
    prestat[4..8].copy_from_slice(&(name.len() as u32).to_le_bytes());
    write_bytes(caller, ptr, &prestat)
}

fn fd_prestat_dir_name(caller: &mut Caller<'_, WasiCtx>, fd: u32, ptr: u32, len: u32) -> Result<(), Errno> {
    let name = preopen_name(caller.data(), fd)?;
    if (len as usize) < name.len() {
        return Err(Errno::NameTooLong);
    }
    write_bytes(caller, ptr, name)
}

/// `fd_sync`, `fd_datasync`: nothing to do in memory, but the fd must exist; a volume's file
/// goes to the host's disk.
fn sync(ctx: &WasiCtx, fd: u32) -> Result<(), Errno> {
    match ctx.fds.get(fd)? {
        Fd::HostFile(HostFile { handle, .. }) => crate::volume::sync(handle).map_err(host::from_linux),
        _ => Ok(()),
    }
}

fn exists(ctx: &WasiCtx, fd: u32) -> Result<(), Errno> {
    ctx.fds.get(fd).map(drop)
}

/// `fd_advise`, `fd_allocate`: as wasmtime, for an open file only (`BADF` otherwise).
fn is_file(ctx: &WasiCtx, fd: u32) -> Result<(), Errno> {
    match ctx.fds.get(fd)? {
        Fd::File(_) | Fd::HostFile(_) => Ok(()),
        _ => Err(Errno::BadF),
    }
}

pub fn add_to_linker(linker: &mut WasiLinker<'_>) -> wasmtime::Result<()> {
    linker.func_wrap(MODULE, "fd_close", |mut c: Caller<'_, WasiCtx>, fd: u32| to_errno(fd_close(c.data_mut(), fd)))?;
    linker.func_wrap(MODULE, "fd_renumber", |mut c: Caller<'_, WasiCtx>, from: u32, to: u32| {
        to_errno(fd_renumber(c.data_mut(), from, to))
    })?;
    linker.func_wrap(MODULE, "fd_fdstat_get", |mut c: Caller<'_, WasiCtx>, fd: u32, ptr: u32| {
        to_errno(fd_fdstat_get(&mut c, fd, ptr))
    })?;
    linker.func_wrap(MODULE, "fd_fdstat_set_flags", |mut c: Caller<'_, WasiCtx>, fd: u32, flags: u32| {
        to_errno(fd_fdstat_set_flags(c.data_mut(), fd, flags))
    })?;
    linker.func_wrap(MODULE, "fd_fdstat_set_rights", |c: Caller<'_, WasiCtx>, fd: u32, _: u64, _: u64| {
        // Rights are advisory in current WASI runtimes; wasmtime no longer narrows them.
        to_errno(exists(c.data(), fd).and(Err(Errno::NotSup)))
    })?;
    linker.func_wrap(MODULE, "fd_filestat_get", |mut c: Caller<'_, WasiCtx>, fd: u32, ptr: u32| {
        to_errno(fd_filestat_get(&mut c, fd, ptr))
    })?;
    linker.func_wrap(MODULE, "fd_filestat_set_size", |mut c: Caller<'_, WasiCtx>, fd: u32, size: u64| {
        to_errno(fd_filestat_set_size(c.data_mut(), fd, size))
    })?;
    linker.func_wrap(
        MODULE,
        "fd_filestat_set_times",
        |mut c: Caller<'_, WasiCtx>, fd: u32, atim: u64, mtim: u64, flags: u32| {
            to_errno(fd_filestat_set_times(c.data_mut(), fd, atim, mtim, flags))
        },
    )?;
    linker.func_wrap(MODULE, "fd_prestat_get", |mut c: Caller<'_, WasiCtx>, fd: u32, ptr: u32| {
        to_errno(fd_prestat_get(&mut c, fd, ptr))
    })?;
    linker.func_wrap(MODULE, "fd_prestat_dir_name", |mut c: Caller<'_, WasiCtx>, fd: u32, ptr: u32, len: u32| {
        to_errno(fd_prestat_dir_name(&mut c, fd, ptr, len))
    })?;
    linker.func_wrap(MODULE, "fd_sync", |c: Caller<'_, WasiCtx>, fd: u32| to_errno(sync(c.data(), fd)))?;
    linker.func_wrap(MODULE, "fd_datasync", |c: Caller<'_, WasiCtx>, fd: u32| to_errno(sync(c.data(), fd)))?;
    linker.func_wrap(MODULE, "fd_advise", |c: Caller<'_, WasiCtx>, fd: u32, _: u64, _: u64, advice: u32| {
        to_errno(is_file(c.data(), fd).and(if advice > 5 { Err(Errno::Inval) } else { Ok(()) }))
    })?;
    linker.func_wrap(MODULE, "fd_allocate", |c: Caller<'_, WasiCtx>, fd: u32, _: u64, _: u64| {
        // As in wasmtime: preallocation is not offered.
        to_errno(is_file(c.data(), fd).and(Err(Errno::NotSup)))
    })?;
    Ok(())
}

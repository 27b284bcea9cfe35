//! The `path_*` calls and `fd_readdir`: everything that names files inside a directory
//! descriptor. Paths are copied out of the module's memory and resolved by the file tree,
//! which confines them to that directory.

use super::errno::{to_errno, Errno};
use super::fd::{self, filestat_bytes, filetype, Fd, OpenFile};
use super::host::{self, from_linux, HostDir, OpenRequest};
use super::{memory, write_bytes, write_u32, WasiCtx, WasiLinker, MODULE};
use crate::volume;
use alloc::vec::Vec;
use wasmcell_abi::file::Op;
use wasmcell_guest_fs::{self as fs, NodeRef, OpenFlags};
use wasmtime::Caller;

/// `lookupflags::symlink_follow`.
const SYMLINK_FOLLOW: u32 = 1;
// `oflags` bits.
const O_CREAT: u32 = 1;
const O_DIRECTORY: u32 = 2;
const O_EXCL: u32 = 4;
const O_TRUNC: u32 = 8;

/// The path at `ptr..ptr+len` of the module's memory.
fn read_path(caller: &mut Caller<'_, WasiCtx>, ptr: u32, len: u32) -> Result<Vec<u8>, Errno> {
    let memory = memory(caller)?;
    let data = memory.data(&*caller);
    let start = ptr as usize;
    Ok(data.get(start..start.checked_add(len as usize).ok_or(Errno::Fault)?).ok_or(Errno::Fault)?.to_vec())
}

/// The directory of `fd`, the path, and the current time: what every path call starts from.
fn dir_and_path(
    caller: &mut Caller<'_, WasiCtx>,
    fd: u32,
    ptr: u32,
    len: u32,
) -> Result<(NodeRef, Vec<u8>, u64), Errno> {
    let dir = caller.data().fds.dir(fd)?;
    Ok((dir, read_path(caller, ptr, len)?, caller.data().clocks.realtime_ns()))
}

/// `act` on the volume directory `fd` and the path at `path`, if `fd` is one (`None` for any
/// other descriptor: the tree's calls handle it).
fn in_volume<T>(
    caller: &mut Caller<'_, WasiCtx>,
    fd: u32,
    path: (u32, u32),
    act: impl FnOnce(&HostDir, &[u8]) -> Result<T, Errno>,
) -> Option<Result<T, Errno>> {
    caller.data().fds.host_dir(fd)?;
    let path = match read_path(caller, path.0, path.1) {
        Ok(path) => path,
        Err(e) => return Some(Err(e)),
    };
    Some(caller.data().fds.host_dir(fd).ok_or(Errno::BadF).and_then(|dir| act(dir, &path)))
}

#[allow(clippy::too_many_arguments)] // The WASI signature.
fn path_open(
    caller: &mut Caller<'_, WasiCtx>,
    fd: u32,
    dirflags: u32,
    path: (u32, u32),
    oflags: u32,
    rights: u64,
    fdflags: u32,
    out: u32,
) -> Result<(), Errno> {
    let flags = OpenFlags {
        create: oflags & O_CREAT != 0,
        directory: oflags & O_DIRECTORY != 0,
        exclusive: oflags & O_EXCL != 0,
        truncate: oflags & O_TRUNC != 0,
        follow: dirflags & SYMLINK_FOLLOW != 0,
    };
    // As wasmtime decides it: which rights make a descriptor readable or writable (reads are
    // let through with `FD_READDIR` too; writes and resizes need `FD_WRITE`).
    let readable = rights & (fd::FD_READ | fd::FD_READDIR) != 0;
    let writable = rights & fd::FD_WRITE != 0;
    let request = OpenRequest {
        open: flags,
        readable,
        writable,
        read_right: rights & fd::FD_READ != 0,
        write_right: rights & fd::FD_WRITE != 0,
        fdflags: fdflags as u16,
    };
    let opened = match in_volume(caller, fd, path, |dir, path| host::path_open(dir, path, &request)) {
        Some(opened) => opened?,
        None => {
            let (dir, path, now) = dir_and_path(caller, fd, path.0, path.1)?;
            let node = fs::open(&dir, &path, flags, now)?;
            let host = node.borrow().host();
            match host {
                Some(handle) => host::open_file_volume(caller.data(), handle, &request)?,
                None => tree_open(node, &request)?,
            }
        }
    };
    let number = caller.data_mut().fds.insert(opened)?;
    write_u32(caller, out, number)
}

/// The descriptor for a node of the tree `path_open` opened.
fn tree_open(node: NodeRef, request: &OpenRequest) -> Result<Fd, Errno> {
    let OpenRequest { readable, writable, read_right, write_right, fdflags, .. } = *request;
    let kept = fdflags & fd::FDFLAGS_KEPT;
    if node.borrow().is_dir() {
        if writable {
            return Err(Errno::IsDir);
        }
        return Ok(Fd::Dir { node, preopen: None, read_right, flags: kept });
    }
    let append = fdflags & fd::FDFLAGS_APPEND != 0;
    let writable = writable || append;
    Ok(Fd::File(OpenFile { node, position: 0, readable, writable, append, read_right, write_right, flags: kept }))
}

fn path_filestat_get(
    caller: &mut Caller<'_, WasiCtx>,
    fd: u32,
    flags: u32,
    path: (u32, u32),
    out: u32,
) -> Result<(), Errno> {
    let follow = flags & SYMLINK_FOLLOW != 0;
    if let Some(stat) =
        in_volume(caller, fd, path, |dir, path| volume::stat(&dir.handle, path, follow).map_err(from_linux))
    {
        return write_bytes(caller, out, &host::filestat_bytes(&stat?));
    }
    let (dir, path, _) = dir_and_path(caller, fd, path.0, path.1)?;
    let node = lookup(&dir, &path, flags)?;
    let host = node.borrow().host();
    if let Some(handle) = host {
        let stat = volume::stat(&volume::Handle::volume(handle), b"", false).map_err(from_linux)?;
        return write_bytes(caller, out, &host::filestat_bytes(&stat));
    }
    let stat = node.borrow().stat();
    write_bytes(caller, out, &filestat_bytes(filetype(stat.file_type), Some(&stat)))
}

fn lookup(dir: &NodeRef, path: &[u8], flags: u32) -> Result<NodeRef, Errno> {
    Ok(lookup_node(dir, path, flags & SYMLINK_FOLLOW != 0)?)
}

/// The node at `path`, which must exist (and be a directory if the path ends in `/`).
pub(crate) fn lookup_node(dir: &NodeRef, path: &[u8], follow: bool) -> Result<NodeRef, fs::Error> {
    let resolved = fs::resolve(dir, path, follow)?;
    let node = resolved.node.ok_or(fs::Error::NoEnt)?;
    if resolved.trailing_slash && !node.borrow().is_dir() {
        return Err(fs::Error::NotDir);
    }
    Ok(node)
}

#[allow(clippy::too_many_arguments)] // The WASI signature.
fn path_filestat_set_times(
    caller: &mut Caller<'_, WasiCtx>,
    fd: u32,
    flags: u32,
    path: (u32, u32),
    atim: u64,
    mtim: u64,
    fst_flags: u32,
) -> Result<(), Errno> {
    let follow = flags & SYMLINK_FOLLOW != 0;
    let set = |dir: &HostDir, path: &[u8]| {
        volume::set_times(&dir.handle, path, follow, atim, mtim, fst_flags.into()).map_err(from_linux)
    };
    if let Some(result) = in_volume(caller, fd, path, set) {
        return result;
    }
    let (dir, path, now) = dir_and_path(caller, fd, path.0, path.1)?;
    fd::set_times(&lookup(&dir, &path, flags)?, atim, mtim, fst_flags as u16, now)
}

fn path_readlink(
    caller: &mut Caller<'_, WasiCtx>,
    fd: u32,
    path: (u32, u32),
    buf: u32,
    len: u32,
    out: u32,
) -> Result<(), Errno> {
    let read = |dir: &HostDir, path: &[u8]| volume::read_link(&dir.handle, path, len as usize).map_err(from_linux);
    let target = match in_volume(caller, fd, path, read) {
        Some(target) => target?,
        None => {
            let (dir, path, _) = dir_and_path(caller, fd, path.0, path.1)?;
            fs::read_link(&dir, &path)?
        }
    };
    let n = target.len().min(len as usize);
    write_bytes(caller, buf, &target[..n])?;
    write_u32(caller, out, n as u32)
}

fn fd_readdir(
    caller: &mut Caller<'_, WasiCtx>,
    fd: u32,
    buf: u32,
    len: u32,
    cookie: u64,
    out: u32,
) -> Result<(), Errno> {
    if let Fd::HostDir(dir) = caller.data().fds.get(fd)? {
        let bytes = host::read_dir(dir, len as usize, cookie)?;
        write_bytes(caller, buf, &bytes)?;
        return write_u32(caller, out, bytes.len() as u32);
    }
    let Fd::Dir { node, .. } = caller.data().fds.get(fd)? else { return Err(Errno::NotDir) };
    let node = node.clone();
    let mut node = node.borrow_mut();
    let ino = node.ino;
    let dot = [(&b"."[..], ino, fd::filetype(fs::FileType::Directory)); 1];
    let dotdot = [(&b".."[..], ino, fd::filetype(fs::FileType::Directory)); 1];
    let entries = node.dir()?;
    let children = entries.iter().map(|(name, child)| {
        let child = child.borrow();
        (name.as_slice(), child.ino, filetype(child.file_type()))
    });
    // Serialise entries from `cookie` until the buffer is full; a cut-off last entry tells
    // the caller (wasi-libc) to come back with a bigger buffer or the next cookie.
    let mut bytes = Vec::new();
    let all = dot.into_iter().chain(dotdot).chain(children);
    for (index, (name, ino, kind)) in all.enumerate().skip(usize::try_from(cookie).unwrap_or(usize::MAX)) {
        if bytes.len() >= len as usize {
            break;
        }
        // struct dirent { u64 d_next; u64 d_ino; u32 d_namlen; u8 d_type } (24 bytes), then the name.
        bytes.extend_from_slice(&(index as u64 + 1).to_le_bytes());
        bytes.extend_from_slice(&ino.to_le_bytes());
        bytes.extend_from_slice(&(name.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&[kind, 0, 0, 0]);
        bytes.extend_from_slice(name);
    }
    drop(node);
    bytes.truncate(len as usize);
    write_bytes(caller, buf, &bytes)?;
    write_u32(caller, out, bytes.len() as u32)
}

/// A path call that changes the tree: `fs_op(dir, path, now)`, or `op` in a volume.
fn change(
    caller: &mut Caller<'_, WasiCtx>,
    fd: u32,
    path: (u32, u32),
    fs_op: fn(&NodeRef, &[u8], u64) -> Result<(), fs::Error>,
    op: Op,
) -> Result<(), Errno> {
    if let Some(result) = in_volume(caller, fd, path, |dir, path| host::change(op, dir, path)) {
        return result;
    }
    let (dir, path, now) = dir_and_path(caller, fd, path.0, path.1)?;
    Ok(fs_op(&dir, &path, now)?)
}

fn path_rename(
    caller: &mut Caller<'_, WasiCtx>,
    old_fd: u32,
    old: (u32, u32),
    new_fd: u32,
    new: (u32, u32),
) -> Result<(), Errno> {
    if let Some(result) = host_two(caller, Op::Rename, (old_fd, old), (new_fd, new)) {
        return result;
    }
    let (old_dir, old_path, now) = dir_and_path(caller, old_fd, old.0, old.1)?;
    let (new_dir, new_path, _) = dir_and_path(caller, new_fd, new.0, new.1)?;
    Ok(fs::rename(&old_dir, &old_path, &new_dir, &new_path, now)?)
}

/// A rename or link naming a volume directory: carried out by the device if both are in
/// volumes, `XDEV` if only one is (as between two of wasmtime's preopens); `None` if neither.
fn host_two(
    caller: &mut Caller<'_, WasiCtx>,
    op: Op,
    (old_fd, old): (u32, (u32, u32)),
    (new_fd, new): (u32, (u32, u32)),
) -> Option<Result<(), Errno>> {
    let fds = &caller.data().fds;
    match (fds.host_dir(old_fd).is_some(), fds.host_dir(new_fd).is_some()) {
        (false, false) => None,
        (true, true) => Some((|| {
            let (old_path, new_path) = (read_path(caller, old.0, old.1)?, read_path(caller, new.0, new.1)?);
            let fds = &caller.data().fds;
            let (from, to) = (fds.host_dir(old_fd).ok_or(Errno::BadF)?, fds.host_dir(new_fd).ok_or(Errno::BadF)?);
            volume::change_two(op, &from.handle, &old_path, &to.handle, &new_path).map_err(from_linux)
        })()),
        // The other is a tree directory, or no directory at all.
        _ => Some(fds.dir(if fds.host_dir(old_fd).is_some() { new_fd } else { old_fd }).and(Err(Errno::XDev))),
    }
}

fn path_link(
    caller: &mut Caller<'_, WasiCtx>,
    old_fd: u32,
    flags: u32,
    old: (u32, u32),
    new_fd: u32,
    new: (u32, u32),
) -> Result<(), Errno> {
    if let Some(result) = host_two(caller, Op::Link, (old_fd, old), (new_fd, new)) {
        // The device links a symlink itself, never what it points to.
        return result;
    }
    let (old_dir, old_path, now) = dir_and_path(caller, old_fd, old.0, old.1)?;
    let (new_dir, new_path, _) = dir_and_path(caller, new_fd, new.0, new.1)?;
    Ok(fs::link(&old_dir, &old_path, flags & SYMLINK_FOLLOW != 0, &new_dir, &new_path, now)?)
}

fn path_symlink(caller: &mut Caller<'_, WasiCtx>, target: (u32, u32), fd: u32, path: (u32, u32)) -> Result<(), Errno> {
    let target = read_path(caller, target.0, target.1)?;
    let make = |dir: &HostDir, path: &[u8]| volume::symlink(&target, &dir.handle, path).map_err(from_linux);
    if let Some(result) = in_volume(caller, fd, path, make) {
        return result;
    }
    let (dir, path, now) = dir_and_path(caller, fd, path.0, path.1)?;
    Ok(fs::symlink(&target, &dir, &path, now)?)
}

type C<'a> = Caller<'a, WasiCtx>;

pub fn add_to_linker(linker: &mut WasiLinker<'_>) -> wasmtime::Result<()> {
    linker.func_wrap(
        MODULE,
        "path_open",
        |mut c: C<'_>,
         fd: u32,
         dirflags: u32,
         p: u32,
         pl: u32,
         oflags: u32,
         base: u64,
         _inh: u64,
         fdflags: u32,
         out: u32| { to_errno(path_open(&mut c, fd, dirflags, (p, pl), oflags, base, fdflags, out)) },
    )?;
    linker.func_wrap(MODULE, "path_filestat_get", |mut c: C<'_>, fd: u32, flags: u32, p: u32, pl: u32, out: u32| {
        to_errno(path_filestat_get(&mut c, fd, flags, (p, pl), out))
    })?;
    linker.func_wrap(
        MODULE,
        "path_filestat_set_times",
        |mut c: C<'_>, fd: u32, flags: u32, p: u32, pl: u32, atim: u64, mtim: u64, fst: u32| {
            to_errno(path_filestat_set_times(&mut c, fd, flags, (p, pl), atim, mtim, fst))
        },
    )?;
    linker.func_wrap(
        MODULE,
        "path_readlink",
        |mut c: C<'_>, fd: u32, p: u32, pl: u32, buf: u32, len: u32, out: u32| {
            to_errno(path_readlink(&mut c, fd, (p, pl), buf, len, out))
        },
    )?;
    linker.func_wrap(MODULE, "fd_readdir", |mut c: C<'_>, fd: u32, buf: u32, len: u32, cookie: u64, out: u32| {
        to_errno(fd_readdir(&mut c, fd, buf, len, cookie, out))
    })?;
    linker.func_wrap(MODULE, "path_create_directory", |mut c: C<'_>, fd: u32, p: u32, pl: u32| {
        to_errno(change(&mut c, fd, (p, pl), fs::create_dir, Op::CreateDir))
    })?;
    linker.func_wrap(MODULE, "path_remove_directory", |mut c: C<'_>, fd: u32, p: u32, pl: u32| {
        to_errno(change(&mut c, fd, (p, pl), fs::remove_dir, Op::RemoveDir))
    })?;
    linker.func_wrap(MODULE, "path_unlink_file", |mut c: C<'_>, fd: u32, p: u32, pl: u32| {
        to_errno(change(&mut c, fd, (p, pl), fs::unlink, Op::Unlink))
    })?;
    linker.func_wrap(
        MODULE,
        "path_rename",
        |mut c: C<'_>, fd: u32, p: u32, pl: u32, nfd: u32, np: u32, npl: u32| {
            to_errno(path_rename(&mut c, fd, (p, pl), nfd, (np, npl)))
        },
    )?;
    linker.func_wrap(
        MODULE,
        "path_link",
        |mut c: C<'_>, fd: u32, flags: u32, p: u32, pl: u32, nfd: u32, np: u32, npl: u32| {
            to_errno(path_link(&mut c, fd, flags, (p, pl), nfd, (np, npl)))
        },
    )?;
    linker.func_wrap(MODULE, "path_symlink", |mut c: C<'_>, t: u32, tl: u32, fd: u32, p: u32, pl: u32| {
        to_errno(path_symlink(&mut c, (t, tl), fd, (p, pl)))
    })?;
    Ok(())
}

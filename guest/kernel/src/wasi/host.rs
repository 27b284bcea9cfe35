//! Preview-1 calls on the workload's volumes (`wasmcell run --volume`, a pod's writable mounts):
//! directories and files the VMM's file device (`crate::volume`) serves from the host, write
//! through, beside the in-memory tree. `fd`, `io` and `path` hand a call here when its
//! descriptor is a [`HostDir`] or a [`HostFile`]; data moves through a heap buffer (the device
//! reaches the guest heap, not a module's memory), at most `MAX_TRANSFER` bytes per exit.

use super::errno::Errno;
use super::fd::{self, Fd};
use crate::volume::{self, Handle};
use alloc::vec::Vec;
use wasmcell_abi::file::{kind, Dirent, Op, Stat, APPEND, MAX_TRANSFER};

/// A directory of a volume (its root, preopened, or one opened beneath it).
pub struct HostDir {
    pub handle: Handle,
    /// The guest path, for a volume's root.
    pub preopen: Option<&'static [u8]>,
    pub read_right: bool,
    pub flags: u16,
}

/// A file of a volume, opened.
pub struct HostFile {
    pub handle: Handle,
    pub position: u64,
    pub readable: bool,
    pub writable: bool,
    pub append: bool,
    pub read_right: bool,
    pub write_right: bool,
    pub flags: u16,
}

/// The WASI error for a Linux one the device answered.
pub fn from_linux(errno: volume::Errno) -> Errno {
    match errno {
        1 => Errno::Perm,
        2 => Errno::NoEnt,
        6 => Errno::Nxio,
        9 => Errno::BadF,
        11 => Errno::Again,
        12 => Errno::NoMem,
        13 => Errno::Acces,
        16 => Errno::Busy,
        17 => Errno::Exist,
        18 => Errno::XDev,
        20 => Errno::NotDir,
        21 => Errno::IsDir,
        22 => Errno::Inval,
        23 => Errno::NFile,
        24 => Errno::MFile,
        26 => Errno::TxtBsy,
        27 => Errno::FBig,
        28 => Errno::NoSpc,
        29 => Errno::SPipe,
        30 => Errno::RoFs,
        31 => Errno::MLink,
        36 => Errno::NameTooLong,
        39 => Errno::NotEmpty,
        40 => Errno::Loop,
        75 => Errno::Overflow,
        122 => Errno::DQuot,
        _ => Errno::Io,
    }
}

fn filetype(kind: u8) -> u8 {
    match kind {
        kind::DIRECTORY | kind::REGULAR_FILE | kind::SYMBOLIC_LINK | kind::BLOCK_DEVICE | kind::CHARACTER_DEVICE => {
            kind
        }
        kind::SOCKET => 6,
        _ => 0,
    }
}

/// `filestat` as WASI lays it out (64 bytes).
pub fn filestat_bytes(stat: &Stat) -> [u8; 64] {
    let mut out = [0u8; 64];
    out[..8].copy_from_slice(&stat.dev.to_le_bytes());
    out[8..16].copy_from_slice(&stat.ino.to_le_bytes());
    out[16] = filetype(stat.kind);
    out[24..32].copy_from_slice(&stat.nlink.to_le_bytes());
    out[32..40].copy_from_slice(&stat.size.to_le_bytes());
    out[40..48].copy_from_slice(&stat.atime_ns.to_le_bytes());
    out[48..56].copy_from_slice(&stat.mtime_ns.to_le_bytes());
    out[56..64].copy_from_slice(&stat.ctime_ns.to_le_bytes());
    out
}

/// The volume roots of the workload blob's directory volumes, preopened in its order: `(index,
/// guest path, read-only)` each.
pub fn preopens(volumes: impl Iterator<Item = (u32, &'static [u8])>) -> Vec<Fd> {
    volumes
        .map(|(index, path)| {
            Fd::HostDir(HostDir { handle: Handle::volume(index), preopen: Some(path), read_right: true, flags: 0 })
        })
        .collect()
}

/// What `path_open` asks for, decoded from its WASI arguments.
#[derive(Clone, Copy)]
pub struct OpenRequest {
    /// How the path is treated (create, truncate, follow, …), as for the in-memory tree.
    pub open: wasmcell_guest_fs::OpenFlags,
    pub readable: bool,
    pub writable: bool,
    pub read_right: bool,
    pub write_right: bool,
    pub fdflags: u16,
}

/// `path_open` beneath a volume directory.
pub fn path_open(dir: &HostDir, path: &[u8], request: &OpenRequest) -> Result<Fd, Errno> {
    let append = request.fdflags & fd::FDFLAGS_APPEND != 0;
    let read = request.readable || !(request.writable || append);
    let flags = volume::open_flags(&request.open, read, request.writable, append);
    let (handle, stat) = volume::open(&dir.handle, path, flags).map_err(from_linux)?;
    if stat.kind == kind::DIRECTORY && request.writable {
        // Dropped (closed): a directory is not opened for writing, as in the tree.
        return Err(Errno::IsDir);
    }
    Ok(if stat.kind == kind::DIRECTORY {
        let flags = request.fdflags & fd::FDFLAGS_KEPT;
        Fd::HostDir(HostDir { handle, preopen: None, read_right: request.read_right, flags })
    } else {
        Fd::HostFile(HostFile::opened(handle, request))
    })
}

impl HostFile {
    /// The descriptor `request` opens on `handle`, at position 0.
    fn opened(handle: Handle, request: &OpenRequest) -> Self {
        let append = request.fdflags & fd::FDFLAGS_APPEND != 0;
        Self {
            handle,
            position: 0,
            readable: request.readable,
            writable: request.writable || append,
            append,
            read_right: request.read_right,
            write_right: request.write_right,
            flags: request.fdflags & fd::FDFLAGS_KEPT,
        }
    }
}

/// `path_open` of a file volume the tree holds (`handle`): the volume's own handle, its
/// position the descriptor's; truncated through the device if asked.
pub fn open_file_volume(ctx: &super::WasiCtx, handle: u32, request: &OpenRequest) -> Result<Fd, Errno> {
    let file = HostFile::opened(Handle::volume(handle), request);
    if file.writable && ctx.read_only_files.contains(&handle) {
        return Err(Errno::RoFs);
    }
    if request.open.truncate && file.writable {
        volume::set_size(&file.handle, 0).map_err(from_linux)?;
    }
    Ok(Fd::HostFile(file))
}

/// Reads into (or writes from) `iovecs` of `memory`, at `offset` or the file's position;
/// bytes moved. A short transfer ends it.
pub fn transfer(
    file: &mut HostFile,
    memory: &mut [u8],
    iovecs: &[(usize, usize)],
    offset: Option<u64>,
    write: bool,
) -> Result<usize, Errno> {
    let mut position = offset.unwrap_or(file.position);
    let wanted = iovecs.iter().map(|v| v.1).fold(0usize, usize::saturating_add).min(u32::MAX as usize);
    let mut buf = alloc::vec![0u8; wanted.min(MAX_TRANSFER as usize)];
    let mut total = 0usize;
    'vecs: for &(at, len) in iovecs {
        let len = len.min(wanted - total);
        let bytes = memory.get_mut(at..at.checked_add(len).ok_or(Errno::Fault)?).ok_or(Errno::Fault)?;
        let mut done = 0;
        while done < len {
            let chunk = (len - done).min(buf.len());
            let n = if write {
                buf[..chunk].copy_from_slice(&bytes[done..done + chunk]);
                let at = if file.append && offset.is_none() { APPEND } else { position };
                volume::write(&file.handle, &buf[..chunk], at)
            } else {
                volume::read(&file.handle, &mut buf[..chunk], position).inspect(|&n| {
                    bytes[done..done + n].copy_from_slice(&buf[..n]);
                })
            };
            let n = match n {
                Ok(n) => n,
                // Bytes already moved are reported; the error comes with the next call.
                Err(_) if total > 0 => break 'vecs,
                Err(e) => return Err(from_linux(e)),
            };
            done += n;
            total += n;
            position += n as u64;
            if n < chunk {
                break 'vecs;
            }
        }
    }
    if offset.is_none() && !(write && file.append) {
        file.position = position;
    }
    Ok(total)
}

/// `fd_readdir` of a volume directory: `.` and `..` (cookies 0 and 1), then the host's entries
/// (cookie = the host's plus 2), serialised until `len` bytes, the last one cut off if it does
/// not fit (which tells wasi-libc there is more).
pub fn read_dir(dir: &HostDir, len: usize, cookie: u64) -> Result<Vec<u8>, Errno> {
    let mut bytes = Vec::new();
    if cookie < 2 {
        let ino = volume::stat(&dir.handle, b"", false).map_err(from_linux)?.ino;
        for (index, name) in [(0u64, &b"."[..]), (1, b"..")].into_iter().skip(cookie as usize) {
            bytes.extend_from_slice(&Dirent::header(index + 1, ino, kind::DIRECTORY, name.len() as u32));
            bytes.extend_from_slice(name);
        }
    }
    let mut host_cookie = cookie.saturating_sub(2);
    let mut buf = alloc::vec![0u8; (len + Dirent::SIZE + 256).min(MAX_TRANSFER as usize)];
    while bytes.len() < len {
        let n = volume::read_dir(&dir.handle, &mut buf, host_cookie).map_err(from_linux)?;
        if n == 0 {
            break;
        }
        let mut rest = &buf[..n];
        while let Some((entry, after)) = Dirent::parse(rest) {
            let next = entry.next.saturating_add(2);
            bytes.extend_from_slice(&Dirent::header(next, entry.ino, filetype(entry.kind), entry.name.len() as u32));
            bytes.extend_from_slice(entry.name);
            host_cookie = entry.next;
            rest = after;
        }
    }
    bytes.truncate(len);
    Ok(bytes)
}

/// A path call that changes a volume's tree.
pub fn change(op: Op, dir: &HostDir, path: &[u8]) -> Result<(), Errno> {
    volume::change(op, &dir.handle, path).map_err(from_linux)
}

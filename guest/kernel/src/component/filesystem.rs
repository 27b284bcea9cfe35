//! `wasi:filesystem` (types, preopens) over the same files as preview 1: the preopens are
//! preview 1's — the in-memory tree's (`--dir`, snapshot semantics), whose paths go through the
//! tree's resolver (confined to the descriptor it starts from), and the volumes' (write-through,
//! served by the file device, which confines paths on the host) — and each error is the code
//! wasmtime gives for the same case (preview 1 and 0.2 share their meaning there).

use super::bindings::wasi::filesystem::preopens;
use super::bindings::wasi::filesystem::types::{
    self, Advice, DescriptorFlags, DescriptorStat, DescriptorType, DirectoryEntry, ErrorCode, MetadataHashValue,
    NewTimestamp, OpenFlags, PathFlags,
};
use super::node::{self, HostNode, Node};
use super::{ComponentCtx, InputStream, IoError, OutputStream};
use crate::volume::{self, Handle};
use crate::wasi::Preopen;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use wasmcell_abi::file::{self, times, Dirent, Op};
use wasmcell_guest_fs::{self as fs, FileType, NodeRef};
use wasmtime::component::Resource;

type FsResult<T> = wasmtime::Result<Result<T, ErrorCode>>;

/// Most bytes one `read` returns (larger requests are cut short, as wasmtime does).
const MAX_READ: u64 = 1 << 20;

/// An open file or directory (`wasi:filesystem/types.descriptor`).
pub struct Descriptor {
    node: Node,
    /// What it was opened for, as wasmtime records it (`get-flags` reports it): `READ` and
    /// `WRITE` for a file, `READ` and `MUTATE_DIRECTORY` for a directory.
    flags: DescriptorFlags,
}

// SAFETY: as for the streams (`io.rs`): the `Rc` it holds never leaves the workload's vCPU,
// which runs no other thread.
unsafe impl Send for Descriptor {}

/// A snapshot of a directory's entries, taken by `read-directory`, handed out one by one.
pub struct DirectoryEntries(alloc::vec::IntoIter<DirectoryEntry>);

impl From<fs::Error> for ErrorCode {
    fn from(error: fs::Error) -> Self {
        match error {
            fs::Error::NoEnt => ErrorCode::NoEntry,
            fs::Error::Exist => ErrorCode::Exist,
            fs::Error::NotDir => ErrorCode::NotDirectory,
            fs::Error::IsDir => ErrorCode::IsDirectory,
            fs::Error::NotEmpty => ErrorCode::NotEmpty,
            // What wasmtime answers for a path that leaves its preopen.
            fs::Error::Escape | fs::Error::Perm => ErrorCode::NotPermitted,
            fs::Error::Loop => ErrorCode::Loop,
            fs::Error::Inval => ErrorCode::Invalid,
            fs::Error::NoSpace => ErrorCode::InsufficientSpace,
            fs::Error::TooBig => ErrorCode::FileTooLarge,
        }
    }
}

fn descriptor_type(file_type: FileType) -> DescriptorType {
    match file_type {
        FileType::RegularFile => DescriptorType::RegularFile,
        FileType::Directory => DescriptorType::Directory,
        FileType::SymbolicLink => DescriptorType::SymbolicLink,
    }
}

/// The new value of a timestamp, `None` for no change.
fn new_time(timestamp: &NewTimestamp, now_ns: u64) -> Result<Option<u64>, ErrorCode> {
    match timestamp {
        NewTimestamp::NoChange => Ok(None),
        NewTimestamp::Now => Ok(Some(now_ns)),
        NewTimestamp::Timestamp(at) => at
            .seconds
            .checked_mul(1_000_000_000)
            .and_then(|ns| ns.checked_add(u64::from(at.nanoseconds)))
            .map(Some)
            .ok_or(ErrorCode::Overflow),
    }
}

/// `(value, fstflags)` of the two timestamps, as the file device takes them.
fn host_times(atime: &NewTimestamp, mtime: &NewTimestamp) -> Result<([u64; 2], u64), ErrorCode> {
    let mut flags = 0;
    let mut value = |timestamp: &NewTimestamp, set: u64, now: u64| -> Result<u64, ErrorCode> {
        match timestamp {
            NewTimestamp::NoChange => Ok(0),
            NewTimestamp::Now => {
                flags |= now;
                Ok(0)
            }
            NewTimestamp::Timestamp(_) => {
                flags |= set;
                Ok(new_time(timestamp, 0)?.unwrap_or(0))
            }
        }
    };
    let a = value(atime, times::ATIME, times::ATIME_NOW)?;
    let m = value(mtime, times::MTIME, times::MTIME_NOW)?;
    Ok(([a, m], flags))
}

/// Sets the times of `node` itself, or of `path` beneath it.
fn set_times(
    node: &Node,
    path: Option<(&str, bool)>,
    atime: &NewTimestamp,
    mtime: &NewTimestamp,
    now_ns: u64,
) -> Result<(), ErrorCode> {
    match node {
        Node::Tree(tree) => {
            let target = match path {
                Some((path, follow)) => crate::wasi::lookup(tree, path.as_bytes(), follow)?,
                None => tree.clone(),
            };
            target.borrow_mut().set_times(new_time(atime, now_ns)?, new_time(mtime, now_ns)?);
            Ok(())
        }
        Node::Host(host) => {
            let ([a, m], flags) = host_times(atime, mtime)?;
            let (path, follow) = path.unwrap_or(("", false));
            volume::set_times(&host.handle, path.as_bytes(), follow, a, m, flags).map_err(node::code)
        }
    }
}

impl ComponentCtx {
    fn descriptor(&self, descriptor: &Resource<Descriptor>) -> wasmtime::Result<&Descriptor> {
        Ok(self.table.get(descriptor)?)
    }

    /// The open regular file `descriptor` is (`bad-descriptor` for a directory).
    fn file(&self, descriptor: &Resource<Descriptor>) -> wasmtime::Result<Result<(Node, DescriptorFlags), ErrorCode>> {
        let d = self.descriptor(descriptor)?;
        Ok(if d.node.is_dir() { Err(ErrorCode::BadDescriptor) } else { Ok((d.node.clone(), d.flags)) })
    }

    /// The directory `descriptor` is (`not-directory` for a file).
    fn dir(&self, descriptor: &Resource<Descriptor>) -> wasmtime::Result<Result<Node, ErrorCode>> {
        let d = self.descriptor(descriptor)?;
        Ok(if d.node.is_dir() { Ok(d.node.clone()) } else { Err(ErrorCode::NotDirectory) })
    }

    /// The directories two descriptors are (the first error if either is not one).
    fn dirs(
        &self,
        first: &Resource<Descriptor>,
        second: &Resource<Descriptor>,
    ) -> wasmtime::Result<Result<(Node, Node), ErrorCode>> {
        let (first, second) = (self.dir(first)?, self.dir(second)?);
        Ok(first.and_then(|a| Ok((a, second?))))
    }

    fn now(&self) -> u64 {
        self.wasi.clocks.realtime_ns()
    }

    /// A path call that changes the tree under `descriptor`: `op` in memory, `host_op` in a
    /// volume.
    fn change(
        &mut self,
        descriptor: &Resource<Descriptor>,
        path: &str,
        op: fn(&NodeRef, &[u8], u64) -> Result<(), fs::Error>,
        host_op: Op,
    ) -> FsResult<()> {
        let now = self.now();
        Ok(self.dir(descriptor)?.and_then(|dir| match dir {
            Node::Tree(dir) => Ok(op(&dir, path.as_bytes(), now)?),
            Node::Host(dir) => volume::change(host_op, &dir.handle, path.as_bytes()).map_err(node::code),
        }))
    }

    /// The stat of `path` beneath `descriptor`, and its hash.
    fn stat_path(
        &self,
        descriptor: &Resource<Descriptor>,
        flags: PathFlags,
        path: &str,
    ) -> wasmtime::Result<Result<(DescriptorStat, MetadataHashValue), ErrorCode>> {
        let follow = flags.contains(PathFlags::SYMLINK_FOLLOW);
        Ok(self.dir(descriptor)?.and_then(|dir| match dir {
            Node::Tree(dir) => {
                let node = crate::wasi::lookup(&dir, path.as_bytes(), follow)?;
                let host = node.borrow().host();
                if let Some(handle) = host {
                    let stat = volume::stat(&Handle::volume(handle), b"", false).map_err(node::code)?;
                    return Ok((node::host_stat(&stat), node::host_hash(&stat)));
                }
                Ok((node::tree_stat(&node), node::tree_hash(&node)))
            }
            Node::Host(dir) => {
                let stat = volume::stat(&dir.handle, path.as_bytes(), follow).map_err(node::code)?;
                Ok((node::host_stat(&stat), node::host_hash(&stat)))
            }
        }))
    }

    /// A file volume the tree holds (`handle`), opened: truncated through the device if asked.
    fn open_file_volume(&self, handle: u32, truncate: bool, write: bool) -> Result<Node, ErrorCode> {
        if write && self.wasi.read_only_files.contains(&handle) {
            return Err(ErrorCode::ReadOnly);
        }
        let handle = Handle::volume(handle);
        if truncate {
            volume::set_size(&handle, 0).map_err(node::code)?;
        }
        Ok(Node::Host(Rc::new(HostNode { handle, dir: false })))
    }

    /// What a stream on `descriptor` works on: any open file (whether it may read or write is
    /// checked by each transfer, as the OS checks a descriptor's mode). On a directory, reading
    /// is `is-directory` and writing `bad-descriptor`, as in wasmtime.
    fn stream_on(
        &self,
        descriptor: &Resource<Descriptor>,
        write: bool,
    ) -> wasmtime::Result<Result<(Node, DescriptorFlags), ErrorCode>> {
        let d = self.descriptor(descriptor)?;
        Ok(match (d.node.is_dir(), write) {
            (true, false) => Err(ErrorCode::IsDirectory),
            (true, true) => Err(ErrorCode::BadDescriptor),
            (false, _) => Ok((d.node.clone(), d.flags)),
        })
    }
}

impl types::Host for ComponentCtx {
    fn filesystem_error_code(&mut self, error: Resource<IoError>) -> wasmtime::Result<Option<ErrorCode>> {
        Ok(match self.table.get(&error)? {
            IoError::Fs(code) => Some(*code),
            IoError::Console | IoError::Socket(_) | IoError::Http(_) => None,
        })
    }
}

impl types::HostDescriptor for ComponentCtx {
    fn read_via_stream(&mut self, fd: Resource<Descriptor>, offset: u64) -> FsResult<Resource<InputStream>> {
        let (node, flags) = match self.stream_on(&fd, false)? {
            Ok(file) => file,
            Err(code) => return Ok(Err(code)),
        };
        let readable = flags.contains(DescriptorFlags::READ);
        Ok(Ok(self.table.push(InputStream::File { node, position: offset, readable })?))
    }

    fn write_via_stream(&mut self, fd: Resource<Descriptor>, offset: u64) -> FsResult<Resource<OutputStream>> {
        let (node, flags) = match self.stream_on(&fd, true)? {
            Ok(file) => file,
            Err(code) => return Ok(Err(code)),
        };
        let writable = flags.contains(DescriptorFlags::WRITE);
        Ok(Ok(self.table.push(OutputStream::File { node, position: offset, append: false, writable })?))
    }

    fn append_via_stream(&mut self, fd: Resource<Descriptor>) -> FsResult<Resource<OutputStream>> {
        let (node, flags) = match self.stream_on(&fd, true)? {
            Ok(file) => file,
            Err(code) => return Ok(Err(code)),
        };
        let writable = flags.contains(DescriptorFlags::WRITE);
        Ok(Ok(self.table.push(OutputStream::File { node, position: 0, append: true, writable })?))
    }

    fn advise(&mut self, fd: Resource<Descriptor>, _offset: u64, _len: u64, _advice: Advice) -> FsResult<()> {
        Ok(self.file(&fd)?.map(drop))
    }

    fn sync_data(&mut self, fd: Resource<Descriptor>) -> FsResult<()> {
        Ok(self.descriptor(&fd)?.node.sync())
    }

    fn sync(&mut self, fd: Resource<Descriptor>) -> FsResult<()> {
        Ok(self.descriptor(&fd)?.node.sync())
    }

    fn get_flags(&mut self, fd: Resource<Descriptor>) -> FsResult<DescriptorFlags> {
        Ok(Ok(self.descriptor(&fd)?.flags))
    }

    fn get_type(&mut self, fd: Resource<Descriptor>) -> FsResult<DescriptorType> {
        Ok(self.descriptor(&fd)?.node.descriptor_type())
    }

    fn set_size(&mut self, fd: Resource<Descriptor>, size: u64) -> FsResult<()> {
        let now = self.now();
        Ok(self.file(&fd)?.and_then(|(node, flags)| {
            // Resizing a file not open for writing is EINVAL on the host (ftruncate).
            if !flags.contains(DescriptorFlags::WRITE) {
                return Err(ErrorCode::Invalid);
            }
            node.set_size(size, now)
        }))
    }

    fn set_times(&mut self, fd: Resource<Descriptor>, atime: NewTimestamp, mtime: NewTimestamp) -> FsResult<()> {
        let now = self.now();
        let node = self.descriptor(&fd)?.node.clone();
        Ok(set_times(&node, None, &atime, &mtime, now))
    }

    fn read(&mut self, fd: Resource<Descriptor>, len: u64, offset: u64) -> FsResult<(Vec<u8>, bool)> {
        Ok(self.file(&fd)?.and_then(|(node, flags)| {
            if !flags.contains(DescriptorFlags::READ) {
                return Err(ErrorCode::BadDescriptor);
            }
            let mut buf = alloc::vec![0; len.min(MAX_READ) as usize];
            let n = node.read_at(offset, &mut buf)?;
            buf.truncate(n);
            // As wasmtime: reading nothing is the end, whatever was asked for.
            Ok((buf, n == 0))
        }))
    }

    fn write(&mut self, fd: Resource<Descriptor>, buffer: Vec<u8>, offset: u64) -> FsResult<u64> {
        let now = self.now();
        Ok(self.file(&fd)?.and_then(|(node, flags)| {
            // As the OS answers a write to a descriptor not open for writing.
            if !flags.contains(DescriptorFlags::WRITE) {
                return Err(ErrorCode::BadDescriptor);
            }
            Ok(node.write_at(Some(offset), &buffer, now)? - offset)
        }))
    }

    fn read_directory(&mut self, fd: Resource<Descriptor>) -> FsResult<Resource<DirectoryEntries>> {
        let dir = match self.dir(&fd)? {
            Ok(dir) => dir,
            Err(code) => return Ok(Err(code)),
        };
        let entries = match dir {
            Node::Tree(dir) => match dir.borrow_mut().dir() {
                Ok(entries) => entries
                    .iter()
                    .map(|(name, child)| DirectoryEntry {
                        type_: descriptor_type(child.borrow().file_type()),
                        name: String::from_utf8_lossy(name).into_owned(),
                    })
                    .collect::<Vec<_>>(),
                Err(e) => return Ok(Err(e.into())),
            },
            Node::Host(dir) => match host_entries(&dir.handle) {
                Ok(entries) => entries,
                Err(code) => return Ok(Err(code)),
            },
        };
        Ok(Ok(self.table.push(DirectoryEntries(entries.into_iter()))?))
    }

    fn create_directory_at(&mut self, fd: Resource<Descriptor>, path: String) -> FsResult<()> {
        self.change(&fd, &path, fs::create_dir, Op::CreateDir)
    }

    fn stat(&mut self, fd: Resource<Descriptor>) -> FsResult<DescriptorStat> {
        Ok(self.descriptor(&fd)?.node.stat())
    }

    fn stat_at(&mut self, fd: Resource<Descriptor>, flags: PathFlags, path: String) -> FsResult<DescriptorStat> {
        Ok(self.stat_path(&fd, flags, &path)?.map(|(stat, _)| stat))
    }

    fn set_times_at(
        &mut self,
        fd: Resource<Descriptor>,
        flags: PathFlags,
        path: String,
        atime: NewTimestamp,
        mtime: NewTimestamp,
    ) -> FsResult<()> {
        let now = self.now();
        let follow = flags.contains(PathFlags::SYMLINK_FOLLOW);
        Ok(self.dir(&fd)?.and_then(|dir| set_times(&dir, Some((&path, follow)), &atime, &mtime, now)))
    }

    fn link_at(
        &mut self,
        fd: Resource<Descriptor>,
        old_flags: PathFlags,
        old_path: String,
        new_fd: Resource<Descriptor>,
        new_path: String,
    ) -> FsResult<()> {
        let now = self.now();
        // wasmtime refuses to follow a symlink for a hard link.
        if old_flags.contains(PathFlags::SYMLINK_FOLLOW) {
            return Ok(Err(ErrorCode::Invalid));
        }
        let (old_dir, new_dir) = match self.dirs(&fd, &new_fd)? {
            Ok(dirs) => dirs,
            Err(code) => return Ok(Err(code)),
        };
        Ok(two(Op::Link, &old_dir, &old_path, &new_dir, &new_path, |a, b| {
            fs::link(a, old_path.as_bytes(), false, b, new_path.as_bytes(), now)
        }))
    }

    fn open_at(
        &mut self,
        fd: Resource<Descriptor>,
        path_flags: PathFlags,
        path: String,
        open_flags: OpenFlags,
        flags: DescriptorFlags,
    ) -> FsResult<Resource<Descriptor>> {
        let now = self.now();
        let dir = match self.dir(&fd)? {
            Ok(dir) => dir,
            Err(code) => return Ok(Err(code)),
        };
        let sync = DescriptorFlags::FILE_INTEGRITY_SYNC
            | DescriptorFlags::DATA_INTEGRITY_SYNC
            | DescriptorFlags::REQUESTED_WRITE_SYNC;
        if flags.intersects(sync) {
            return Ok(Err(ErrorCode::Unsupported));
        }
        let shaping = OpenFlags::CREATE | OpenFlags::EXCLUSIVE | OpenFlags::TRUNCATE;
        if open_flags.contains(OpenFlags::DIRECTORY) && open_flags.intersects(shaping) {
            return Ok(Err(ErrorCode::Invalid));
        }
        // The open mode as wasmtime derives it: creating or truncating opens for writing, and
        // a descriptor not opened for writing is opened for reading.
        let creates = OpenFlags::CREATE | OpenFlags::TRUNCATE;
        let write = flags.contains(DescriptorFlags::WRITE) || open_flags.intersects(creates);
        let read = flags.contains(DescriptorFlags::READ) || !flags.contains(DescriptorFlags::WRITE);
        let open = fs::OpenFlags {
            create: open_flags.contains(OpenFlags::CREATE),
            directory: open_flags.contains(OpenFlags::DIRECTORY),
            exclusive: open_flags.contains(OpenFlags::EXCLUSIVE),
            truncate: open_flags.contains(OpenFlags::TRUNCATE),
            follow: path_flags.contains(PathFlags::SYMLINK_FOLLOW),
        };
        let opened = match dir {
            Node::Tree(dir) => fs::open(&dir, path.as_bytes(), open, now).map_err(ErrorCode::from).and_then(|node| {
                let host = node.borrow().host();
                match host {
                    Some(handle) => self.open_file_volume(handle, open.truncate, write),
                    None => Ok(Node::Tree(node)),
                }
            }),
            Node::Host(dir) => open_host(&dir.handle, path.as_bytes(), &open, read, write),
        };
        let node = match opened {
            Ok(node) => node,
            Err(code) => return Ok(Err(code)),
        };
        let is_dir = node.is_dir();
        // Linux refuses to open a directory for writing.
        if is_dir && write {
            return Ok(Err(ErrorCode::IsDirectory));
        }
        let mut mode = DescriptorFlags::empty();
        if read {
            mode |= DescriptorFlags::READ;
        }
        if write {
            mode |= if is_dir { DescriptorFlags::MUTATE_DIRECTORY } else { DescriptorFlags::WRITE };
        }
        Ok(Ok(self.table.push(Descriptor { node, flags: mode })?))
    }

    fn readlink_at(&mut self, fd: Resource<Descriptor>, path: String) -> FsResult<String> {
        Ok(self.dir(&fd)?.and_then(|dir| {
            let target = match dir {
                Node::Tree(dir) => fs::read_link(&dir, path.as_bytes())?,
                Node::Host(dir) => volume::read_link(&dir.handle, path.as_bytes(), 4096).map_err(node::code)?,
            };
            String::from_utf8(target).map_err(|_| ErrorCode::IllegalByteSequence)
        }))
    }

    fn remove_directory_at(&mut self, fd: Resource<Descriptor>, path: String) -> FsResult<()> {
        self.change(&fd, &path, fs::remove_dir, Op::RemoveDir)
    }

    fn rename_at(
        &mut self,
        fd: Resource<Descriptor>,
        old_path: String,
        new_fd: Resource<Descriptor>,
        new_path: String,
    ) -> FsResult<()> {
        let now = self.now();
        let (old_dir, new_dir) = match self.dirs(&fd, &new_fd)? {
            Ok(dirs) => dirs,
            Err(code) => return Ok(Err(code)),
        };
        Ok(two(Op::Rename, &old_dir, &old_path, &new_dir, &new_path, |a, b| {
            fs::rename(a, old_path.as_bytes(), b, new_path.as_bytes(), now)
        }))
    }

    fn symlink_at(&mut self, fd: Resource<Descriptor>, old_path: String, new_path: String) -> FsResult<()> {
        let now = self.now();
        Ok(self.dir(&fd)?.and_then(|dir| match dir {
            Node::Tree(dir) => Ok(fs::symlink(old_path.as_bytes(), &dir, new_path.as_bytes(), now)?),
            Node::Host(dir) => {
                volume::symlink(old_path.as_bytes(), &dir.handle, new_path.as_bytes()).map_err(node::code)
            }
        }))
    }

    fn unlink_file_at(&mut self, fd: Resource<Descriptor>, path: String) -> FsResult<()> {
        self.change(&fd, &path, fs::unlink, Op::Unlink)
    }

    fn is_same_object(&mut self, fd: Resource<Descriptor>, other: Resource<Descriptor>) -> wasmtime::Result<bool> {
        let a = self.descriptor(&fd)?.node.clone();
        Ok(a.same(&self.descriptor(&other)?.node))
    }

    fn metadata_hash(&mut self, fd: Resource<Descriptor>) -> FsResult<MetadataHashValue> {
        Ok(self.descriptor(&fd)?.node.hash())
    }

    fn metadata_hash_at(
        &mut self,
        fd: Resource<Descriptor>,
        flags: PathFlags,
        path: String,
    ) -> FsResult<MetadataHashValue> {
        Ok(self.stat_path(&fd, flags, &path)?.map(|(_, hash)| hash))
    }

    fn drop(&mut self, fd: Resource<Descriptor>) -> wasmtime::Result<()> {
        self.table.delete(fd)?;
        Ok(())
    }
}

impl types::HostDirectoryEntryStream for ComponentCtx {
    fn read_directory_entry(&mut self, stream: Resource<DirectoryEntries>) -> FsResult<Option<DirectoryEntry>> {
        Ok(Ok(self.table.get_mut(&stream)?.0.next()))
    }

    fn drop(&mut self, stream: Resource<DirectoryEntries>) -> wasmtime::Result<()> {
        self.table.delete(stream)?;
        Ok(())
    }
}

impl preopens::Host for ComponentCtx {
    fn get_directories(&mut self) -> wasmtime::Result<Vec<(Resource<Descriptor>, String)>> {
        let flags = DescriptorFlags::READ | DescriptorFlags::MUTATE_DIRECTORY;
        let preopens: Vec<_> = self.wasi.fds.preopens().collect();
        preopens
            .into_iter()
            .map(|(name, preopen)| {
                let node = match preopen {
                    Preopen::Tree(node) => Node::Tree(node),
                    Preopen::Volume(index) => {
                        Node::Host(Rc::new(HostNode { handle: Handle::volume(index), dir: true }))
                    }
                };
                let descriptor = self.table.push(Descriptor { node, flags })?;
                Ok((descriptor, String::from_utf8_lossy(name).into_owned()))
            })
            .collect()
    }
}

/// Opens `path` beneath a volume directory, in the mode `open_at` decided.
fn open_host(dir: &Handle, path: &[u8], open: &fs::OpenFlags, read: bool, write: bool) -> Result<Node, ErrorCode> {
    let (handle, stat) = volume::open(dir, path, volume::open_flags(open, read, write, false)).map_err(node::code)?;
    Ok(Node::Host(Rc::new(HostNode { handle, dir: stat.kind == file::kind::DIRECTORY })))
}

/// A rename or link: both in memory (`tree`), both in one volume (the device), or `cross-device`
/// between the two (as between two of wasmtime's preopens).
fn two(
    op: Op,
    old_dir: &Node,
    old_path: &str,
    new_dir: &Node,
    new_path: &str,
    tree: impl FnOnce(&NodeRef, &NodeRef) -> Result<(), fs::Error>,
) -> Result<(), ErrorCode> {
    match (old_dir, new_dir) {
        (Node::Tree(a), Node::Tree(b)) => Ok(tree(a, b)?),
        (Node::Host(a), Node::Host(b)) => {
            volume::change_two(op, &a.handle, old_path.as_bytes(), &b.handle, new_path.as_bytes()).map_err(node::code)
        }
        _ => Err(ErrorCode::CrossDevice),
    }
}

/// Every entry of a volume directory (`read-directory` takes a snapshot, as for the tree).
fn host_entries(dir: &Handle) -> Result<Vec<DirectoryEntry>, ErrorCode> {
    let mut entries = Vec::new();
    let mut buf = alloc::vec![0u8; 64 * 1024];
    let mut cookie = 0;
    loop {
        let n = volume::read_dir(dir, &mut buf, cookie).map_err(node::code)?;
        if n == 0 {
            return Ok(entries);
        }
        let mut rest = &buf[..n];
        while let Some((entry, after)) = Dirent::parse(rest) {
            let type_ = match entry.kind {
                file::kind::DIRECTORY => DescriptorType::Directory,
                file::kind::REGULAR_FILE => DescriptorType::RegularFile,
                file::kind::SYMBOLIC_LINK => DescriptorType::SymbolicLink,
                file::kind::BLOCK_DEVICE => DescriptorType::BlockDevice,
                file::kind::CHARACTER_DEVICE => DescriptorType::CharacterDevice,
                file::kind::SOCKET => DescriptorType::Socket,
                _ => DescriptorType::Unknown,
            };
            entries.push(DirectoryEntry { type_, name: String::from_utf8_lossy(entry.name).into_owned() });
            cookie = entry.next;
            rest = after;
        }
    }
}

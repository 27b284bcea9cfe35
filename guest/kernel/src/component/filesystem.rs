//! `wasi:filesystem` (types, preopens) over the same file tree as preview 1: the preopens are
//! preview 1's (`--dir`, snapshot semantics), every path goes through the tree's resolver
//! (confined to the descriptor it starts from), and each error is the code wasmtime gives for
//! the same case (preview 1 and 0.2 share their meaning there).

use super::bindings::wasi::filesystem::preopens;
use super::bindings::wasi::filesystem::types::{
    self, Advice, DescriptorFlags, DescriptorStat, DescriptorType, DirectoryEntry, ErrorCode, MetadataHashValue,
    NewTimestamp, OpenFlags, PathFlags,
};
use super::clocks::datetime;
use super::{ComponentCtx, InputStream, IoError, OutputStream};
use alloc::string::String;
use alloc::vec::Vec;
use wasmcell_guest_fs::{self as fs, FileType, NodeRef};
use wasmtime::component::Resource;

type FsResult<T> = wasmtime::Result<Result<T, ErrorCode>>;

/// Most bytes one `read` returns (larger requests are cut short, as wasmtime does).
const MAX_READ: u64 = 1 << 20;

/// An open file or directory (`wasi:filesystem/types.descriptor`).
pub struct Descriptor {
    node: NodeRef,
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

fn stat(node: &NodeRef) -> DescriptorStat {
    let stat = node.borrow().stat();
    DescriptorStat {
        type_: descriptor_type(stat.file_type),
        link_count: 1,
        size: stat.size,
        data_access_timestamp: Some(datetime(stat.atime_ns)),
        data_modification_timestamp: Some(datetime(stat.mtime_ns)),
        status_change_timestamp: Some(datetime(stat.mtime_ns)),
    }
}

fn metadata_hash(node: &NodeRef) -> MetadataHashValue {
    // Equal for the same file, different for different files: what the interface promises.
    MetadataHashValue { lower: node.borrow().ino, upper: 0x7761_736d_6365_6c6c }
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

fn set_times(node: &NodeRef, atime: &NewTimestamp, mtime: &NewTimestamp, now_ns: u64) -> Result<(), ErrorCode> {
    node.borrow_mut().set_times(new_time(atime, now_ns)?, new_time(mtime, now_ns)?);
    Ok(())
}

impl ComponentCtx {
    fn descriptor(&self, descriptor: &Resource<Descriptor>) -> wasmtime::Result<&Descriptor> {
        Ok(self.table.get(descriptor)?)
    }

    /// The open regular file `descriptor` is (`bad-descriptor` for a directory).
    fn file(
        &self,
        descriptor: &Resource<Descriptor>,
    ) -> wasmtime::Result<Result<(NodeRef, DescriptorFlags), ErrorCode>> {
        let d = self.descriptor(descriptor)?;
        Ok(if d.node.borrow().is_dir() { Err(ErrorCode::BadDescriptor) } else { Ok((d.node.clone(), d.flags)) })
    }

    /// The directory `descriptor` is (`not-directory` for a file).
    fn dir(&self, descriptor: &Resource<Descriptor>) -> wasmtime::Result<Result<NodeRef, ErrorCode>> {
        let d = self.descriptor(descriptor)?;
        Ok(if d.node.borrow().is_dir() { Ok(d.node.clone()) } else { Err(ErrorCode::NotDirectory) })
    }

    /// The directories two descriptors are (the first error if either is not one).
    fn dirs(
        &self,
        first: &Resource<Descriptor>,
        second: &Resource<Descriptor>,
    ) -> wasmtime::Result<Result<(NodeRef, NodeRef), ErrorCode>> {
        let (first, second) = (self.dir(first)?, self.dir(second)?);
        Ok(first.and_then(|a| Ok((a, second?))))
    }

    fn now(&self) -> u64 {
        self.wasi.clocks.realtime_ns()
    }

    /// A path call that changes the tree under `descriptor`.
    fn change(
        &mut self,
        descriptor: &Resource<Descriptor>,
        path: &str,
        op: fn(&NodeRef, &[u8], u64) -> Result<(), fs::Error>,
    ) -> FsResult<()> {
        let now = self.now();
        Ok(self.dir(descriptor)?.and_then(|dir| Ok(op(&dir, path.as_bytes(), now)?)))
    }

    fn lookup(
        &self,
        descriptor: &Resource<Descriptor>,
        flags: PathFlags,
        path: &str,
    ) -> wasmtime::Result<Result<NodeRef, ErrorCode>> {
        let follow = flags.contains(PathFlags::SYMLINK_FOLLOW);
        Ok(self
            .dir(descriptor)?
            .and_then(|dir| crate::wasi::lookup(&dir, path.as_bytes(), follow).map_err(|e| e.into())))
    }

    /// What a stream on `descriptor` works on: any open file (whether it may read or write is
    /// checked by each transfer, as the OS checks a descriptor's mode). On a directory, reading
    /// is `is-directory` and writing `bad-descriptor`, as in wasmtime.
    fn stream_on(
        &self,
        descriptor: &Resource<Descriptor>,
        write: bool,
    ) -> wasmtime::Result<Result<(NodeRef, DescriptorFlags), ErrorCode>> {
        let d = self.descriptor(descriptor)?;
        Ok(match (d.node.borrow().is_dir(), write) {
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
        self.descriptor(&fd)?;
        Ok(Ok(()))
    }

    fn sync(&mut self, fd: Resource<Descriptor>) -> FsResult<()> {
        self.descriptor(&fd)?;
        Ok(Ok(()))
    }

    fn get_flags(&mut self, fd: Resource<Descriptor>) -> FsResult<DescriptorFlags> {
        Ok(Ok(self.descriptor(&fd)?.flags))
    }

    fn get_type(&mut self, fd: Resource<Descriptor>) -> FsResult<DescriptorType> {
        Ok(Ok(descriptor_type(self.descriptor(&fd)?.node.borrow().file_type())))
    }

    fn set_size(&mut self, fd: Resource<Descriptor>, size: u64) -> FsResult<()> {
        let now = self.now();
        Ok(self.file(&fd)?.and_then(|(node, flags)| {
            // Resizing a file not open for writing is EINVAL on the host (ftruncate).
            if !flags.contains(DescriptorFlags::WRITE) {
                return Err(ErrorCode::Invalid);
            }
            Ok(node.borrow_mut().set_size(size, now)?)
        }))
    }

    fn set_times(&mut self, fd: Resource<Descriptor>, atime: NewTimestamp, mtime: NewTimestamp) -> FsResult<()> {
        let now = self.now();
        let node = self.descriptor(&fd)?.node.clone();
        Ok(set_times(&node, &atime, &mtime, now))
    }

    fn read(&mut self, fd: Resource<Descriptor>, len: u64, offset: u64) -> FsResult<(Vec<u8>, bool)> {
        Ok(self.file(&fd)?.and_then(|(node, flags)| {
            if !flags.contains(DescriptorFlags::READ) {
                return Err(ErrorCode::BadDescriptor);
            }
            let mut buf = alloc::vec![0; len.min(MAX_READ) as usize];
            let n = node.borrow_mut().read_at(offset, &mut buf)?;
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
            Ok(node.borrow_mut().write_at(offset, &buffer, now)? as u64)
        }))
    }

    fn read_directory(&mut self, fd: Resource<Descriptor>) -> FsResult<Resource<DirectoryEntries>> {
        let dir = match self.dir(&fd)? {
            Ok(dir) => dir,
            Err(code) => return Ok(Err(code)),
        };
        let entries = match dir.borrow_mut().dir() {
            Ok(entries) => entries
                .iter()
                .map(|(name, child)| DirectoryEntry {
                    type_: descriptor_type(child.borrow().file_type()),
                    name: String::from_utf8_lossy(name).into_owned(),
                })
                .collect::<Vec<_>>(),
            Err(e) => return Ok(Err(e.into())),
        };
        Ok(Ok(self.table.push(DirectoryEntries(entries.into_iter()))?))
    }

    fn create_directory_at(&mut self, fd: Resource<Descriptor>, path: String) -> FsResult<()> {
        self.change(&fd, &path, fs::create_dir)
    }

    fn stat(&mut self, fd: Resource<Descriptor>) -> FsResult<DescriptorStat> {
        Ok(Ok(stat(&self.descriptor(&fd)?.node)))
    }

    fn stat_at(&mut self, fd: Resource<Descriptor>, flags: PathFlags, path: String) -> FsResult<DescriptorStat> {
        Ok(self.lookup(&fd, flags, &path)?.map(|node| stat(&node)))
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
        Ok(self.lookup(&fd, flags, &path)?.and_then(|node| set_times(&node, &atime, &mtime, now)))
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
        Ok(fs::link(&old_dir, old_path.as_bytes(), false, &new_dir, new_path.as_bytes(), now).map_err(Into::into))
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
        let node = match fs::open(&dir, path.as_bytes(), open, now) {
            Ok(node) => node,
            Err(e) => return Ok(Err(e.into())),
        };
        let is_dir = node.borrow().is_dir();
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
            let target = fs::read_link(&dir, path.as_bytes())?;
            String::from_utf8(target).map_err(|_| ErrorCode::IllegalByteSequence)
        }))
    }

    fn remove_directory_at(&mut self, fd: Resource<Descriptor>, path: String) -> FsResult<()> {
        self.change(&fd, &path, fs::remove_dir)
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
        Ok(fs::rename(&old_dir, old_path.as_bytes(), &new_dir, new_path.as_bytes(), now).map_err(Into::into))
    }

    fn symlink_at(&mut self, fd: Resource<Descriptor>, old_path: String, new_path: String) -> FsResult<()> {
        let now = self.now();
        Ok(self.dir(&fd)?.and_then(|dir| Ok(fs::symlink(old_path.as_bytes(), &dir, new_path.as_bytes(), now)?)))
    }

    fn unlink_file_at(&mut self, fd: Resource<Descriptor>, path: String) -> FsResult<()> {
        self.change(&fd, &path, fs::unlink)
    }

    fn is_same_object(&mut self, fd: Resource<Descriptor>, other: Resource<Descriptor>) -> wasmtime::Result<bool> {
        let a = self.descriptor(&fd)?.node.clone();
        Ok(alloc::rc::Rc::ptr_eq(&a, &self.descriptor(&other)?.node))
    }

    fn metadata_hash(&mut self, fd: Resource<Descriptor>) -> FsResult<MetadataHashValue> {
        Ok(Ok(metadata_hash(&self.descriptor(&fd)?.node)))
    }

    fn metadata_hash_at(
        &mut self,
        fd: Resource<Descriptor>,
        flags: PathFlags,
        path: String,
    ) -> FsResult<MetadataHashValue> {
        Ok(self.lookup(&fd, flags, &path)?.map(|node| metadata_hash(&node)))
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
            .map(|(name, node)| {
                let descriptor = self.table.push(Descriptor { node, flags })?;
                Ok((descriptor, String::from_utf8_lossy(name).into_owned()))
            })
            .collect()
    }
}

//! What a `wasi:filesystem` descriptor or file stream works on: a node of the in-memory tree
//! (the root filesystem, `--dir`), or a file or directory of a volume the host serves through
//! the file device (`crate::volume`), write-through. The calls both kinds share are here, each
//! answering the error code wasmtime gives; `filesystem` handles the path calls.

use super::bindings::wasi::filesystem::types::{DescriptorStat, DescriptorType, ErrorCode, MetadataHashValue};
use super::clocks::datetime;
use crate::volume::{self, Handle};
use alloc::rc::Rc;
use wasmcell_abi::file::{kind, Stat, APPEND};
use wasmcell_guest_fs::{FileType, NodeRef};

/// A descriptor's or stream's target.
#[derive(Clone)]
pub enum Node {
    Tree(NodeRef),
    Host(Rc<HostNode>),
}

/// An open handle of the file device, shared by a descriptor and the streams made from it.
pub struct HostNode {
    pub handle: Handle,
    pub dir: bool,
}

/// The error code wasmtime gives for a Linux error the device answered.
pub fn code(errno: volume::Errno) -> ErrorCode {
    match errno {
        1 => ErrorCode::NotPermitted,
        2 => ErrorCode::NoEntry,
        6 => ErrorCode::NoSuchDevice,
        9 => ErrorCode::BadDescriptor,
        11 => ErrorCode::WouldBlock,
        12 => ErrorCode::InsufficientMemory,
        13 => ErrorCode::Access,
        16 => ErrorCode::Busy,
        17 => ErrorCode::Exist,
        18 => ErrorCode::CrossDevice,
        20 => ErrorCode::NotDirectory,
        21 => ErrorCode::IsDirectory,
        22 => ErrorCode::Invalid,
        26 => ErrorCode::TextFileBusy,
        27 => ErrorCode::FileTooLarge,
        28 => ErrorCode::InsufficientSpace,
        29 => ErrorCode::InvalidSeek,
        30 => ErrorCode::ReadOnly,
        31 => ErrorCode::TooManyLinks,
        36 => ErrorCode::NameTooLong,
        39 => ErrorCode::NotEmpty,
        40 => ErrorCode::Loop,
        75 => ErrorCode::Overflow,
        122 => ErrorCode::Quota,
        _ => ErrorCode::Io,
    }
}

fn tree_type(file_type: FileType) -> DescriptorType {
    match file_type {
        FileType::RegularFile => DescriptorType::RegularFile,
        FileType::Directory => DescriptorType::Directory,
        FileType::SymbolicLink => DescriptorType::SymbolicLink,
    }
}

fn host_type(kind: u8) -> DescriptorType {
    match kind {
        kind::DIRECTORY => DescriptorType::Directory,
        kind::REGULAR_FILE => DescriptorType::RegularFile,
        kind::SYMBOLIC_LINK => DescriptorType::SymbolicLink,
        kind::BLOCK_DEVICE => DescriptorType::BlockDevice,
        kind::CHARACTER_DEVICE => DescriptorType::CharacterDevice,
        kind::SOCKET => DescriptorType::Socket,
        _ => DescriptorType::Unknown,
    }
}

/// A tree node's stat.
pub fn tree_stat(node: &NodeRef) -> DescriptorStat {
    let stat = node.borrow().stat();
    DescriptorStat {
        type_: tree_type(stat.file_type),
        link_count: 1,
        size: stat.size,
        data_access_timestamp: Some(datetime(stat.atime_ns)),
        data_modification_timestamp: Some(datetime(stat.mtime_ns)),
        status_change_timestamp: Some(datetime(stat.mtime_ns)),
    }
}

/// A host file's stat, as wasmtime reports the host's.
pub fn host_stat(stat: &Stat) -> DescriptorStat {
    DescriptorStat {
        type_: host_type(stat.kind),
        link_count: stat.nlink,
        size: stat.size,
        data_access_timestamp: Some(datetime(stat.atime_ns)),
        data_modification_timestamp: Some(datetime(stat.mtime_ns)),
        status_change_timestamp: Some(datetime(stat.ctime_ns)),
    }
}

/// Equal for the same file, different for different files: what the interface promises.
pub fn tree_hash(node: &NodeRef) -> MetadataHashValue {
    MetadataHashValue { lower: node.borrow().ino, upper: 0x7761_736d_6365_6c6c }
}

pub fn host_hash(stat: &Stat) -> MetadataHashValue {
    MetadataHashValue { lower: stat.ino, upper: stat.dev }
}

impl Node {
    pub fn is_dir(&self) -> bool {
        match self {
            Node::Tree(node) => node.borrow().is_dir(),
            Node::Host(host) => host.dir,
        }
    }

    pub fn descriptor_type(&self) -> Result<DescriptorType, ErrorCode> {
        match self {
            Node::Tree(node) => Ok(tree_type(node.borrow().file_type())),
            Node::Host(host) => Ok(host_type(volume::stat(&host.handle, b"", false).map_err(code)?.kind)),
        }
    }

    pub fn stat(&self) -> Result<DescriptorStat, ErrorCode> {
        match self {
            Node::Tree(node) => Ok(tree_stat(node)),
            Node::Host(host) => Ok(host_stat(&volume::stat(&host.handle, b"", false).map_err(code)?)),
        }
    }

    pub fn hash(&self) -> Result<MetadataHashValue, ErrorCode> {
        match self {
            Node::Tree(node) => Ok(tree_hash(node)),
            Node::Host(host) => Ok(host_hash(&volume::stat(&host.handle, b"", false).map_err(code)?)),
        }
    }

    pub fn size(&self) -> Result<u64, ErrorCode> {
        match self {
            Node::Tree(node) => Ok(node.borrow().stat().size),
            Node::Host(host) => Ok(volume::stat(&host.handle, b"", false).map_err(code)?.size),
        }
    }

    /// Reads at `offset` into `buf` → bytes read (0: the end).
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, ErrorCode> {
        match self {
            Node::Tree(node) => Ok(node.borrow_mut().read_at(offset, buf)?),
            Node::Host(host) => {
                let mut done = 0;
                while done < buf.len() {
                    match volume::read(&host.handle, &mut buf[done..], offset + done as u64).map_err(code)? {
                        0 => break,
                        n => done += n,
                    }
                }
                Ok(done)
            }
        }
    }

    /// Writes all of `bytes` at `offset` (`None`: at the end) → where the write ended.
    pub fn write_at(&self, offset: Option<u64>, bytes: &[u8], now_ns: u64) -> Result<u64, ErrorCode> {
        match self {
            Node::Tree(node) => {
                let mut node = node.borrow_mut();
                let at = offset.unwrap_or(node.stat().size);
                Ok(at + node.write_at(at, bytes, now_ns)? as u64)
            }
            Node::Host(host) => {
                let mut done = 0;
                while done < bytes.len() {
                    let at = offset.map_or(APPEND, |at| at + done as u64);
                    done += volume::write(&host.handle, &bytes[done..], at).map_err(code)?;
                }
                match offset {
                    Some(at) => Ok(at + done as u64),
                    None => self.size(),
                }
            }
        }
    }

    pub fn set_size(&self, size: u64, now_ns: u64) -> Result<(), ErrorCode> {
        match self {
            Node::Tree(node) => Ok(node.borrow_mut().set_size(size, now_ns)?),
            Node::Host(host) => volume::set_size(&host.handle, size).map_err(code),
        }
    }

    pub fn sync(&self) -> Result<(), ErrorCode> {
        match self {
            Node::Tree(_) => Ok(()),
            Node::Host(host) => volume::sync(&host.handle).map_err(code),
        }
    }

    /// Whether two nodes are the same file.
    pub fn same(&self, other: &Node) -> bool {
        match (self, other) {
            (Node::Tree(a), Node::Tree(b)) => Rc::ptr_eq(a, b),
            (Node::Host(_), Node::Host(_)) => {
                matches!((self.hash(), other.hash()), (Ok(a), Ok(b)) if (a.lower, a.upper) == (b.lower, b.upper))
            }
            _ => false,
        }
    }
}

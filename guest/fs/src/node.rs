//! Files, directories and symlinks of the tree, and what can be done to one node: stat, read,
//! write (copying an archive file's content on its first write), truncate, list.

use crate::Error;
use alloc::collections::BTreeMap;
use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::ops::Range;
use core::sync::atomic::{AtomicU64, Ordering};
use wasmcell_abi::archive::{self, Archive};

/// A shared node: directories and open file descriptors hold these.
pub type NodeRef = Rc<RefCell<Node>>;

/// Inode numbers of nodes made in the guest; archive nodes use their entry index + 1, below
/// this.
static NEXT_INO: AtomicU64 = AtomicU64::new(1 << 32);

/// One file, directory or symlink.
#[derive(Debug)]
pub struct Node {
    pub ino: u64,
    /// Last modification and last access, ns since the Unix epoch.
    pub mtime_ns: u64,
    pub atime_ns: u64,
    pub kind: Kind,
}

/// What a [`Node`] is.
#[derive(Debug)]
pub enum Kind {
    File(Contents),
    Dir(Dir),
    /// The target path, resolved relative to the symlink's directory.
    Symlink(Contents),
    /// A single file the host serves (a file volume: `/etc/hosts`, a termination log): the
    /// file device's handle. The WASI layers open it through the device; its bytes are never
    /// in the tree.
    Host(u32),
}

/// Bytes of a file or symlink target: still the archive's, or the guest's own after a write.
#[derive(Debug)]
pub enum Contents {
    Archive(&'static [u8]),
    Owned(Vec<u8>),
}

impl Contents {
    pub fn bytes(&self) -> &[u8] {
        match self {
            Contents::Archive(bytes) => bytes,
            Contents::Owned(bytes) => bytes,
        }
    }

    /// The bytes, made the guest's own (copied out of the archive on first call) and with room
    /// for `len` bytes in all.
    fn owned(&mut self, len: usize) -> Result<&mut Vec<u8>, Error> {
        if let Contents::Archive(bytes) = *self {
            let mut copy = Vec::new();
            copy.try_reserve_exact(bytes.len().max(len)).map_err(|_| Error::NoSpace)?;
            copy.extend_from_slice(bytes);
            *self = Contents::Owned(copy);
        }
        let Contents::Owned(bytes) = self else { unreachable!("just made owned") };
        bytes.try_reserve(len.saturating_sub(bytes.len())).map_err(|_| Error::NoSpace)?;
        Ok(bytes)
    }
}

/// A directory's entries, expanded from the archive on first use.
#[derive(Debug, Default)]
pub struct Dir {
    entries: BTreeMap<Vec<u8>, NodeRef>,
    unexpanded: Option<(Archive<'static>, Range<u32>)>,
}

impl Dir {
    /// The entries, by name.
    pub fn entries(&mut self) -> &mut BTreeMap<Vec<u8>, NodeRef> {
        if let Some((archive, children)) = self.unexpanded.take() {
            for index in children {
                if let (Some(entry), Some(node)) = (archive.entry(index), Node::from_archive(archive, index)) {
                    self.entries.insert(entry.name.to_vec(), node);
                }
            }
        }
        &mut self.entries
    }
}

/// WASI's `filetype` of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileType {
    RegularFile,
    Directory,
    SymbolicLink,
}

/// What `stat` says of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    pub ino: u64,
    pub file_type: FileType,
    pub size: u64,
    pub atime_ns: u64,
    pub mtime_ns: u64,
}

impl Node {
    /// A new, empty node made by the guest.
    pub fn new(kind: Kind, now_ns: u64) -> NodeRef {
        let ino = NEXT_INO.fetch_add(1, Ordering::Relaxed);
        Rc::new(RefCell::new(Node { ino, mtime_ns: now_ns, atime_ns: now_ns, kind }))
    }

    /// A new empty directory.
    pub fn new_dir(now_ns: u64) -> NodeRef {
        Self::new(Kind::Dir(Dir::default()), now_ns)
    }

    /// The node for archive entry `index` (a directory's children are expanded later).
    pub fn from_archive(archive: Archive<'static>, index: u32) -> Option<NodeRef> {
        let entry = archive.entry(index)?;
        let kind = match entry.kind {
            archive::Kind::File => Kind::File(Contents::Archive(entry.data())),
            archive::Kind::Symlink => Kind::Symlink(Contents::Archive(entry.data())),
            archive::Kind::Dir => {
                Kind::Dir(Dir { entries: BTreeMap::new(), unexpanded: Some((archive, entry.children())) })
            }
        };
        let node = Node { ino: u64::from(index) + 1, mtime_ns: entry.mtime_ns, atime_ns: entry.mtime_ns, kind };
        Some(Rc::new(RefCell::new(node)))
    }

    pub fn file_type(&self) -> FileType {
        match self.kind {
            Kind::File(_) | Kind::Host(_) => FileType::RegularFile,
            Kind::Dir(_) => FileType::Directory,
            Kind::Symlink(_) => FileType::SymbolicLink,
        }
    }

    pub fn is_dir(&self) -> bool {
        matches!(self.kind, Kind::Dir(_))
    }

    /// The file device's handle of a host file.
    pub fn host(&self) -> Option<u32> {
        match self.kind {
            Kind::Host(handle) => Some(handle),
            _ => None,
        }
    }

    pub fn stat(&self) -> Stat {
        let size = match &self.kind {
            Kind::File(c) | Kind::Symlink(c) => c.bytes().len() as u64,
            Kind::Dir(_) | Kind::Host(_) => 0,
        };
        Stat { ino: self.ino, file_type: self.file_type(), size, atime_ns: self.atime_ns, mtime_ns: self.mtime_ns }
    }

    /// A directory's entries; `NotDir` for anything else.
    pub fn dir(&mut self) -> Result<&mut BTreeMap<Vec<u8>, NodeRef>, Error> {
        match &mut self.kind {
            Kind::Dir(dir) => Ok(dir.entries()),
            _ => Err(Error::NotDir),
        }
    }

    fn file(&mut self) -> Result<&mut Contents, Error> {
        match &mut self.kind {
            Kind::File(contents) => Ok(contents),
            Kind::Dir(_) => Err(Error::IsDir),
            Kind::Symlink(_) | Kind::Host(_) => Err(Error::Inval),
        }
    }

    /// Copies bytes from `offset` into `buf`; the count is 0 at or past the end.
    pub fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, Error> {
        let bytes = self.file()?.bytes();
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(bytes.len());
        let n = buf.len().min(bytes.len() - start);
        buf[..n].copy_from_slice(&bytes[start..start + n]);
        Ok(n)
    }

    /// Writes `data` at `offset`, filling any gap with zeros. Writing nothing changes nothing,
    /// wherever (as `pwrite` of 0 bytes).
    pub fn write_at(&mut self, offset: u64, data: &[u8], now_ns: u64) -> Result<usize, Error> {
        if data.is_empty() {
            return self.file().map(|_| 0);
        }
        let start = usize::try_from(offset).map_err(|_| Error::TooBig)?;
        let end = start.checked_add(data.len()).filter(|&end| end <= isize::MAX as usize).ok_or(Error::TooBig)?;
        let bytes = self.file()?.owned(end)?;
        if bytes.len() < end {
            bytes.resize(end, 0);
        }
        bytes[start..end].copy_from_slice(data);
        self.mtime_ns = now_ns;
        Ok(data.len())
    }

    /// Sets the access and modification times given (ns since the epoch); `None` leaves one.
    pub fn set_times(&mut self, atime_ns: Option<u64>, mtime_ns: Option<u64>) {
        self.atime_ns = atime_ns.unwrap_or(self.atime_ns);
        self.mtime_ns = mtime_ns.unwrap_or(self.mtime_ns);
    }

    /// Cuts or extends (with zeros) a file to `len` bytes.
    pub fn set_size(&mut self, len: u64, now_ns: u64) -> Result<(), Error> {
        let len = usize::try_from(len).ok().filter(|&l| l <= isize::MAX as usize).ok_or(Error::TooBig)?;
        let contents = self.file()?;
        if contents.bytes().len() == len {
            return Ok(());
        }
        if len == 0 {
            *contents = Contents::Owned(Vec::new());
        } else {
            contents.owned(len)?.resize(len, 0);
        }
        self.mtime_ns = now_ns;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_archive_file_is_copied_on_its_first_write_only() {
        let node = Node::new(Kind::File(Contents::Archive(b"hello")), 1);
        let mut file = node.borrow_mut();
        let mut buf = [0u8; 8];
        assert_eq!(file.read_at(1, &mut buf).unwrap(), 4);
        assert_eq!(&buf[..4], b"ello");
        assert_eq!(file.read_at(99, &mut buf).unwrap(), 0);
        assert!(matches!(file.kind, Kind::File(Contents::Archive(_))));
        file.write_at(7, b"!", 5).unwrap();
        assert!(matches!(&file.kind, Kind::File(Contents::Owned(b)) if b == b"hello\0\0!"));
        assert_eq!(file.mtime_ns, 5);
        file.set_size(2, 6).unwrap();
        assert_eq!(file.stat().size, 2);
        assert_eq!(file.write_at(u64::MAX, b"x", 7), Err(Error::TooBig));
    }

    #[test]
    fn directories_cannot_be_read_as_files() {
        let dir = Node::new_dir(0);
        assert_eq!(dir.borrow_mut().read_at(0, &mut [0; 4]), Err(Error::IsDir));
        assert_eq!(dir.borrow_mut().write_at(0, b"x", 0), Err(Error::IsDir));
        assert!(dir.borrow_mut().dir().unwrap().is_empty());
        let file = Node::new(Kind::File(Contents::Owned(Vec::new())), 0);
        assert_eq!(file.borrow_mut().dir().err(), Some(Error::NotDir));
    }
}

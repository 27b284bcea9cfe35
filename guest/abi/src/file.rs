//! The file device: how a workload reads and writes the host directories and files it was
//! given as volumes (`wasmcell run --volume`, a pod's writable mounts), write-through, while
//! the root filesystem and `--dir` stay snapshots in guest memory. Each call is one write of
//! the operation number to the control device's [`FILE`] register, with its arguments
//! ([`FileCall`]) in the vCPU block's `message`; the VMM carries it out at once and writes a
//! [`FileReply`] over the arguments before it resumes the vCPU. Paths and data are in the
//! workload's stack or heap (a buffer anywhere else ends the workload: a device error).
//!
//! Handles: volume `i` of the workload (its order in the workload blob) is handle `i`, open for
//! as long as the workload; [`Op::Open`] gives more. A path is resolved beneath its directory
//! handle by the host kernel: `..`, absolute paths and symlinks that leave the volume are
//! refused with `EPERM` (what wasmtime answers), whatever another process does to the tree
//! meanwhile. A volume may be a single file instead ([`Volume::File`]): its handle is that file,
//! read and written like any opened one.
//!
//! Results are Linux `errno` numbers, negated, as for the socket device.

pub use crate::socket::SocketCall as FileCall;

/// Control-device register (offset): write an [`Op`] number after placing its [`FileCall`].
pub const FILE: u16 = 0x2c;

/// Handles (volumes included) one workload may hold at once.
pub const MAX_HANDLES: u32 = 512;
/// Bytes one read, write or directory read moves at most (the guest loops for more).
pub const MAX_TRANSFER: u64 = 1 << 20;
/// Longest path (or symlink target) a call may name, in bytes.
pub const MAX_PATH: u64 = 4096;

/// File operations. Arguments are `FileCall::args` in order; a path is `(address, length)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Op {
    /// `(dir, path, path length, flags)` → a handle; the reply's stat is the opened file's.
    /// `flags` are [`open`]'s.
    Open = 1,
    /// `(handle)`: close; volumes stay open.
    Close = 2,
    /// `(handle, buffer, length, offset)` → bytes read (0: end of file).
    Read = 3,
    /// `(handle, buffer, length, offset)` → bytes written; [`APPEND`] as the offset writes at
    /// the end (a handle opened with [`open::APPEND`] always does).
    Write = 4,
    /// `(dir, path, path length, follow)` → the stat of what the path names (an empty path:
    /// the handle itself).
    Stat = 5,
    /// `(handle, size)`: truncate or extend.
    SetSize = 6,
    /// `(dir, path, path length, follow, atime ns, mtime ns, flags)`: [`times`]'s flags (an
    /// empty path: the handle itself).
    SetTimes = 7,
    /// `(handle)`: flush to the host's disk.
    Sync = 8,
    /// `(handle, buffer, length, cookie)` → bytes of [`Dirent`]s written, from `cookie` (0:
    /// the start; else an entry's `next`), without `.` and `..`; an entry that does not fit
    /// whole is not written.
    ReadDir = 9,
    /// `(dir, path, path length)`.
    CreateDir = 10,
    /// `(dir, path, path length)`.
    Unlink = 11,
    /// `(dir, path, path length)`.
    RemoveDir = 12,
    /// `(dir, path, path length, new dir, new path, new path length)`.
    Rename = 13,
    /// `(dir, path, path length, new dir, new path, new path length)`: a hard link; never
    /// follows a symlink.
    Link = 14,
    /// `(target, target length, dir, path, path length)`.
    Symlink = 15,
    /// `(dir, path, path length, buffer, length)` → bytes of the target written (cut to the
    /// buffer).
    ReadLink = 16,
}

impl Op {
    pub fn from_u32(raw: u32) -> Option<Self> {
        Some(match raw {
            1 => Op::Open,
            2 => Op::Close,
            3 => Op::Read,
            4 => Op::Write,
            5 => Op::Stat,
            6 => Op::SetSize,
            7 => Op::SetTimes,
            8 => Op::Sync,
            9 => Op::ReadDir,
            10 => Op::CreateDir,
            11 => Op::Unlink,
            12 => Op::RemoveDir,
            13 => Op::Rename,
            14 => Op::Link,
            15 => Op::Symlink,
            16 => Op::ReadLink,
            _ => return None,
        })
    }
}

/// The argument of every call that names a handle to close before the call is carried out,
/// plus one (0: none): a dropped handle's close rides on the next call instead of taking an
/// exit of its own. No operation uses this argument otherwise.
pub const CLOSE_FIRST: usize = 7;

/// [`Op::Write`]'s offset that appends.
pub const APPEND: u64 = u64::MAX;

/// [`Op::Open`]'s flags.
pub mod open {
    pub const READ: u64 = 1;
    pub const WRITE: u64 = 2;
    pub const APPEND: u64 = 4;
    pub const CREATE: u64 = 8;
    pub const EXCLUSIVE: u64 = 16;
    pub const TRUNCATE: u64 = 32;
    pub const DIRECTORY: u64 = 64;
    /// A symlink as the last component is refused (`ELOOP`), not followed.
    pub const NOFOLLOW: u64 = 128;
    pub const ALL: u64 = 255;
}

/// [`Op::SetTimes`]'s flags: WASI's `fstflags`.
pub mod times {
    pub const ATIME: u64 = 1;
    pub const ATIME_NOW: u64 = 2;
    pub const MTIME: u64 = 4;
    pub const MTIME_NOW: u64 = 8;
}

/// A volume as the workload blob names it: the kind byte before its guest path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Volume {
    /// A directory, writable.
    Dir,
    /// A directory the device keeps read-only: a change, or an open for writing, answers
    /// `EPERM` (as wasmtime answers for a directory without its mutate permission).
    ReadOnlyDir,
    /// A single file, writable, seen at the guest path.
    File,
    /// A single file the device keeps read-only.
    ReadOnlyFile,
}

impl Volume {
    pub fn to_byte(self) -> u8 {
        match self {
            Volume::Dir => b'd',
            Volume::ReadOnlyDir => b'r',
            Volume::File => b'f',
            Volume::ReadOnlyFile => b'F',
        }
    }

    pub fn from_byte(byte: u8) -> Option<Self> {
        Some(match byte {
            b'd' => Volume::Dir,
            b'r' => Volume::ReadOnlyDir,
            b'f' => Volume::File,
            b'F' => Volume::ReadOnlyFile,
            _ => return None,
        })
    }
}

/// File types, as WASI numbers them.
pub mod kind {
    pub const UNKNOWN: u8 = 0;
    pub const BLOCK_DEVICE: u8 = 1;
    pub const CHARACTER_DEVICE: u8 = 2;
    pub const DIRECTORY: u8 = 3;
    pub const REGULAR_FILE: u8 = 4;
    pub const SOCKET: u8 = 6;
    pub const SYMBOLIC_LINK: u8 = 7;
}

/// What a file is, as [`Op::Stat`] and [`Op::Open`] reply.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stat {
    pub dev: u64,
    pub ino: u64,
    /// One of [`kind`].
    pub kind: u8,
    pub nlink: u64,
    pub size: u64,
    pub atime_ns: u64,
    pub mtime_ns: u64,
    pub ctime_ns: u64,
}

impl Stat {
    pub const WORDS: usize = 7;

    fn to_words(self) -> [u64; Self::WORDS] {
        [
            self.dev,
            self.ino,
            u64::from(self.kind) | self.nlink << 8,
            self.size,
            self.atime_ns,
            self.mtime_ns,
            self.ctime_ns,
        ]
    }

    fn from_words(w: &[u64; Self::WORDS]) -> Self {
        Self {
            dev: w[0],
            ino: w[1],
            kind: w[2] as u8,
            nlink: w[2] >> 8,
            size: w[3],
            atime_ns: w[4],
            mtime_ns: w[5],
            ctime_ns: w[6],
        }
    }
}

/// What the VMM writes over the arguments: `result` (≥ 0: a value; < 0: `-errno`) and, for
/// [`Op::Open`] and [`Op::Stat`], a stat.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileReply {
    pub result: i64,
    pub stat: Stat,
}

impl FileReply {
    pub const SIZE: usize = 8 + 8 * Stat::WORDS;

    pub fn error(errno: i32) -> Self {
        Self { result: -i64::from(errno), stat: Stat::default() }
    }

    pub fn to_bytes(self) -> [u8; Self::SIZE] {
        let mut bytes = [0; Self::SIZE];
        bytes[..8].copy_from_slice(&self.result.to_le_bytes());
        for (chunk, word) in bytes[8..].chunks_exact_mut(8).zip(self.stat.to_words()) {
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        bytes
    }

    pub fn from_bytes(raw: &[u8; Self::SIZE]) -> Self {
        let word = |i: usize| u64::from_le_bytes(raw[i * 8..i * 8 + 8].try_into().unwrap_or_default());
        let mut words = [0; Stat::WORDS];
        for (i, w) in words.iter_mut().enumerate() {
            *w = word(i + 1);
        }
        Self { result: word(0) as i64, stat: Stat::from_words(&words) }
    }
}

/// One entry of an [`Op::ReadDir`]: WASI preview 1's `dirent` (`next u64, ino u64, name
/// length u32, kind u8`, 24 bytes), then the name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dirent<'a> {
    /// The cookie of the entry after this one.
    pub next: u64,
    pub ino: u64,
    pub kind: u8,
    pub name: &'a [u8],
}

/// Bytes of a [`Dirent`]'s header.
pub const DIRENT_SIZE: usize = 24;

impl<'a> Dirent<'a> {
    pub const SIZE: usize = DIRENT_SIZE;

    /// The entry at the start of `bytes`, and what follows it.
    pub fn parse(bytes: &'a [u8]) -> Option<(Self, &'a [u8])> {
        let (head, rest) = bytes.split_first_chunk::<DIRENT_SIZE>()?;
        let word = |at: usize| u64::from_le_bytes(head[at..at + 8].try_into().unwrap_or_default());
        let len = u32::from_le_bytes(head[16..20].try_into().unwrap_or_default()) as usize;
        let name = rest.get(..len)?;
        Some((Self { next: word(0), ino: word(8), kind: head[20], name }, &rest[len..]))
    }

    /// The header of an entry named `name_len` bytes.
    pub fn header(next: u64, ino: u64, kind: u8, name_len: u32) -> [u8; DIRENT_SIZE] {
        let mut head = [0; DIRENT_SIZE];
        head[..8].copy_from_slice(&next.to_le_bytes());
        head[8..16].copy_from_slice(&ino.to_le_bytes());
        head[16..20].copy_from_slice(&name_len.to_le_bytes());
        head[20] = kind;
        head
    }
}

const _: () = assert!(FileReply::SIZE <= crate::control::MESSAGE_MAX);
const _: () = assert!(FILE + 4 <= crate::control::X86_PORT_COUNT && FILE >= crate::socket::SOCKET + 4);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_dirents_and_volumes_round_trip() {
        let stat =
            Stat { dev: 1, ino: 2, kind: kind::DIRECTORY, nlink: 3, size: 4, atime_ns: 5, mtime_ns: 6, ctime_ns: 7 };
        let reply = FileReply { result: -13, stat };
        assert_eq!(FileReply::from_bytes(&reply.to_bytes()), reply);
        let mut bytes = Dirent::header(9, 8, kind::REGULAR_FILE, 3).to_vec();
        bytes.extend_from_slice(b"abcXYZ");
        let entry = Dirent { next: 9, ino: 8, kind: kind::REGULAR_FILE, name: b"abc" };
        assert_eq!(Dirent::parse(&bytes), Some((entry, &b"XYZ"[..])));
        assert_eq!(Dirent::parse(&bytes[..26]), None, "a name cut short");
        for volume in [Volume::Dir, Volume::ReadOnlyDir, Volume::File, Volume::ReadOnlyFile] {
            assert_eq!(Volume::from_byte(volume.to_byte()), Some(volume));
        }
        assert_eq!(Volume::from_byte(b'x'), None);
        assert_eq!(Op::from_u32(0), None);
        assert_eq!(Op::from_u32(17), None);
        assert_eq!(Op::from_u32(16), Some(Op::ReadLink));
    }
}

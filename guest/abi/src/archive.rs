//! The read-only file tree of a workload's preopened directories (`--dir`): the VMM packs the
//! host directories into one archive, places it in guest memory mapped read-only, and the guest
//! indexes it in place. File contents are never copied unless the workload writes to them.
//!
//! Layout, integers little-endian:
//!
//! ```text
//! header   magic u64 = "WCFILES1", count u32, roots u32
//! entries  count × { kind u32, name_len u32, name_at u64, a u64, b u64, mtime_ns u64 }
//! bytes    names, file contents and symlink targets, anywhere after the entries
//! ```
//!
//! - file: `a..a+b` is its content; symlink: `a..a+b` is its target (never followed here).
//! - directory: its children are entries `a..a+b`, sorted by name, each after the directory.
//! - The first `roots` entries are the preopened directories, named by their guest path.
//!
//! Offsets are from the start of the archive. [`Archive::parse`] checks every entry once, so
//! later accessors cannot go out of bounds, the tree cannot loop and no entry has two parents.

use core::ops::Range;

/// `b"WCFILES1"` read as a little-endian `u64`.
pub const MAGIC: u64 = u64::from_le_bytes(*b"WCFILES1");
/// Bytes of the header.
pub const HEADER_LEN: usize = 16;
/// Bytes of one entry.
pub const ENTRY_LEN: usize = 40;

/// What an entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Kind {
    File = 1,
    Dir = 2,
    Symlink = 3,
}

impl Kind {
    fn from_u32(raw: u32) -> Option<Self> {
        match raw {
            1 => Some(Kind::File),
            2 => Some(Kind::Dir),
            3 => Some(Kind::Symlink),
            _ => None,
        }
    }
}

/// A validated archive, borrowed.
#[derive(Clone, Copy, Debug)]
pub struct Archive<'a> {
    bytes: &'a [u8],
    count: u32,
    roots: u32,
}

/// One entry of an [`Archive`].
#[derive(Clone, Copy, Debug)]
pub struct Entry<'a> {
    pub kind: Kind,
    /// The name within its directory (for a root: its guest path).
    pub name: &'a [u8],
    /// Last modification, ns since the Unix epoch.
    pub mtime_ns: u64,
    a: u64,
    b: u64,
    bytes: &'a [u8],
}

impl<'a> Entry<'a> {
    /// A file's content or a symlink's target; empty for a directory.
    pub fn data(&self) -> &'a [u8] {
        match self.kind {
            Kind::Dir => &[],
            // In bounds: checked by `Archive::parse`.
            Kind::File | Kind::Symlink => &self.bytes[self.a as usize..(self.a + self.b) as usize],
        }
    }

    /// A directory's children (entry indices); empty for anything else.
    pub fn children(&self) -> Range<u32> {
        match self.kind {
            Kind::Dir => self.a as u32..(self.a + self.b) as u32,
            Kind::File | Kind::Symlink => 0..0,
        }
    }
}

impl<'a> Archive<'a> {
    /// Parses and validates the whole archive; `None` if anything is out of bounds, a directory
    /// names children before itself or children another directory already has, or a name is
    /// not a plain file name.
    pub fn parse(bytes: &'a [u8]) -> Option<Self> {
        if read_u64(bytes, 0)? != MAGIC {
            return None;
        }
        let count = read_u32(bytes, 8)?;
        let roots = read_u32(bytes, 12)?;
        let entries_end = (count as usize).checked_mul(ENTRY_LEN)?.checked_add(HEADER_LEN)?;
        if roots > count || entries_end > bytes.len() {
            return None;
        }
        let archive = Self { bytes, count, roots };
        // Children ranges must follow each other in the order of their directories, so no
        // entry has two parents: a shared child would make the tree a DAG whose walk can be
        // exponentially long.
        let mut first_free_child = u64::from(roots);
        for index in 0..count {
            let raw = archive.raw(index)?;
            let name = slice(bytes, raw.name_at, raw.name_len as u64)?;
            let plain = !name.is_empty() && name != b"." && name != b".." && !name.contains(&b'/');
            if !(plain || index < roots && !name.is_empty()) {
                return None;
            }
            match Kind::from_u32(raw.kind)? {
                Kind::File | Kind::Symlink => {
                    slice(bytes, raw.a, raw.b)?;
                }
                Kind::Dir => {
                    let end = raw.a.checked_add(raw.b)?;
                    if raw.b > 0 {
                        if raw.a <= u64::from(index) || raw.a < first_free_child || end > u64::from(count) {
                            return None;
                        }
                        first_free_child = end;
                    }
                }
            }
        }
        Some(archive)
    }

    /// The preopened directories (entry indices).
    pub fn roots(&self) -> Range<u32> {
        0..self.roots
    }

    /// Number of entries.
    pub fn len(&self) -> u32 {
        self.count
    }

    /// Whether the archive has no entries.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Entry `index`, if it exists.
    pub fn entry(&self, index: u32) -> Option<Entry<'a>> {
        let raw = self.raw(index)?;
        Some(Entry {
            kind: Kind::from_u32(raw.kind)?,
            name: slice(self.bytes, raw.name_at, raw.name_len as u64)?,
            mtime_ns: raw.mtime_ns,
            a: raw.a,
            b: raw.b,
            bytes: self.bytes,
        })
    }

    fn raw(&self, index: u32) -> Option<RawEntry> {
        if index >= self.count {
            return None;
        }
        let at = HEADER_LEN + index as usize * ENTRY_LEN;
        Some(RawEntry {
            kind: read_u32(self.bytes, at)?,
            name_len: read_u32(self.bytes, at + 4)?,
            name_at: read_u64(self.bytes, at + 8)?,
            a: read_u64(self.bytes, at + 16)?,
            b: read_u64(self.bytes, at + 24)?,
            mtime_ns: read_u64(self.bytes, at + 32)?,
        })
    }
}

struct RawEntry {
    kind: u32,
    name_len: u32,
    name_at: u64,
    a: u64,
    b: u64,
    mtime_ns: u64,
}

fn slice(bytes: &[u8], at: u64, len: u64) -> Option<&[u8]> {
    let start = usize::try_from(at).ok()?;
    bytes.get(start..start.checked_add(usize::try_from(len).ok()?)?)
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

fn read_u64(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at.checked_add(8)?)?.try_into().ok()?))
}

#[cfg(any(feature = "alloc", test))]
pub use encode::{encode, encode_arena, ArenaKind, ArenaNode, Node, NodeKind};

#[cfg(any(feature = "alloc", test))]
mod encode {
    use super::{Kind, ENTRY_LEN, HEADER_LEN, MAGIC};
    use alloc::vec::Vec;
    use core::ops::Range;

    /// A file tree to pack, as the host reads it.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct Node {
        pub name: Vec<u8>,
        pub mtime_ns: u64,
        pub kind: NodeKind,
    }

    /// What a [`Node`] is.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub enum NodeKind {
        File(Vec<u8>),
        Dir(Vec<Node>),
        Symlink(Vec<u8>),
    }

    /// A file tree whose names, contents and targets are ranges of one byte buffer, the arena
    /// ([`encode_arena`]): the host reads files straight into it, and entries may share a range
    /// (hard links of one file are stored once).
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct ArenaNode {
        pub name: Range<usize>,
        pub mtime_ns: u64,
        pub kind: ArenaKind,
    }

    /// What an [`ArenaNode`] is.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub enum ArenaKind {
        File(Range<usize>),
        Dir(Vec<ArenaNode>),
        Symlink(Range<usize>),
    }

    /// Packs `roots` (the preopened directories, named by guest path) into an archive.
    /// Children are laid out breadth first and sorted by name. `None` if a name or the entry
    /// count does not fit in a `u32`.
    pub fn encode(roots: &[Node]) -> Option<Vec<u8>> {
        fn place(node: &Node, arena: &mut Vec<u8>) -> ArenaNode {
            let mut push = |bytes: &[u8]| {
                arena.extend_from_slice(bytes);
                arena.len() - bytes.len()..arena.len()
            };
            let name = push(&node.name);
            let kind = match &node.kind {
                NodeKind::File(data) => ArenaKind::File(push(data)),
                NodeKind::Symlink(target) => ArenaKind::Symlink(push(target)),
                NodeKind::Dir(kids) => ArenaKind::Dir(kids.iter().map(|kid| place(kid, arena)).collect()),
            };
            ArenaNode { name, mtime_ns: node.mtime_ns, kind }
        }
        let mut arena = Vec::new();
        let roots: Vec<ArenaNode> = roots.iter().map(|root| place(root, &mut arena)).collect();
        encode_arena(&roots, arena)
    }

    /// Turns `arena` into the archive of `roots` in place: the header and the entries go in
    /// front of it (one move of its bytes, no copy), and every range now points into the
    /// archive. `None` if a name or the entry count does not fit in a `u32` or a range lies
    /// outside `arena`.
    pub fn encode_arena(roots: &[ArenaNode], mut arena: Vec<u8>) -> Option<Vec<u8>> {
        // Breadth-first order: each directory's children are contiguous and after it.
        let mut order: Vec<&ArenaNode> = roots.iter().collect();
        let mut children = Vec::new();
        let mut next = 0;
        while next < order.len() {
            if let ArenaKind::Dir(kids) = &order[next].kind {
                let mut sorted: Vec<&ArenaNode> = kids.iter().collect();
                sorted.sort_by(|x, y| arena.get(x.name.clone()).cmp(&arena.get(y.name.clone())));
                children.push((order.len() as u64, sorted.len() as u64));
                order.extend(sorted);
            } else {
                children.push((0, 0));
            }
            next += 1;
        }
        let count = u32::try_from(order.len()).ok()?;
        let prefix = HEADER_LEN.checked_add(order.len().checked_mul(ENTRY_LEN)?)?;
        let contents = arena.len();
        arena.resize(contents.checked_add(prefix)?, 0);
        arena.copy_within(0..contents, prefix);
        let mut out = arena;
        out[..prefix].fill(0);
        out[0..8].copy_from_slice(&MAGIC.to_le_bytes());
        out[8..12].copy_from_slice(&count.to_le_bytes());
        out[12..16].copy_from_slice(&u32::try_from(roots.len()).ok()?.to_le_bytes());
        let placed = |range: &Range<usize>| {
            (range.start <= range.end && range.end <= contents).then(|| ((range.start + prefix) as u64, range.len()))
        };
        for (index, (node, (first, len))) in order.iter().zip(children).enumerate() {
            let (name_at, name_len) = placed(&node.name)?;
            let (kind, a, b) = match &node.kind {
                ArenaKind::Dir(_) => (Kind::Dir, first, len),
                ArenaKind::File(data) => {
                    let (at, len) = placed(data)?;
                    (Kind::File, at, len as u64)
                }
                ArenaKind::Symlink(target) => {
                    let (at, len) = placed(target)?;
                    (Kind::Symlink, at, len as u64)
                }
            };
            let entry = &mut out[HEADER_LEN + index * ENTRY_LEN..][..ENTRY_LEN];
            entry[0..4].copy_from_slice(&(kind as u32).to_le_bytes());
            entry[4..8].copy_from_slice(&u32::try_from(name_len).ok()?.to_le_bytes());
            entry[8..16].copy_from_slice(&name_at.to_le_bytes());
            entry[16..24].copy_from_slice(&a.to_le_bytes());
            entry[24..32].copy_from_slice(&b.to_le_bytes());
            entry[32..40].copy_from_slice(&node.mtime_ns.to_le_bytes());
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    fn file(name: &str, data: &str) -> Node {
        Node { name: name.into(), mtime_ns: 7, kind: NodeKind::File(data.into()) }
    }

    fn dir(name: &str, kids: Vec<Node>) -> Node {
        Node { name: name.into(), mtime_ns: 9, kind: NodeKind::Dir(kids) }
    }

    fn names(archive: &Archive<'_>, range: Range<u32>) -> Vec<Vec<u8>> {
        range.map(|i| archive.entry(i).unwrap().name.to_vec()).collect()
    }

    #[test]
    fn round_trip_keeps_the_tree_sorted() {
        let link = Node { name: "link".into(), mtime_ns: 1, kind: NodeKind::Symlink("../x".into()) };
        let roots = [
            dir("/data", vec![file("b.txt", "bee"), dir("sub", vec![file("deep", "d")]), file("a.txt", "ay"), link]),
            dir("/empty", vec![]),
        ];
        let bytes = encode(&roots).unwrap();
        let archive = Archive::parse(&bytes).unwrap();
        assert_eq!(names(&archive, archive.roots()), [b"/data".to_vec(), b"/empty".to_vec()]);
        let data = archive.entry(0).unwrap();
        assert_eq!(data.kind, Kind::Dir);
        assert_eq!(names(&archive, data.children()), ["a.txt", "b.txt", "link", "sub"].map(|s| s.as_bytes().to_vec()));
        let a = archive.entry(data.children().start).unwrap();
        assert_eq!((a.kind, a.data(), a.mtime_ns), (Kind::File, &b"ay"[..], 7));
        let link = archive.entry(data.children().start + 2).unwrap();
        assert_eq!((link.kind, link.data()), (Kind::Symlink, &b"../x"[..]));
        let sub = archive.entry(data.children().start + 3).unwrap();
        let deep = archive.entry(sub.children().start).unwrap();
        assert_eq!((deep.name, deep.data()), (&b"deep"[..], &b"d"[..]));
        assert!(archive.entry(1).unwrap().children().is_empty());
        assert!(archive.entry(archive.len()).is_none());
    }

    #[test]
    fn arena_entries_may_share_their_bytes() {
        // "ab" then "same content": two files naming one range.
        let arena = b"abxsame content".to_vec();
        let file = |name: Range<usize>| ArenaNode { name, mtime_ns: 1, kind: ArenaKind::File(3..15) };
        let root = ArenaNode { name: 2..3, mtime_ns: 0, kind: ArenaKind::Dir(vec![file(1..2), file(0..1)]) };
        let bytes = encode_arena(&[root], arena.clone()).unwrap();
        assert_eq!(bytes.len(), HEADER_LEN + 3 * ENTRY_LEN + arena.len(), "the content is there once");
        let archive = Archive::parse(&bytes).unwrap();
        let root = archive.entry(0).unwrap();
        assert_eq!(names(&archive, root.children()), [b"a".to_vec(), b"b".to_vec()], "sorted");
        let (a, b) = (archive.entry(1).unwrap(), archive.entry(2).unwrap());
        assert_eq!((a.data(), b.data()), (&b"same content"[..], &b"same content"[..]));
        assert_eq!(a.data().as_ptr(), b.data().as_ptr());
        let outside = ArenaNode { name: 0..1, mtime_ns: 0, kind: ArenaKind::File(10..99) };
        assert!(encode_arena(&[outside], arena).is_none(), "a range outside the arena");
    }

    #[test]
    fn damaged_archives_are_refused() {
        let bytes = encode(&[dir("/d", vec![file("f", "content")])]).unwrap();
        assert!(Archive::parse(&bytes).is_some());
        assert!(Archive::parse(&bytes[..bytes.len() - 1]).is_none(), "content cut short");
        assert!(Archive::parse(&bytes[..HEADER_LEN]).is_none(), "entries missing");
        assert!(Archive::parse(b"").is_none());
        let patched = |at: usize, value: u64| {
            let mut b = bytes.clone();
            b[at..at + 8].copy_from_slice(&value.to_le_bytes());
            Archive::parse(&b).is_none()
        };
        let root = HEADER_LEN;
        let child = HEADER_LEN + ENTRY_LEN;
        assert!(patched(0, 0), "bad magic");
        assert!(patched(root + 16, 0), "a directory that contains itself");
        assert!(patched(root + 24, 5), "children past the last entry");
        assert!(patched(child + 24, u64::MAX), "content length overflows");
        assert!(patched(child, 9), "unknown kind");
        let two = encode(&[dir("/a", vec![file("f", "x")]), dir("/b", vec![file("g", "y")])]).unwrap();
        let mut shared = two.clone();
        // Root /b's children become /a's: entry 2 would have two parents.
        let a_children = read_u64(&two, HEADER_LEN + 16).unwrap();
        shared[HEADER_LEN + ENTRY_LEN + 16..][..8].copy_from_slice(&a_children.to_le_bytes());
        assert!(Archive::parse(&two).is_some());
        assert!(Archive::parse(&shared).is_none(), "two directories share a child");
        let mut slash = bytes.clone();
        let name_at = read_u64(&bytes, child + 8).unwrap() as usize;
        slash[name_at] = b'/';
        assert!(Archive::parse(&slash).is_none(), "a name with a slash");
    }
}

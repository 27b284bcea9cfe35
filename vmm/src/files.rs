//! Preopened directories: the host directories a workload may see (`--dir HOST[::GUEST]`, a
//! container's root filesystem), packed into one read-only archive (`wasmcell_abi::archive`)
//! during validation, before any KVM resource exists. The guest indexes the archive in place
//! and keeps its writes in memory.
//!
//! Regular files, directories and symlinks are packed; symlinks keep their target text and are
//! resolved by the guest, which refuses any that lead out of the preopen. Sockets, FIFOs and
//! devices are left out, never opened: a workload sees a snapshot, not live host objects.
//!
//! A container's tree is its image's, so the tenant's: it is walked by descriptor ([`dir`]),
//! never through a symlink, and every cost is bounded before it is paid. The archive must fit
//! in the workload's memory (the caller's budget): each file is `stat`ed and charged before it
//! is read, so a 2 GiB sparse file fails at once; hard links of one file are stored once; depth,
//! entry count, names and symlink targets are capped ([`MAX_DEPTH`], [`MAX_ENTRIES`],
//! [`MAX_NAME`], [`MAX_LINK_TARGET`]). File contents are read straight into the archive's
//! buffer, so packing needs about as much host memory as the archive it makes.

mod dir;

use dir::{Dir, Stat, StatKind};
use std::collections::HashMap;
use std::ffi::CStr;
use std::io::Read;
use std::ops::Range;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use wasmcell_abi::archive::{self, ArenaKind, ArenaNode};

/// Deepest directory nesting packed, below each preopen. Real trees are a few tens deep; a
/// hostile one can be thousands (each level costs the walk an open directory).
pub const MAX_DEPTH: usize = 128;
/// Most files, directories and symlinks packed in all. A million is far more than any image a
/// Wasm workload needs, and bounds the walk's time and the host memory of its index.
pub const MAX_ENTRIES: usize = 1 << 20;
/// Longest name packed (Linux's `NAME_MAX`).
pub const MAX_NAME: usize = 255;
/// Longest symlink target packed (Linux's `PATH_MAX` less its NUL).
pub const MAX_LINK_TARGET: usize = 4095;

/// A host directory and the path the workload sees it at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Preopen {
    pub host: PathBuf,
    pub guest: String,
}

/// Errors while packing preopened directories.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    /// A directory or file could not be read.
    #[error("Cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A preopen that is not a directory.
    #[error("{0} is not a directory")]
    NotADirectory(PathBuf),
    /// A guest path that the guest could not name.
    #[error("Guest path {0:?} must not be empty")]
    EmptyGuestPath(String),
    /// The archive would not fit in the workload's memory.
    #[error("The files under {root} need more than the workload's memory ({budget_mib} MiB)")]
    OverBudget { root: PathBuf, budget_mib: u64 },
    /// A tree nested deeper than [`MAX_DEPTH`].
    #[error("The tree under {0} is more than {MAX_DEPTH} directories deep")]
    TooDeep(PathBuf),
    /// More than [`MAX_ENTRIES`] entries.
    #[error("The tree under {0} has more than {MAX_ENTRIES} files and directories")]
    TooManyEntries(PathBuf),
    /// A name longer than [`MAX_NAME`].
    #[error("A name in {0} is longer than {MAX_NAME} bytes")]
    NameTooLong(PathBuf),
    /// A symlink target longer than [`MAX_LINK_TARGET`].
    #[error("The symlink {0} has a target longer than {MAX_LINK_TARGET} bytes")]
    LinkTooLong(PathBuf),
    /// More entries or bytes than the archive format holds.
    #[error("The preopened directories are too large")]
    TooLarge,
}

/// Packs `preopens` into an archive for the guest, which must fit in `budget` bytes (the
/// memory of the workload whose window holds it).
pub fn pack(preopens: &[Preopen], budget: u64) -> Result<Vec<u8>, FilesError> {
    let mut packer = Packer::new(budget);
    let mut roots = Vec::new();
    for preopen in preopens {
        if preopen.guest.is_empty() {
            return Err(FilesError::EmptyGuestPath(preopen.guest.clone()));
        }
        packer.root = preopen.host.clone();
        let dir = Dir::open(&preopen.host).map_err(|e| match e.raw_os_error() {
            Some(libc::ENOTDIR) => FilesError::NotADirectory(preopen.host.clone()),
            _ => read_error(&preopen.host, e),
        })?;
        let stat = dir.stat_self().map_err(|e| read_error(&preopen.host, e))?;
        let name = packer.entry(preopen.guest.as_bytes())?;
        let mut path = preopen.host.clone();
        let kids = packer.dir(&dir, &mut path, 0)?;
        roots.push(ArenaNode { name, mtime_ns: stat.mtime_ns, kind: ArenaKind::Dir(kids) });
    }
    archive::encode_arena(&roots, packer.arena).ok_or(FilesError::TooLarge)
}

fn read_error(path: &Path, source: std::io::Error) -> FilesError {
    FilesError::Read { path: path.to_path_buf(), source }
}

/// The walk's state: what the archive will hold so far, and what it costs.
struct Packer {
    budget: u64,
    /// Bytes of the archive so far: header, entries, names, contents, targets.
    used: u64,
    entries: usize,
    /// Names, contents and targets, in the order they were met.
    arena: Vec<u8>,
    /// Files already stored, by (device, inode): their hard links share the bytes.
    stored: HashMap<(u64, u64), Range<usize>>,
    /// The preopen being walked, for messages.
    root: PathBuf,
}

impl Packer {
    fn new(budget: u64) -> Self {
        Self {
            budget,
            used: archive::HEADER_LEN as u64,
            entries: 0,
            arena: Vec::new(),
            stored: HashMap::new(),
            root: PathBuf::new(),
        }
    }

    /// Charges `bytes` more to the budget.
    fn charge(&mut self, bytes: u64) -> Result<(), FilesError> {
        match self.used.checked_add(bytes) {
            Some(used) if used <= self.budget => {
                self.used = used;
                Ok(())
            }
            _ => Err(FilesError::OverBudget { root: self.root.clone(), budget_mib: self.budget >> 20 }),
        }
    }

    /// Counts one more entry named `name` and stores its name.
    fn entry(&mut self, name: &[u8]) -> Result<Range<usize>, FilesError> {
        self.entries += 1;
        if self.entries > MAX_ENTRIES {
            return Err(FilesError::TooManyEntries(self.root.clone()));
        }
        self.charge((archive::ENTRY_LEN + name.len()) as u64)?;
        Ok(self.store(name))
    }

    fn store(&mut self, bytes: &[u8]) -> Range<usize> {
        self.arena.extend_from_slice(bytes);
        self.arena.len() - bytes.len()..self.arena.len()
    }

    /// The children of `dir` (at `path`, `depth` levels below the preopen).
    fn dir(&mut self, dir: &Dir, path: &mut PathBuf, depth: usize) -> Result<Vec<ArenaNode>, FilesError> {
        let mut children = Vec::new();
        for name in dir.names().map_err(|e| read_error(path, e))? {
            let name = name.map_err(|e| read_error(path, e))?;
            let stat = match dir.stat(&name) {
                Ok(stat) => stat,
                // Gone since it was listed: not part of the snapshot.
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
                Err(e) => return Err(read_error(&path.join(name_path(&name)), e)),
            };
            if stat.kind == StatKind::Other {
                continue;
            }
            check_name(name.to_bytes(), path)?;
            let entry = self.entry(name.to_bytes())?;
            path.push(name_path(&name));
            let kind = self.child(dir, &name, stat, path, depth);
            path.pop();
            if let Some(kind) = kind? {
                children.push(ArenaNode { name: entry, mtime_ns: stat.mtime_ns, kind });
            }
        }
        Ok(children)
    }

    /// What entry `name` of `dir` (at `path`, last `stat`ed as `stat`) becomes; `None` if it
    /// changed kind since (a snapshot of a tree someone is changing is best effort).
    fn child(
        &mut self,
        dir: &Dir,
        name: &CStr,
        stat: Stat,
        path: &mut PathBuf,
        depth: usize,
    ) -> Result<Option<ArenaKind>, FilesError> {
        let read = |e| read_error(path, e);
        let kind = match stat.kind {
            StatKind::Dir => {
                if depth + 1 > MAX_DEPTH {
                    return Err(FilesError::TooDeep(self.root.clone()));
                }
                let sub = match dir.open_dir(name) {
                    Ok(sub) => sub,
                    Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR | libc::ENOENT)) => {
                        return Ok(None)
                    }
                    Err(e) => return Err(read(e)),
                };
                if !sub.stat_self().map_err(read)?.same_file(&stat) {
                    return Ok(None);
                }
                return Ok(Some(ArenaKind::Dir(self.dir(&sub, path, depth + 1)?)));
            }
            StatKind::File => self.file(dir, name, stat, path)?.map(ArenaKind::File),
            StatKind::Symlink => {
                let target = match dir.read_link(name, MAX_LINK_TARGET) {
                    Ok(Some(target)) => target,
                    Ok(None) => return Err(FilesError::LinkTooLong(path.to_path_buf())),
                    Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOENT)) => return Ok(None),
                    Err(e) => return Err(read(e)),
                };
                self.charge(target.len() as u64)?;
                Some(ArenaKind::Symlink(self.store(&target)))
            }
            StatKind::Other => None,
        };
        Ok(kind)
    }

    /// A regular file's bytes in the arena: charged before a byte is read, stored once for all
    /// its hard links.
    fn file(&mut self, dir: &Dir, name: &CStr, stat: Stat, path: &Path) -> Result<Option<Range<usize>>, FilesError> {
        if let Some(range) = self.stored.get(&(stat.dev, stat.ino)) {
            return Ok(Some(range.clone()));
        }
        self.charge(stat.size)?;
        let read = |e| read_error(path, e);
        let file = match dir.open_file(name) {
            Ok(file) => file,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOENT)) => return Ok(None),
            Err(e) => return Err(read(e)),
        };
        // Still the file that was charged (not a FIFO or another file swapped in).
        let opened = dir::stat_fd(&file).map_err(read)?;
        if opened.kind != StatKind::File || !opened.same_file(&stat) {
            return Ok(None);
        }
        let start = self.arena.len();
        // No more than was charged, even if the file grew since.
        self.arena.reserve(stat.size as usize);
        file.take(stat.size).read_to_end(&mut self.arena).map_err(read)?;
        let range = start..self.arena.len();
        if stat.nlink > 1 {
            self.stored.insert((stat.dev, stat.ino), range.clone());
        }
        Ok(Some(range))
    }
}

/// Names longer than [`MAX_NAME`] are refused (Linux filesystems refuse them already; others,
/// a FUSE one say, might not).
fn check_name(name: &[u8], dir: &Path) -> Result<(), FilesError> {
    if name.len() > MAX_NAME {
        return Err(FilesError::NameTooLong(dir.to_path_buf()));
    }
    Ok(())
}

fn name_path(name: &CStr) -> &Path {
    Path::new(std::ffi::OsStr::from_bytes(name.to_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;
    use std::time::{Duration, Instant};
    use vmm_sys_util::tempdir::TempDir;
    use wasmcell_abi::archive::{Archive, Kind};

    const BUDGET: u64 = 64 << 20;

    fn tempdir() -> TempDir {
        TempDir::new_with_prefix("/tmp/wasmcell-files-").unwrap()
    }

    fn preopen(host: &Path, guest: &str) -> Preopen {
        Preopen { host: host.to_path_buf(), guest: guest.into() }
    }

    fn c_path(path: &Path) -> CString {
        CString::new(path.as_os_str().as_bytes()).unwrap()
    }

    /// The entries of the archive's first root: (name, kind).
    fn listing(bytes: &[u8]) -> Vec<(Vec<u8>, Kind)> {
        let archive = Archive::parse(bytes).unwrap();
        let root = archive.entry(0).unwrap();
        root.children().map(|i| archive.entry(i).unwrap()).map(|e| (e.name.to_vec(), e.kind)).collect()
    }

    #[test]
    fn packs_files_directories_and_symlinks_but_not_fifos() {
        let dir = tempdir();
        std::fs::write(dir.as_path().join("a.txt"), "alpha").unwrap();
        std::fs::create_dir(dir.as_path().join("sub")).unwrap();
        std::fs::write(dir.as_path().join("sub/b.txt"), "beta").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.as_path().join("out")).unwrap();
        let fifo = c_path(&dir.as_path().join("fifo"));
        // SAFETY: `fifo` is a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);

        let bytes = pack(&[preopen(dir.as_path(), "/data")], BUDGET).unwrap();
        let archive = Archive::parse(&bytes).unwrap();
        let root = archive.entry(0).unwrap();
        assert_eq!((root.kind, root.name), (Kind::Dir, &b"/data"[..]));
        let names: Vec<_> = root.children().map(|i| archive.entry(i).unwrap()).map(|e| (e.name, e.kind)).collect();
        let expected: [(&[u8], Kind); 3] = [(b"a.txt", Kind::File), (b"out", Kind::Symlink), (b"sub", Kind::Dir)];
        assert_eq!(names, expected);
        let out = archive.entry(root.children().start + 1).unwrap();
        assert_eq!(out.data(), b"/etc/passwd", "symlink targets are kept, never followed on the host");
        let a = archive.entry(root.children().start).unwrap();
        assert_eq!(a.data(), b"alpha");
        assert!(a.mtime_ns > 0);
        let sub = archive.entry(root.children().start + 2).unwrap();
        assert_eq!(archive.entry(sub.children().start).unwrap().data(), b"beta");
    }

    #[test]
    fn missing_paths_and_files_are_refused_with_their_name() {
        let dir = tempdir();
        let missing = dir.as_path().join("nope");
        let err = pack(&[preopen(&missing, "/x")], BUDGET).unwrap_err();
        assert_eq!(err.to_string(), format!("Cannot read {}", missing.display()));
        let file = dir.as_path().join("file");
        std::fs::write(&file, "").unwrap();
        assert_eq!(
            pack(&[preopen(&file, "/x")], BUDGET).unwrap_err().to_string(),
            format!("{} is not a directory", file.display())
        );
        assert!(pack(&[preopen(dir.as_path(), "")], BUDGET).is_err());
    }

    #[test]
    fn the_archive_fits_the_budget_and_a_huge_sparse_file_fails_unread() {
        let dir = tempdir();
        std::fs::write(dir.as_path().join("small"), vec![7u8; 1000]).unwrap();
        let fits = pack(&[preopen(dir.as_path(), "/d")], BUDGET).unwrap();
        assert_eq!(pack(&[preopen(dir.as_path(), "/d")], fits.len() as u64).unwrap(), fits, "exactly the budget");
        let err = pack(&[preopen(dir.as_path(), "/d")], fits.len() as u64 - 1).unwrap_err();
        assert!(matches!(err, FilesError::OverBudget { .. }), "{err:?}");

        // 2 GiB that take no disk: reading them would take seconds and 2 GiB of memory.
        std::fs::File::create(dir.as_path().join("huge")).unwrap().set_len(2 << 30).unwrap();
        let began = Instant::now();
        let err = pack(&[preopen(dir.as_path(), "/d")], BUDGET).unwrap_err();
        assert!(began.elapsed() < Duration::from_millis(100), "refused before reading: {:?}", began.elapsed());
        assert_eq!(
            err.to_string(),
            format!("The files under {} need more than the workload's memory (64 MiB)", dir.as_path().display())
        );
    }

    #[test]
    fn hard_links_of_one_file_are_stored_once() {
        let dir = tempdir();
        let content: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
        std::fs::write(dir.as_path().join("original"), &content).unwrap();
        for i in 0..200 {
            std::fs::hard_link(dir.as_path().join("original"), dir.as_path().join(format!("link{i:03}"))).unwrap();
        }
        // 200 MiB if each link were read: the budget holds the content once.
        let bytes = pack(&[preopen(dir.as_path(), "/d")], 2 << 20).unwrap();
        assert!(bytes.len() < (1 << 20) + 64 * 1024, "content stored once: {} bytes", bytes.len());
        let archive = Archive::parse(&bytes).unwrap();
        let root = archive.entry(0).unwrap();
        assert_eq!(root.children().len(), 201);
        let first = archive.entry(root.children().start).unwrap().data();
        assert_eq!(first, &content[..]);
        for i in root.children() {
            assert_eq!(archive.entry(i).unwrap().data().as_ptr(), first.as_ptr(), "one range for every link");
        }
    }

    #[test]
    fn fifos_sockets_and_devices_are_skipped_without_opening_them() {
        let dir = tempdir();
        std::fs::write(dir.as_path().join("file"), "x").unwrap();
        let fifo = c_path(&dir.as_path().join("fifo"));
        // SAFETY: valid NUL-terminated paths.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        // A character device like /dev/zero (1, 5): reading it would never end. The tests run as
        // root, as the rest of the suite (KVM).
        let device = c_path(&dir.as_path().join("zero"));
        // SAFETY: as above.
        let made = unsafe { libc::mknod(device.as_ptr(), libc::S_IFCHR | 0o600, libc::makedev(1, 5)) };
        assert_eq!(made, 0, "mknod: {}", std::io::Error::last_os_error());
        let _socket = std::os::unix::net::UnixListener::bind(dir.as_path().join("socket")).unwrap();
        // A reader that opened the FIFO would block here for ever (nobody writes to it).
        let began = Instant::now();
        let bytes = pack(&[preopen(dir.as_path(), "/d")], BUDGET).unwrap();
        assert!(began.elapsed() < Duration::from_secs(1));
        assert_eq!(listing(&bytes), [(b"file".to_vec(), Kind::File)]);
    }

    /// Makes `levels` nested directories named `d` under `root`, relative to a descriptor at
    /// each level (their path soon exceeds `PATH_MAX`).
    fn deep_tree(root: &Path, levels: usize) {
        let mut dir = Dir::open(root).unwrap();
        for _ in 0..levels {
            dir.make_dir(c"d").unwrap();
            dir = dir.open_dir(c"d").unwrap();
        }
    }

    /// Removes a tree made by [`deep_tree`] one level at a time (`remove_dir_all` would hold a
    /// descriptor per level).
    fn remove_deep_tree(root: &Path) {
        while root.join("d/d").exists() {
            std::fs::rename(root.join("d/d"), root.join("next")).unwrap();
            std::fs::remove_dir(root.join("d")).unwrap();
            std::fs::rename(root.join("next"), root.join("d")).unwrap();
        }
        let _ = std::fs::remove_dir(root.join("d"));
    }

    #[test]
    fn deep_trees_fail_quickly_naming_the_limit() {
        let dir = tempdir();
        deep_tree(dir.as_path(), MAX_DEPTH);
        assert!(pack(&[preopen(dir.as_path(), "/d")], BUDGET).is_ok(), "{MAX_DEPTH} levels are fine");
        remove_deep_tree(dir.as_path());

        deep_tree(dir.as_path(), 2000);
        let began = Instant::now();
        let err = pack(&[preopen(dir.as_path(), "/d")], BUDGET).unwrap_err();
        assert!(began.elapsed() < Duration::from_secs(1), "{:?}", began.elapsed());
        assert_eq!(
            err.to_string(),
            format!("The tree under {} is more than 128 directories deep", dir.as_path().display())
        );
        remove_deep_tree(dir.as_path());
    }

    #[test]
    fn entries_names_and_link_targets_are_bounded() {
        let dir = tempdir();
        // Names: Linux itself refuses more than 255 bytes, so the cap holds at the limit.
        let longest = "n".repeat(MAX_NAME);
        std::fs::write(dir.as_path().join(&longest), "").unwrap();
        let target = "t/".repeat(MAX_LINK_TARGET / 2) + "t";
        assert_eq!(target.len(), MAX_LINK_TARGET);
        std::os::unix::fs::symlink(&target, dir.as_path().join("link")).unwrap();
        let bytes = pack(&[preopen(dir.as_path(), "/d")], BUDGET).unwrap();
        let names: Vec<_> = listing(&bytes).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, [b"link".to_vec(), longest.into_bytes()]);
        let err = check_name(&[b'n'; MAX_NAME + 1], Path::new("/r")).unwrap_err();
        assert_eq!(err.to_string(), "A name in /r is longer than 255 bytes");

        // Entries: the cap counts across the whole walk.
        let mut packer = Packer { entries: MAX_ENTRIES - 1, root: "/r".into(), ..Packer::new(u64::MAX) };
        packer.entry(b"last").unwrap();
        let err = packer.entry(b"one-too-many").unwrap_err();
        assert_eq!(err.to_string(), "The tree under /r has more than 1048576 files and directories");
    }
}

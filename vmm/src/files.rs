//! Preopened directories: the host directories a workload may see (`--dir HOST[::GUEST]`), packed
//! into one read-only archive (`wasmcell_abi::archive`) during validation, before any KVM
//! resource exists. The guest indexes the archive in place and keeps its writes in memory.
//!
//! Regular files, directories and symlinks are packed; symlinks keep their target text and are
//! resolved by the guest, which refuses any that lead out of the preopen. Sockets, FIFOs and
//! devices are left out: a workload sees a snapshot, not live host objects.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;
use wasmcell_abi::archive::{self, Node, NodeKind};

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
    /// More entries or bytes than the archive format holds.
    #[error("The preopened directories are too large")]
    TooLarge,
}

/// Packs `preopens` into an archive for the guest.
pub fn pack(preopens: &[Preopen]) -> Result<Vec<u8>, FilesError> {
    let roots = preopens
        .iter()
        .map(|p| {
            if p.guest.is_empty() {
                return Err(FilesError::EmptyGuestPath(p.guest.clone()));
            }
            let meta = std::fs::metadata(&p.host).map_err(|source| read_error(&p.host, source))?;
            if !meta.is_dir() {
                return Err(FilesError::NotADirectory(p.host.clone()));
            }
            Ok(Node { name: p.guest.as_bytes().to_vec(), mtime_ns: mtime_ns(&meta), kind: read_dir(&p.host)? })
        })
        .collect::<Result<Vec<_>, _>>()?;
    archive::encode(&roots).ok_or(FilesError::TooLarge)
}

fn read_error(path: &Path, source: std::io::Error) -> FilesError {
    FilesError::Read { path: path.to_path_buf(), source }
}

fn read_dir(dir: &Path) -> Result<NodeKind, FilesError> {
    let mut children = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| read_error(dir, e))? {
        let entry = entry.map_err(|e| read_error(dir, e))?;
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path).map_err(|e| read_error(&path, e))?;
        let kind = if meta.is_dir() {
            read_dir(&path)?
        } else if meta.is_file() {
            NodeKind::File(std::fs::read(&path).map_err(|e| read_error(&path, e))?)
        } else if meta.is_symlink() {
            let target = std::fs::read_link(&path).map_err(|e| read_error(&path, e))?;
            NodeKind::Symlink(target.as_os_str().as_bytes().to_vec())
        } else {
            continue;
        };
        children.push(Node { name: entry.file_name().as_bytes().to_vec(), mtime_ns: mtime_ns(&meta), kind });
    }
    Ok(NodeKind::Dir(children))
}

fn mtime_ns(meta: &std::fs::Metadata) -> u64 {
    let since_epoch = meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok());
    since_epoch.map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmm_sys_util::tempdir::TempDir;
    use wasmcell_abi::archive::{Archive, Kind};

    fn tempdir() -> TempDir {
        TempDir::new_with_prefix("/tmp/wasmcell-files-").unwrap()
    }

    fn preopen(host: &Path, guest: &str) -> Preopen {
        Preopen { host: host.to_path_buf(), guest: guest.into() }
    }

    #[test]
    fn packs_files_directories_and_symlinks_but_not_fifos() {
        let dir = tempdir();
        std::fs::write(dir.as_path().join("a.txt"), "alpha").unwrap();
        std::fs::create_dir(dir.as_path().join("sub")).unwrap();
        std::fs::write(dir.as_path().join("sub/b.txt"), "beta").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.as_path().join("out")).unwrap();
        let fifo = std::ffi::CString::new(dir.as_path().join("fifo").as_os_str().as_bytes()).unwrap();
        // SAFETY: `fifo` is a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);

        let bytes = pack(&[preopen(dir.as_path(), "/data")]).unwrap();
        let archive = Archive::parse(&bytes).unwrap();
        let root = archive.entry(0).unwrap();
        assert_eq!((root.kind, root.name), (Kind::Dir, &b"/data"[..]));
        let names: Vec<_> = root.children().map(|i| archive.entry(i).unwrap()).map(|e| (e.name, e.kind)).collect();
        let expected: [(&[u8], Kind); 3] = [(b"a.txt", Kind::File), (b"out", Kind::Symlink), (b"sub", Kind::Dir)];
        assert_eq!(names, expected);
        let out = archive.entry(root.children().start + 1).unwrap();
        assert_eq!(out.data(), b"/etc/passwd", "symlink targets are kept, never followed on the host");
        assert!(archive.entry(root.children().start).unwrap().mtime_ns > 0);
    }

    #[test]
    fn missing_paths_and_files_are_refused_with_their_name() {
        let dir = tempdir();
        let missing = dir.as_path().join("nope");
        let err = pack(&[preopen(&missing, "/x")]).unwrap_err();
        assert_eq!(err.to_string(), format!("Cannot read {}", missing.display()));
        let file = dir.as_path().join("file");
        std::fs::write(&file, "").unwrap();
        assert_eq!(
            pack(&[preopen(&file, "/x")]).unwrap_err().to_string(),
            format!("{} is not a directory", file.display())
        );
        assert!(pack(&[preopen(dir.as_path(), "")]).is_err());
    }
}

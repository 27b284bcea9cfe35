//! Files only this user reaches: the cache directory and what is written into it. A directory is
//! 0700 and ours (a symlink or another user's directory is refused, loose permissions are
//! repaired); files are created with `O_CREAT | O_EXCL | O_NOFOLLOW` and mode 0600 whatever the
//! umask, and opened with `O_NOFOLLOW | O_NONBLOCK`, so that no planted symlink redirects a
//! write or a read and no planted FIFO blocks one.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Why a directory is not private.
#[derive(Debug, thiserror::Error)]
pub enum PrivateDirError {
    #[error("Cannot create the directory {path}")]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{0} is a symlink: the compilation cache must be a directory of its own")]
    Symlink(PathBuf),
    #[error("{path} belongs to uid {owner}, not to this user (uid {user})")]
    Foreign { path: PathBuf, owner: u32, user: u32 },
    #[error("Cannot make {path} private")]
    Permissions {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Creates `dir` (and its parents) if needed and makes sure it is a private directory of this
/// user: not a symlink, owned by the effective uid, mode 0700 (repaired if looser).
pub fn private_dir(dir: &Path) -> Result<(), PrivateDirError> {
    let create = |source| PrivateDirError::Create { path: dir.to_path_buf(), source };
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(create)?;
    }
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(create(e)),
    }
    let opened =
        OpenOptions::new().read(true).custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW).open(dir).map_err(|e| {
            match fs::symlink_metadata(dir) {
                Ok(meta) if meta.file_type().is_symlink() => PrivateDirError::Symlink(dir.to_path_buf()),
                _ => create(e),
            }
        })?;
    let meta = opened.metadata().map_err(create)?;
    // SAFETY: `geteuid` has no preconditions and cannot fail.
    let user = unsafe { libc::geteuid() };
    if meta.uid() != user {
        return Err(PrivateDirError::Foreign { path: dir.to_path_buf(), owner: meta.uid(), user });
    }
    // Through the open descriptor: the checked directory, not whatever the path names now.
    if meta.mode() & 0o777 != 0o700 {
        opened
            .set_permissions(fs::Permissions::from_mode(0o700))
            .map_err(|source| PrivateDirError::Permissions { path: dir.to_path_buf(), source })?;
    }
    Ok(())
}

/// Creates a new, empty file in `dir` named `.tmp-PID-N`, readable and writable by this user
/// only. Never follows or reuses an existing name.
pub fn create_temp(dir: &Path) -> io::Result<(PathBuf, File)> {
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    loop {
        let name = format!(".tmp-{}-{}", std::process::id(), SEQUENCE.fetch_add(1, Ordering::Relaxed));
        let path = dir.join(name);
        let created = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path);
        match created {
            // A name left by a process that had our pid before: take the next one.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
            Ok(file) => {
                // The umask may have taken the owner's bits too.
                if let Err(e) = file.set_permissions(fs::Permissions::from_mode(0o600)) {
                    let _ = fs::remove_file(&path);
                    return Err(e);
                }
                return Ok((path, file));
            }
        }
    }
}

/// Opens `path` for reading without following a symlink in its last component and without
/// blocking on a FIFO.
pub fn open_no_follow(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path)
}

/// `flock(file, operation)`; `Ok(false)` when `LOCK_NB` was asked and someone else holds it.
pub fn flock(file: &File, operation: i32) -> io::Result<bool> {
    loop {
        // SAFETY: `flock` on a descriptor `file` owns; it touches no memory.
        if unsafe { libc::flock(file.as_raw_fd(), operation) } == 0 {
            return Ok(true);
        }
        let error = io::Error::last_os_error();
        match error.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) if operation & libc::LOCK_NB != 0 => return Ok(false),
            _ => return Err(error),
        }
    }
}

/// Whether `path` still names the file `file` is open on (same device and inode, not a
/// symlink).
pub fn still_names(path: &Path, file: &File) -> bool {
    match (fs::symlink_metadata(path), file.metadata()) {
        (Ok(now), Ok(open)) => now.dev() == open.dev() && now.ino() == open.ino(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("wasmcell-private-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let _ = fs::remove_file(&dir);
        dir
    }

    #[test]
    fn directories_are_made_private_whatever_they_were() {
        let dir = scratch("dir");
        private_dir(&dir.join("cache")).unwrap();
        assert_eq!(fs::metadata(dir.join("cache")).unwrap().mode() & 0o777, 0o700);
        fs::set_permissions(dir.join("cache"), fs::Permissions::from_mode(0o777)).unwrap();
        private_dir(&dir.join("cache")).unwrap();
        assert_eq!(fs::metadata(dir.join("cache")).unwrap().mode() & 0o777, 0o700, "repaired");

        std::os::unix::fs::symlink(dir.join("cache"), dir.join("link")).unwrap();
        let err = private_dir(&dir.join("link")).unwrap_err();
        assert!(matches!(err, PrivateDirError::Symlink(_)), "{err:?}");

        // Another user's directory (root runs the tests: chown to nobody).
        fs::create_dir(dir.join("theirs")).unwrap();
        std::os::unix::fs::chown(dir.join("theirs"), Some(65534), Some(65534)).unwrap();
        let err = private_dir(&dir.join("theirs")).unwrap_err();
        assert!(err.to_string().contains("belongs to uid 65534, not to this user"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn temporary_files_are_new_private_and_never_follow_symlinks() {
        let dir = scratch("temp");
        private_dir(&dir).unwrap();
        // SAFETY: `umask` only changes this process's file-creation mask; restored below. No
        // other test of this binary creates files whose mode it checks.
        let old = unsafe { libc::umask(0o777) };
        let created = create_temp(&dir);
        // SAFETY: as above.
        unsafe { libc::umask(old) };
        let (path, _file) = created.unwrap();
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600, "0600 even under umask 777");

        let (second, _) = create_temp(&dir).unwrap();
        assert_ne!(path, second);
        std::os::unix::fs::symlink("/etc/passwd", dir.join("planted")).unwrap();
        assert!(open_no_follow(&dir.join("planted")).is_err(), "a symlink is not followed");
        fs::remove_dir_all(&dir).unwrap();
    }
}

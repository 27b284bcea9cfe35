//! The on-disk artifact cache: one file per (module, compiler) pair, named by
//! `sha256(module) ‖ compatibility key`, in a private directory ([`crate::private_fs`]).
//!
//! - A hit opens the entry without following symlinks, pins it ([`Pin`]: a shared `flock`),
//!   checks the path still names what it opened, touches its mtime (the LRU clock) and reads it.
//!   No process is started: this is the hot path.
//! - A miss compiles in a compiler process ([`crate::process`]) into a fresh private temporary
//!   file, pins it and renames it into place, so concurrent runs never see a partial artifact;
//!   two runs compiling one module at once both succeed and one identical result wins.
//! - After a miss, entries are evicted oldest mtime first until the cache is within its quota —
//!   never the entry just written, never a pinned one.
//!
//! Pins exist because the shim writes an entry's path into a container's plan at `create` and
//! the VMM reads it at `start`, later and in another process: another shim's eviction in
//! between must not break the container. The shim keeps its pin for the container's life; the
//! lock goes away with the process holding it, so a crashed shim pins nothing. (A private copy
//! in the bundle would cost a copy of every artifact on the hot path, and a hard link fails
//! across filesystems — `/run` and `/var/cache` usually are; a grace period would let the quota
//! be overrun by any burst of distinct modules.) Renames into place and evictions exclude each
//! other through a lock on the directory's `.lock` file, so an eviction never removes an entry
//! that was just replaced under it; a reader that loses a race with an eviction sees its path
//! gone after taking its pin and compiles again.

use crate::limits::{CompileLimits, Limits};
use crate::private_fs::{self, PrivateDirError};
use crate::process::CompilerProcess;
use crate::{AotError, Compiler};
use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Temporary files older than this are leftovers of a process that died mid-compile.
const STALE_TEMP: Duration = Duration::from_secs(3600);

/// Errors of the cache.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("Cannot create the compilation cache directory {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("Unsafe compilation cache directory")]
    Unsafe(#[source] PrivateDirError),
    #[error("Cannot write to the compilation cache {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Compile(#[from] AotError),
}

/// An artifact, from the cache or freshly compiled.
pub struct Compiled {
    pub cache_hit: bool,
    /// Where the entry is; it stays there while [`Compiled::pin`] lives.
    pub path: PathBuf,
    pub pin: Pin,
}

impl Compiled {
    /// The entry, open (another descriptor of the pinned file): what a VM maps, so that every
    /// VM running the module shares its pages.
    pub fn file(&self) -> io::Result<File> {
        self.pin._file.try_clone()
    }
}

/// Keeps a cache entry from being evicted while it lives (a shared `flock` on the entry; see
/// the module's documentation).
#[derive(Debug)]
pub struct Pin {
    _file: File,
}

/// A cache directory.
pub struct Cache {
    dir: PathBuf,
    quota: u64,
    compile: CompileLimits,
    process: Option<CompilerProcess>,
}

impl Cache {
    /// The default directory: `$WASMCELL_CACHE_DIR`, else `$XDG_CACHE_HOME/wasmcell`, else
    /// `$HOME/.cache/wasmcell`, else `/var/cache/wasmcell`.
    pub fn default_dir() -> PathBuf {
        let env = |key| std::env::var_os(key).filter(|v| !v.is_empty()).map(PathBuf::from);
        env("WASMCELL_CACHE_DIR")
            .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("wasmcell")))
            .or_else(|| env("HOME").map(|d| d.join(".cache/wasmcell")))
            .unwrap_or_else(|| PathBuf::from("/var/cache/wasmcell"))
    }

    /// Opens (creating it if needed) the cache at `dir`, with the quota and compile limits of
    /// `limits`. The directory must be this user's and not a symlink; its mode is made 0700.
    pub fn open(dir: impl Into<PathBuf>, limits: &Limits) -> Result<Self, CacheError> {
        let dir = dir.into();
        private_fs::private_dir(&dir).map_err(|e| match e {
            PrivateDirError::Create { path, source } => CacheError::CreateDir { path, source },
            other => CacheError::Unsafe(other),
        })?;
        Ok(Self { dir, quota: limits.cache_max_size, compile: limits.compile, process: None })
    }

    /// Compiles misses with `process` instead of this executable's `__compile` action.
    pub fn with_compiler_process(mut self, process: CompilerProcess) -> Self {
        self.process = Some(process);
        self
    }

    /// Where the artifact of `module` compiled by `compiler` lives.
    pub fn path_for(&self, compiler: &Compiler, module: &[u8]) -> PathBuf {
        let mut key = Sha256::new();
        key.update(Sha256::digest(module));
        key.update(compiler.compatibility_key());
        self.dir.join(format!("{}.cwasm", hex(&key.finalize())))
    }

    /// The artifact of `module`: read from the cache, or compiled and stored.
    pub fn get_or_compile(&self, compiler: &Compiler, module: &[u8]) -> Result<Compiled, CacheError> {
        let path = self.path_for(compiler, module);
        if let Some(hit) = lookup(&path) {
            return Ok(hit);
        }
        let compiled = self.insert(compiler, module, path)?;
        self.evict(&compiled.path);
        Ok(compiled)
    }

    /// Compiles `module` into a temporary file and renames it to `path`, pinned.
    fn insert(&self, compiler: &Compiler, module: &[u8], path: PathBuf) -> Result<Compiled, CacheError> {
        let write_error = |source| CacheError::Write { path: self.dir.clone(), source };
        let (temp, file) = private_fs::create_temp(&self.dir).map_err(write_error)?;
        let result = (|| {
            let process = match &self.process {
                Some(process) => process.clone(),
                None => CompilerProcess::this_executable().map_err(AotError::Process)?,
            };
            crate::process::compile(&process, compiler.target_and_features(), module, &temp, self.compile)?;
            if !file_is_precompiled(&file) {
                return Err(AotError::ProcessFailed("it wrote no artifact".into()).into());
            }
            file.sync_data().map_err(write_error)?;
            // Pinned before anyone can see it.
            private_fs::flock(&file, libc::LOCK_SH).map_err(write_error)?;
            let _renaming = self.lock_dir(libc::LOCK_SH).map_err(write_error)?;
            fs::rename(&temp, &path).map_err(write_error)?;
            Ok(())
        })();
        match result {
            Ok(()) => Ok(Compiled { cache_hit: false, path, pin: Pin { _file: file } }),
            Err(e) => {
                let _ = fs::remove_file(&temp);
                Err(e)
            }
        }
    }

    /// Holds the directory's lock (`LOCK_SH` to rename an entry in, `LOCK_EX` to evict).
    fn lock_dir(&self, operation: i32) -> std::io::Result<File> {
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(self.dir.join(".lock"))?;
        private_fs::flock(&lock, operation)?;
        Ok(lock)
    }

    /// Evicts the oldest entries until the cache is within its quota; best effort (an entry
    /// that cannot be removed stays). Also removes temporary files left by dead processes.
    fn evict(&self, keep: &Path) {
        let Ok(_evicting) = self.lock_dir(libc::LOCK_EX) else { return };
        let Ok(listing) = fs::read_dir(&self.dir) else { return };
        let now = SystemTime::now();
        let mut total = 0;
        let mut candidates = Vec::new();
        for entry in listing.flatten() {
            let path = entry.path();
            let Ok(meta) = fs::symlink_metadata(&path) else { continue };
            if !meta.is_file() {
                continue;
            }
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let modified = meta.modified().unwrap_or(now);
            if name.starts_with(".tmp-") {
                if now.duration_since(modified).is_ok_and(|age| age > STALE_TEMP.max(self.compile.time * 2)) {
                    let _ = fs::remove_file(&path);
                } else {
                    total += meta.len();
                }
            } else if name.ends_with(".cwasm") {
                total += meta.len();
                if path != keep {
                    candidates.push((modified, path, meta));
                }
            }
        }
        candidates.sort_by_key(|(modified, ..)| *modified);
        for (_, path, meta) in candidates {
            if total <= self.quota {
                break;
            }
            if remove_unpinned(&path, &meta) {
                total -= meta.len();
            }
        }
    }
}

/// The entry at `path`, pinned, if it is there and an artifact.
fn lookup(path: &Path) -> Option<Compiled> {
    let file = private_fs::open_no_follow(path).ok()?;
    private_fs::flock(&file, libc::LOCK_SH).ok()?;
    // Evicted (or replaced) between the open and the pin: not a hit.
    if !file.metadata().ok()?.is_file() || !private_fs::still_names(path, &file) {
        return None;
    }
    // A file that is not an artifact (damaged, foreign) is recompiled over.
    if !file_is_precompiled(&file) {
        return None;
    }
    // The LRU clock; failing to tick it only makes the entry look older.
    let _ = file.set_modified(SystemTime::now());
    Some(Compiled { cache_hit: true, path: path.to_path_buf(), pin: Pin { _file: file } })
}

/// Whether `file` holds a wasmtime module artifact. Looked at through a read-only mapping, so
/// that a hit touches only the pages of the ELF headers, not the whole artifact.
fn file_is_precompiled(file: &File) -> bool {
    use std::os::fd::AsRawFd;
    let Ok(len) = file.metadata().map(|m| m.len() as usize) else { return false };
    if len == 0 {
        return false;
    }
    // SAFETY: a fresh private read-only mapping of `len` bytes of a file we hold open; nothing
    // else in the process refers to it, and it is unmapped below.
    let map = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_PRIVATE, file.as_raw_fd(), 0) };
    if map == libc::MAP_FAILED {
        return false;
    }
    // SAFETY: `map` is `len` readable bytes until the munmap below. Cache files are written
    // once and never truncated (eviction unlinks), so the pages stay backed.
    let precompiled = crate::is_precompiled(unsafe { std::slice::from_raw_parts(map.cast::<u8>(), len) });
    // SAFETY: the mapping made above, no longer referenced.
    unsafe { libc::munmap(map, len) };
    precompiled
}

/// Removes the entry at `path` (last seen as `seen`) unless it is pinned or changed.
fn remove_unpinned(path: &Path, seen: &fs::Metadata) -> bool {
    let Ok(file) = private_fs::open_no_follow(path) else { return false };
    let Ok(meta) = file.metadata() else { return false };
    if meta.ino() != seen.ino() || !matches!(private_fs::flock(&file, libc::LOCK_EX | libc::LOCK_NB), Ok(true)) {
        return false;
    }
    // Renames into place wait for the directory lock the caller holds: `path` is still `file`.
    fs::remove_file(path).is_ok()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek};
    use std::os::unix::fs::PermissionsExt;

    /// The artifact's bytes (from the start: the descriptors share one offset).
    fn contents(compiled: &Compiled) -> Vec<u8> {
        let mut file = compiled.file().unwrap();
        file.rewind().unwrap();
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).unwrap();
        bytes
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("wasmcell-aot-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn open(dir: &Path, quota: u64) -> Cache {
        let limits = Limits { cache_max_size: quota, ..Limits::default() };
        Cache::open(dir, &limits).unwrap().with_compiler_process(CompilerProcess::test_harness())
    }

    /// Entries (`.cwasm`) in `dir`, sorted.
    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".cwasm"))
            .collect();
        names.sort();
        names
    }

    /// Everything in `dir` but the lock file.
    fn files(dir: &Path) -> usize {
        fs::read_dir(dir).unwrap().filter(|e| e.as_ref().unwrap().file_name() != ".lock").count()
    }

    const MODULE: &str = r#"(module (func (export "_start")))"#;

    fn module(n: usize) -> String {
        format!(r#"(module (func (export "_start") (drop (i32.const {n}))))"#)
    }

    #[test]
    fn second_lookup_hits_and_returns_the_same_artifact() {
        let dir = temp_dir("hit");
        let cache = open(&dir, u64::MAX);
        let compiler = Compiler::for_host().unwrap();
        let first = cache.get_or_compile(&compiler, MODULE.as_bytes()).unwrap();
        assert!(!first.cache_hit);
        let second = cache.get_or_compile(&compiler, MODULE.as_bytes()).unwrap();
        assert!(second.cache_hit);
        assert_eq!(contents(&first), contents(&second));
        assert_eq!(contents(&first), compiler.compile(MODULE.as_bytes()).unwrap(), "the process compiles as we do");
        assert_eq!(first.path, second.path);
        // Only the artifact is left: no temporary files.
        assert_eq!(files(&dir), 1);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_directory_and_entries_are_private_whatever_the_umask() {
        let dir = temp_dir("private");
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        let cache = open(&dir, u64::MAX);
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700, "repaired to 0700");
        let compiled = cache.get_or_compile(&Compiler::for_host().unwrap(), MODULE.as_bytes()).unwrap();
        assert_eq!(fs::metadata(&compiled.path).unwrap().mode() & 0o777, 0o600);
        fs::remove_dir_all(&dir).unwrap();

        std::os::unix::fs::symlink("/tmp", &dir).unwrap();
        let err = Cache::open(&dir, &Limits::default()).err().unwrap();
        assert_eq!(err.to_string(), "Unsafe compilation cache directory");
        assert!(matches!(err, CacheError::Unsafe(PrivateDirError::Symlink(_))), "{err:?}");
        fs::remove_file(&dir).unwrap();
    }

    #[test]
    fn damaged_and_planted_entries_are_recompiled_never_followed() {
        let dir = temp_dir("damaged");
        let cache = open(&dir, u64::MAX);
        let compiler = Compiler::for_host().unwrap();
        let path = cache.path_for(&compiler, MODULE.as_bytes());
        fs::write(&path, b"truncated").unwrap();
        let compiled = cache.get_or_compile(&compiler, MODULE.as_bytes()).unwrap();
        assert!(!compiled.cache_hit);
        assert!(crate::is_precompiled(&fs::read(&path).unwrap()));

        // A symlink planted at an entry's name is neither read nor written through.
        let victim = dir.join("victim");
        fs::write(&victim, b"precious").unwrap();
        let other = cache.path_for(&compiler, module(1).as_bytes());
        std::os::unix::fs::symlink(&victim, &other).unwrap();
        let compiled = cache.get_or_compile(&compiler, module(1).as_bytes()).unwrap();
        assert!(!compiled.cache_hit);
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        assert!(!fs::symlink_metadata(&other).unwrap().file_type().is_symlink(), "replaced by the artifact");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn concurrent_compiles_of_one_module_all_succeed() {
        let dir = temp_dir("concurrent");
        let cache = std::sync::Arc::new(open(&dir, u64::MAX));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let cache = cache.clone();
                std::thread::spawn(move || {
                    let compiler = Compiler::for_host().unwrap();
                    contents(&cache.get_or_compile(&compiler, MODULE.as_bytes()).unwrap())
                })
            })
            .collect();
        let artifacts: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert!(artifacts.windows(2).all(|w| w[0] == w[1]));
        assert_eq!(files(&dir), 1, "one entry, no temporary files left");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_quota_holds_across_many_modules_evicting_the_least_recently_used() {
        let dir = temp_dir("quota");
        let compiler = Compiler::for_host().unwrap();
        let size = {
            let probe = open(&temp_dir("quota-probe"), u64::MAX);
            let size = fs::metadata(probe.get_or_compile(&compiler, module(0).as_bytes()).unwrap().path).unwrap().len();
            fs::remove_dir_all(&probe.dir).unwrap();
            size
        };
        // Room for three entries of about this size.
        let quota = size * 3 + size / 2;
        let cache = open(&dir, quota);
        for n in 0..3 {
            drop(cache.get_or_compile(&compiler, module(n).as_bytes()).unwrap());
            // mtimes a little apart, so "least recently used" is well defined.
            std::thread::sleep(Duration::from_millis(20));
        }
        // A hit makes module 0 the most recently used.
        assert!(cache.get_or_compile(&compiler, module(0).as_bytes()).unwrap().cache_hit);
        std::thread::sleep(Duration::from_millis(20));
        drop(cache.get_or_compile(&compiler, module(3).as_bytes()).unwrap());
        let names = entries(&dir);
        assert_eq!(names.len(), 3, "{names:?}");
        assert!(!cache.path_for(&compiler, module(1).as_bytes()).exists(), "the oldest went");
        assert!(cache.path_for(&compiler, module(0).as_bytes()).exists(), "the one just hit stayed");
        for n in 4..12 {
            drop(cache.get_or_compile(&compiler, module(n).as_bytes()).unwrap());
            let total: u64 = entries(&dir).iter().map(|n| fs::metadata(dir.join(n)).unwrap().len()).sum();
            assert!(total <= quota, "{total} > {quota} after module {n}");
            assert!(cache.path_for(&compiler, module(n).as_bytes()).exists(), "the entry just written stays");
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn pinned_entries_are_never_evicted() {
        let dir = temp_dir("pinned");
        let compiler = Compiler::for_host().unwrap();
        // A quota smaller than any entry: everything unpinned goes.
        let cache = open(&dir, 1);
        let pinned = cache.get_or_compile(&compiler, module(0).as_bytes()).unwrap();
        let unpinned = cache.get_or_compile(&compiler, module(1).as_bytes()).unwrap().path;
        cache.get_or_compile(&compiler, module(2).as_bytes()).unwrap();
        assert!(pinned.path.exists(), "a created container's artifact survives others' evictions");
        assert!(!unpinned.exists());
        // A hit pins too.
        let hit = cache.get_or_compile(&compiler, module(0).as_bytes()).unwrap();
        assert!(hit.cache_hit);
        drop(pinned);
        cache.get_or_compile(&compiler, module(3).as_bytes()).unwrap();
        assert!(hit.path.exists());
        drop(hit);
        cache.get_or_compile(&compiler, module(4).as_bytes()).unwrap();
        assert!(!cache.path_for(&compiler, module(0).as_bytes()).exists(), "evicted once unpinned");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn modules_and_compilers_get_distinct_entries() {
        let cache = open(&temp_dir("keys"), u64::MAX);
        let host = Compiler::for_host().unwrap();
        let bare = Compiler::with_cpu_features(0).unwrap();
        let other = r#"(module (func (export "_start") nop))"#;
        assert_ne!(cache.path_for(&host, MODULE.as_bytes()), cache.path_for(&host, other.as_bytes()));
        assert_ne!(cache.path_for(&host, MODULE.as_bytes()), cache.path_for(&bare, MODULE.as_bytes()));
        let _ = fs::remove_dir_all(&cache.dir);
    }

    #[test]
    fn unwritable_cache_dir_is_a_clear_error() {
        let err = Cache::open("/proc/wasmcell-cache", &Limits::default()).err().unwrap();
        assert_eq!(err.to_string(), "Cannot create the compilation cache directory /proc/wasmcell-cache");
    }
}

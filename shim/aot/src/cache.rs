//! The on-disk artifact cache: one file per (module, compiler) pair, named by
//! `sha256(module) ‖ compatibility key`. Files are written to a temporary name and renamed into
//! place, so concurrent runs never see a partial artifact; two runs compiling the same module at
//! once both succeed and one of the identical results wins.

use crate::{AotError, Compiler};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Errors of the cache.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("Cannot create the compilation cache directory {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
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
    pub artifact: Vec<u8>,
    pub cache_hit: bool,
    pub path: PathBuf,
}

/// A cache directory.
pub struct Cache {
    dir: PathBuf,
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

    /// Opens (creating it if needed) the cache at `dir`.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, CacheError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|source| CacheError::CreateDir { path: dir.clone(), source })?;
        Ok(Self { dir })
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
        if let Ok(artifact) = fs::read(&path) {
            // A file that is not an artifact (damaged, foreign) is recompiled over.
            if crate::is_precompiled(&artifact) {
                return Ok(Compiled { artifact, cache_hit: true, path });
            }
        }
        let artifact = compiler.compile(module)?;
        write_atomically(&path, &artifact).map_err(|source| CacheError::Write { path: path.clone(), source })?;
        Ok(Compiled { artifact, cache_hit: false, path })
    }
}

/// Writes `bytes` to `path` through a uniquely named temporary file in the same directory.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    let unique = format!(".tmp-{}-{}", std::process::id(), SEQUENCE.fetch_add(1, Ordering::Relaxed));
    let tmp = path.with_extension(unique);
    let result = (|| {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_data()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("wasmcell-aot-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    const MODULE: &str = r#"(module (func (export "_start")))"#;

    #[test]
    fn second_lookup_hits_and_returns_the_same_artifact() {
        let dir = temp_dir("hit");
        let cache = Cache::open(&dir).unwrap();
        let compiler = Compiler::for_host().unwrap();
        let first = cache.get_or_compile(&compiler, MODULE.as_bytes()).unwrap();
        assert!(!first.cache_hit);
        let second = cache.get_or_compile(&compiler, MODULE.as_bytes()).unwrap();
        assert!(second.cache_hit);
        assert_eq!(first.artifact, second.artifact);
        assert_eq!(first.path, second.path);
        // Only the artifact is left: no temporary files.
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn damaged_entries_are_recompiled() {
        let dir = temp_dir("damaged");
        let cache = Cache::open(&dir).unwrap();
        let compiler = Compiler::for_host().unwrap();
        let path = cache.path_for(&compiler, MODULE.as_bytes());
        fs::write(&path, b"truncated").unwrap();
        let compiled = cache.get_or_compile(&compiler, MODULE.as_bytes()).unwrap();
        assert!(!compiled.cache_hit);
        assert!(crate::is_precompiled(&fs::read(&path).unwrap()));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn concurrent_compiles_of_one_module_all_succeed() {
        let dir = temp_dir("concurrent");
        let cache = std::sync::Arc::new(Cache::open(&dir).unwrap());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let cache = cache.clone();
                std::thread::spawn(move || {
                    let compiler = Compiler::for_host().unwrap();
                    cache.get_or_compile(&compiler, MODULE.as_bytes()).unwrap().artifact
                })
            })
            .collect();
        let artifacts: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert!(artifacts.windows(2).all(|w| w[0] == w[1]));
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1, "one entry, no temporary files left");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn modules_and_compilers_get_distinct_entries() {
        let cache = Cache::open(temp_dir("keys")).unwrap();
        let host = Compiler::for_host().unwrap();
        let bare = Compiler::with_cpu_features(0).unwrap();
        let other = r#"(module (func (export "_start") nop))"#;
        assert_ne!(cache.path_for(&host, MODULE.as_bytes()), cache.path_for(&host, other.as_bytes()));
        assert_ne!(cache.path_for(&host, MODULE.as_bytes()), cache.path_for(&bare, MODULE.as_bytes()));
        let _ = fs::remove_dir_all(&cache.dir);
    }

    #[test]
    fn unwritable_cache_dir_is_a_clear_error() {
        let err = Cache::open("/proc/wasmcell-cache").err().unwrap();
        assert_eq!(err.to_string(), "Cannot create the compilation cache directory /proc/wasmcell-cache");
    }
}

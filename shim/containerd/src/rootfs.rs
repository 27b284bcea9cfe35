//! The container's root filesystem: mounted from `CreateTaskRequest.rootfs` (containerd does not
//! mount it for a shim) at `BUNDLE/rootfs`, unmounted on delete, and searched for the module.
//! The image is the tenant's: the module is opened without following a last symlink, must be a
//! regular file, and its size is capped before a byte of it is read.

use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};
use wasmcell_aot::limits::{describe_size, MAX_MODULE_SIZE_VAR};

/// One mount from the create request (usually an overlay of the image's snapshots).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RootfsMount {
    pub fs_type: String,
    pub source: String,
    pub options: Vec<String>,
}

/// Errors with the root filesystem.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("Cannot create {0}")]
    CreateDir(PathBuf, #[source] std::io::Error),
    #[error("Cannot mount the container's root filesystem: {0}")]
    Mount(String),
    #[error("Cannot unmount {path}: {message}")]
    Unmount { path: PathBuf, message: String },
    #[error("No Wasm module at {0} in the image")]
    ModuleMissing(String),
    #[error("The module path {0} leads outside the image")]
    ModuleEscapes(String),
    #[error("Cannot read the module {0}")]
    ReadModule(String, #[source] std::io::Error),
    #[error("The module {path} is larger than {max} (the node's {MAX_MODULE_SIZE_VAR})", max = describe_size(*.limit))]
    ModuleTooLarge { path: String, limit: u64 },
}

/// Where the root filesystem of `bundle` is.
pub fn path(bundle: &Path) -> PathBuf {
    bundle.join("rootfs")
}

/// Mounts `mounts` (in order) at `BUNDLE/rootfs`; with none, the bundle's own `rootfs` is used.
pub fn mount(bundle: &Path, mounts: &[RootfsMount]) -> Result<PathBuf, RootfsError> {
    let target = path(bundle);
    std::fs::create_dir_all(&target).map_err(|e| RootfsError::CreateDir(target.clone(), e))?;
    for m in mounts {
        let fs_type = Some(m.fs_type.as_str()).filter(|t| !t.is_empty());
        let source = Some(m.source.as_str()).filter(|s| !s.is_empty());
        if let Err(e) = containerd_shim::mount::mount_rootfs(fs_type, source, &m.options, &target) {
            let _ = unmount(bundle);
            return Err(RootfsError::Mount(e.to_string()));
        }
    }
    Ok(target)
}

/// Unmounts everything at `BUNDLE/rootfs`; nothing mounted is not an error.
pub fn unmount(bundle: &Path) -> Result<(), RootfsError> {
    let target = path(bundle);
    let Some(target_str) = target.to_str() else { return Ok(()) };
    containerd_shim::mount::umount_recursive(Some(target_str), libc::MNT_DETACH)
        .map_err(|e| RootfsError::Unmount { path: target.clone(), message: e.to_string() })
}

/// Reads the module `arg0` names: absolute inside the root filesystem, or relative to `cwd`.
/// Symlinks are followed only while they stay inside the root filesystem. A module larger than
/// `max_size` bytes is refused before it is read (and while it is read, should it grow).
pub fn read_module(rootfs: &Path, cwd: &str, arg0: &str, max_size: u64) -> Result<Vec<u8>, RootfsError> {
    let inside = Path::new(cwd).join(arg0);
    let relative: PathBuf = inside.components().filter(|c| matches!(c, Component::Normal(_))).collect();
    if inside.components().any(|c| c == Component::ParentDir) {
        return Err(RootfsError::ModuleEscapes(arg0.into()));
    }
    let candidate = rootfs.join(relative);
    let missing = || RootfsError::ModuleMissing(inside.display().to_string());
    let resolved = candidate.canonicalize().map_err(|_| missing())?;
    let root = rootfs.canonicalize().map_err(|_| missing())?;
    if !resolved.starts_with(&root) {
        return Err(RootfsError::ModuleEscapes(arg0.into()));
    }
    let read_error = |e| RootfsError::ReadModule(inside.display().to_string(), e);
    let too_large = || RootfsError::ModuleTooLarge { path: inside.display().to_string(), limit: max_size };
    // The resolved path has no symlink left; O_NOFOLLOW refuses one swapped in since, and
    // O_NONBLOCK keeps a FIFO from blocking the open (it is refused below).
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(&resolved)
        .map_err(read_error)?;
    let meta = file.metadata().map_err(read_error)?;
    if !meta.is_file() {
        return Err(missing());
    }
    if meta.len() > max_size {
        return Err(too_large());
    }
    let mut module = Vec::with_capacity(meta.len() as usize);
    file.take(max_size + 1).read_to_end(&mut module).map_err(read_error)?;
    if module.len() as u64 > max_size {
        return Err(too_large());
    }
    Ok(module)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules_are_found_inside_the_rootfs_only() {
        let root = std::env::temp_dir().join(format!("wasmcell-shim-rootfs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("rootfs/app")).unwrap();
        std::fs::write(root.join("rootfs/app/hello.wasm"), b"\0asm").unwrap();
        std::fs::write(root.join("secret"), b"no").unwrap();
        std::os::unix::fs::symlink(root.join("secret"), root.join("rootfs/out.wasm")).unwrap();
        let rootfs = root.join("rootfs");
        let read = |cwd, arg0| read_module(&rootfs, cwd, arg0, 1 << 20);
        assert_eq!(read("/", "/app/hello.wasm").unwrap(), b"\0asm");
        assert_eq!(read("/app", "hello.wasm").unwrap(), b"\0asm");
        assert!(matches!(read("/", "/nope.wasm"), Err(RootfsError::ModuleMissing(_))));
        assert!(matches!(read("/", "/app"), Err(RootfsError::ModuleMissing(_))));
        assert!(matches!(read("/", "/out.wasm"), Err(RootfsError::ModuleEscapes(_))));
        assert!(matches!(read("/", "../secret"), Err(RootfsError::ModuleEscapes(_))));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn modules_are_capped_before_they_are_read_and_fifos_never_block() {
        let root = std::env::temp_dir().join(format!("wasmcell-shim-cap-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        // 2 GiB that take no disk: reading them would take seconds and 2 GiB of memory.
        let sparse = std::fs::File::create(root.join("huge.wasm")).unwrap();
        sparse.set_len(2 << 30).unwrap();
        let began = std::time::Instant::now();
        let err = read_module(&root, "/", "/huge.wasm", 128 << 20).unwrap_err();
        assert!(began.elapsed() < std::time::Duration::from_millis(100), "not read: {:?}", began.elapsed());
        assert_eq!(
            err.to_string(),
            "The module /huge.wasm is larger than 128 MiB (the node's WASMCELL_MAX_MODULE_SIZE)"
        );
        std::fs::write(root.join("small.wasm"), [0u8; 100]).unwrap();
        assert!(matches!(read_module(&root, "/", "/small.wasm", 99), Err(RootfsError::ModuleTooLarge { .. })));
        assert_eq!(read_module(&root, "/", "/small.wasm", 100).unwrap().len(), 100, "the limit itself is allowed");
        let fifo = std::ffi::CString::new(root.join("fifo.wasm").into_os_string().into_encoded_bytes()).unwrap();
        // SAFETY: `fifo` is a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        assert!(matches!(read_module(&root, "/", "/fifo.wasm", 1 << 20), Err(RootfsError::ModuleMissing(_))));
        std::fs::remove_dir_all(&root).unwrap();
    }
}

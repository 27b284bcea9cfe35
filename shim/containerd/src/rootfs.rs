//! The container's root filesystem: mounted from `CreateTaskRequest.rootfs` (containerd does not
//! mount it for a shim) at `BUNDLE/rootfs`, unmounted on delete, and searched for the module.

use std::path::{Component, Path, PathBuf};

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
/// Symlinks are followed only while they stay inside the root filesystem.
pub fn read_module(rootfs: &Path, cwd: &str, arg0: &str) -> Result<Vec<u8>, RootfsError> {
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
    if !resolved.is_file() {
        return Err(missing());
    }
    std::fs::read(&resolved).map_err(|e| RootfsError::ReadModule(inside.display().to_string(), e))
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
        assert_eq!(read_module(&rootfs, "/", "/app/hello.wasm").unwrap(), b"\0asm");
        assert_eq!(read_module(&rootfs, "/app", "hello.wasm").unwrap(), b"\0asm");
        assert!(matches!(read_module(&rootfs, "/", "/nope.wasm"), Err(RootfsError::ModuleMissing(_))));
        assert!(matches!(read_module(&rootfs, "/", "/app"), Err(RootfsError::ModuleMissing(_))));
        assert!(matches!(read_module(&rootfs, "/", "/out.wasm"), Err(RootfsError::ModuleEscapes(_))));
        assert!(matches!(read_module(&rootfs, "/", "../secret"), Err(RootfsError::ModuleEscapes(_))));
        std::fs::remove_dir_all(&root).unwrap();
    }
}

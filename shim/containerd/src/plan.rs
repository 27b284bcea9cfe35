//! The VM plan: everything the shim's VMM child needs, written by `create` into the bundle and
//! read by `containerd-shim-wasmcell-v1 vmm PLAN`. Compilation and every check happened in
//! `create`; the child only boots.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One container's VM.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The precompiled module.
    pub artifact: PathBuf,
    /// CPU features it was compiled for.
    pub cpu_features: u64,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub memory_mib: u64,
    /// The mounted root filesystem, which the workload sees as `/`.
    pub rootfs: PathBuf,
    /// The container's cgroup, which the VMM process joins before it boots the VM.
    pub cgroup: Option<String>,
    /// containerd's stdio FIFOs ("" for none).
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
}

impl Plan {
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, serde_json::to_vec(self).map_err(std::io::Error::other)?)
    }

    pub fn read(path: &Path) -> std::io::Result<Self> {
        serde_json::from_slice(&std::fs::read(path)?).map_err(std::io::Error::other)
    }
}

//! The process plan: everything the shim's child process needs, written by `create` into the
//! bundle and read by `containerd-shim-wasmcell-v1 vmm PLAN`. Compilation and every check
//! happened in `create`; the child only joins the container's cgroup and network namespace and
//! boots.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One container's process.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The container's cgroup, which the process joins first.
    pub cgroup: Option<String>,
    /// The network namespace to join (the pod's), if the spec names one.
    pub netns: Option<PathBuf>,
    /// containerd's stdio FIFOs ("" for none).
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    /// The VM to boot; `None` for a pod sandbox, whose process only holds the pod (its cgroup
    /// and network namespace) until it is stopped: no pause binary, no VM.
    pub vm: Option<VmPlan>,
}

/// A Wasm workload's VM.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmPlan {
    /// The precompiled module.
    pub artifact: PathBuf,
    /// CPU features it was compiled for.
    pub cpu_features: u64,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub memory_mib: u64,
    /// The mounted root filesystem, which the workload sees as `/`.
    pub rootfs: PathBuf,
}

impl Plan {
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, serde_json::to_vec(self).map_err(std::io::Error::other)?)
    }

    pub fn read(path: &Path) -> std::io::Result<Self> {
        serde_json::from_slice(&std::fs::read(path)?).map_err(std::io::Error::other)
    }
}

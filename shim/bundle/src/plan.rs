//! The process plan: everything a VMM child needs, written by `create` into the bundle and read
//! by `wasmcell-vmm PLAN`. Compilation and every check happened in `create`;
//! the child only joins its cgroup and network namespace and boots. A pod's workloads are not in
//! its plan: the shim sends each one over the pod VMM's control channel ([`crate::protocol`]).

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One VMM process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The cgroup the process joins first: the container's, or a pod's sandbox's.
    pub cgroup: Option<String>,
    /// The network namespace to join (the pod's), if the spec names one.
    pub netns: Option<PathBuf>,
    /// What the process runs.
    pub kind: PlanKind,
}

/// What a VMM process runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanKind {
    /// A container of its own (`ctr run`): a VM with this one workload, ending with it.
    Container(WorkloadPlan),
    /// A Kubernetes pod's VM: it boots, then runs the workloads the shim sends it until it is
    /// stopped. No pause binary runs: the VM is the sandbox.
    Pod,
}

/// One Wasm workload: what the VMM needs to give it its window and its stdio.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadPlan {
    /// The precompiled module.
    pub artifact: PathBuf,
    /// CPU features it was compiled for.
    pub cpu_features: u64,
    pub args: Vec<String>,
    pub env: Vec<String>,
    /// The workload's memory (its container's memory limit).
    pub memory_mib: u64,
    /// The mounted root filesystem, which the workload sees as `/`.
    pub rootfs: PathBuf,
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

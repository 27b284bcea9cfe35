//! The process plan: everything a VMM child needs, written by `create` into the bundle and read
//! by `wasmcell-vmm PLAN`. Compilation, packing the root filesystem and every check happened in
//! `create`; the child only joins its cgroup and network namespace, opens what it was given,
//! builds its VM and closes its jail. A pod's workloads are not in its plan: the shim sends each
//! one over the pod VMM's control channel ([`crate::protocol`]), with its files as descriptors.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One VMM process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The cgroup the process joins first: the container's, or a pod's sandbox's.
    pub cgroup: Option<String>,
    /// The network namespace to join (the pod's), if the spec names one.
    pub netns: Option<PathBuf>,
    /// What the cgroup is held to (set when the VMM joins it; a limit that cannot be set fails
    /// the start).
    pub limits: CgroupLimits,
    /// The OOM score the VMM process takes (`process.oomScoreAdj`).
    pub oom_score_adj: Option<i32>,
    /// The jail the process closes itself into once its VM exists; `None` runs it unjailed
    /// (never chosen by the shim).
    pub jail: Option<JailPlan>,
    /// Test hook, never set by the shim: once jailed, a thread of the VMM makes a system call
    /// its filter forbids, to show what a violation does to a live VMM.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub probe_seccomp: bool,
    /// What the process runs.
    pub kind: PlanKind,
}

/// What a VMM process runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(clippy::large_enum_variant, reason = "made and sent once per workload: a box would save nothing")]
pub enum PlanKind {
    /// A container of its own (`ctr run`): a VM with this one workload, ending with it.
    Container(WorkloadPlan),
    /// A Kubernetes pod's VM: it boots, then runs the workloads the shim sends it until it is
    /// stopped. No pause binary runs: the VM is the sandbox.
    Pod,
}

/// A cgroup's limits, from the container's `linux.resources`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupLimits {
    /// The container's memory limit; the cgroup gets it plus the VMM's own allowance.
    pub memory_bytes: Option<u64>,
    pub cpu_shares: Option<u64>,
    /// CFS quota and period, µs.
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<u64>,
}

/// Who a jailed VMM runs as.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JailPlan {
    pub uid: u32,
    pub gid: u32,
    /// The container's (the pod's) supplementary groups: its `fsGroup` and
    /// `supplementalGroups`, with which the VMM reaches the volumes it serves.
    #[serde(default)]
    pub groups: Vec<u32>,
}

/// The descriptor a container's VMM finds its root filesystem's archive on ([`WorkloadPlan`]'s
/// `files`): a sealed memfd the shim's packer filled.
pub const FILES_FD: i32 = 4;

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
    /// Whether the workload has a root filesystem (seen as `/`): its archive comes as a
    /// descriptor, [`FILES_FD`] for a container's VMM, with the start request in a pod.
    pub files: bool,
    /// containerd's stdio FIFOs ("" for none).
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    /// The pod's `resolv.conf` and hosts file as the shim read them (before any jail): what
    /// the workload's name lookups read.
    #[serde(default)]
    pub resolv_conf: String,
    #[serde(default)]
    pub hosts: String,
    /// Serve the component's `wasi:http/incoming-handler` here instead of running it.
    #[serde(default)]
    pub serve: Option<std::net::SocketAddr>,
    /// TCP listeners to hand a preview-1 module from descriptor 3 on.
    #[serde(default)]
    pub listen: Vec<std::net::SocketAddr>,
    /// The volumes the VMM serves write-through (its file device), in order: opened by the
    /// VMM before its jail closes, or sent as descriptors with a pod's start request.
    #[serde(default)]
    pub volumes: Vec<ServedVolume>,
}

/// Most [`ServedVolume`]s a workload may have (each is a descriptor its VMM holds).
pub const MAX_SERVED_VOLUMES: usize = 16;

/// A volume the VMM serves from the host: a writable bind mount, or a single file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServedVolume {
    /// The host path.
    pub source: PathBuf,
    /// Where the workload sees it.
    pub destination: String,
    pub kind: ServedKind,
}

/// What a [`ServedVolume`] is, as its source was found at create.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServedKind {
    Dir,
    File,
    ReadOnlyFile,
}

impl WorkloadPlan {
    /// What a pod's start request carries as descriptors, in order: the module, the files'
    /// archive if it has files, each stream that has a path, then each served volume.
    pub fn descriptor_order(&self) -> Vec<Descriptor> {
        let mut order = vec![Descriptor::Artifact];
        if self.files {
            order.push(Descriptor::Files);
        }
        for (path, which) in
            [(&self.stdin, Descriptor::Stdin), (&self.stdout, Descriptor::Stdout), (&self.stderr, Descriptor::Stderr)]
        {
            if !path.is_empty() {
                order.push(which);
            }
        }
        order.extend((0..self.volumes.len()).map(Descriptor::Volume));
        order
    }

    /// How many descriptors a pod's start request carries.
    pub fn descriptors(&self) -> usize {
        self.descriptor_order().len()
    }
}

/// One of a workload's descriptors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Descriptor {
    Artifact,
    Files,
    Stdin,
    Stdout,
    Stderr,
    /// The `i`th of [`WorkloadPlan::volumes`].
    Volume(usize),
}

impl Plan {
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, serde_json::to_vec(self).map_err(std::io::Error::other)?)
    }

    pub fn read(path: &Path) -> std::io::Result<Self> {
        serde_json::from_slice(&std::fs::read(path)?).map_err(std::io::Error::other)
    }
}

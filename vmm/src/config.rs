//! What a user asks of a VM ([`VmConfig`]) and of a workload in it ([`Workload`]), and their
//! validation, done before any KVM resource exists so that bad input fails early and leaves
//! nothing behind.

use crate::artifact::Artifact;
use crate::devices::file::HostVolume;
use crate::devices::socket::Network;
use crate::devices::virtio::console::{Input, Output};
use crate::files::Preopen;
use std::fmt;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;
use wasmcell_abi::boot_info::LOG_INFO;
use wasmcell_abi::memory_map::{RAM_MAX, WINDOW_MAX};
use wasmcell_abi::workload::Parts;
use wasmcell_abi::{SelfTest, ABI_VERSION};

/// Smallest RAM the VMM accepts (base RAM or a workload's), in MiB: the fixed layout below the
/// image takes 4 MiB.
pub const MIN_MEMORY_MIB: u64 = 8;
/// Largest RAM the VMM accepts, in MiB: base RAM stays below the MMIO window, and a workload's
/// window below the next one.
pub const MAX_MEMORY_MIB: u64 = (if RAM_MAX < WINDOW_MAX { RAM_MAX } else { WINDOW_MAX }) >> 20;

/// Errors in a [`VmConfig`].
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Memory size out of range.
    #[error("Memory size {0} MiB is outside {MIN_MEMORY_MIB}..={MAX_MEMORY_MIB} MiB")]
    MemorySize(u64),
    /// The guest image file could not be read.
    #[error("Cannot read guest image {path}")]
    ReadGuestImage {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A zero timeout.
    #[error("Timeout must be greater than zero")]
    ZeroTimeout,
    /// Arguments or environment too large to describe.
    #[error("Arguments and environment are too large")]
    WorkloadTooLarge,
    /// A workload without an artifact.
    #[error("The workload has no compiled module")]
    EmptyArtifact,
    /// A workload to serve HTTP without a network to serve it on.
    #[error("Serving HTTP needs a network")]
    ServeWithoutNetwork,
    /// Listeners to preopen without a network to bind them in.
    #[error("Preopened TCP listeners need a network")]
    ListenWithoutNetwork,
    /// Listeners to preopen for a workload that is served (a component, which opens its own).
    #[error("A served workload cannot also have preopened TCP listeners")]
    ListenWhileServing,
}

/// A RAM size, validated on construction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemorySize(u64);

impl MemorySize {
    /// A size in MiB, if the layout allows it.
    pub fn from_mib(mib: u64) -> Result<Self, ConfigError> {
        if (MIN_MEMORY_MIB..=MAX_MEMORY_MIB).contains(&mib) {
            Ok(Self(mib << 20))
        } else {
            Err(ConfigError::MemorySize(mib))
        }
    }

    /// The size in bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl MemorySize {
    /// Base RAM of a VM that runs workloads: the kernel's heap is its rest, mostly never
    /// touched (the workloads' own memory comes in their windows).
    pub const KERNEL: Self = Self(32 << 20);
    /// A workload's memory when nobody says how much.
    pub const WORKLOAD: Self = Self(256 << 20);
}

impl Default for MemorySize {
    fn default() -> Self {
        Self::KERNEL
    }
}

/// Where the guest unikernel comes from.
#[derive(Clone, Debug, Default)]
pub enum GuestImage {
    /// The image built into this binary.
    #[default]
    Embedded,
    /// An ELF file on disk.
    Path(PathBuf),
    /// An ELF already in memory.
    Bytes(Vec<u8>),
}

impl GuestImage {
    /// The image's bytes.
    pub(crate) fn load(&self) -> Result<std::borrow::Cow<'_, [u8]>, ConfigError> {
        match self {
            GuestImage::Embedded => Ok(crate::EMBEDDED_GUEST.into()),
            GuestImage::Path(path) => std::fs::read(path)
                .map(Into::into)
                .map_err(|source| ConfigError::ReadGuestImage { path: path.clone(), source }),
            GuestImage::Bytes(bytes) => Ok(bytes.as_slice().into()),
        }
    }
}

/// A Wasm workload for the guest runtime: the artifact compiled on the host, what `_start`
/// sees of the world, and the memory it may use (its window: module, inputs, stack, heap and
/// linear memory).
pub struct Workload {
    /// The precompiled module or component (`precompile_module` / `precompile_component`
    /// output for the guest target).
    pub artifact: Artifact,
    /// CPU features the artifact was compiled for (`wasmcell_abi::cpu_features` bits).
    pub cpu_features: u64,
    /// `argv`, program name first.
    pub args: Vec<String>,
    /// `KEY=VALUE` entries.
    pub env: Vec<String>,
    /// Host directories the workload sees, packed read-only into guest memory.
    pub preopens: Vec<Preopen>,
    /// Or those directories packed already ([`crate::pack_files`], by a process that may read
    /// them when this one may not): the archive's bytes. The guest checks every offset in it.
    pub archive: Option<Vec<u8>>,
    /// The workload's memory.
    pub memory: MemorySize,
    /// The workload's stdin.
    pub stdin: Input,
    /// The workload's stdout (never blocks the VMM: see [`Output`]).
    pub stdout: Output,
    /// The workload's stderr.
    pub stderr: Output,
    /// Its network: sockets in the VMM's network namespace (`None`: no network, every socket
    /// call is refused, as `wasmtime run` without `-S inherit-network`).
    pub network: Option<Network>,
    /// Serve the component's `wasi:http/incoming-handler` on this address (`wasmcell serve`)
    /// instead of running it; the guest binds it with the workload's own sockets, so it needs
    /// a [`Self::network`].
    pub serve: Option<std::net::SocketAddr>,
    /// TCP listeners the guest binds and hands a preview-1 module as descriptors 3, 4, …
    /// (`wasmcell run --tcplisten`, as wasmtime ≤ 46 offered); they need a [`Self::network`].
    pub listen: Vec<std::net::SocketAddr>,
    /// Host directories and files the workload reads and writes through (its file device),
    /// each a preopen (a file: a node of its tree) at its guest path.
    pub volumes: Vec<HostVolume>,
}

impl Default for Workload {
    fn default() -> Self {
        Self {
            artifact: Artifact::default(),
            cpu_features: 0,
            args: Vec::new(),
            env: Vec::new(),
            preopens: Vec::new(),
            archive: None,
            memory: MemorySize::WORKLOAD,
            stdin: Input::Empty,
            stdout: Output::null(),
            stderr: Output::null(),
            network: None,
            serve: None,
            listen: Vec::new(),
            volumes: Vec::new(),
        }
    }
}

impl fmt::Debug for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Workload")
            .field("artifact_len", &self.artifact.len())
            .field("args", &self.args)
            .field("env", &self.env)
            .field("preopens", &self.preopens)
            .field("archive_len", &self.archive.as_ref().map(Vec::len))
            .field("memory", &self.memory)
            .field("network", &self.network)
            .field("serve", &self.serve)
            .field("listen", &self.listen)
            .field("volumes", &self.volumes)
            .finish_non_exhaustive()
    }
}

impl Workload {
    /// The workload blob the guest parses (`wasmcell_abi::workload`).
    pub(crate) fn encode(&self) -> Result<Vec<u8>, ConfigError> {
        fn bytes(strings: &[String]) -> Vec<&[u8]> {
            strings.iter().map(String::as_bytes).collect()
        }
        let listen: Vec<String> = self.listen.iter().map(ToString::to_string).collect();
        let serve = self.serve.map(|address| address.to_string());
        let volumes: Vec<Vec<u8>> =
            self.volumes.iter().map(|v| std::iter::once(v.kind.to_byte()).chain(v.guest.bytes()).collect()).collect();
        let volumes: Vec<&[u8]> = volumes.iter().map(Vec::as_slice).collect();
        let (args, env, listen) = (bytes(&self.args), bytes(&self.env), bytes(&listen));
        let serve = serve.as_deref().map(str::as_bytes);
        let parts = Parts { args: &args, env: &env, listen: &listen, volumes: &volumes, serve };
        let mut blob = vec![0; wasmcell_abi::workload::encoded_len(&parts)];
        wasmcell_abi::workload::encode(&parts, &mut blob).ok_or(ConfigError::WorkloadTooLarge)?;
        Ok(blob)
    }
}

/// Everything needed to build a VM. Turned into a running-ready [`crate::Vm`] by `Vm::try_from`.
pub struct VmConfig {
    /// Base RAM: the guest kernel and its heap (each workload brings its own memory).
    pub memory: MemorySize,
    /// The guest unikernel.
    pub guest_image: GuestImage,
    /// Stop [`crate::Vm::run`] after this long (from VM creation); `None` for no limit.
    pub timeout: Option<Duration>,
    /// Where the guest's serial log goes.
    pub log: Box<dyn Write + Send>,
    /// The Wasm workload [`crate::Vm::run`] runs; `None` runs the boot vCPU alone (diagnostics).
    /// A pod's VM has none: its workloads are started while it runs ([`crate::Vm::start`]).
    pub workload: Option<Workload>,
    /// A diagnostic for the boot vCPU to run (when there is no workload).
    pub selftest: SelfTest,
    /// The VM serves workloads started while it runs: its boot vCPU parks after boot instead of
    /// running the self-test and exiting ([`crate::Vm::boot`]).
    pub pod: bool,
    /// How much the guest logs (`wasmcell_abi::boot_info::LOG_*`). On nested KVM each byte of
    /// log is a VM exit, so the fast paths keep it off.
    pub log_level: u32,
    /// The ABI version written into the boot info. Always [`ABI_VERSION`] except in tests of
    /// the guest's version check.
    pub abi_version: u32,
}

impl Default for VmConfig {
    fn default() -> Self {
        Self {
            memory: MemorySize::default(),
            guest_image: GuestImage::default(),
            timeout: None,
            log: Box::new(std::io::sink()),
            workload: None,
            selftest: SelfTest::default(),
            pod: false,
            log_level: LOG_INFO,
            abi_version: ABI_VERSION,
        }
    }
}

impl VmConfig {
    /// Checks what can be checked without touching KVM.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.timeout == Some(Duration::ZERO) {
            return Err(ConfigError::ZeroTimeout);
        }
        if let Some(workload) = &self.workload {
            if workload.serve.is_some() && workload.network.is_none() {
                return Err(ConfigError::ServeWithoutNetwork);
            }
            if !workload.listen.is_empty() && workload.network.is_none() {
                return Err(ConfigError::ListenWithoutNetwork);
            }
            if !workload.listen.is_empty() && workload.serve.is_some() {
                return Err(ConfigError::ListenWhileServing);
            }
        }
        Ok(())
    }
}

impl fmt::Debug for VmConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VmConfig")
            .field("memory", &self.memory)
            .field("guest_image", &self.guest_image)
            .field("timeout", &self.timeout)
            .field("workload", &self.workload)
            .field("selftest", &self.selftest)
            .field("pod", &self.pod)
            .field("log_level", &self.log_level)
            .field("abi_version", &self.abi_version)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_size_bounds() {
        assert!(MemorySize::from_mib(MIN_MEMORY_MIB - 1).is_err());
        assert_eq!(MemorySize::from_mib(MIN_MEMORY_MIB).unwrap().bytes(), MIN_MEMORY_MIB << 20);
        assert_eq!(MemorySize::from_mib(MAX_MEMORY_MIB).unwrap().bytes(), RAM_MAX);
        assert!(MemorySize::from_mib(MAX_MEMORY_MIB + 1).is_err());
        assert!(MemorySize::from_mib(u64::MAX).is_err());
        let msg = MemorySize::from_mib(1).unwrap_err().to_string();
        assert_eq!(msg, format!("Memory size 1 MiB is outside 8..={MAX_MEMORY_MIB} MiB"));
    }

    #[test]
    fn missing_guest_image_names_the_path() {
        let image = GuestImage::Path("/nonexistent/guest.elf".into());
        let err = image.load().unwrap_err();
        assert_eq!(err.to_string(), "Cannot read guest image /nonexistent/guest.elf");
        assert!(std::error::Error::source(&err).is_some());
    }

    #[test]
    fn zero_timeout_is_refused() {
        let config = VmConfig { timeout: Some(Duration::ZERO), ..Default::default() };
        assert!(matches!(config.validate(), Err(ConfigError::ZeroTimeout)));
    }

    #[test]
    fn listeners_and_serving_need_a_network_and_exclude_each_other() {
        let address: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
        let validate = |workload: Workload| VmConfig { workload: Some(workload), ..Default::default() }.validate();
        let network = || Some(Network::default());
        let serve = Workload { serve: Some(address), ..Default::default() };
        assert!(matches!(validate(serve), Err(ConfigError::ServeWithoutNetwork)));
        let listen = Workload { listen: vec![address], ..Default::default() };
        assert!(matches!(validate(listen), Err(ConfigError::ListenWithoutNetwork)));
        let both = Workload { listen: vec![address], serve: Some(address), network: network(), ..Default::default() };
        assert!(matches!(validate(both), Err(ConfigError::ListenWhileServing)));
        assert!(validate(Workload { listen: vec![address], network: network(), ..Default::default() }).is_ok());
    }

    #[test]
    fn listen_addresses_reach_the_workload_blob_in_order() {
        let workload = Workload {
            args: vec!["a.wasm".into()],
            listen: vec!["127.0.0.1:7000".parse().unwrap(), "[::1]:7001".parse().unwrap()],
            ..Default::default()
        };
        let blob = workload.encode().unwrap();
        let parsed = wasmcell_abi::workload::Workload::parse(&blob).unwrap();
        assert!(parsed.listen().eq([&b"127.0.0.1:7000"[..], b"[::1]:7001"]));
        assert_eq!(parsed.serve(), None);
    }
}

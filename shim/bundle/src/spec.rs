//! The OCI runtime spec of a bundle (`config.json`), reduced to what a Wasm workload needs:
//! arguments, environment, working directory, its cgroup's limits (memory, CPU) and OOM score.
//! Anything that cannot run as Wasm is refused here, in `create`, with a message that names it.

use oci_spec::runtime::LinuxNamespaceType;
use oci_spec::runtime::Spec;
use std::path::{Path, PathBuf};

/// Smallest memory limit a container may have, MiB: a workload's window holds its module, a
/// 2 MiB stack and a heap of a few MiB before any linear memory.
pub const MIN_MEMORY_MIB: u64 = 32;
/// Largest memory limit a container may have, MiB (a workload's window is at most 3 GiB).
pub const MAX_MEMORY_MIB: u64 = 3 << 10;
/// VM size when the container sets no memory limit, MiB.
pub const DEFAULT_MEMORY_MIB: u64 = 256;

/// What the workload is told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerSpec {
    /// `argv`: `args[0]` names the module inside the root filesystem.
    pub args: Vec<String>,
    /// `KEY=VALUE` entries.
    pub env: Vec<String>,
    /// Working directory inside the root filesystem.
    pub cwd: String,
    /// Guest RAM, from the container's memory limit.
    pub memory_mib: u64,
    /// Whether the container asked for a terminal (not supported).
    pub terminal: bool,
    /// The container's cgroup (`linux.cgroupsPath`, cgroupfs or systemd form), which the VMM
    /// process joins.
    pub cgroup: Option<String>,
    /// What the cgroup is held to (`linux.resources`).
    pub limits: crate::plan::CgroupLimits,
    /// `process.oomScoreAdj`, applied to the VMM process.
    pub oom_score_adj: Option<i32>,
    /// The network namespace the spec asks to join (`linux.namespaces`, type network, a path).
    pub netns: Option<PathBuf>,
    /// Whether this is a Kubernetes pod's sandbox (CRI's pause container).
    pub sandbox: bool,
    /// The pod this container belongs to (CRI), which groups its containers in one shim.
    pub sandbox_id: Option<String>,
    /// The host files mounted at `/etc/resolv.conf` and `/etc/hosts` (CRI mounts the pod's):
    /// what the workload's name lookups read.
    pub resolv_conf: Option<PathBuf>,
    pub hosts: Option<PathBuf>,
    /// Where to serve the module's `wasi:http/incoming-handler` (`WASMCELL_HTTP_ADDR` in the
    /// environment, which is taken out of what the workload sees), instead of running it.
    pub serve: Option<std::net::SocketAddr>,
    /// TCP listeners to hand a preview-1 module from descriptor 3 on (`WASMCELL_TCP_LISTEN` in
    /// the environment, taken out of what the workload sees; `wasmcell run --tcplisten`).
    pub listen: Vec<std::net::SocketAddr>,
    /// The bind mounts the workload sees at their destinations ([`Volume`]).
    pub volumes: Vec<Volume>,
    /// `process.user.additionalGids` (Kubernetes: `supplementalGroups` and `fsGroup`), at most
    /// [`MAX_GROUPS`]: the VMM's own supplementary groups, with which it serves the volumes.
    pub groups: Vec<u32>,
}

/// Most supplementary groups a container may have.
pub const MAX_GROUPS: usize = 32;

/// A bind mount of the spec, seen by the workload at its destination: what the kubelet makes
/// of a configMap, secret, downwardAPI or projected volume (read-only), an emptyDir, hostPath
/// or PersistentVolume (writable unless `readOnly`), and the single files every CRI container
/// gets (`/etc/hosts`, `/etc/resolv.conf`, `/etc/hostname`, the termination log). Which mounts
/// become volumes: [`volumes`]; how each is served is decided at create, by what its source is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Volume {
    /// Absolute, normalised, text: the workload's path.
    pub destination: String,
    /// The host path (the shim checks what it is before serving it).
    pub source: PathBuf,
    /// Mounted `ro`.
    pub read_only: bool,
}

/// Most volumes a container may have.
pub const MAX_VOLUMES: usize = 64;

/// The environment variable that makes a container serve its `wasi:http/proxy` component:
/// `PORT` (on every address) or `IP:PORT`.
pub const HTTP_ADDR_ENV: &str = "WASMCELL_HTTP_ADDR";
/// The environment variable that hands a preview-1 module preopened TCP listeners: a
/// comma-separated list of `PORT` (on every address) or `IP:PORT`.
pub const TCP_LISTEN_ENV: &str = "WASMCELL_TCP_LISTEN";
/// Most listeners [`TCP_LISTEN_ENV`] may name.
pub const MAX_LISTENERS: usize = 16;

/// CRI's annotation naming a container's role: `sandbox` or `container`.
pub const CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
/// CRI's annotation naming a container's pod sandbox.
pub const SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";

/// The largest `config.json` read: a spec is a few KiB; its tenant-controlled parts (arguments,
/// environment, annotations) are bounded far below this by Kubernetes' own object size limit.
pub const MAX_CONFIG_SIZE: u64 = 4 << 20;

/// Why a bundle's spec cannot be run.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("Cannot read the bundle's config.json")]
    Read(#[source] std::io::Error),
    #[error("The bundle's config.json is larger than {} MiB", MAX_CONFIG_SIZE >> 20)]
    TooLarge,
    #[error("The bundle's config.json is not a valid OCI runtime spec")]
    Parse(#[source] serde_json::Error),
    #[error("The container spec has no process")]
    NoProcess,
    #[error("The container spec has no process arguments: args[0] must name the Wasm module")]
    NoArgs,
    #[error("The container's memory limit ({0} MiB) is outside the {MIN_MEMORY_MIB}..={MAX_MEMORY_MIB} MiB a wasmcell workload can have")]
    MemoryLimit(u64),
    #[error("{HTTP_ADDR_ENV}={0} is not a port or an IP:PORT address")]
    HttpAddr(String),
    #[error("{TCP_LISTEN_ENV}={0} is not a list of at most {MAX_LISTENERS} ports or IP:PORT addresses")]
    TcpListen(String),
    #[error("{TCP_LISTEN_ENV} and {HTTP_ADDR_ENV} cannot both be set: a served component opens its own sockets")]
    ListenWhileServing,
    #[error("The mount at {0:?} is not at an absolute, normalised path")]
    MountDestination(String),
    #[error("The mount at {0} has no absolute source path")]
    MountSource(String),
    #[error("The container has more than {MAX_VOLUMES} volumes")]
    TooManyVolumes,
    #[error("The container has more than {MAX_GROUPS} supplementary groups")]
    TooManyGroups,
}

impl ContainerSpec {
    /// Reads `bundle/config.json` (at most [`MAX_CONFIG_SIZE`] bytes of it).
    pub fn load(bundle: &Path) -> Result<Self, SpecError> {
        let file = std::fs::File::open(bundle.join("config.json")).map_err(SpecError::Read)?;
        let mut json = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(file, MAX_CONFIG_SIZE + 1), &mut json)
            .map_err(SpecError::Read)?;
        if json.len() as u64 > MAX_CONFIG_SIZE {
            return Err(SpecError::TooLarge);
        }
        Self::parse(&json)
    }

    /// The spec in `json` (a `config.json`'s bytes).
    pub fn parse(json: &[u8]) -> Result<Self, SpecError> {
        let spec: Spec = serde_json::from_slice(json).map_err(SpecError::Parse)?;
        Self::from_spec(&spec)
    }

    fn from_spec(spec: &Spec) -> Result<Self, SpecError> {
        let annotation = |key: &str| spec.annotations().as_ref().and_then(|a| a.get(key)).cloned();
        let sandbox = annotation(CONTAINER_TYPE).as_deref() == Some("sandbox");
        let process = spec.process().as_ref().ok_or(SpecError::NoProcess)?;
        let args = process.args().clone().unwrap_or_default();
        if args.is_empty() || args[0].is_empty() {
            return Err(SpecError::NoArgs);
        }
        let limit = spec
            .linux()
            .as_ref()
            .and_then(|l| l.resources().as_ref())
            .and_then(|r| r.memory().as_ref())
            .and_then(|m| m.limit())
            .filter(|&bytes| bytes > 0);
        let memory_mib = limit.map_or(DEFAULT_MEMORY_MIB, |bytes| bytes as u64 >> 20);
        // A pod's sandbox runs no workload: its limit, if any, is the kubelet's business.
        if !sandbox && !(MIN_MEMORY_MIB..=MAX_MEMORY_MIB).contains(&memory_mib) {
            return Err(SpecError::MemoryLimit(memory_mib));
        }
        let cpu = spec.linux().as_ref().and_then(|l| l.resources().as_ref()).and_then(|r| r.cpu().as_ref());
        let limits = crate::plan::CgroupLimits {
            memory_bytes: limit.map(|bytes| bytes as u64),
            cpu_shares: cpu.and_then(|c| c.shares()).filter(|&s| s > 0),
            cpu_quota: cpu.and_then(|c| c.quota()).filter(|&q| q > 0),
            cpu_period: cpu.and_then(|c| c.period()).filter(|&p| p > 0),
        };
        let (env, serve) = take_http_addr(process.env().clone().unwrap_or_default())?;
        let (env, listen) = take_tcp_listen(env)?;
        if serve.is_some() && !listen.is_empty() {
            return Err(SpecError::ListenWhileServing);
        }
        Ok(Self {
            args,
            env,
            serve,
            listen,
            cwd: process.cwd().to_string_lossy().into_owned(),
            memory_mib,
            limits,
            oom_score_adj: process.oom_score_adj(),
            terminal: process.terminal().unwrap_or(false),
            cgroup: spec
                .linux()
                .as_ref()
                .and_then(|l| l.cgroups_path().as_ref())
                .map(|p| p.to_string_lossy().into_owned())
                .filter(|p| !p.is_empty()),
            netns: spec
                .linux()
                .as_ref()
                .and_then(|l| l.namespaces().as_ref())
                .and_then(|ns| ns.iter().find(|n| n.typ() == LinuxNamespaceType::Network))
                .and_then(|n| n.path().clone()),
            sandbox,
            sandbox_id: annotation(SANDBOX_ID),
            resolv_conf: mount_source(spec, "/etc/resolv.conf"),
            hosts: mount_source(spec, "/etc/hosts"),
            volumes: volumes(spec)?,
            groups: groups(process)?,
        })
    }
}

/// Takes variable `name` out of `env` → the rest, and its value (the last one counts, as for
/// any variable).
fn take_variable(env: Vec<String>, name: &str) -> (Vec<String>, Option<String>) {
    let prefix = format!("{name}=");
    let (values, env): (Vec<String>, Vec<String>) = env.into_iter().partition(|e| e.starts_with(&prefix));
    (env, values.last().map(|e| e[prefix.len()..].trim().to_string()))
}

/// `PORT` (every IPv4 address) or `IP:PORT`.
fn port_or_address(value: &str) -> Option<std::net::SocketAddr> {
    match value.parse::<u16>() {
        Ok(port) => Some(std::net::SocketAddr::from(([0, 0, 0, 0], port))),
        Err(_) => value.parse().ok(),
    }
}

/// Takes [`HTTP_ADDR_ENV`] out of `env` and parses it.
fn take_http_addr(env: Vec<String>) -> Result<(Vec<String>, Option<std::net::SocketAddr>), SpecError> {
    let (env, value) = take_variable(env, HTTP_ADDR_ENV);
    let serve = value.map(|v| port_or_address(&v).ok_or(SpecError::HttpAddr(v))).transpose()?;
    Ok((env, serve))
}

/// Takes [`TCP_LISTEN_ENV`] out of `env` and parses it.
fn take_tcp_listen(env: Vec<String>) -> Result<(Vec<String>, Vec<std::net::SocketAddr>), SpecError> {
    let (env, value) = take_variable(env, TCP_LISTEN_ENV);
    let Some(value) = value else { return Ok((env, Vec::new())) };
    let listen: Option<Vec<_>> = value.split(',').map(|a| port_or_address(a.trim())).collect();
    match listen {
        Some(listen) if listen.len() <= MAX_LISTENERS => Ok((env, listen)),
        _ => Err(SpecError::TcpListen(value)),
    }
}

/// The spec's mounts that become [`Volume`]s: bind mounts (`type: bind`, or a `bind`/`rbind`
/// option), read-only if marked `ro`, in order; a later mount at the same destination hides an
/// earlier one. Skipped, never an error, as every pod has them: kernel filesystems (`proc`,
/// `sysfs`, `tmpfs`, `devpts`, `mqueue`, `cgroup`: the guest has none) and the pod's `/dev/shm`
/// (POSIX shared memory, which no Wasm workload has). Propagation options mean nothing to a
/// guest that mounts nothing and are ignored.
pub fn volumes(spec: &Spec) -> Result<Vec<Volume>, SpecError> {
    let mut volumes = Vec::new();
    for mount in spec.mounts().iter().flatten() {
        let options = mount.options().as_deref().unwrap_or_default();
        let bind = mount.typ().as_deref() == Some("bind") || options.iter().any(|o| o == "bind" || o == "rbind");
        let read_only = options.iter().any(|o| o == "ro");
        let destination = mount.destination().to_string_lossy();
        if !bind || destination == "/dev/shm" {
            continue;
        }
        let destination = mount
            .destination()
            .to_str()
            .filter(|d| is_normal_path(d))
            .ok_or_else(|| SpecError::MountDestination(destination.into_owned()))?;
        let source = mount.source().clone().filter(|source| source.is_absolute());
        let source = source.ok_or_else(|| SpecError::MountSource(destination.to_string()))?;
        volumes.retain(|v: &Volume| v.destination != destination);
        volumes.push(Volume { destination: destination.to_string(), source, read_only });
    }
    if volumes.len() > MAX_VOLUMES {
        return Err(SpecError::TooManyVolumes);
    }
    Ok(volumes)
}

/// The process's supplementary groups, in order, without repeats.
fn groups(process: &oci_spec::runtime::Process) -> Result<Vec<u32>, SpecError> {
    let mut groups: Vec<u32> = Vec::new();
    for &gid in process.user().additional_gids().iter().flatten() {
        if !groups.contains(&gid) {
            groups.push(gid);
        }
    }
    if groups.len() > MAX_GROUPS {
        return Err(SpecError::TooManyGroups);
    }
    Ok(groups)
}

/// Absolute, and no empty, `.` or `..` component (`/` itself is the root filesystem's).
fn is_normal_path(path: &str) -> bool {
    path.len() > 1
        && path.starts_with('/')
        && path[1..].split('/').all(|part| !part.is_empty() && part != "." && part != "..")
}

/// The source of the spec's last bind mount at `destination` (a later mount hides an earlier).
fn mount_source(spec: &Spec, destination: &str) -> Option<PathBuf> {
    let mounts = spec.mounts().as_ref()?;
    let mount = mounts.iter().rev().find(|m| m.destination() == Path::new(destination))?;
    mount.source().clone().filter(|source| source.is_absolute())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> Result<ContainerSpec, SpecError> {
        ContainerSpec::parse(json.as_bytes())
    }

    #[test]
    fn the_http_address_is_taken_out_of_the_environment() {
        let with_env = |env: &str| {
            spec(&format!(
                r#"{{"ociVersion":"1.0.2","process":{{"args":["/a.wasm"],"env":[{env}],"cwd":"/","user":{{"uid":0,"gid":0}}}}}}"#
            ))
        };
        let s = with_env(r#""A=1","WASMCELL_HTTP_ADDR=8080","B=2""#).unwrap();
        assert_eq!(s.env, ["A=1", "B=2"]);
        assert_eq!(s.serve, Some("0.0.0.0:8080".parse().unwrap()));
        let s = with_env(r#""WASMCELL_HTTP_ADDR=127.0.0.1:9000""#).unwrap();
        assert_eq!(s.serve, Some("127.0.0.1:9000".parse().unwrap()));
        assert_eq!(with_env(r#""WASMCELL_HTTP_ADDR=[::1]:80""#).unwrap().serve, Some("[::1]:80".parse().unwrap()));
        assert_eq!(with_env(r#""A=1""#).unwrap().serve, None);
        let err = with_env(r#""WASMCELL_HTTP_ADDR=http://x""#).unwrap_err();
        assert_eq!(err.to_string(), "WASMCELL_HTTP_ADDR=http://x is not a port or an IP:PORT address");

        let s = with_env(r#""A=1","WASMCELL_TCP_LISTEN=7000, 127.0.0.1:7001""#).unwrap();
        assert_eq!(s.env, ["A=1"]);
        assert_eq!(s.listen, ["0.0.0.0:7000".parse().unwrap(), "127.0.0.1:7001".parse().unwrap()]);
        assert_eq!(with_env(r#""A=1""#).unwrap().listen, []);
        let err = with_env(r#""WASMCELL_TCP_LISTEN=7000,x""#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "WASMCELL_TCP_LISTEN=7000,x is not a list of at most 16 ports or IP:PORT addresses"
        );
        let many = (1..=17).map(|p| p.to_string()).collect::<Vec<_>>().join(",");
        assert!(matches!(with_env(&format!(r#""WASMCELL_TCP_LISTEN={many}""#)), Err(SpecError::TcpListen(_))));
        let err = with_env(r#""WASMCELL_TCP_LISTEN=7000","WASMCELL_HTTP_ADDR=8080""#).unwrap_err();
        assert!(matches!(err, SpecError::ListenWhileServing), "{err:?}");
    }

    #[test]
    fn binds_become_volumes_and_the_rest_is_skipped() {
        let json = r#"{"ociVersion":"1.0.2","process":{"args":["/a.wasm"],"cwd":"/","user":{"uid":0,"gid":0}},
            "mounts":[
              {"destination":"/proc","type":"proc","source":"proc"},
              {"destination":"/dev/shm","type":"bind","source":"/run/shm","options":["rbind","rw"]},
              {"destination":"/etc/hosts","type":"bind","source":"/pod/hosts","options":["rbind","ro"]},
              {"destination":"/etc/config","type":"bind","source":"/kubelet/cm","options":["rbind","ro","nosuid"]},
              {"destination":"/data","type":"bind","source":"/kubelet/empty","options":["rbind","rw"]},
              {"destination":"/var/run/secrets/kubernetes.io/serviceaccount","source":"/kubelet/token","options":["bind","ro"]},
              {"destination":"/dev/termination-log","type":"bind","source":"/kubelet/log"},
              {"destination":"/data","type":"bind","source":"/kubelet/pvc","options":["rbind","rprivate"]}
            ]}"#;
        let s = spec(json).unwrap();
        let volume = |destination: &str, source: &str, read_only| Volume {
            destination: destination.into(),
            source: source.into(),
            read_only,
        };
        assert_eq!(
            s.volumes,
            [
                volume("/etc/hosts", "/pod/hosts", true),
                volume("/etc/config", "/kubelet/cm", true),
                volume("/var/run/secrets/kubernetes.io/serviceaccount", "/kubelet/token", true),
                volume("/dev/termination-log", "/kubelet/log", false),
                volume("/data", "/kubelet/pvc", false),
            ],
            "/proc and /dev/shm skipped; the second /data hides the first"
        );
        for destination in ["etc/x", "/", "/a/../b", "/a//b", "/a/", "/a/./b"] {
            let json = format!(
                r#"{{"ociVersion":"1.0.2","process":{{"args":["/a.wasm"],"cwd":"/","user":{{"uid":0,"gid":0}}}},
                "mounts":[{{"destination":"{destination}","type":"bind","source":"/s","options":["ro"]}}]}}"#
            );
            let err = spec(&json).unwrap_err();
            assert_eq!(err.to_string(), format!("The mount at {destination:?} is not at an absolute, normalised path"));
        }
        let many: Vec<String> = (0..=MAX_VOLUMES)
            .map(|i| format!(r#"{{"destination":"/v{i}","type":"bind","source":"/s","options":["ro"]}}"#))
            .collect();
        let json = format!(
            r#"{{"ociVersion":"1.0.2","process":{{"args":["/a.wasm"],"cwd":"/","user":{{"uid":0,"gid":0}}}},"mounts":[{}]}}"#,
            many.join(",")
        );
        assert!(matches!(spec(&json), Err(SpecError::TooManyVolumes)));
        let json = r#"{"ociVersion":"1.0.2","process":{"args":["/a.wasm"],"cwd":"/","user":{"uid":0,"gid":0}},
            "mounts":[{"destination":"/etc/config","type":"bind","source":"relative/cm","options":["ro"]}]}"#;
        assert_eq!(spec(json).unwrap_err().to_string(), "The mount at /etc/config has no absolute source path");
    }

    #[test]
    fn supplementary_groups_come_from_the_user_bounded() {
        let with = |gids: &str| {
            spec(&format!(
                r#"{{"ociVersion":"1.0.2","process":{{"args":["/a.wasm"],"cwd":"/","user":{{"uid":0,"gid":0,"additionalGids":[{gids}]}}}}}}"#
            ))
        };
        assert_eq!(with("2000, 3000, 2000").unwrap().groups, [2000, 3000], "in order, no repeats");
        assert_eq!(with("").unwrap().groups, Vec::<u32>::new());
        let many = (0..=MAX_GROUPS).map(|g| g.to_string()).collect::<Vec<_>>().join(",");
        assert!(matches!(with(&many), Err(SpecError::TooManyGroups)));
    }

    #[test]
    fn args_env_cwd_and_memory_come_from_the_spec() {
        let json = r#"{"ociVersion":"1.0.2","process":{"args":["/app.wasm","x"],"env":["A=1"],"cwd":"/data","user":{"uid":0,"gid":0}},
            "linux":{"cgroupsPath":"/ns/c1","resources":{"memory":{"limit":134217728}}}}"#;
        let s = spec(json).unwrap();
        assert_eq!(
            (s.args.as_slice(), s.env.as_slice(), s.cwd.as_str(), s.memory_mib),
            (&["/app.wasm".to_string(), "x".into()][..], &["A=1".to_string()][..], "/data", 128)
        );
        assert_eq!(s.cgroup.as_deref(), Some("/ns/c1"));
        assert_eq!(s.limits.memory_bytes, Some(128 << 20));
        assert_eq!((s.netns, s.sandbox, s.sandbox_id), (None, false, None));
    }

    #[test]
    fn the_pods_resolver_files_are_the_sources_mounted_at_etc() {
        let json = r#"{"ociVersion":"1.0.2","process":{"args":["/app.wasm"],"cwd":"/","user":{"uid":0,"gid":0}},
            "mounts":[{"destination":"/etc/resolv.conf","source":"/old/resolv.conf","options":["rbind","ro"]},
                      {"destination":"/etc/hostname","source":"/sb/hostname"},
                      {"destination":"/etc/resolv.conf","source":"/sb/resolv.conf","type":"bind"},
                      {"destination":"/etc/hosts","source":"relative/hosts"}]}"#;
        let s = spec(json).unwrap();
        assert_eq!(s.resolv_conf.as_deref(), Some(Path::new("/sb/resolv.conf")));
        assert_eq!(s.hosts, None, "a relative source is not a host file");
    }

    #[test]
    fn cri_annotations_and_the_pod_network_namespace_are_read() {
        let json = r#"{"ociVersion":"1.0.2","process":{"args":["/pause"],"cwd":"/","user":{"uid":0,"gid":0}},
            "annotations":{"io.kubernetes.cri.container-type":"sandbox","io.kubernetes.cri.sandbox-id":"p1"},
            "linux":{"namespaces":[{"type":"pid"},{"type":"network","path":"/var/run/netns/cni-1"}]}}"#;
        let s = spec(json).unwrap();
        assert_eq!((s.sandbox, s.sandbox_id.as_deref()), (true, Some("p1")));
        assert_eq!(s.netns.as_deref(), Some(Path::new("/var/run/netns/cni-1")));
    }

    #[test]
    fn a_spec_without_arguments_is_refused() {
        let json = r#"{"ociVersion":"1.0.2","process":{"args":[],"cwd":"/","user":{"uid":0,"gid":0}}}"#;
        assert_eq!(
            spec(json).unwrap_err().to_string(),
            "The container spec has no process arguments: args[0] must name the Wasm module"
        );
    }

    #[test]
    fn memory_limits_a_workload_cannot_have_are_refused_naming_the_range() {
        let with = |limit: u64| {
            let json = format!(
                r#"{{"ociVersion":"1.0.2","process":{{"args":["a"],"cwd":"/","user":{{"uid":0,"gid":0}}}},"linux":{{"resources":{{"memory":{{"limit":{limit}}}}}}}}}"#
            );
            spec(&json)
        };
        assert_eq!(
            with(16 << 20).unwrap_err().to_string(),
            "The container's memory limit (16 MiB) is outside the 32..=3072 MiB a wasmcell workload can have"
        );
        assert!(with(4 << 30).is_err());
        assert_eq!(with(32 << 20).unwrap().memory_mib, 32);
        assert_eq!(with(3 << 30).unwrap().memory_mib, 3072);
    }

    #[test]
    fn a_broken_or_huge_config_is_refused_with_one_line() {
        assert_eq!(spec("{").unwrap_err().to_string(), "The bundle's config.json is not a valid OCI runtime spec");
        let bundle = std::env::temp_dir().join(format!("wasmcell-spec-{}", std::process::id()));
        std::fs::create_dir_all(&bundle).unwrap();
        let config = std::fs::File::create(bundle.join("config.json")).unwrap();
        config.set_len(MAX_CONFIG_SIZE + 1).unwrap();
        assert_eq!(
            ContainerSpec::load(&bundle).unwrap_err().to_string(),
            "The bundle's config.json is larger than 4 MiB"
        );
        std::fs::remove_dir_all(&bundle).unwrap();
    }
}

//! A workload as a VMM child runs it, in a container's VM or a pod's: its plan and the files it
//! was handed ([`Opened`]: the module, the root filesystem's archive, containerd's FIFOs, the
//! volumes it serves)
//! turned into the VMM library's [`Workload`], and its outcome turned into the exit status
//! containerd reports, with the cause on the container's stderr ([`Reporter`]).
//!
//! Everything is opened before the VMM's jail closes — by the container's VMM itself, or by
//! the shim for a pod's workload, whose VMM is jailed long before and receives descriptors.

use crate::plan::{Descriptor, ServedKind, WorkloadPlan};
use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use wasmcell_abi::file::Volume;
use wasmcell_vmm::{Artifact, HostVolume, Input, MemorySize, Network, Outcome, Output, Resolver, Workload};

/// The status of a workload that trapped, as `wasmtime run` gives it (128 + SIGABRT).
const TRAP_STATUS: i32 = 134;

/// A workload's files, open.
pub struct Opened {
    artifact: File,
    files: Option<File>,
    stdin: Option<File>,
    stdout: Option<File>,
    stderr: Option<File>,
    /// The served volumes, in the plan's order.
    volumes: Vec<HostVolume>,
}

/// The file device's kind of a served volume.
fn volume_kind(kind: ServedKind) -> Volume {
    match kind {
        ServedKind::Dir => Volume::Dir,
        ServedKind::File => Volume::File,
        ServedKind::ReadOnlyFile => Volume::ReadOnlyFile,
    }
}

impl Opened {
    /// Opens what `plan` names; `files` is its root filesystem's archive (the packer's memfd).
    pub fn open(plan: &WorkloadPlan, files: Option<File>) -> Result<Self, String> {
        let artifact =
            File::open(&plan.artifact).map_err(|e| format!("cannot read {}: {e}", plan.artifact.display()))?;
        Ok(Self {
            artifact,
            files: files.filter(|_| plan.files),
            stdin: open_input(&plan.stdin)?,
            stdout: open_output(&plan.stdout)?,
            stderr: open_output(&plan.stderr)?,
            volumes: plan
                .volumes
                .iter()
                .map(|v| HostVolume::open(&v.source, &v.destination, volume_kind(v.kind)))
                .collect::<Result<_, _>>()
                .map_err(|e| crate::service::error_chain(&e))?,
        })
    }

    /// The files a pod's start request brought, in `plan.descriptor_order()`.
    pub fn from_fds(plan: &WorkloadPlan, fds: Vec<OwnedFd>) -> Result<Self, String> {
        let order = plan.descriptor_order();
        if fds.len() != order.len() {
            return Err(format!("the start request brought {} descriptors, not {}", fds.len(), order.len()));
        }
        let (mut artifact, mut files, mut stdin, mut stdout, mut stderr) = (None, None, None, None, None);
        let mut volumes = Vec::new();
        for (which, fd) in order.into_iter().zip(fds) {
            let slot = match which {
                Descriptor::Artifact => &mut artifact,
                Descriptor::Files => &mut files,
                Descriptor::Stdin => &mut stdin,
                Descriptor::Stdout => &mut stdout,
                Descriptor::Stderr => &mut stderr,
                Descriptor::Volume(index) => {
                    let v = &plan.volumes[index];
                    let volume = HostVolume::from_fd(fd, &v.source, &v.destination, volume_kind(v.kind));
                    volumes.push(volume.map_err(|e| crate::service::error_chain(&e))?);
                    continue;
                }
            };
            *slot = Some(File::from(fd));
        }
        let artifact = artifact.ok_or("the start request brought no module")?;
        Ok(Self { artifact, files, stdin, stdout, stderr, volumes })
    }

    /// Its descriptors in `plan.descriptor_order()`, for a pod's start request.
    pub fn fds(&self) -> Vec<BorrowedFd<'_>> {
        let streams = [&self.files, &self.stdin, &self.stdout, &self.stderr];
        let files = std::iter::once(self.artifact.as_fd()).chain(streams.into_iter().flatten().map(File::as_fd));
        files.chain(self.volumes.iter().map(HostVolume::as_fd)).collect()
    }
}

/// The VMM library's workload for `plan`, from what was opened for it, and where to report its
/// end.
pub fn load(plan: &WorkloadPlan, opened: Opened) -> Result<(Workload, Reporter), String> {
    let memory = MemorySize::from_mib(plan.memory_mib).map_err(|e| e.to_string())?;
    // Mapped, not read: the pod's containers running one module share its pages.
    let artifact = Artifact::map(opened.artifact).map_err(|e| format!("cannot read the module: {e}"))?;
    let archive = opened.files.map(|file| read_archive(&file, memory.bytes())).transpose()?;
    let reporter = Reporter(opened.stderr.as_ref().and_then(|f| f.try_clone().ok()));
    let workload = Workload {
        artifact,
        cpu_features: plan.cpu_features,
        args: plan.args.clone(),
        env: plan.env.clone(),
        preopens: Vec::new(),
        archive,
        memory,
        stdin: opened.stdin.map_or(Input::Empty, |f| Input::from_fd(f.into())),
        stdout: opened.stdout.map_or_else(Output::null, |f| Output::fifo(f.into())),
        stderr: opened.stderr.map_or_else(Output::null, |f| Output::fifo(f.into())),
        // The VMM lives in the container's (a pod's) network namespace: its sockets are the
        // pod's, as a runc container's are, and the namespace's rules (NetworkPolicy) apply.
        // Names are looked up with the pod's resolv.conf and hosts, as a runc container's are.
        network: Some(Network {
            name_lookup: Some(Resolver::new(plan.resolv_conf.as_bytes(), plan.hosts.as_bytes())),
            ..Network::default()
        }),
        serve: plan.serve,
        listen: plan.listen.clone(),
        volumes: opened.volumes,
    };
    Ok((workload, reporter))
}

/// The archive in the packer's memfd, read from its start; more than the workload's memory is
/// refused before it is read.
fn read_archive(file: &File, budget: u64) -> Result<Vec<u8>, String> {
    let len = file.metadata().map_err(|e| format!("cannot read the root filesystem's archive: {e}"))?.len();
    if len > budget {
        return Err(format!("the root filesystem's archive ({len} bytes) is larger than the workload's memory"));
    }
    let mut archive = vec![0; len as usize];
    file.read_exact_at(&mut archive, 0).map_err(|e| format!("cannot read the root filesystem's archive: {e}"))?;
    Ok(archive)
}

/// Where a workload's end is reported: its stderr, where the container's user looks (`ctr run`,
/// `kubectl logs`).
pub struct Reporter(Option<File>);

impl Reporter {
    /// Writes `line` if the FIFO has room for it (a full FIFO nobody reads must not hold up the
    /// report of the exit), and gives a reader that has not attached yet a bounded time to take
    /// it.
    pub fn report(self, line: &str) {
        if let Some(file) = self.0 {
            let mut err = Output::fifo(file.into());
            let _ = err.write(format!("{line}\n").as_bytes());
            err.finish();
        }
    }
}

/// The exit status for `outcome`; `signal` is the one that stopped the workload, if any.
pub fn exit_status(outcome: Outcome, signal: Option<i32>, reporter: Reporter) -> i32 {
    match outcome {
        Outcome::Exited(code) => (code & 0xff) as i32,
        Outcome::WasmTrap(message) => {
            // As `wasmtime run` prints it.
            reporter.report(&format!("Error: {message}"));
            TRAP_STATUS
        }
        Outcome::Killed => 128 + signal.unwrap_or(libc::SIGKILL),
        Outcome::Timeout => 124,
        other => {
            reporter.report(&format!("wasmcell: the guest failed: {other}"));
            1
        }
    }
}

/// Reports `line` on the stderr FIFO at `path` (for failures before the workload's files are
/// open).
pub fn report_to_path(path: &str, line: &str) {
    if let Ok(file) = open_output(path) {
        Reporter(file).report(line);
    }
}

fn open_output(fifo: &str) -> Result<Option<File>, String> {
    if fifo.is_empty() {
        return Ok(None);
    }
    // Read-write, as runc's shim also holds a read end: the open does not wait for a reader
    // (`ctr run -d` has none), and a reader that goes away does not end the workload with EPIPE.
    // The VMM writes it through a non-blocking description of its own where it can.
    let file = OpenOptions::new().read(true).write(true).open(fifo).map_err(|e| format!("cannot open {fifo}: {e}"))?;
    Ok(Some(file))
}

fn open_input(fifo: &str) -> Result<Option<File>, String> {
    if fifo.is_empty() {
        return Ok(None);
    }
    // Non-blocking open: a FIFO with no writer yet would block the open itself.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(fifo)
        .map_err(|e| format!("cannot open {fifo}: {e}"))?;
    Ok(Some(file))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn plan(files: bool, stdout: &str) -> WorkloadPlan {
        WorkloadPlan {
            artifact: "/nonexistent".into(),
            cpu_features: 0,
            args: vec!["a.wasm".into()],
            env: vec![],
            memory_mib: 16,
            files,
            stdin: String::new(),
            stdout: stdout.into(),
            stderr: String::new(),
            resolv_conf: String::new(),
            hosts: String::new(),
            serve: None,
            listen: Vec::new(),
            volumes: Vec::new(),
        }
    }

    fn file_with(bytes: &[u8]) -> File {
        let path = std::env::temp_dir().join(format!("wasmcell-workload-{}-{}", std::process::id(), bytes.len()));
        let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        file.write_all(bytes).unwrap();
        file
    }

    #[test]
    fn descriptors_come_back_in_the_order_they_went() {
        let dir = std::env::temp_dir().join(format!("wasmcell-workload-volumes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("log"), b"").unwrap();
        let served = |source: std::path::PathBuf, destination: &str, kind| crate::plan::ServedVolume {
            source,
            destination: destination.into(),
            kind,
        };
        let mut plan = plan(true, "/some/fifo");
        plan.volumes =
            vec![served(dir.clone(), "/data", ServedKind::Dir), served(dir.join("log"), "/dev/log", ServedKind::File)];
        let opened = Opened {
            artifact: file_with(b"module"),
            files: Some(file_with(b"archive")),
            stdin: None,
            stdout: Some(file_with(b"out")),
            stderr: None,
            volumes: plan
                .volumes
                .iter()
                .map(|v| HostVolume::open(&v.source, &v.destination, volume_kind(v.kind)).unwrap())
                .collect(),
        };
        let fds: Vec<OwnedFd> = opened.fds().iter().map(|fd| fd.try_clone_to_owned().unwrap()).collect();
        assert_eq!(fds.len(), plan.descriptors());
        let mut swapped = opened.fds().iter().map(|fd| fd.try_clone_to_owned().unwrap()).collect::<Vec<_>>();
        let back = Opened::from_fds(&plan, fds).unwrap();
        assert_eq!(back.artifact.read_at_vec(), b"module");
        assert_eq!(back.files.as_ref().unwrap().read_at_vec(), b"archive");
        assert_eq!(back.stdout.as_ref().unwrap().read_at_vec(), b"out");
        assert!(back.stdin.is_none() && back.stderr.is_none());
        assert_eq!(back.volumes.iter().map(|v| v.guest.as_str()).collect::<Vec<_>>(), ["/data", "/dev/log"]);
        assert!(Opened::from_fds(&plan, Vec::new()).is_err(), "too few");
        // A descriptor that is not what the plan says (a file for the directory) is refused.
        let len = swapped.len();
        swapped.swap(len - 1, len - 2);
        let err = Opened::from_fds(&plan, swapped).err().unwrap();
        assert!(err.contains("is not a directory"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_archive_larger_than_the_memory_is_refused_unread() {
        let small = file_with(&[7u8; 100]);
        assert_eq!(read_archive(&small, 100).unwrap(), vec![7u8; 100]);
        let err = read_archive(&small, 99).unwrap_err();
        assert_eq!(err, "the root filesystem's archive (100 bytes) is larger than the workload's memory");
    }

    trait ReadAt {
        fn read_at_vec(&self) -> Vec<u8>;
    }

    impl ReadAt for File {
        fn read_at_vec(&self) -> Vec<u8> {
            let mut bytes = vec![0; self.metadata().unwrap().len() as usize];
            self.read_exact_at(&mut bytes, 0).unwrap();
            bytes
        }
    }
}

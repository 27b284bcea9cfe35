//! A pod's VMM process on real KVM, driven by the shim's client as the task service drives it,
//! without containerd: the real binary (`wasmcell-vmm PLAN`) spawned with its
//! control channel and jailed as the shim jails it, workloads started side by side in its one
//! VM (their files passed as descriptors), one stopped, a bad one refused, and the process
//! ending on SIGTERM — or when the shim's end of the channel closes.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmcell_aot::Compiler;
use wasmcell_shim::plan::{JailPlan, Plan, PlanKind, WorkloadPlan};
use wasmcell_shim::pod::client::PodVm;
use wasmcell_shim::process::Process;
use wasmcell_shim::workload::Opened;

// Small WASI modules with known behaviour: a line on stdout, exit code 7, an endless loop.
const HELLO: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "hello from a pod\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 17))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#;
const EXIT_7: &str = r#"(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start") (call $exit (i32.const 7))))"#;
const SPIN: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "_start") (loop $l (br $l))))"#;

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("wasmcell-pod-vmm-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("rootfs")).unwrap();
        Self(dir)
    }

    /// A workload plan for `wat`, its stdout going to the file `name.out`.
    fn workload(&self, compiler: &Compiler, name: &str, wat: &str) -> WorkloadPlan {
        let artifact = self.0.join(format!("{name}.cwasm"));
        std::fs::write(&artifact, compiler.compile(wat.as_bytes()).unwrap()).unwrap();
        let stdout = self.0.join(format!("{name}.out"));
        let stderr = self.0.join(format!("{name}.err"));
        std::fs::write(&stdout, "").unwrap();
        std::fs::write(&stderr, "").unwrap();
        WorkloadPlan {
            artifact,
            cpu_features: compiler.cpu_features(),
            args: vec![name.into()],
            env: vec![],
            memory_mib: 32,
            files: false,
            stdin: String::new(),
            stdout: stdout.to_string_lossy().into_owned(),
            stderr: stderr.to_string_lossy().into_owned(),
            resolv_conf: String::new(),
            hosts: String::new(),
            serve: None,
            listen: Vec::new(),
            volumes: Vec::new(),
        }
    }

    fn output(&self, name: &str) -> String {
        std::fs::read_to_string(self.0.join(format!("{name}.out"))).unwrap()
    }

    fn errors(&self, name: &str) -> String {
        std::fs::read_to_string(self.0.join(format!("{name}.err"))).unwrap()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Spawns the pod VMM for a pod plan (joining `netns`, if any; taking `oom_score_adj`) in
/// `dir`; its pid.
fn spawn_with(dir: &Path, netns: Option<PathBuf>, oom_score_adj: Option<i32>) -> (Arc<PodVm>, u32) {
    spawn_plan(dir, Plan { netns, oom_score_adj, ..pod_plan() })
}

/// A pod's plan as the shim writes it.
fn pod_plan() -> Plan {
    Plan {
        cgroup: None,
        limits: Default::default(),
        oom_score_adj: None,
        netns: None,
        jail: Some(JailPlan { uid: 65534, gid: 65534, groups: Vec::new() }),
        probe_seccomp: false,
        kind: PlanKind::Pod,
    }
}

/// Spawns the pod VMM for `body` in `dir`; its pid.
fn spawn_plan(dir: &Path, body: Plan) -> (Arc<PodVm>, u32) {
    let plan = dir.join("plan.json");
    body.write(&plan).unwrap();
    let pid = Arc::new(Mutex::new(0));
    let seen = pid.clone();
    let exe = Path::new(env!("CARGO_BIN_EXE_wasmcell-vmm"));
    let pod = PodVm::spawn(exe, &plan, dir, move |p| *seen.lock().unwrap() = p).unwrap();
    let pid = *pid.lock().unwrap();
    assert_eq!(pod.pid(), pid);
    (pod, pid)
}

fn spawn(dir: &Path) -> (Arc<PodVm>, u32) {
    spawn_with(dir, None, None)
}

/// Starts `plan` in `pod` as the shim does: its files opened here and sent as descriptors.
fn start(pod: &PodVm, id: &str, plan: WorkloadPlan, process: Arc<Process>) -> Result<(), String> {
    let opened = Opened::open(&plan, None)?;
    pod.start(id, plan, opened, process)
}

/// Waits (bounded) for child `pid` to exit; its exit status or terminating signal + 128.
fn reap(pid: u32) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut status = 0;
        // SAFETY: waitpid on our own child with a valid out pointer.
        let done = unsafe { libc::waitpid(pid as i32, &mut status, libc::WNOHANG) };
        if done == pid as i32 {
            return if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { 128 + libc::WTERMSIG(status) };
        }
        assert!(Instant::now() < deadline, "the pod's VMM did not exit");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_pod_vmm_runs_workloads_and_ends_with_its_pod() {
    assert!(Path::new("/dev/kvm").exists(), "/dev/kvm is missing: these tests boot real KVM microVMs");
    let scratch = Scratch::new("runs");
    let compiler = Compiler::for_host().unwrap();
    let (pod, pid) = spawn(&scratch.0);

    // Two workloads side by side, and a third stopped while it spins.
    let (hello, exit7, spin) =
        (Arc::new(Process::default()), Arc::new(Process::default()), Arc::new(Process::default()));
    start(&pod, "spin", scratch.workload(&compiler, "spin", SPIN), spin.clone()).unwrap();
    start(&pod, "hello", scratch.workload(&compiler, "hello", HELLO), hello.clone()).unwrap();
    start(&pod, "exit7", scratch.workload(&compiler, "exit7", EXIT_7), exit7.clone()).unwrap();
    assert_eq!((hello.wait(), exit7.wait()), (0, 7), "{} {}", scratch.errors("hello"), scratch.errors("exit7"));
    assert_eq!(scratch.output("hello"), "hello from a pod\n");
    assert!(!spin.has_exited(), "the spinning workload runs on");
    pod.kill("spin", libc::SIGTERM as u32).unwrap();
    assert_eq!(spin.wait(), 143);

    // A workload that cannot start is refused with its reason; the VM carries on.
    let mut bad = scratch.workload(&compiler, "bad", HELLO);
    bad.artifact = scratch.0.join("missing.cwasm");
    let err = start(&pod, "bad", bad, Arc::default()).unwrap_err();
    assert!(err.contains("missing.cwasm"), "{err}");
    let again = Arc::new(Process::default());
    start(&pod, "again", scratch.workload(&compiler, "again", HELLO), again.clone()).unwrap();
    assert_eq!(again.wait(), 0);

    // Stopping the pod stops what still runs in it, which exits as if SIGKILLed.
    let last = Arc::new(Process::default());
    start(&pod, "last", scratch.workload(&compiler, "last", SPIN), last.clone()).unwrap();
    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGTERM) }, 0);
    assert_eq!(last.wait(), 137);
    assert_eq!(reap(pid), 143);
    assert!(start(&pod, "late", scratch.workload(&compiler, "late", HELLO), Arc::default()).is_err());
}

#[test]
fn a_pod_vmm_ends_when_its_shim_goes_away() {
    let scratch = Scratch::new("gone");
    let compiler = Compiler::for_host().unwrap();
    let (pod, pid) = spawn(&scratch.0);
    let spin = Arc::new(Process::default());
    start(&pod, "spin", scratch.workload(&compiler, "spin", SPIN), spin.clone()).unwrap();
    // Dropping the client closes the shim's end of the channel, as the shim's death would.
    drop(pod);
    assert_eq!(spin.wait(), 137, "the workload of a VMM whose shim is gone counts as killed");
    assert_eq!(reap(pid), 137, "a VMM whose shim is gone stops its workloads and exits");
}

#[test]
fn a_pod_vm_that_cannot_come_up_fails_its_first_start_with_the_reason() {
    let scratch = Scratch::new("no-netns");
    let compiler = Compiler::for_host().unwrap();
    let (pod, pid) = spawn_with(&scratch.0, Some("/nonexistent/netns".into()), None);
    let err = start(&pod, "hello", scratch.workload(&compiler, "hello", HELLO), Arc::default()).unwrap_err();
    assert!(err.starts_with("the pod's VM did not start: cannot open network namespace /nonexistent/netns"), "{err}");
    assert_eq!(reap(pid), 1);
}

/// The fields of `/proc/PID/task/TID/status` a jail sets.
fn jail_fields(status: &str) -> Vec<(String, String)> {
    let wanted = ["Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp"];
    status
        .lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| wanted.contains(k))
        .map(|(k, v)| (k.to_string(), v.split_whitespace().collect::<Vec<_>>().join(" ")))
        .collect()
}

#[test]
fn a_pod_vmm_is_jailed_on_every_thread() {
    let scratch = Scratch::new("jailed");
    let compiler = Compiler::for_host().unwrap();
    let (pod, pid) = spawn_with(&scratch.0, None, Some(654));
    // A workload running, so that its vCPU thread and the exit reporter exist too.
    let spin = Arc::new(Process::default());
    start(&pod, "spin", scratch.workload(&compiler, "spin", SPIN), spin.clone()).unwrap();
    let proc = PathBuf::from(format!("/proc/{pid}"));

    let mut threads = 0;
    for task in std::fs::read_dir(proc.join("task")).unwrap() {
        let status = std::fs::read_to_string(task.unwrap().path().join("status")).unwrap();
        let zero = "0000000000000000".to_string();
        let expected: Vec<(String, String)> = [
            ("Uid", "65534 65534 65534 65534".to_string()),
            ("Gid", "65534 65534 65534 65534".to_string()),
            ("Groups", String::new()),
            ("CapInh", zero.clone()),
            ("CapPrm", zero.clone()),
            ("CapEff", zero.clone()),
            ("CapBnd", zero.clone()),
            ("CapAmb", zero),
            ("NoNewPrivs", "1".to_string()),
            ("Seccomp", "2".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        assert_eq!(jail_fields(&status), expected, "{status}");
        threads += 1;
    }
    assert!(threads >= 3, "the main thread, the signal watcher and the vCPU: {threads}");
    assert_eq!(std::fs::read(proc.join("environ")).unwrap(), b"", "an empty environment");
    assert_eq!(std::fs::read_to_string(proc.join("oom_score_adj")).unwrap().trim(), "654", "the spec's OOM score");
    // Its root is the jail's: empty.
    assert_eq!(std::fs::read_dir(proc.join("root")).unwrap().count(), 0, "the VMM's / is empty");
    // Its descriptors: the standard streams, the channel, KVM's, events and timers, the
    // workload's files it was handed (here in the scratch directory); no other file of the
    // host's but /dev/null, /dev/kvm and its own binary (read-only: the guest image's pages are
    // mapped from it), and nothing it inherited by accident.
    let exe = env!("CARGO_BIN_EXE_wasmcell-vmm");
    for fd in std::fs::read_dir(proc.join("fd")).unwrap() {
        let fd = fd.unwrap();
        // The standard streams are the shim's to give (stderr: its log, whatever that is).
        if ["0", "1", "2"].contains(&fd.file_name().to_string_lossy().as_ref()) {
            continue;
        }
        let target = std::fs::read_link(fd.path()).unwrap().to_string_lossy().into_owned();
        if target == exe {
            let info = std::fs::read_to_string(proc.join("fdinfo").join(fd.file_name())).unwrap();
            let flags = info.lines().find_map(|l| l.strip_prefix("flags:")).unwrap().trim();
            assert_eq!(u32::from_str_radix(flags, 8).unwrap() & 3, 0, "its binary is open read-only");
            continue;
        }
        let handed = scratch.0.to_string_lossy();
        let expected = ["/dev/null", "/dev/kvm", "anon_inode:", "socket:", "pipe:", &handed];
        assert!(expected.iter().any(|e| target.starts_with(e)), "unexpected descriptor: {target}");
    }
    pod.kill("spin", libc::SIGKILL as u32).unwrap();
    assert_eq!(spin.wait(), 137);
    drop(pod);
    assert_eq!(reap(pid), 137);
}

#[test]
fn a_jailed_vmm_thread_that_breaks_its_filter_ends_the_vmm_and_its_pod() {
    let scratch = Scratch::new("probe");
    let compiler = Compiler::for_host().unwrap();
    // The plan's test hook: once jailed, a vCPU-filtered thread of the VMM opens a socket.
    let (pod, pid) = spawn_plan(&scratch.0, Plan { probe_seccomp: true, ..pod_plan() });
    assert_eq!(reap(pid), 128 + libc::SIGSYS, "the status of a seccomp violation");
    let err = start(&pod, "late", scratch.workload(&compiler, "late", HELLO), Arc::default()).unwrap_err();
    assert!(err.contains("the pod's VMM exited"), "{err}");
}

/// Writes "written in a jail" to `out.txt` in the volume at descriptor 4 and to
/// `dev/termination-log` beneath descriptor 3 (the `/` the guest makes for a file volume when
/// there is no root filesystem), then exits 1; a failed open exits 100 + its errno.
const WRITE_VOLUMES: &str = r#"(module
  (import "wasi_snapshot_preview1" "path_open" (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "out.txt")
  (data (i32.const 200) "dev/termination-log")
  (data (i32.const 300) "written in a jail")
  (func $put (param $dir i32) (param $path i32) (param $len i32)
    (local $err i32)
    (local.set $err (call $open (local.get $dir) (i32.const 0) (local.get $path) (local.get $len)
      (i32.const 9) (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 400)))
    (if (local.get $err) (then (call $exit (i32.add (i32.const 100) (local.get $err)))))
    (i32.store (i32.const 404) (i32.const 300))
    (i32.store (i32.const 408) (i32.const 17))
    (drop (call $write (i32.load (i32.const 400)) (i32.const 404) (i32.const 1) (i32.const 412))))
  (func (export "_start")
    (call $put (i32.const 4) (i32.const 100) (i32.const 7))
    (call $put (i32.const 3) (i32.const 200) (i32.const 19))
    (call $exit (i32.const 1))))"#;

/// The jailed VMM (no host path left to open, its seccomp filter on) serves a workload's
/// volumes through the descriptors the shim sent: a directory and a single file. The directory
/// is writable only by its group, the pod's `fsGroup`, which the jail keeps as a supplementary
/// group.
#[test]
fn a_jailed_pod_vmm_serves_volumes_from_the_descriptors_it_was_sent() {
    use std::os::unix::fs::PermissionsExt;
    use wasmcell_shim::plan::{ServedKind, ServedVolume};
    const FS_GROUP: u32 = 4242;
    let scratch = Scratch::new("volumes");
    let compiler = Compiler::for_host().unwrap();
    let data = scratch.0.join("pvc");
    std::fs::create_dir(&data).unwrap();
    std::os::unix::fs::chown(&data, Some(0), Some(FS_GROUP)).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o770)).unwrap();
    let log = scratch.0.join("termination-log");
    std::fs::write(&log, "").unwrap();
    let jail = JailPlan { uid: 65534, gid: 65534, groups: vec![FS_GROUP] };
    let (pod, pid) = spawn_plan(&scratch.0, Plan { jail: Some(jail), ..pod_plan() });
    let mut plan = scratch.workload(&compiler, "writer", WRITE_VOLUMES);
    plan.volumes = vec![
        ServedVolume { source: data.clone(), destination: "/data".into(), kind: ServedKind::Dir },
        ServedVolume { source: log.clone(), destination: "/dev/termination-log".into(), kind: ServedKind::File },
    ];
    let writer = Arc::new(Process::default());
    start(&pod, "writer", plan, writer.clone()).unwrap();
    assert_eq!(writer.wait(), 1, "{}", scratch.errors("writer"));
    assert_eq!(std::fs::read_to_string(data.join("out.txt")).unwrap(), "written in a jail");
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "written in a jail");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let groups = jail_fields(&status).into_iter().find(|(k, _)| k == "Groups").map(|(_, v)| v);
    assert_eq!(groups.as_deref(), Some("4242"), "the jail keeps the pod's groups and no other");
    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGTERM) }, 0);
    assert_eq!(reap(pid), 143, "the VMM lived through it (no seccomp violation)");
}

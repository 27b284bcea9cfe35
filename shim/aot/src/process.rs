//! The parent's side of a compiler process ([`crate::child`]): spawn it, feed it the module,
//! stop it at the wall-clock deadline, and turn how it ended into a result. Only a cache miss
//! comes here; a hit never starts a process.
//!
//! The child is watched through a pidfd, not its pid: in the shim, containerd-shim's reaper
//! reaps every child as soon as it exits, so the pid may be reused by the time we would signal
//! or wait for it. For the same reason the verdict comes from the child's stderr, not from its
//! exit status.

use crate::child::{self, ARTIFACT_FD, COMPILE_ACTION, HEADER_TAG, RECORD};
use crate::limits::{describe_duration, describe_size, CompileLimits};
use crate::AotError;
use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use wasmcell_engine::Target;

/// How much of the child's stderr is kept: its record and what a crash printed before it.
const STDERR_KEPT: u64 = 64 << 10;

/// What is done with a compiler process right after it starts, before it gets the module (the
/// shim moves it into the tenant's cgroup); an error stops it.
pub type SpawnHook = std::sync::Arc<dyn Fn(u32) -> io::Result<()> + Send + Sync>;

/// How to start a compiler process.
#[derive(Clone)]
pub struct CompilerProcess {
    program: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    /// Whether the child jails itself (it can when we are root: the shim).
    jail: bool,
    on_spawn: Option<SpawnHook>,
}

impl std::fmt::Debug for CompilerProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompilerProcess")
            .field("program", &self.program)
            .field("args", &self.args)
            .field("jail", &self.jail)
            .field("on_spawn", &self.on_spawn.is_some())
            .finish()
    }
}

impl CompilerProcess {
    /// This executable with [`COMPILE_ACTION`]: its `main` must call
    /// [`crate::run_if_compile_action`] first.
    pub fn this_executable() -> io::Result<Self> {
        Ok(Self::binary(std::env::current_exe()?))
    }

    /// `program` with [`COMPILE_ACTION`]: a binary whose `main` calls
    /// [`crate::run_if_compile_action`] first (a test harness compiling through the binary it
    /// tests, say).
    pub fn binary(program: impl Into<PathBuf>) -> Self {
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        Self { program: program.into(), args: vec![COMPILE_ACTION.into()], env: Vec::new(), jail: root, on_spawn: None }
    }

    /// Calls `hook` with each compiler process's pid as it starts, before it reads the module;
    /// an error from the hook stops the process and fails the compile.
    pub fn on_spawn(mut self, hook: impl Fn(u32) -> io::Result<()> + Send + Sync + 'static) -> Self {
        self.on_spawn = Some(std::sync::Arc::new(hook));
        self
    }

    /// This test binary, re-run to execute only the test that becomes a compiler process
    /// (`process::tests::compiler_process`): unit tests have no binary with a `main` to call.
    #[cfg(test)]
    pub(crate) fn test_harness() -> Self {
        let args = ["process::tests::compiler_process", "--exact", "--nocapture", "--test-threads=1", "-q"];
        Self {
            program: std::env::current_exe().unwrap(),
            args: args.iter().map(OsString::from).collect(),
            env: vec![(tests::CHILD_VAR.into(), "1".into())],
            // A test harness has threads of its own: it cannot enter a jail.
            jail: false,
            on_spawn: None,
        }
    }
}

/// Compiles `module` for a `target` guest told `cpu_features` in a compiler process, within
/// `limits`; the artifact lands in `output`, an existing empty file in a private directory.
pub(crate) fn compile(
    process: &CompilerProcess,
    (target, cpu_features): (Target, u64),
    module: &[u8],
    output: &Path,
    limits: CompileLimits,
) -> Result<(), AotError> {
    // The artifact's file, opened here: the jailed child opens nothing.
    let artifact = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(output)
        .map_err(AotError::Process)?;
    let mut command = Command::new(&process.program);
    command
        .args(&process.args)
        .envs(process.env.iter().map(|(k, v)| (k, v)))
        // A panic's backtrace would map the binary's debug info, under the memory limit.
        .env("RUST_BACKTRACE", "0")
        // One malloc arena: a thread's own arena is a 64 MiB reservation made when the thread
        // starts, whose use `RLIMIT_AS` does not see; the main arena grows by `brk` and `mmap`,
        // which it does.
        .env("MALLOC_ARENA_MAX", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // A directory that exists: the jail mounts its root over the working directory.
    if let Some(dir) = output.parent() {
        command.current_dir(dir);
    }
    wasmcell_jail::jail::give_descriptor(&mut command, artifact.as_raw_fd(), ARTIFACT_FD);
    let mut child = command.spawn().map_err(AotError::Process)?;
    drop(artifact);
    // The child waits for its request on stdin, so it is alive (not reaped) here.
    let hooked = process.on_spawn.as_ref().map_or(Ok(()), |hook| hook(child.id()));
    let pidfd = match hooked.and_then(|()| PidFd::open(child.id())) {
        Ok(pidfd) => pidfd,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(AotError::Process(e));
        }
    };
    let (mut stdin, stderr) = (child.stdin.take().expect("piped"), child.stderr.take().expect("piped"));
    let cpu_seconds = limits.time.as_secs() + u64::from(limits.time.subsec_nanos() > 0);
    let (memory, jail, target) = (limits.memory, u8::from(process.jail), target.name());
    let header = format!("{HEADER_TAG} {cpu_features} {memory} {cpu_seconds} {jail} {target}\n");
    let (ended, text) = std::thread::scope(|scope| {
        scope.spawn(move || {
            // A child that dies early closes the pipe: EPIPE, nothing to do.
            let _ = stdin.write_all(header.as_bytes()).and_then(|()| stdin.write_all(module));
        });
        let reader = scope.spawn(move || read_bounded(stderr));
        let ended = pidfd.wait(Instant::now() + limits.time);
        if !ended {
            pidfd.kill();
            pidfd.wait(Instant::now() + Duration::from_secs(3600));
        }
        (ended, reader.join().unwrap_or_default())
    });
    pidfd.reap();
    if !ended {
        return Err(AotError::TimeLimit(describe_duration(limits.time)));
    }
    verdict(&text, limits)
}

/// What the child's stderr says about how it ended.
fn verdict(text: &str, limits: CompileLimits) -> Result<(), AotError> {
    let record = text.lines().rev().find_map(|line| line.strip_prefix(RECORD)).map(str::trim);
    match record {
        Some("ok") => Ok(()),
        Some("time") => Err(AotError::TimeLimit(describe_duration(limits.time))),
        Some("memory") => Err(AotError::MemoryLimit(describe_size(limits.memory))),
        Some(record) if record.starts_with("error ") => Err(AotError::Compile(child::unescape(&record[6..]).into())),
        // No record: the process died. Rust's allocator reports a failed allocation (the
        // address-space limit) this way before it aborts.
        _ if text.contains("memory allocation of") || text.contains("Cannot allocate memory") => {
            Err(AotError::MemoryLimit(describe_size(limits.memory)))
        }
        _ => {
            let last = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("it ended without a word");
            Err(AotError::ProcessFailed(last.chars().take(500).collect()))
        }
    }
}

/// The first [`STDERR_KEPT`] bytes of `pipe`, read to its end so the child never blocks on it.
fn read_bounded(pipe: impl Read) -> String {
    let mut pipe = pipe;
    let mut kept = Vec::new();
    let _ = pipe.by_ref().take(STDERR_KEPT).read_to_end(&mut kept);
    let _ = io::copy(&mut pipe, &mut io::sink());
    String::from_utf8_lossy(&kept).into_owned()
}

/// A process descriptor (`pidfd_open`): signals and waits reach this process and no other,
/// even after someone else reaped it.
struct PidFd(OwnedFd);

impl PidFd {
    fn open(pid: u32) -> io::Result<Self> {
        // SAFETY: `pidfd_open` takes a pid and flags and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by the kernel and nothing else owns it.
        Ok(Self(unsafe { OwnedFd::from_raw_fd(fd as i32) }))
    }

    /// Waits until the process has exited or `deadline` passed; whether it exited.
    fn wait(&self, deadline: Instant) -> bool {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let millis = i32::try_from(left.as_nanos().div_ceil(1_000_000)).unwrap_or(i32::MAX);
            let mut poll = libc::pollfd { fd: self.0.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            // SAFETY: one valid `pollfd` for the duration of the call.
            let ready = unsafe { libc::poll(&mut poll, 1, millis) };
            if ready > 0 {
                return true;
            }
            if ready == 0 && Instant::now() >= deadline {
                return false;
            }
            if ready < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                return false;
            }
        }
    }

    fn kill(&self) {
        // SAFETY: `pidfd_send_signal` on our descriptor; no pointers but the null siginfo.
        unsafe {
            libc::syscall(libc::SYS_pidfd_send_signal, self.0.as_raw_fd(), libc::SIGKILL, std::ptr::null::<u8>(), 0)
        };
    }

    /// Collects the exited process unless a reaper already did (`ECHILD` then).
    fn reap(&self) {
        // SAFETY: `info` is a valid out-parameter; `P_PIDFD` names exactly our process.
        unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            libc::waitid(libc::P_PIDFD, self.0.as_raw_fd() as libc::id_t, &mut info, libc::WEXITED | libc::WNOHANG);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::Compiler;

    /// Set in the environment of a test harness re-run as a compiler process.
    pub(crate) const CHILD_VAR: &str = "WASMCELL_AOT_TEST_COMPILER_PROCESS";

    /// Not a test: the compiler process's `main` when the harness is re-run as one; a no-op in
    /// a normal run.
    #[test]
    fn compiler_process() {
        if std::env::var_os(CHILD_VAR).is_some() {
            std::process::exit(crate::child::serve());
        }
    }

    fn output(name: &str) -> (PathBuf, std::fs::File) {
        let dir = std::env::temp_dir().join(format!("wasmcell-aot-process-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        crate::private_fs::private_dir(&dir).unwrap();
        let (path, file) = crate::private_fs::create_temp(&dir).unwrap();
        (path, file)
    }

    const LOOP: &str = r#"(module (func (export "_start") (loop br 0)))"#;

    #[test]
    fn a_module_compiled_in_a_process_matches_one_compiled_here() {
        let compiler = Compiler::for_host().unwrap();
        let (path, _file) = output("same");
        let limits = crate::Limits::default().compile;
        compile(&CompilerProcess::test_harness(), compiler.target_and_features(), LOOP.as_bytes(), &path, limits)
            .unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), compiler.compile(LOOP.as_bytes()).unwrap());
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn a_compile_past_its_time_is_stopped_and_says_so() {
        let (path, _file) = output("time");
        let limits = CompileLimits { time: Duration::from_millis(1), memory: 2 << 30 };
        let began = Instant::now();
        let err =
            compile(&CompilerProcess::test_harness(), (Target::NATIVE, 0), LOOP.as_bytes(), &path, limits).unwrap_err();
        assert_eq!(err.to_string(), "Compiling the module took longer than 1 ms");
        assert!(began.elapsed() < Duration::from_secs(5), "stopped at once: {:?}", began.elapsed());
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn a_compile_past_its_memory_is_stopped_and_says_so() {
        let (path, _file) = output("memory");
        // Less than the process needs to start: every allocation past what it has fails.
        let limits = CompileLimits { time: Duration::from_secs(60), memory: 1 << 20 };
        let err =
            compile(&CompilerProcess::test_harness(), (Target::NATIVE, 0), LOOP.as_bytes(), &path, limits).unwrap_err();
        assert_eq!(err.to_string(), "Compiling the module needed more than 1 MiB");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "no artifact");
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn compile_errors_come_back_whole() {
        let (path, _file) = output("error");
        let limits = crate::Limits::default().compile;
        let err = compile(
            &CompilerProcess::test_harness(),
            (Target::NATIVE, 0),
            b"(module (func (result i32)))",
            &path,
            limits,
        )
        .unwrap_err();
        assert!(matches!(err, AotError::Compile(_)), "{err:?}");
        let text = format!("{}: {}", err, std::error::Error::source(&err).unwrap());
        assert!(text.starts_with("Cannot compile the module: "), "{text}");
        assert!(text.contains("type mismatch"), "{text}");
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn records_decide_the_verdict() {
        let limits = CompileLimits { time: Duration::from_secs(60), memory: 2 << 30 };
        assert!(verdict("noise\nwasmcell-compile: ok\n", limits).is_ok());
        let time = verdict("\nwasmcell-compile: time\n", limits).unwrap_err();
        assert_eq!(time.to_string(), "Compiling the module took longer than 60 s");
        let oom = verdict("memory allocation of 4096 bytes failed\n", limits).unwrap_err();
        assert_eq!(oom.to_string(), "Compiling the module needed more than 2048 MiB");
        let crash = verdict("thread 'main' panicked at x.rs:1:1:\nboom\n", limits).unwrap_err();
        assert_eq!(crash.to_string(), "The compiler process failed: boom");
        assert!(std::str::from_utf8(child::TIME_RECORD).unwrap().contains(&format!("{RECORD} time")));
    }
}

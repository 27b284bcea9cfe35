//! Helpers shared by the `wasmcell` binary's integration tests: each test runs the real binary,
//! which boots a real microVM in its own process, so KVM resources go away with it even when a
//! test fails.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Fails the test (never skips it) when the machine cannot run VMs.
pub fn require_kvm() {
    assert!(
        std::path::Path::new("/dev/kvm").exists(),
        "/dev/kvm is missing: wasmcell's tests boot real KVM microVMs and cannot run on this machine"
    );
}

/// Runs `wasmcell` with `args` to completion. A run that outlives its watchdog is killed and
/// fails the test, so a hang cannot block CI.
pub fn wasmcell(args: &[&str]) -> Output {
    wasmcell_with_env(args, &[])
}

/// [`wasmcell`] with `env` added to its environment (the operator's limits, say).
pub fn wasmcell_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    require_kvm();
    let mut child = Command::new(env!("CARGO_BIN_EXE_wasmcell"))
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run wasmcell");
    let pipes = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let readers = (drain(pipes.0), drain(pipes.1));
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("wasmcell {args:?} hung");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Output { status, stdout: readers.0.join().unwrap(), stderr: readers.1.join().unwrap() }
}

fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

/// The tests' compilation cache: under cargo's per-target scratch directory, so nothing is left
/// in /tmp, and shared by the test processes (the cache is safe under concurrent runs).
pub fn cache_dir() -> String {
    std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("wasmcell-cache").to_string_lossy().into_owned()
}

/// `wasmcell run` with the private cache and `args`.
pub fn run(args: &[&str]) -> Output {
    let cache = cache_dir();
    let mut all = vec!["run", "--cache-dir", cache.as_str()];
    all.extend_from_slice(args);
    wasmcell(&all)
}

/// The run ended with `status`, printing exactly these.
pub fn assert_output(out: &Output, status: i32, expected_stdout: &str, expected_stderr: &str) {
    assert_eq!(out.status.code(), Some(status), "stderr: {}", stderr(out));
    assert_eq!(stdout(out), expected_stdout);
    assert_eq!(stderr(out), expected_stderr);
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The outcome line `wasmcell boot` prints on stderr.
pub fn outcome_line(output: &Output) -> String {
    stderr(output)
        .lines()
        .find(|l| l.starts_with("wasmcell: guest"))
        .unwrap_or_else(|| panic!("no outcome line in stderr: {}", stderr(output)))
        .to_string()
}

/// A `0x…` field of the outcome line, e.g. `field(line, "rip")`.
pub fn hex_field(line: &str, name: &str) -> u64 {
    let value = line
        .split(", ")
        .find_map(|part| part.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in {line}"));
    u64::from_str_radix(value.trim_start_matches("0x"), 16).unwrap()
}

/// Milliseconds of the run (VM create → stop) from the timing line.
pub fn run_millis(output: &Output) -> f64 {
    let err = stderr(output);
    let line = err.lines().find(|l| l.contains(", run ")).expect("timing line");
    let after = line.split(", run ").nth(1).unwrap();
    after.split(' ').next().unwrap().parse().unwrap()
}

/// The path of sample workload `name` as a WASI preview 1 core module (a Rust program in
/// `images/samples`, built for `wasm32-wasip1` once per test binary).
pub fn sample(name: &str) -> String {
    samples_dir().join(format!("wasm32-wasip1/release/{name}.wasm")).to_string_lossy().into_owned()
}

/// The path of sample workload `name` as a WASI 0.2 component (the same source, built for
/// `wasm32-wasip2`).
pub fn component(name: &str) -> String {
    samples_dir().join(format!("wasm32-wasip2/release/{name}.wasm")).to_string_lossy().into_owned()
}

/// Builds the samples for both targets (`images/build.sh`) once per test binary.
fn samples_dir() -> &'static std::path::Path {
    static BUILT: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let status = Command::new(root.join("images/build.sh"))
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .stdout(std::process::Stdio::null())
            .status()
            .expect("run images/build.sh to build the sample workloads");
        assert!(status.success(), "images/build.sh failed (ci/setup.sh installs the wasm32-wasip1/p2 targets)");
        root.join("target/images")
    })
}

/// A host directory tree for the file samples (`fs_read`, `fs_write`, `fs_escape`), removed on
/// drop: `ROOT/outside.txt` and `ROOT/data/` holding `hello.txt`, `sub/nested.txt`, a 1 MiB
/// `big.bin`, a symlink to `hello.txt` and two symlinks that lead out of `data`.
pub struct Fixture {
    pub root: std::path::PathBuf,
}

impl Fixture {
    pub fn create() -> Self {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let root = std::env::temp_dir().join(format!("wasmcell-test-files-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let data = root.join("data");
        std::fs::create_dir_all(data.join("sub")).unwrap();
        std::fs::write(root.join("outside.txt"), "secret\n").unwrap();
        std::fs::write(data.join("hello.txt"), "hello world\n").unwrap();
        std::fs::write(data.join("sub/nested.txt"), "nested\n").unwrap();
        std::fs::write(data.join("big.bin"), (0..1 << 20).map(|i: u32| (i % 251) as u8).collect::<Vec<u8>>()).unwrap();
        std::os::unix::fs::symlink("hello.txt", data.join("link_to_hello")).unwrap();
        std::os::unix::fs::symlink("../outside.txt", data.join("out_link")).unwrap();
        std::os::unix::fs::symlink(root.join("outside.txt"), data.join("abs_link")).unwrap();
        Self { root }
    }

    /// The host directory to preopen.
    pub fn data(&self) -> std::path::PathBuf {
        self.root.join("data")
    }

    /// `--dir` value mapping it to `/data` in the module.
    pub fn dir_arg(&self) -> String {
        format!("{}::/data", self.data().display())
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// `clients` clients at once, each sending `bytes` bytes (its own pattern) and reading them
/// all back.
pub fn echo_clients(port: u16, clients: usize, bytes: usize) {
    let threads: Vec<_> = (0..clients)
        .map(|client| {
            std::thread::spawn(move || {
                let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
                stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                let sent: Vec<u8> = (0..bytes).map(|i| (i * 7 + client) as u8).collect();
                let mut writer = stream.try_clone().unwrap();
                let data = sent.clone();
                let write = std::thread::spawn(move || {
                    for chunk in data.chunks(4096) {
                        writer.write_all(chunk).unwrap();
                    }
                    writer.shutdown(Shutdown::Write).unwrap();
                });
                let mut echoed = Vec::new();
                stream.read_to_end(&mut echoed).unwrap();
                write.join().unwrap();
                assert!(echoed == sent, "client {client}: {} bytes back of {}", echoed.len(), sent.len());
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
}

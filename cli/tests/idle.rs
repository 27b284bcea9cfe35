//! A workload that is blocked costs the host no CPU, whatever it did before, and never holds
//! up a stop: `wasmcell run` of real samples with a reader that keeps up, one that stalls, and
//! stdin at end of file (always readable) throughout.

mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `wasmcell run`, killed if the test fails before it ends (a flood left running
/// would burn a core for ever).
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl std::ops::Deref for Running {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

fn spawn(sample_name: &str, args: &[&str]) -> Running {
    require_kvm();
    let (module, cache) = (sample(sample_name), cache_dir());
    let child = Command::new(env!("CARGO_BIN_EXE_wasmcell"))
        .args(["run", "--cache-dir", &cache, &module, "--"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    Running(child)
}

/// The CPU time `pid` used (user + system), from /proc.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) start at the last ')'.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

/// The CPU `pid` uses over the next second (a large margin: blocked means about zero).
fn cpu_over_a_second(pid: u32) -> Duration {
    let before = cpu_time(pid);
    std::thread::sleep(Duration::from_secs(1));
    cpu_time(pid) - before
}

#[test]
fn a_workload_that_wrote_and_then_sleeps_costs_no_cpu() {
    let mut child = spawn("log_then_sleep", &["3000"]);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "sleeping 3000 ms\n");
    let spent = cpu_over_a_second(child.id());
    assert!(spent < Duration::from_millis(50), "{spent:?} of CPU in a second of sleep after output");
    line.clear();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "woke up\n");
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

#[test]
fn a_stalled_stdout_reader_costs_no_cpu_and_does_not_hold_up_a_stop() {
    let mut child = spawn("flood", &[]);
    // Nobody reads stdout: the pipe fills within moments and the workload blocks on it.
    std::thread::sleep(Duration::from_millis(500));
    let spent = cpu_over_a_second(child.id());
    assert!(spent < Duration::from_millis(50), "{spent:?} of CPU in a second while the reader is stalled");
    let signalled = Instant::now();
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(signalled.elapsed() < Duration::from_secs(10), "wasmcell did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(2));
    };
    assert!(signalled.elapsed() < Duration::from_secs(1), "the stop took {:?}", signalled.elapsed());
    assert_eq!(status.code(), Some(143));
}

#[test]
fn a_reader_that_keeps_up_gets_every_byte_in_order() {
    let mut child = spawn("flood", &["64"]);
    let mut stdout = child.stdout.take().unwrap();
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut stdout, &mut bytes).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert_eq!(bytes.len(), 64 << 20);
    assert!(bytes.chunks(2).all(|pair| pair == b"y\n"));
}

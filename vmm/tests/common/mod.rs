//! What the hostile-guest tests share: the attacker's guest image (`guest/kernel`'s test-only
//! `wasmcell-hostile`, built with the real guest by `vmm/build.rs`), workloads naming an attack,
//! and VMs running it, alone or as a pod.

#![allow(dead_code)]

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmcell_vmm::{GuestImage, MemorySize, Output, Vm, VmConfig, Workload};

/// The attacker's guest image: where `WASMCELL_HOSTILE_GUEST` says at run time (a test binary
/// copied to another machine, as the emulated-arm64 CI stage does), else where the build made it.
pub fn hostile_image() -> GuestImage {
    assert!(std::path::Path::new("/dev/kvm").exists(), "/dev/kvm is missing: these tests boot real KVM microVMs");
    if let Some(path) = std::env::var_os("WASMCELL_HOSTILE_GUEST") {
        return GuestImage::Path(path.into());
    }
    let path = env!("WASMCELL_HOSTILE_GUEST");
    assert!(
        !path.is_empty(),
        "the VMM was built with a prebuilt guest (WASMCELL_GUEST_ELF): no hostile guest to test with"
    );
    GuestImage::Path(path.into())
}

/// A workload running attack `args` (see `guest/kernel/src/bin/hostile/main.rs`) in `mib` MiB.
pub fn attack(args: &[&str], mib: u64, stdout: Output) -> Workload {
    Workload {
        // The hostile guest never loads it; the VMM only needs something to place.
        artifact: vec![0x90; 4096].into(),
        args: std::iter::once("hostile").chain(args.iter().copied()).map(String::from).collect(),
        memory: MemorySize::from_mib(mib).unwrap(),
        stdout,
        ..Default::default()
    }
}

/// A pod VM of the hostile guest, booted.
pub fn pod() -> Vm {
    let vm = Vm::try_from(VmConfig { guest_image: hostile_image(), ..Default::default() }).unwrap();
    vm.boot().unwrap();
    vm
}

/// An in-process stdout that the test reads back.
#[derive(Clone, Default)]
pub struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    pub fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).expect("UTF-8 output")
    }
}

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Waits (bounded) until `check` holds.
pub fn eventually(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `(user + system)` CPU time this process has used.
pub fn cpu_time() -> Duration {
    // SAFETY: a zeroed rusage is a valid out-parameter for getrusage.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) }, 0);
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// A line of /proc/self/status, in KiB.
pub fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Resets this process's peak RSS (`VmHWM`) to its current RSS.
pub fn reset_peak_rss() {
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
}

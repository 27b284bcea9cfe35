//! The VMM library in-process on real KVM: a run reports its outcome and timings, a handle
//! kills a running guest, and neither a run nor a refused config leaves a thread or an fd
//! behind. One test function, so that nothing else in this process changes the counts.

mod common;

use common::Capture;
use std::time::Duration;
use wasmcell_abi::SelfTest;
use wasmcell_vmm::{ConfigError, Error, GuestImage, LoadError, MemorySize, Outcome, Vm, VmConfig};

fn count(dir: &str) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

fn resources() -> (usize, usize) {
    (count("/proc/self/fd"), count("/proc/self/task"))
}

fn selftest(kind: u32, arg: u32) -> VmConfig {
    VmConfig { selftest: SelfTest { kind, arg }, memory: MemorySize::from_mib(16).unwrap(), ..Default::default() }
}

#[test]
fn in_process_lifecycle() {
    assert!(std::path::Path::new("/dev/kvm").exists(), "/dev/kvm is missing: these tests boot real KVM microVMs");
    // Warm up once so lazily created process-wide state (the CPUID cache, the kick handler)
    // does not count as a leak.
    Vm::try_from(selftest(SelfTest::NONE, 0)).unwrap().run().unwrap();
    let baseline = resources();

    // A normal run: outcome, log, timings in order.
    let log = Capture::default();
    let vm = Vm::try_from(VmConfig { log: Box::new(log.clone()), ..selftest(SelfTest::EXIT, 9) }).unwrap();
    let report = vm.run().unwrap();
    assert_eq!(report.outcome, Outcome::Exited(9));
    let boot = report.boot_time.expect("boot-done marker");
    assert!(boot <= report.run_time);
    let text = log.text();
    assert!(text.contains(": ready ("), "{text:?}");
    assert_eq!(resources(), baseline, "a finished run leaves no fd or thread");

    // A hanging guest stopped through its handle.
    let vm = Vm::try_from(selftest(SelfTest::HANG, 0)).unwrap();
    let handle = vm.handle();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        handle.kill();
    });
    assert_eq!(vm.run().unwrap().outcome, Outcome::Killed);
    killer.join().unwrap();
    assert_eq!(resources(), baseline, "a killed run leaves no fd or thread");

    // A timeout beats a guest blocked in WAIT.
    let vm = Vm::try_from(VmConfig { timeout: Some(Duration::from_millis(100)), ..selftest(SelfTest::WAIT, 60_000) })
        .unwrap();
    assert_eq!(vm.run().unwrap().outcome, Outcome::Timeout);

    // A VM built and never run releases everything too.
    drop(Vm::try_from(selftest(SelfTest::NONE, 0)).unwrap());
    assert_eq!(resources(), baseline, "an unrun VM leaves no fd or thread");

    // Refused configs fail before any KVM resource exists.
    let bad = [
        VmConfig { guest_image: GuestImage::Bytes(b"not an elf".repeat(10)), ..Default::default() },
        VmConfig { guest_image: GuestImage::Path("/nonexistent".into()), ..Default::default() },
        VmConfig { timeout: Some(Duration::ZERO), ..Default::default() },
    ];
    for config in bad {
        let err = Vm::try_from(config).err().expect("refused");
        assert!(
            matches!(
                err,
                Error::Image(LoadError::NotElf)
                    | Error::Config(ConfigError::ReadGuestImage { .. } | ConfigError::ZeroTimeout)
            ),
            "{err:?}"
        );
        assert_eq!(resources(), baseline, "a refused config leaves no fd or thread");
    }
}

//! A guest that floods its console's control queue with DEVICE_READY and never posts a buffer
//! for the answers must not grow the VMM's memory. Alone in its test binary, so that nothing
//! else moves this process's peak RSS while it is measured.
// The attacker's image is x86-64 code so far (built only there: vmm/build.rs).
#![cfg(target_arch = "x86_64")]

mod common;

use common::{attack, pod, reset_peak_rss, status_kib};
use wasmcell_vmm::{Outcome, Output};

#[test]
fn a_device_ready_flood_leaves_the_vmm_bounded() {
    let vm = pod();
    // Warm up what a first workload allocates once (the vCPU, its thread's stack).
    let warm = vm.start(attack(&["device-ready", "10"], 16, Output::null())).unwrap();
    assert_eq!(warm.join().unwrap().outcome, Outcome::Exited(0));
    reset_peak_rss();
    let before = status_kib("VmHWM:");
    // Two million requests, each of which an unbounded device would answer with two messages.
    let run = vm.start(attack(&["device-ready", "0x200000"], 16, Output::null())).unwrap();
    assert_eq!(run.join().unwrap().outcome, Outcome::Exited(0));
    let grown_kib = status_kib("VmHWM:").saturating_sub(before);
    assert!(grown_kib < 8 * 1024, "the VMM's peak RSS grew by {grown_kib} KiB during the flood");
}

//! A guest that floods its console's control queue with DEVICE_READY and never posts a buffer
//! for the answers must not grow the VMM's memory. Alone in its test binary, so that nothing
//! else moves this process's peak RSS while it is measured.
mod common;

use common::{attack, pod, reset_peak_rss, status_kib};
use wasmcell_vmm::{Outcome, Output};

#[test]
fn a_device_ready_flood_leaves_the_vmm_bounded() {
    let vm = pod();
    // Warm up what a first workload allocates once (the vCPU, its thread's stack).
    let warm = vm.start(attack(&["device-ready", "10"], 16, Output::null())).unwrap();
    assert_eq!(warm.join().unwrap().outcome, Outcome::Exited(0));
    // The guest's own pages count in this process's RSS too (its RAM is this process's memory),
    // in 2 MiB steps where KVM maps transparent huge pages (arm64): the growth of the same
    // workload sending ten requests is the baseline the flood is measured against.
    let peak_growth_kib = |requests: &str| {
        reset_peak_rss();
        let before = status_kib("VmHWM:");
        let run = vm.start(attack(&["device-ready", requests], 16, Output::null())).unwrap();
        assert_eq!(run.join().unwrap().outcome, Outcome::Exited(0));
        status_kib("VmHWM:").saturating_sub(before)
    };
    let baseline_kib = peak_growth_kib("10");
    // Two million requests, each of which an unbounded device would answer with two messages.
    let flood_kib = peak_growth_kib("0x200000");
    let grown_kib = flood_kib.saturating_sub(baseline_kib);
    assert!(grown_kib < 8 * 1024, "the flood grew the VMM's peak RSS by {grown_kib} KiB more than ten requests did");
}

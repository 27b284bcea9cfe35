//! `wasmcell boot` on real KVM: the guest boots, logs, and ends in every way a guest can end.

mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use wasmcell_abi::memory_map::{vcpu_area, GDT, IMAGE_LIMIT, IMAGE_START, VCPU_STACK_GUARD};

fn assert_rip_in_image(line: &str) {
    let rip = hex_field(line, "rip");
    assert!((IMAGE_START..IMAGE_LIMIT).contains(&rip), "rip {rip:#x} outside the guest image: {line}");
}

#[test]
fn guest_boots_logs_and_exits_zero() {
    let out = wasmcell(&["boot"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let log = stdout(&out);
    assert!(log.starts_with("wasmcell guest ") && log.contains(": ready ("), "guest log: {log:?}");
    // The boot info reached the guest: all RAM above the image is heap.
    let heap_kib: u64 = log.split(": ready (").nth(1).and_then(|r| r.split(' ').next()).unwrap().parse().unwrap();
    assert!((120 * 1024..128 * 1024).contains(&heap_kib), "{log:?}");
    assert!(log.contains(" KiB heap, 128 MiB RAM)"), "{log:?}");
    assert_eq!(outcome_line(&out), "wasmcell: guest exited with code 0");
    let err = stderr(&out);
    assert!(err.contains("wasmcell: boot ") && !err.contains("boot - "), "boot-done marker recorded: {err}");
}

#[test]
fn memory_size_reaches_the_guest() {
    let out = wasmcell(&["boot", "--memory", "8"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains(", 8 MiB RAM)"), "{}", stdout(&out));
}

#[test]
fn quiet_guest_logs_nothing() {
    let out = wasmcell(&["boot", "--quiet"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stdout(&out), "");
}

#[test]
fn requested_exit_codes_come_back() {
    for code in [0, 3, 42, 255] {
        let out = wasmcell(&["boot", "--quiet", "--selftest", "exit", "--selftest-arg", &code.to_string()]);
        assert_eq!(out.status.code(), Some(code), "{}", stderr(&out));
        assert_eq!(outcome_line(&out), format!("wasmcell: guest exited with code {code}"));
    }
}

#[test]
fn guest_panic_is_reported_with_its_message() {
    let out = wasmcell(&["boot", "--selftest", "panic", "--selftest-arg", "7"]);
    assert_eq!(out.status.code(), Some(70));
    let line = outcome_line(&out);
    assert!(line.starts_with("wasmcell: guest panicked: selftest panic (arg 7) at src/selftest.rs:"), "{line}");
}

#[test]
fn unmapped_read_is_a_page_fault() {
    let out = wasmcell(&["boot", "--selftest", "read-unmapped"]);
    assert_eq!(out.status.code(), Some(70));
    let line = outcome_line(&out);
    assert!(line.contains("vector 14 (#PF page fault)"), "{line}");
    assert_eq!(hex_field(&line, "cr2"), 8);
    // User-mode read of a not-present page.
    assert_eq!(hex_field(&line, "error code"), 0x4);
    assert_rip_in_image(&line);
}

#[test]
fn ud2_is_an_invalid_opcode_fault() {
    let out = wasmcell(&["boot", "--selftest", "ud2"]);
    assert_eq!(out.status.code(), Some(70));
    let line = outcome_line(&out);
    assert!(line.contains("vector 6 (#UD invalid opcode)"), "{line}");
    assert_rip_in_image(&line);
}

#[test]
fn guest_code_is_not_writable() {
    let out = wasmcell(&["boot", "--selftest", "write-code"]);
    let line = outcome_line(&out);
    assert!(line.contains("vector 14"), "{line}");
    // Present page, write, user mode: a protection fault, not a missing page.
    assert_eq!(hex_field(&line, "error code"), 0x7);
    assert_eq!(hex_field(&line, "cr2"), IMAGE_START);
}

#[test]
fn system_tables_are_supervisor_only() {
    let out = wasmcell(&["boot", "--selftest", "write-system"]);
    let line = outcome_line(&out);
    assert!(line.contains("vector 14"), "{line}");
    assert_eq!(hex_field(&line, "error code"), 0x7);
    assert_eq!(hex_field(&line, "cr2"), GDT);
}

#[test]
fn stack_overflow_hits_the_guard_page() {
    let out = wasmcell(&["boot", "--selftest", "stack-overflow"]);
    let line = outcome_line(&out);
    assert!(line.contains("vector 14"), "{line}");
    let cr2 = hex_field(&line, "cr2");
    // The boot vCPU is vCPU 0; its stack's guard page is in its area.
    let guard = vcpu_area(0) + VCPU_STACK_GUARD;
    assert!((guard..guard + 4096).contains(&cr2), "fault at {cr2:#x}, not in the guard page");
}

#[test]
fn endless_loop_is_stopped_by_the_timeout() {
    let out = wasmcell(&["boot", "--quiet", "--selftest", "hang", "--timeout", "300ms"]);
    assert_eq!(out.status.code(), Some(124), "{}", stderr(&out));
    assert_eq!(outcome_line(&out), "wasmcell: guest timed out");
    assert!(run_millis(&out) >= 300.0, "stopped before its timeout: {}", stderr(&out));
}

#[test]
fn wait_sleeps_in_the_vmm_then_resumes() {
    let out = wasmcell(&["boot", "--selftest", "wait", "--selftest-arg", "100"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("waited 100 ms"));
    assert!(run_millis(&out) >= 100.0, "the wait returned early: {}", stderr(&out));
}

#[test]
fn timeout_interrupts_a_wait() {
    let out = wasmcell(&["boot", "--quiet", "--selftest", "wait", "--selftest-arg", "60000", "--timeout", "200ms"]);
    assert_eq!(out.status.code(), Some(124), "{}", stderr(&out));
}

#[test]
fn heap_survives_a_pattern_of_allocations() {
    let out = wasmcell(&["boot", "--selftest", "heap", "--selftest-arg", "3000"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("heap pattern of 3000 boxes ok"));
}

#[test]
fn guest_refuses_a_boot_info_of_another_abi_version() {
    let out = wasmcell(&["boot", "--selftest", "abi-mismatch"]);
    assert_eq!(out.status.code(), Some(70));
    assert_eq!(
        outcome_line(&out),
        "wasmcell: guest exited with code 256 (guest and VMM disagree on the boot ABI version)"
    );
    assert_eq!(stdout(&out), "", "the guest must stop before doing anything");
}

/// Starts `wasmcell boot ARGS` (with a log), waits for a line of the guest's log holding
/// `line`, sends SIGTERM, and returns the exit status, stderr and the time from the signal to
/// the exit.
fn terminate_after(args: &[&str], line: &str) -> (Option<i32>, String, Duration) {
    require_kvm();
    let mut child = Command::new(env!("CARGO_BIN_EXE_wasmcell"))
        .arg("boot")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Once the line is out the guest is where the test wants it (and the signal forwarding is
    // in place).
    let mut log = BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    while !seen.contains(line) {
        seen.clear();
        assert!(log.read_line(&mut seen).unwrap() > 0, "the guest never logged {line:?}");
    }
    let signalled = Instant::now();
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("wasmcell did not stop on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let took = signalled.elapsed();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    (status.code(), err, took)
}

#[test]
fn sigterm_stops_a_running_guest() {
    let (code, err, _) = terminate_after(&["--selftest", "hang"], "ready");
    assert_eq!(code, Some(143));
    assert!(err.contains("wasmcell: guest killed"), "{err}");
}

#[test]
fn a_stop_does_not_wait_for_a_lock_the_guest_holds() {
    // No vCPU shares a lock with another (each address space has its own copy of the kernel's
    // data), so the VMM never asks the guest whether it holds one: stopped while it holds one
    // for a minute, the guest is stopped at once.
    let (code, err, took) = terminate_after(&["--selftest", "hold-lock", "--selftest-arg", "60000"], "holding");
    assert_eq!(code, Some(143), "{err}");
    assert!(err.contains("wasmcell: guest killed"), "{err}");
    assert!(took < Duration::from_secs(1), "stopped after {took:?}");
}

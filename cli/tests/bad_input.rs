//! Bad input to `wasmcell boot`: one clear line on stderr, a non-zero status, no VM.

mod common;

use common::*;
use std::process::Output;

fn assert_one_line_error(out: &Output, status: i32, needle: &str) {
    assert_eq!(out.status.code(), Some(status), "{}", stderr(out));
    let err = stderr(out);
    assert_eq!(err.lines().count(), 1, "expected one line, got: {err:?}");
    assert!(err.starts_with("wasmcell: error: "), "{err:?}");
    assert!(err.contains(needle), "{err:?} does not mention {needle:?}");
    assert_eq!(stdout(out), "", "no guest ran");
}

#[test]
fn missing_guest_image() {
    let out = wasmcell(&["boot", "--guest", "/nonexistent/guest.elf"]);
    assert_one_line_error(&out, 1, "Cannot read guest image /nonexistent/guest.elf: No such file or directory");
}

#[test]
fn corrupt_guest_image() {
    let dir = std::env::temp_dir().join(format!("wasmcell-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let garbage = dir.join("garbage.elf");
    std::fs::write(&garbage, (0..8192u32).map(|i| (i * 7919 % 251) as u8).collect::<Vec<_>>()).unwrap();
    let out = wasmcell(&["boot", "--guest", garbage.to_str().unwrap()]);
    assert_one_line_error(&out, 1, "Invalid guest image: Guest image is not an ELF executable");

    let empty = dir.join("empty.elf");
    std::fs::write(&empty, b"").unwrap();
    let out = wasmcell(&["boot", "--guest", empty.to_str().unwrap()]);
    assert_one_line_error(&out, 1, "Invalid guest image: Guest image is truncated");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_elf_that_is_not_a_wasmcell_guest() {
    // The host binary is a valid x86-64 ELF, but a PIE linked nowhere near the guest's window.
    let out = wasmcell(&["boot", "--guest", env!("CARGO_BIN_EXE_wasmcell")]);
    assert_one_line_error(&out, 1, "Invalid guest image");
}

#[test]
fn memory_too_small_or_absurd() {
    for memory in ["1", "7", "99999999", "18446744073709551615"] {
        let out = wasmcell(&["boot", "--memory", memory]);
        assert_one_line_error(&out, 2, &format!("Memory size {memory} MiB is outside 8..=3072 MiB"));
    }
    let out = wasmcell(&["boot", "--memory", "lots"]);
    assert_one_line_error(&out, 2, "'lots' is not a number of MiB");
}

#[test]
fn unknown_flag_and_bad_values() {
    let out = wasmcell(&["boot", "--frobnicate"]);
    assert_one_line_error(&out, 2, "unexpected argument '--frobnicate'");
    let out = wasmcell(&["boot", "--timeout", "0s"]);
    assert_one_line_error(&out, 2, "must be a positive duration");
    let out = wasmcell(&["boot", "--selftest", "explode"]);
    assert_one_line_error(&out, 2, "invalid value 'explode'");
}

//! `wasmcell run` on real KVM with real modules: exit statuses, arguments and environment,
//! traps, timeouts, memory limits, and modules that cannot start.

mod common;

use common::*;
use std::path::PathBuf;

fn module(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/modules").join(name).to_string_lossy().into_owned()
}

#[test]
fn start_returning_is_status_zero() {
    let out = run(&[&module("return.wat")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "");
    assert_eq!(stderr(&out), "");
}

#[test]
fn proc_exit_codes_and_arguments_reach_the_host() {
    for code in ["0", "3", "42", "255"] {
        let out = run(&[&module("exit_with_arg.wat"), "--", code]);
        assert_eq!(out.status.code(), Some(code.parse().unwrap()), "{}", stderr(&out));
    }
    // Only the low 8 bits of a status survive, as for a native process.
    let out = run(&[&module("exit_with_arg.wat"), "--", "300"]);
    assert_eq!(out.status.code(), Some(300 & 0xff));
}

#[test]
fn environment_reaches_the_module() {
    let out = run(&["--env", "A=1", "--env", "EXIT=7", "--env", "B=", &module("exit_with_env.wat")]);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    let out = run(&[&module("exit_with_env.wat")]);
    assert_eq!(out.status.code(), Some(99), "no EXIT variable unless given");
}

#[test]
fn traps_exit_134_with_the_trap_and_a_wasm_backtrace() {
    for (file, what) in [
        ("unreachable.wat", "wasm `unreachable` instruction executed"),
        ("divide_by_zero.wat", "integer divide by zero"),
        ("out_of_bounds.wat", "out of bounds memory access"),
        ("stack_overflow.wat", "call stack exhausted"),
    ] {
        let out = run(&[&module(file)]);
        assert_eq!(out.status.code(), Some(134), "{file}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.starts_with("Error: "), "{file}: {err}");
        assert!(err.contains(what), "{file}: {err}");
        assert!(err.contains("wasm backtrace"), "{file}: {err}");
    }
}

#[test]
fn the_unreachable_backtrace_names_the_functions() {
    let err = stderr(&run(&[&module("unreachable.wat")]));
    assert!(err.contains("!inner"), "{err}");
}

#[test]
fn timeout_stops_an_endless_module_with_124() {
    let out = run(&["--timeout", "300ms", &module("hang.wat")]);
    assert_eq!(out.status.code(), Some(124), "{}", stderr(&out));
    assert!(stderr(&out).contains("did not finish within the timeout"), "{}", stderr(&out));
}

#[test]
fn memory_grow_past_the_vm_budget_returns_minus_one() {
    // The budget is the VM's RAM less the guest image and runtime: most of it, never more.
    for (memory, least) in [(64, 40), (128, 100)] {
        let out = run(&["--memory", &memory.to_string(), &module("grow_memory.wat")]);
        let granted = out.status.code().unwrap_or_else(|| panic!("killed: {}", stderr(&out)));
        assert!((least..memory).contains(&granted), "--memory {memory}: {granted} MiB of linear memory");
    }
}

#[test]
fn precompiled_modules_run_only_when_allowed() {
    let dir = std::env::temp_dir().join(format!("wasmcell-test-cwasm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cwasm = dir.join("exit.cwasm").to_string_lossy().into_owned();
    let out = wasmcell(&["compile", &module("exit_with_arg.wat"), "-o", &cwasm]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // Native code is not run unless asked for, as `wasmtime run` does.
    let out = run(&[&cwasm, "--", "5"]);
    assert_one_line_error(&out, "is a precompiled artifact (native code): run it with --allow-precompiled");
    let out = run(&["--allow-precompiled", &cwasm, "--", "5"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    // A component compiles and runs the same way.
    let component_cwasm = dir.join("args.cwasm").to_string_lossy().into_owned();
    let out = wasmcell(&["compile", &component("args"), "-o", &component_cwasm]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = run(&[&component_cwasm]);
    assert_one_line_error(&out, "is a precompiled artifact (native code): run it with --allow-precompiled");
    let out = run(&["--allow-precompiled", &component_cwasm, "--", "x"]);
    assert_eq!(stdout(&out), format!("0: {component_cwasm}\n1: x\n"), "{}", stderr(&out));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `compile --target` makes an artifact for another architecture's nodes (CI precompiles for
/// arm64 this way), which this machine refuses to run, naming both; an unknown architecture is a
/// usage error.
#[test]
fn artifacts_compiled_for_another_architecture_run_only_there() {
    let (other, machine) = if cfg!(target_arch = "x86_64") { ("aarch64", 183) } else { ("x86_64", 62) };
    let cwasm = std::env::temp_dir().join(format!("wasmcell-test-cross-{}.cwasm", std::process::id()));
    let cwasm = cwasm.to_string_lossy().into_owned();
    let out = wasmcell(&["compile", "--target", other, &module("exit_with_arg.wat"), "-o", &cwasm]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let bytes = std::fs::read(&cwasm).unwrap();
    assert_eq!(u16::from_le_bytes([bytes[18], bytes[19]]), machine, "an ELF for {other}");
    let out = run(&["--allow-precompiled", &cwasm, "--", "5"]);
    assert_one_line_error(&out, &format!("was compiled for {other}, not for this {} machine", std::env::consts::ARCH));
    std::fs::remove_file(&cwasm).unwrap();
    let out = wasmcell(&["compile", "--target", "sparc", &module("hello.wat"), "-o", "/dev/null"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("unknown architecture \"sparc\""), "{}", stderr(&out));
}

#[test]
fn compiling_past_the_operators_limits_fails_clearly() {
    // A fresh cache: a hit would not compile at all.
    let cache = std::env::temp_dir().join(format!("wasmcell-test-limits-{}", std::process::id()));
    let cache = cache.to_string_lossy().into_owned();
    let hello = module("hello.wat");
    let args = ["run", "--cache-dir", cache.as_str(), hello.as_str()];
    let out = wasmcell_with_env(&args, &[("WASMCELL_COMPILE_TIMEOUT", "1ms")]);
    assert_one_line_error(&out, "Compiling the module took longer than 1 ms");
    let out = wasmcell_with_env(&args, &[("WASMCELL_COMPILE_MEMORY", "1MiB")]);
    assert_one_line_error(&out, "Compiling the module needed more than 1 MiB");
    let out = wasmcell_with_env(&args, &[("WASMCELL_COMPILE_TIMEOUT", "soon")]);
    assert_one_line_error(&out, "Invalid WASMCELL_COMPILE_TIMEOUT=\"soon\"");
    let out =
        wasmcell_with_env(&["compile", hello.as_str(), "-o", "/dev/null"], &[("WASMCELL_COMPILE_TIMEOUT", "1ms")]);
    assert_one_line_error(&out, "Compiling the module took longer than 1 ms");
    // Within the limits it runs, and nothing but the entry is left in the cache.
    let out = wasmcell(&args);
    assert_eq!(stdout(&out), "hello from wasmcell\n", "{}", stderr(&out));
    let left: Vec<_> = std::fs::read_dir(&cache).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left.iter().filter(|n| n.to_string_lossy().ends_with(".cwasm")).count(), 1, "{left:?}");
    assert!(left.iter().all(|n| !n.to_string_lossy().starts_with(".tmp")), "{left:?}");
    std::fs::remove_dir_all(&cache).unwrap();
}

fn assert_one_line_error(out: &std::process::Output, needle: &str) {
    assert_eq!(out.status.code(), Some(1), "{}", stderr(out));
    let err = stderr(out);
    assert_eq!(err.lines().count(), 1, "one line: {err:?}");
    assert!(err.starts_with("wasmcell: error: ") && err.contains(needle), "{err:?} lacks {needle:?}");
}

#[test]
fn modules_that_cannot_start_say_why() {
    assert_one_line_error(&run(&[&module("unknown_import.wat")]), "env::launch_missiles");
    assert_one_line_error(&run(&[&module("no_start.wat")]), "no `_start` function");
    assert_one_line_error(&run(&["--memory", "64", &module("big_memory.wat")]), "memory");
}

/// Components the guest cannot run fail before any VM exists, naming why; a component whose
/// interface is offered but which asks it for a function WASI 0.2 does not have fails in the
/// guest, naming the function.
#[test]
fn components_that_cannot_start_say_why() {
    assert_one_line_error(
        &run(&[&module("unknown_import_component.wat")]),
        "Unknown import `wasi:keyvalue/store@0.2.0`: the guest offers only the interfaces of WASI 0.2's command and proxy worlds",
    );
    assert_one_line_error(
        &run(&[&module("not_a_command.wat")]),
        "The component is not a command: it exports no `wasi:cli/run`",
    );
    assert_one_line_error(&run(&[&module("unknown_function_component.wat")]), "`get-launch-codes`");
    // Running out of memory inside the guest's own code (here: 60 MiB of random bytes asked for
    // in a 48 MiB workload, allocated before they are copied out) ends the workload as a host
    // process that cannot allocate ends: status 134, and says so — not a kernel panic.
    let out = run(&["--memory", "48", &module("huge_random_component.wat")]);
    assert_eq!(out.status.code(), Some(134), "{}", stderr(&out));
    assert!(
        stderr(&out).starts_with("Error: out of memory: an allocation of 62914560 bytes failed"),
        "{}",
        stderr(&out)
    );
    // A command that ends through `wasi:cli/exit` with an error: status 1, as in wasmtime, and
    // nothing else said.
    let out = run(&[&module("exit_component.wat")]);
    assert_eq!((out.status.code(), stderr(&out).as_str(), stdout(&out).as_str()), (Some(1), "", ""));
}

#[test]
fn bad_modules_fail_before_any_vm() {
    assert_one_line_error(&run(&["/nonexistent/app.wasm"]), "Cannot read module /nonexistent/app.wasm");
    assert_one_line_error(
        &run(&[&module("syntax_error.wat")]),
        "Cannot compile the module: unknown operator or unexpected token (at 1:34)",
    );
    let dir = std::env::temp_dir().join(format!("wasmcell-test-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let not_wasm = dir.join("not.wasm");
    std::fs::write(&not_wasm, b"#!/bin/sh\necho hello\n").unwrap();
    assert_one_line_error(&run(&[not_wasm.to_str().unwrap()]), "Cannot compile the module");
    let truncated = dir.join("truncated.wasm");
    std::fs::write(&truncated, b"\0asm\x01\0\0\0\x01\x05").unwrap();
    assert_one_line_error(&run(&[truncated.to_str().unwrap()]), "Cannot compile the module");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_preopens_fail_before_any_vm() {
    let hello = module("hello.wat");
    assert_one_line_error(
        &run(&["--dir", "/nonexistent/dir::/data", &hello]),
        "Cannot read /nonexistent/dir: No such file or directory",
    );
    let file = format!("{}/tests/modules/hello.wat", env!("CARGO_MANIFEST_DIR"));
    assert_one_line_error(&run(&["--dir", &file, &hello]), "hello.wat is not a directory");
    let out = run(&["--dir", "::/data", &hello]);
    assert_eq!(out.status.code(), Some(2), "a usage error: {}", stderr(&out));
    assert!(stderr(&out).contains("'::/data' is not HOST[::GUEST]"), "{}", stderr(&out));
}

#[test]
fn stdout_and_stderr_are_separate_streams() {
    let out = run(&[&module("hello.wat")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "hello from wasmcell\n");
    assert_eq!(stderr(&out), "to stderr\n");
}

/// Runs `wasmcell run` with `input` on its stdin.
fn run_with_stdin(args: &[&str], input: &[u8]) -> std::process::Output {
    use std::io::Write;
    use std::process::{Command, Stdio};
    require_kvm();
    let mut child = Command::new(env!("CARGO_BIN_EXE_wasmcell"))
        .arg("run")
        .arg("--cache-dir")
        .arg(cache_dir())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

#[test]
fn stdin_reaches_the_module_until_end_of_file() {
    let out = run_with_stdin(&[&module("echo.wat")], b"line one\nline two\n");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "line one\nline two\n");
    // Empty stdin is an immediate end of file.
    let out = run_with_stdin(&[&module("echo.wat")], b"");
    assert_eq!((out.status.code(), stdout(&out).as_str()), (Some(0), ""));
}

#[test]
fn large_stdin_passes_through_intact() {
    let input: Vec<u8> = (0..1_000_000u32).map(|i| (i * 31 % 251) as u8).collect();
    let out = run_with_stdin(&[&module("echo.wat")], &input);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(out.stdout == input, "stdout differs from stdin ({} vs {} bytes)", out.stdout.len(), input.len());
}

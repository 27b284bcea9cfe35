//! Real Rust programs (images/samples, built for wasm32-wasip1) under `wasmcell run` on real
//! KVM: the outputs and statuses they are known to produce.

mod common;

use common::*;

#[test]
fn hello() {
    assert_output(&run(&[&sample("hello")]), 0, "Hello, world!\n", "");
}

#[test]
fn args_arrive_in_order_with_argv0_the_module_path() {
    let module = sample("args");
    let out = run(&[&module, "--", "one", "two words", "", "ünïcode"]);
    let expected = format!("0: {module}\n1: one\n2: two words\n3: \n4: ünïcode\n");
    assert_output(&out, 0, &expected, "");
}

#[test]
fn environment_is_exactly_what_was_given() {
    let out = run(&["--env", "B=2", "--env", "A=1", "--env", "EMPTY=", &sample("env")]);
    assert_output(&out, 0, "A=1\nB=2\nEMPTY=\n", "");
    assert_output(&run(&[&sample("env")]), 0, "", "");
}

#[test]
fn exit_codes() {
    for code in [0, 3, 42, 255] {
        let out = run(&[&sample("exit_code"), "--", &code.to_string()]);
        assert_output(&out, code, &format!("exiting with {code}\n"), "bye\n");
    }
}

#[test]
fn stdout_and_stderr_each_arrive_complete_and_in_order() {
    let out = run(&[&sample("stderr")]);
    assert_output(&out, 0, "out 0\nout 1\nout 2\nout 3\nout 4\n", "err 0\nerr 1\nerr 2\nerr 3\nerr 4\n");
}

#[test]
fn clocks_are_monotonic_and_the_wall_clock_is_real() {
    let out = run(&[&sample("clocks")]);
    assert_output(&out, 0, "monotonic clock never went back in 100000 readings\nwall clock is after 2024\n", "");
}

#[test]
fn random_bytes_come_from_the_guest_csprng() {
    assert_output(&run(&[&sample("random")]), 0, "random bytes look random\n", "");
}

#[test]
fn stdin_lines_are_echoed() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    require_kvm();
    let mut child = Command::new(env!("CARGO_BIN_EXE_wasmcell"))
        .args(["run", &sample("stdin_echo")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"alpha\nbeta\ngamma\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_output(&out, 0, "alpha\nbeta\ngamma\n", "3 lines\n");
}

#[test]
fn sleep_waits_in_the_vmm_for_at_least_the_time_asked() {
    assert_output(&run(&[&sample("sleep"), "--", "150"]), 0, "slept at least 150 ms\n", "");
    assert_output(&run(&[&sample("sleep"), "--", "0"]), 0, "slept at least 0 ms\n", "");
}

#[test]
fn float_heavy_nbody_computes_the_reference_energies() {
    // The Benchmarks Game's published output for 1000 steps.
    assert_output(&run(&[&sample("nbody"), "--", "1000"]), 0, "-0.169075164\n-0.169087605\n", "");
}

#[test]
fn integer_heavy_sha256_matches_a_reference_implementation() {
    // Python's hashlib over the same generated megabyte.
    let expected = "8ab293428ec74a7f6d34d90cd90035f66556c6a45ad1ec122b846a57a47fa2f9\n";
    assert_output(&run(&[&sample("sha256"), "--", "1", "1"]), 0, expected, "");
}

fn fs_read_expected() -> String {
    let sum: u64 = (0..1u32 << 20).map(|i| u64::from(i % 251)).sum();
    format!(
        "/data: link abs_link\n/data: file big.bin\n/data: file hello.txt\n/data: link link_to_hello\n\
         /data: link out_link\n/data: dir sub\n/data/sub: file nested.txt\nhello.txt: hello world\n\
         nested: nested\nvia link: hello world\nhello.txt: 12 bytes, file true, dir false\nsub is a dir: true\n\
         link is a symlink: true\nat 6: world, now at 11\nfrom the end: 9\nbig.bin: 1048576 bytes, sum {sum}\n\
         missing: No such file or directory (os error 44)\nfile as dir: Not a directory (os error 54)\n\
         dir as file: Bad file descriptor (os error 8)\n"
    )
}

#[test]
fn a_preopened_directory_is_read_and_listed() {
    let files = Fixture::create();
    let out = run(&["--dir", &files.dir_arg(), &sample("fs_read")]);
    assert_output(&out, 0, &fs_read_expected(), "");
}

#[test]
fn several_preopens_each_keep_their_guest_path() {
    let (files, other) = (Fixture::create(), Fixture::create());
    let other_dir = format!("{}::/other", other.data().display());
    let out = run(&["--dir", &other_dir, "--dir", &files.dir_arg(), &sample("fs_read")]);
    assert_output(&out, 0, &fs_read_expected(), "");
}

/// Everything the host directory held, path → content ("->target" for symlinks).
fn snapshot(dir: &std::path::Path) -> Vec<(String, String)> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let content = if meta.is_symlink() {
            format!("->{}", std::fs::read_link(&path).unwrap().display())
        } else if meta.is_dir() {
            all.extend(snapshot(&path));
            "dir".into()
        } else {
            format!(
                "{} bytes, {:x}",
                meta.len(),
                std::fs::read(&path).unwrap().iter().map(|&b| u64::from(b)).sum::<u64>()
            )
        };
        all.push((path.display().to_string(), content));
    }
    all.sort();
    all
}

#[test]
fn writes_stay_in_the_vm_and_never_reach_the_host() {
    let files = Fixture::create();
    let before = snapshot(&files.root);
    let out = run(&["--dir", &files.dir_arg(), &sample("fs_write")]);
    let expected = "a.txt: first\nsecond\nhello.txt: HELLO world\nsparse: [0, 0, 0, 0, 120]\n\
        after set_len: 2 bytes\nrenamed: true, old gone: true\ncreate existing dir: File exists (os error 20)\n\
        remove non-empty dir: Directory not empty (os error 55)\nremove_file on a dir: true\n\
        create_new on existing: File exists (os error 20)\nremoved: true\ndeep.txt: 100000 bytes\n\
        now in /data: abs_link big.bin hello.txt link_to_hello out_link renamed.txt sub\n";
    assert_output(&out, 0, expected, "");
    assert_eq!(snapshot(&files.root), before, "the host directory is untouched");
}

#[test]
fn no_path_escapes_a_preopen_or_a_volume() {
    for how in ["--dir", "--volume"] {
        let files = Fixture::create();
        let before = snapshot(&files.root);
        let out = run(&[how, &files.dir_arg(), &sample("fs_escape")]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let text = stdout(&out);
        assert!(!text.contains("ESCAPED") && !text.contains("secret"), "{how}: {text}");
        assert_eq!(text.lines().filter(|l| l.contains(": refused (")).count(), 11, "{how}: {text}");
        assert!(text.ends_with("inside still works: hello world\n"), "{how}: {text}");
        assert_eq!(snapshot(&files.root), before, "{how}: nothing was created or moved");
    }
}

#[test]
fn a_full_in_memory_file_system_fails_cleanly_and_recovers() {
    let files = Fixture::create();
    let out = run(&["--memory", "64", "--dir", &files.dir_arg(), &sample("fill_files")]);
    let expected =
        "full after more than 8 MiB: No space left on device (os error 51)\nafter deleting: wrote 1048576 bytes\n";
    assert_output(&out, 0, expected, "");
    assert!(!files.data().join("fill.bin").exists(), "nothing reached the host");
}

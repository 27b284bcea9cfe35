//! Output a workload queues without a VM exit per write (the console's batching): every byte
//! arrives, in order, both streams keep their relative order, what a computing workload prints
//! arrives while it computes (the drain timer), and small writes leave the guest in batches.

mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The "N VM exits" of the timing line `--stats` prints.
fn exits(output: &std::process::Output) -> u64 {
    let err = stderr(output);
    let line = err.lines().find(|l| l.ends_with(" VM exits")).unwrap_or_else(|| panic!("no exit count in {err}"));
    line.rsplit(", ").next().unwrap().trim_end_matches(" VM exits").parse().unwrap()
}

#[test]
fn small_writes_arrive_whole_with_far_fewer_exits_than_writes() {
    let output = run(&["--stats", &sample("fd_write_loop"), "--", "20000"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(output.stdout, vec![b'.'; 20000]);
    // One exit per write without batching; one per queue of 64 (plus timer ticks) with it.
    let exits = exits(&output);
    assert!(exits < 2000, "{exits} VM exits for 20 000 writes");
}

#[test]
fn stdout_and_stderr_keep_their_order_on_one_stream() {
    require_kvm();
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("output-order-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("both.txt");
    let file = std::fs::File::create(&path).unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_wasmcell"))
        .args(["run", "--cache-dir", &cache_dir(), &sample("stderr")])
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .status()
        .unwrap();
    let both = std::fs::read_to_string(&path).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(status.success());
    let want: String = (0..5).map(|i| format!("out {i}\nerr {i}\n")).collect();
    assert_eq!(both, want);
}

#[test]
fn what_a_computing_workload_prints_arrives_while_it_computes() {
    require_kvm();
    // `spin 3` writes four lines, then computes for ever: only the first write notifies; the
    // others are queued and must reach the reader while the guest runs on.
    let mut child = Command::new(env!("CARGO_BIN_EXE_wasmcell"))
        .args(["run", "--cache-dir", &cache_dir(), &sample("spin"), "--", "3"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if lines.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    let mut got = Vec::new();
    while got.len() < 4 {
        match received.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => got.push(line),
            Err(_) => break,
        }
    }
    let still_running = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(got, ["line 1", "line 2", "line 3", "spinning"]);
    assert!(still_running, "the workload ended instead of computing");
}

//! `wasmcell run --volume`: host directories and files a workload reads and writes through
//! (the file device), as a container's volumes; `--dir` stays a snapshot. Modules and
//! components alike, on real KVM, against real host trees.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A temporary directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!("wasmcell-volumes-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn volume(&self, guest: &str) -> String {
        format!("{}::{guest}", self.0.display())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn ops(kind: fn(&str) -> String, volumes: &[&str], args: &[&str]) -> std::process::Output {
    let module = kind("volume_ops");
    let mut all: Vec<&str> = Vec::new();
    for volume in volumes {
        all.extend(["--volume", volume]);
    }
    all.push(&module);
    all.push("--");
    all.extend_from_slice(args);
    run(&all)
}

#[test]
fn writes_reach_the_host_at_once_and_outlive_the_vm() {
    for (kind, name) in [(sample as fn(&str) -> String, "module"), (component, "component")] {
        let dir = Scratch::new(name);
        let out = ops(kind, &[&dir.volume("/data")], &["mkdir", "/data/sub", "write", "/data/sub/a.txt", "first"]);
        assert_output(&out, 0, "mkdir /data/sub: ok\nwrite /data/sub/a.txt: ok\n", "");
        assert_eq!(std::fs::read_to_string(dir.join("sub/a.txt")).unwrap(), "first", "{name}");
        // A second VM sees what the first left, and appends to it.
        let out =
            ops(kind, &[&dir.volume("/data")], &["append", "/data/sub/a.txt", "+second", "read", "/data/sub/a.txt"]);
        assert_output(&out, 0, "append /data/sub/a.txt: ok\nread /data/sub/a.txt: first+second\n", "");
        std::fs::write(dir.join("from-host"), "host").unwrap();
        let out = ops(kind, &[&dir.volume("/data")], &["ls", "/data", "rm", "/data/from-host"]);
        assert_output(&out, 0, "ls /data: from-host sub\nrm /data/from-host: ok\n", "");
        assert!(!dir.join("from-host").exists(), "{name}: removed on the host");
    }
}

#[test]
fn a_dir_stays_a_snapshot_while_a_volume_writes_through() {
    let dir = Scratch::new("snapshot");
    let out = run(&["--dir", &dir.volume("/data"), &sample("volume_ops"), "--", "write", "/data/x", "gone"]);
    assert_output(&out, 0, "write /data/x: ok\n", "");
    assert!(!dir.join("x").exists(), "a --dir write stays in the VM");
}

#[test]
fn read_only_volumes_are_read_and_never_written() {
    let dir = Scratch::new("ro");
    std::fs::write(dir.join("config"), "key=value").unwrap();
    let ro = format!("{}:ro", dir.volume("/etc/app"));
    for kind in [sample as fn(&str) -> String, component] {
        let out = ops(
            kind,
            &[&ro],
            &["read", "/etc/app/config", "write", "/etc/app/config", "x", "write", "/etc/app/new", "x"],
        );
        let text = stdout(&out);
        assert!(text.starts_with("read /etc/app/config: key=value\nwrite /etc/app/config: error: "), "{text}");
        assert!(text.contains("write /etc/app/new: error: "), "{text}");
    }
    assert_eq!(std::fs::read_to_string(dir.join("config")).unwrap(), "key=value");
    assert!(!dir.join("new").exists());
}

/// Single files: a hosts file read-only, a termination log written (the CRI pattern), placed
/// in the root filesystem's tree at their paths.
#[test]
fn file_volumes_are_seen_at_their_paths() {
    let dir = Scratch::new("files");
    std::fs::write(dir.join("hosts"), "10.0.0.1 db\n").unwrap();
    std::fs::write(dir.join("termination-log"), "").unwrap();
    let hosts = format!("{}::/etc/hosts:ro", dir.join("hosts").display());
    let log = format!("{}::/dev/termination-log", dir.join("termination-log").display());
    for kind in [sample as fn(&str) -> String, component] {
        let args = [
            "read",
            "/etc/hosts",
            "write",
            "/dev/termination-log",
            "bad config",
            "write",
            "/etc/hosts",
            "x",
            "exit",
            "1",
        ];
        let out = ops(kind, &[&hosts, &log], &args);
        let text = stdout(&out);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(text.starts_with("read /etc/hosts: 10.0.0.1 db\nwrite /dev/termination-log: ok\n"), "{text}");
        assert!(text.contains("write /etc/hosts: error: Read-only file system"), "{text}");
        assert_eq!(std::fs::read_to_string(dir.join("termination-log")).unwrap(), "bad config");
        assert_eq!(std::fs::read_to_string(dir.join("hosts")).unwrap(), "10.0.0.1 db\n");
    }
}

/// Two VMs on one volume at once, as two containers of a pod on an emptyDir: the second reads
/// what the first writes while both run.
#[test]
fn two_vms_share_a_volume_while_both_run() {
    let dir = Scratch::new("shared");
    let cache = cache_dir();
    let volume = dir.volume("/shared");
    let reader = Command::new(env!("CARGO_BIN_EXE_wasmcell"))
        .args(["run", "--cache-dir", &cache, "--volume", &volume, &sample("volume_ops"), "--"])
        .args(["wait", "/shared/message", "30"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = ops(component, &[&volume], &["write", "/shared/message", "hello from the other container"]);
    assert_output(&out, 0, "write /shared/message: ok\n", "");
    let read = reader.wait_with_output().unwrap();
    assert_output(&read, 0, "wait /shared/message: hello from the other container\n", "");
}

#[test]
fn bad_volumes_fail_before_any_vm_with_one_line() {
    let dir = Scratch::new("bad");
    let missing = format!("{}::/data", dir.join("missing").display());
    let fifo = dir.join("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo on a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let cases = [
        (missing, "Cannot open volume"),
        (String::from("/dev/null::/dev/null"), "is not a regular file"),
        (format!("{}::/x", fifo.display()), "is not a regular file"),
        (dir.volume("relative"), "is not absolute"),
    ];
    for (volume, expected) in cases {
        let out = run(&["--volume", &volume, &sample("hello")]);
        assert_ne!(out.status.code(), Some(0), "{volume}");
        let err = stderr(&out);
        assert!(err.contains(expected) && err.trim().lines().count() <= 2, "{volume}: {err}");
        assert!(stdout(&out).is_empty(), "{volume}: nothing ran");
    }
    assert!(Path::new(&fifo).exists());
}

//! Path resolution and the file operations of the guest's file tree (`guest/fs`), which a
//! tenant's module drives with any path bytes it likes: starting from one preopened directory,
//! no sequence of creates, links, symlinks, renames and removals ever reaches a file outside it
//! (here: a second preopen holding a secret), and nothing panics or loops.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use wasmcell_abi::archive::{self, Node, NodeKind};
use wasmcell_guest_fs::{self as fs, OpenFlags};

const SECRET: &[u8] = b"the other preopen's secret";

#[derive(Arbitrary, Debug)]
enum Op {
    Open { path: Vec<u8>, create: bool, directory: bool, follow: bool },
    Mkdir { path: Vec<u8> },
    Symlink { target: Vec<u8>, path: Vec<u8> },
    Link { old: Vec<u8>, new: Vec<u8> },
    Rename { old: Vec<u8>, new: Vec<u8> },
    Unlink { path: Vec<u8> },
    Rmdir { path: Vec<u8> },
    ReadLink { path: Vec<u8> },
}

/// `/data` (files, a directory, symlinks in and out) and `/secret`, packed once.
fn archive() -> archive::Archive<'static> {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    let bytes = BYTES.get_or_init(|| {
        let node = |name: &str, kind| Node { name: name.as_bytes().to_vec(), mtime_ns: 0, kind };
        let file = |name: &str, data: &[u8]| node(name, NodeKind::File(data.to_vec()));
        let link = |name: &str, target: &str| node(name, NodeKind::Symlink(target.as_bytes().to_vec()));
        let data = node(
            "/data",
            NodeKind::Dir(vec![
                file("a.txt", b"alpha"),
                node("sub", NodeKind::Dir(vec![file("b.txt", b"beta"), link("up", "..")])),
                link("in", "sub/b.txt"),
                link("out", "../secret/key"),
                link("abs", "/secret/key"),
                link("loop", "loop"),
            ]),
        );
        let secret = node("/secret", NodeKind::Dir(vec![file("key", SECRET)]));
        archive::encode(&[data, secret]).unwrap()
    });
    archive::Archive::parse(bytes).unwrap()
}

fn never_the_secret(node: &fs::NodeRef) {
    let mut node = node.borrow_mut();
    if node.is_dir() {
        return;
    }
    let mut buf = [0u8; 64];
    if let Ok(n) = node.read_at(0, &mut buf) {
        assert_ne!(&buf[..n], SECRET, "reached the other preopen's file");
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let preopens = fs::preopens(archive());
    let root = &preopens[0].1;
    for op in ops.into_iter().take(64) {
        match op {
            Op::Open { path, create, directory, follow } => {
                let flags = OpenFlags { create, directory, follow, ..Default::default() };
                if let Ok(node) = fs::open(root, &path, flags, 0) {
                    never_the_secret(&node);
                }
            }
            Op::Mkdir { path } => drop(fs::create_dir(root, &path, 0)),
            Op::Symlink { target, path } => drop(fs::symlink(&target, root, &path, 0)),
            Op::Link { old, new } => drop(fs::link(root, &old, false, root, &new, 0)),
            Op::Rename { old, new } => drop(fs::rename(root, &old, root, &new, 0)),
            Op::Unlink { path } => drop(fs::unlink(root, &path, 0)),
            Op::Rmdir { path } => drop(fs::remove_dir(root, &path, 0)),
            Op::ReadLink { path } => drop(fs::read_link(root, &path)),
        }
    }
    // Whatever was done, the secret itself is intact in its own tree.
    let key = fs::open(&preopens[1].1, b"key", OpenFlags::default(), 0).unwrap();
    let mut buf = [0u8; 64];
    let n = key.borrow_mut().read_at(0, &mut buf).unwrap();
    assert_eq!(&buf[..n], SECRET);
});

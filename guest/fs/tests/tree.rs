//! The file tree over a real archive: reads in place, writes in memory, and every way a path
//! could try to leave its preopen.

use wasmcell_abi::archive::{encode, Archive, Node as ArchiveNode, NodeKind};
use wasmcell_guest_fs::*;

fn file(name: &str, data: &str) -> ArchiveNode {
    ArchiveNode { name: name.into(), mtime_ns: 1, kind: NodeKind::File(data.into()) }
}

fn symlink_node(name: &str, target: &str) -> ArchiveNode {
    ArchiveNode { name: name.into(), mtime_ns: 1, kind: NodeKind::Symlink(target.into()) }
}

fn dir(name: &str, kids: Vec<ArchiveNode>) -> ArchiveNode {
    ArchiveNode { name: name.into(), mtime_ns: 1, kind: NodeKind::Dir(kids) }
}

/// `/data` with files, a subdirectory, and symlinks inside and out; `/other` beside it.
fn tree() -> (NodeRef, NodeRef) {
    let roots = [
        dir(
            "/data",
            vec![
                file("a.txt", "alpha"),
                dir("sub", vec![file("b.txt", "beta"), symlink_node("up", "../a.txt"), symlink_node("out", "../../x")]),
                symlink_node("abs", "/etc/passwd"),
                symlink_node("to_sub", "sub"),
                symlink_node("loop", "loop"),
                symlink_node("dangling", "nothing"),
            ],
        ),
        dir("/other", vec![]),
    ];
    let bytes: &'static [u8] = Box::leak(encode(&roots).unwrap().into_boxed_slice());
    let mut preopens = preopens(Archive::parse(bytes).unwrap()).into_iter();
    let (name, data) = preopens.next().unwrap();
    assert_eq!(name, b"/data");
    (data, preopens.next().unwrap().1)
}

fn read(start: &NodeRef, path: &str) -> Result<String, Error> {
    let node = open(start, path.as_bytes(), OpenFlags { follow: true, ..Default::default() }, 0)?;
    let mut buf = vec![0u8; 64];
    let n = node.borrow_mut().read_at(0, &mut buf)?;
    Ok(String::from_utf8(buf[..n].to_vec()).unwrap())
}

fn names(dir: &NodeRef) -> Vec<String> {
    dir.borrow_mut().dir().unwrap().keys().map(|k| String::from_utf8(k.clone()).unwrap()).collect()
}

#[test]
fn files_and_symlinks_inside_the_preopen_resolve() {
    let (data, _) = tree();
    assert_eq!(read(&data, "a.txt").unwrap(), "alpha");
    assert_eq!(read(&data, "./sub/../sub/b.txt").unwrap(), "beta");
    assert_eq!(read(&data, "sub//b.txt").unwrap(), "beta");
    assert_eq!(read(&data, "sub/up").unwrap(), "alpha");
    assert_eq!(read(&data, "to_sub/b.txt").unwrap(), "beta");
    assert_eq!(names(&data), ["a.txt", "abs", "dangling", "loop", "sub", "to_sub"]);
    let stat = resolve(&data, b"sub", false).unwrap().node.unwrap().borrow().stat();
    assert_eq!(stat.file_type, FileType::Directory);
    assert_eq!(read_link(&data, b"sub/up").unwrap(), b"../a.txt");
}

#[test]
fn no_path_leaves_the_preopen() {
    let (data, _) = tree();
    for path in ["..", "../data/a.txt", "sub/../../data", "/etc/passwd", "abs", "sub/out", "sub/../.."] {
        assert_eq!(read(&data, path).unwrap_err(), Error::Escape, "{path}");
    }
    let sub = open(&data, b"sub", OpenFlags { directory: true, ..Default::default() }, 0).unwrap();
    // An opened subdirectory is a new boundary, as with cap-std.
    assert_eq!(read(&sub, "up").unwrap_err(), Error::Escape);
    assert_eq!(read(&sub, "../a.txt").unwrap_err(), Error::Escape);
    assert_eq!(create_dir(&data, b"../evil", 0), Err(Error::Escape));
    assert_eq!(read(&data, "loop").unwrap_err(), Error::Loop);
    assert_eq!(read(&data, "a.txt/x").unwrap_err(), Error::NotDir);
    assert_eq!(read(&data, "").unwrap_err(), Error::NoEnt);
}

#[test]
fn writes_stay_in_memory_and_leave_the_archive_intact() {
    let (data, _) = tree();
    let create = OpenFlags { create: true, follow: true, ..Default::default() };
    let new = open(&data, b"sub/new.txt", create, 5).unwrap();
    new.borrow_mut().write_at(0, b"fresh", 6).unwrap();
    assert_eq!(read(&data, "sub/new.txt").unwrap(), "fresh");
    let a = open(&data, b"a.txt", OpenFlags { truncate: true, ..Default::default() }, 7).unwrap();
    a.borrow_mut().write_at(0, b"A", 7).unwrap();
    assert_eq!(read(&data, "a.txt").unwrap(), "A");
    // A fresh tree from the same archive still sees the original.
    assert_eq!(read(&tree().0, "a.txt").unwrap(), "alpha");
    // Creating through a dangling symlink creates its target, inside the preopen.
    open(&data, b"dangling", create, 8).unwrap();
    assert!(names(&data).contains(&"nothing".to_string()));
    assert_eq!(open(&data, b"a.txt", OpenFlags { exclusive: true, ..create }, 0).unwrap_err(), Error::Exist);
}

#[test]
fn directories_are_made_renamed_and_removed_like_posix() {
    let (data, other) = tree();
    create_dir(&data, b"d", 1).unwrap();
    assert_eq!(create_dir(&data, b"d", 1), Err(Error::Exist));
    assert_eq!(remove_dir(&data, b"sub", 1), Err(Error::NotEmpty));
    assert_eq!(remove_dir(&data, b"a.txt", 1), Err(Error::NotDir));
    assert_eq!(unlink(&data, b"d", 1), Err(Error::IsDir));
    assert_eq!(rename(&data, b"sub", &data, b"sub/inner", 1), Err(Error::Inval));
    assert_eq!(rename(&data, b"a.txt", &data, b"d", 1), Err(Error::IsDir));
    rename(&data, b"sub", &other, b"moved", 1).unwrap();
    assert_eq!(read(&other, "moved/b.txt").unwrap(), "beta");
    assert_eq!(read(&data, "sub/b.txt").unwrap_err(), Error::NoEnt);
    rename(&data, b"a.txt", &other, b"moved/b.txt", 1).unwrap();
    assert_eq!(read(&other, "moved/b.txt").unwrap(), "alpha");
    unlink(&other, b"moved/b.txt", 1).unwrap();
    unlink(&other, b"moved/up", 1).unwrap();
    unlink(&other, b"moved/out", 1).unwrap();
    remove_dir(&other, b"moved", 1).unwrap();
    remove_dir(&data, b"d", 1).unwrap();
    assert!(names(&other).is_empty());
    symlink(b"../x", &data, b"new_link", 1).unwrap();
    assert_eq!(read(&data, "new_link").unwrap_err(), Error::Escape);
    assert_eq!(unlink(&data, b".", 1), Err(Error::Inval));
}

#[test]
fn hard_links_share_the_file_but_never_a_directory() {
    let (data, other) = tree();
    link(&data, b"sub/b.txt", false, &other, b"hard", 1).unwrap();
    assert_eq!(read(&other, "hard").unwrap(), "beta");
    let hard = open(&other, b"hard", OpenFlags::default(), 0).unwrap();
    hard.borrow_mut().write_at(0, b"B", 2).unwrap();
    assert_eq!(read(&data, "sub/b.txt").unwrap(), "Beta");
    assert_eq!(link(&data, b"sub", false, &other, b"hard_dir", 1), Err(Error::Perm));
    assert_eq!(link(&data, b"sub/b.txt", false, &other, b"hard", 1), Err(Error::Exist));
}

/// Renaming a directory into its own subtree is refused however deep the subtree is: the check
/// walks it without recursion (a workload can nest directories far deeper than any stack).
#[test]
fn renaming_into_a_very_deep_subtree_is_refused_without_recursion() {
    let (data, _) = tree();
    create_dir(&data, b"top", 0).unwrap();
    let mut deepest = resolve(&data, b"top", false).unwrap().node.unwrap();
    for _ in 0..200_000 {
        create_dir(&deepest, b"d", 0).unwrap();
        let next = resolve(&deepest, b"d", false).unwrap().node.unwrap();
        deepest = next;
    }
    create_dir(&deepest, b"leaf", 0).unwrap();
    // From `deepest`, `top` is out of reach by path; move `top` into it through `data`'s name
    // for it and `deepest`'s for its child.
    assert_eq!(rename(&data, b"top", &deepest, b"leaf/moved", 0), Err(Error::Inval));
    assert_eq!(rename(&data, b"top", &data, b"renamed", 0), Ok(()));
    std::mem::forget(data); // dropping a 200 000-deep chain would recurse in `Rc`'s drop
}

#[test]
fn host_files_are_attached_over_the_tree_with_their_directories() {
    let (data, _) = tree();
    attach_host_file(&data, b"sub/b.txt", 7, 2).unwrap();
    attach_host_file(&data, b"new/deeper/log", 8, 2).unwrap();
    let replaced = open(&data, b"sub/b.txt", OpenFlags::default(), 2).unwrap();
    assert_eq!(replaced.borrow().host(), Some(7), "the host file replaces the tree's");
    assert_eq!(open(&data, b"new/deeper/log", OpenFlags::default(), 2).unwrap().borrow().host(), Some(8));
    assert_eq!(names(&data).iter().filter(|n| *n == "new").count(), 1);
    // Read as a file by no one: the WASI layers go to the device.
    assert_eq!(read(&data, "sub/b.txt"), Err(Error::Inval));
    let directory = OpenFlags { directory: true, ..OpenFlags::default() };
    assert_eq!(open(&data, b"sub/b.txt", directory, 2).err(), Some(Error::NotDir));
    assert_eq!(attach_host_file(&data, b"a.txt/x", 9, 2), Err(Error::NotDir), "a file on the way");
    assert_eq!(attach_host_file(&data, b"../x", 9, 2), Err(Error::Escape));
    assert_eq!(attach_host_file(&data, b"", 9, 2), Err(Error::Inval));
}

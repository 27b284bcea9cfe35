//! The file device against real host directories, driven as a hostile guest drives it: calls
//! with their words, paths and buffers in guest memory. Every escape is tried from a volume
//! that sits beside a secret it must never reach.

use super::*;
use std::os::unix::fs::symlink;
use vm_memory::GuestAddress;

/// Guest memory the device may touch: 2 MiB at 1 MiB. Paths go at `PATH`, `PATH2`; data at
/// `DATA`.
const BASE: u64 = 1 << 20;
const PATH: u64 = BASE;
const PATH2: u64 = BASE + 0x2000;
const DATA: u64 = BASE + 0x1_0000;
const SECRET: &[u8] = b"the host's secret";

/// A temporary tree: `outside/secret`, and the volume `outside/volume` with `hello.txt`.
struct Tree {
    top: PathBuf,
}

impl Tree {
    fn new(name: &str) -> Self {
        let top = std::env::temp_dir().join(format!("wasmcell-file-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&top);
        std::fs::create_dir_all(top.join("volume/sub")).unwrap();
        std::fs::write(top.join("secret"), SECRET).unwrap();
        std::fs::write(top.join("volume/hello.txt"), b"hello").unwrap();
        Self { top }
    }

    fn volume(&self) -> PathBuf {
        self.top.join("volume")
    }

    fn device(&self, kind: Volume) -> FileDevice {
        let memory = GuestMemory::from_ranges(&[(GuestAddress(BASE), 2 << 20)]).unwrap();
        FileDevice::new(memory, vec![HostVolume::open(&self.volume(), "/data", kind).unwrap()])
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.top);
    }
}

fn call(dev: &mut FileDevice, op: Op, args: &[u64]) -> FileReply {
    let mut words = [0; 8];
    words[..args.len()].copy_from_slice(args);
    dev.call(op, &FileCall { args: words }).unwrap()
}

/// Places `path` at `at` and gives `(at, len)`.
fn path(dev: &FileDevice, at: u64, path: &str) -> [u64; 2] {
    dev.memory.write_slice(path.as_bytes(), GuestAddress(at)).unwrap();
    [at, path.len() as u64]
}

fn open(dev: &mut FileDevice, p: &str, flags: u64) -> i64 {
    let [a, l] = path(dev, PATH, p);
    call(dev, Op::Open, &[0, a, l, flags]).result
}

fn read_all(dev: &mut FileDevice, handle: u64) -> Vec<u8> {
    let n = call(dev, Op::Read, &[handle, DATA, 4096, 0]).result;
    assert!(n >= 0, "read: {n}");
    let mut bytes = vec![0; n as usize];
    dev.memory.read_slice(&mut bytes, GuestAddress(DATA)).unwrap();
    bytes
}

const EPERM: i64 = -(libc::EPERM as i64);

#[test]
fn files_are_created_written_read_and_listed_through_the_volume() {
    let tree = Tree::new("rw");
    let mut dev = tree.device(Volume::Dir);
    let handle = open(&mut dev, "sub/new.txt", open::WRITE | open::CREATE | open::EXCLUSIVE);
    assert!(handle > 0, "{handle}");
    dev.memory.write_slice(b"written by the guest", GuestAddress(DATA)).unwrap();
    assert_eq!(call(&mut dev, Op::Write, &[handle as u64, DATA, 20, 0]).result, 20);
    assert_eq!(call(&mut dev, Op::Write, &[handle as u64, DATA, 7, APPEND]).result, 7);
    assert_eq!(std::fs::read(tree.volume().join("sub/new.txt")).unwrap(), b"written by the guestwritten");
    assert_eq!(call(&mut dev, Op::Read, &[handle as u64, DATA, 10, 0]).result, -(libc::EBADF as i64), "write-only");
    assert_eq!(call(&mut dev, Op::Close, &[handle as u64]).result, 0);
    assert_eq!(call(&mut dev, Op::Close, &[handle as u64]).result, -(libc::EBADF as i64));
    assert_eq!(open(&mut dev, "sub/new.txt", open::CREATE | open::EXCLUSIVE | open::WRITE), -(libc::EEXIST as i64));

    let hello = open(&mut dev, "./sub/../hello.txt", open::READ) as u64;
    assert_eq!(read_all(&mut dev, hello), b"hello");
    let [a, l] = path(&dev, PATH, "hello.txt");
    let stat = call(&mut dev, Op::Stat, &[0, a, l, 1]);
    assert_eq!((stat.result, stat.stat.kind, stat.stat.size), (0, kind::REGULAR_FILE, 5));

    let [a, l] = path(&dev, PATH, "made/");
    assert_eq!(call(&mut dev, Op::CreateDir, &[0, a, l]).result, 0);
    let [a, l] = path(&dev, PATH, "hello.txt");
    let [b, m] = path(&dev, PATH2, "made/moved.txt");
    assert_eq!(call(&mut dev, Op::Rename, &[0, a, l, 0, b, m]).result, 0);
    assert!(tree.volume().join("made/moved.txt").exists());
    // The listing, in pieces: each call takes what fits whole, the cookie goes on from there.
    let mut names = Vec::new();
    let mut cookie = 0;
    loop {
        let n = call(&mut dev, Op::ReadDir, &[0, DATA, 40, cookie]).result;
        assert!(n >= 0);
        if n == 0 {
            break;
        }
        let mut bytes = vec![0; n as usize];
        dev.memory.read_slice(&mut bytes, GuestAddress(DATA)).unwrap();
        let mut rest = &bytes[..];
        while let Some((entry, after)) = Dirent::parse(rest) {
            names.push(String::from_utf8(entry.name.to_vec()).unwrap());
            cookie = entry.next;
            rest = after;
        }
    }
    names.sort();
    assert_eq!(names, ["made", "sub"]);
}

#[test]
fn no_path_reaches_outside_the_volume() {
    let tree = Tree::new("escape");
    let volume = tree.volume();
    symlink("../secret", volume.join("up")).unwrap();
    symlink(tree.top.join("secret"), volume.join("absolute")).unwrap();
    symlink("/", volume.join("root")).unwrap();
    symlink("..", volume.join("parent")).unwrap();
    symlink("sub/../hello.txt", volume.join("inside")).unwrap();
    let mut dev = tree.device(Volume::Dir);
    for escape in
        ["..", "../secret", "sub/../../secret", "/etc/passwd", "up", "absolute", "root/etc/passwd", "parent/secret"]
    {
        assert_eq!(open(&mut dev, escape, open::READ), EPERM, "open {escape}");
        let [a, l] = path(&dev, PATH, escape);
        assert_eq!(call(&mut dev, Op::Stat, &[0, a, l, 1]).result, EPERM, "stat {escape}");
    }
    assert!(open(&mut dev, "inside", open::READ) > 0, "a symlink that stays inside is followed");
    // Without following, the symlink itself is what is named: no escape, and no file behind it.
    let [a, l] = path(&dev, PATH, "up");
    let stat = call(&mut dev, Op::Stat, &[0, a, l, 0]);
    assert_eq!((stat.result, stat.stat.kind), (0, kind::SYMBOLIC_LINK));
    assert_eq!(open(&mut dev, "up", open::READ | open::NOFOLLOW), -(libc::ELOOP as i64));

    // Changes through an escaping parent, or on the volume's parent itself.
    for (op, p) in [
        (Op::CreateDir, "../made"),
        (Op::CreateDir, "parent/made"),
        (Op::Unlink, "../secret"),
        (Op::Unlink, "parent/secret"),
        (Op::RemoveDir, ".."),
        (Op::Unlink, "/tmp/x"),
        (Op::CreateDir, "/"),
    ] {
        let [a, l] = path(&dev, PATH, p);
        assert_eq!(call(&mut dev, op, &[0, a, l]).result, EPERM, "{op:?} {p}");
    }
    // Hard links: to a file outside through a symlinked parent, or of the escaping symlink
    // itself (the link is a second symlink, still pointing out, still refused on open).
    let [a, l] = path(&dev, PATH, "parent/secret");
    let [b, m] = path(&dev, PATH2, "stolen");
    assert_eq!(call(&mut dev, Op::Link, &[0, a, l, 0, b, m]).result, EPERM);
    let [a, l] = path(&dev, PATH, "up");
    assert_eq!(call(&mut dev, Op::Link, &[0, a, l, 0, b, m]).result, 0);
    assert_eq!(open(&mut dev, "stolen", open::READ), EPERM);
    let [a, l] = path(&dev, PATH, "../secret");
    assert_eq!(call(&mut dev, Op::Rename, &[0, a, l, 0, b, m]).result, EPERM);
    // A symlink to an absolute path is not made (as wasmtime refuses it); one that climbs out
    // is made, and not followed.
    let [t, tl] = path(&dev, PATH2, "/etc");
    let [a, l] = path(&dev, PATH, "etc");
    assert_eq!(call(&mut dev, Op::Symlink, &[t, tl, 0, a, l]).result, EPERM);
    let [t, tl] = path(&dev, PATH2, "../..");
    assert_eq!(call(&mut dev, Op::Symlink, &[t, tl, 0, a, l]).result, 0);
    assert_eq!(open(&mut dev, "etc/etc/passwd", open::READ), EPERM);
    assert_eq!(std::fs::read(tree.top.join("secret")).unwrap(), SECRET, "the secret is untouched");
    assert!(!tree.top.join("made").exists());
}

#[test]
fn a_symlink_swapped_in_during_the_walk_never_leads_out() {
    let tree = Tree::new("race");
    let volume = tree.volume();
    std::fs::write(volume.join("sub/secret"), b"inside").unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Another container of the pod: swaps `dir` between a real directory and a symlink out.
    let swapper = {
        let (volume, stop) = (volume.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut swaps = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = std::fs::remove_file(volume.join("dir.tmp"));
                if swaps.is_multiple_of(2) {
                    let _ = symlink("sub", volume.join("dir.tmp"));
                } else {
                    let _ = symlink("..", volume.join("dir.tmp"));
                }
                let _ = std::fs::rename(volume.join("dir.tmp"), volume.join("dir"));
                swaps += 1;
            }
            swaps
        })
    };
    let mut dev = tree.device(Volume::Dir);
    let (mut inside, mut refused) = (0, 0);
    for _ in 0..20_000 {
        let handle = open(&mut dev, "dir/secret", open::READ);
        if handle > 0 {
            assert_eq!(read_all(&mut dev, handle as u64), b"inside", "only the volume's file is ever read");
            call(&mut dev, Op::Close, &[handle as u64]);
            inside += 1;
        } else {
            refused += 1;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    assert!(swaps > 100 && inside > 0 && refused > 0, "the race happened: {swaps} swaps, {inside} in, {refused} out");
}

#[test]
fn read_only_volumes_refuse_changes_and_volumes_do_not_mix() {
    let tree = Tree::new("ro");
    let memory = GuestMemory::from_ranges(&[(GuestAddress(BASE), 2 << 20)]).unwrap();
    let volumes = vec![
        HostVolume::open(&tree.volume(), "/ro", Volume::ReadOnlyDir).unwrap(),
        HostVolume::open(&tree.volume().join("sub"), "/rw", Volume::Dir).unwrap(),
    ];
    let mut dev = FileDevice::new(memory, volumes);
    assert_eq!(open(&mut dev, "hello.txt", open::WRITE), EPERM);
    assert_eq!(open(&mut dev, "new", open::READ | open::CREATE), EPERM);
    assert!(open(&mut dev, "hello.txt", open::READ) > 0);
    let [a, l] = path(&dev, PATH, "hello.txt");
    assert_eq!(call(&mut dev, Op::Unlink, &[0, a, l]).result, EPERM);
    assert_eq!(call(&mut dev, Op::SetTimes, &[0, a, l, 1, 0, 0, times::MTIME_NOW]).result, EPERM);
    let [b, m] = path(&dev, PATH2, "copy");
    assert_eq!(call(&mut dev, Op::Rename, &[1, b, m, 0, a, l]).result, EPERM);
    // Between two writable volumes: EXDEV, as between two preopens in wasmtime.
    let memory = GuestMemory::from_ranges(&[(GuestAddress(BASE), 2 << 20)]).unwrap();
    let volumes = vec![
        HostVolume::open(&tree.volume(), "/a", Volume::Dir).unwrap(),
        HostVolume::open(&tree.volume().join("sub"), "/b", Volume::Dir).unwrap(),
    ];
    let mut dev = FileDevice::new(memory, volumes);
    let [a, l] = path(&dev, PATH, "hello.txt");
    assert_eq!(call(&mut dev, Op::Rename, &[0, a, l, 1, b, m]).result, -(libc::EXDEV as i64));
    assert_eq!(call(&mut dev, Op::Close, &[0]).result, -(libc::EBADF as i64), "a volume stays open");
}

#[test]
fn special_files_are_not_opened_and_bounds_hold() {
    let tree = Tree::new("bounds");
    let fifo = std::ffi::CString::new(tree.volume().join("fifo").into_os_string().into_encoded_bytes()).unwrap();
    // SAFETY: mkfifo on a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o666) }, 0);
    let mut dev = tree.device(Volume::Dir);
    assert_eq!(open(&mut dev, "fifo", open::READ), -(libc::ENXIO as i64), "no wait for a writer, no descriptor");
    assert_eq!(open(&mut dev, "hello.txt", 1 << 20), -(libc::EINVAL as i64));
    let long = "a/".repeat(MAX_PATH as usize);
    let [a, _] = path(&dev, PATH, &long[..100]);
    assert_eq!(call(&mut dev, Op::Open, &[0, a, MAX_PATH + 1, open::READ]).result, -(libc::ENAMETOOLONG as i64));
    assert_eq!(
        dev.call(Op::Open, &FileCall { args: [0, 0x1000, 4, open::READ, 0, 0, 0, 0] }),
        Err(FileError::BufferOutside { addr: 0x1000, len: 4 })
    );
    assert!(dev.call(Op::Read, &FileCall { args: [0, BASE + (2 << 20), 1, 0, 0, 0, 0, 0] }).is_err());
    let mut opened = 0;
    while open(&mut dev, "hello.txt", open::READ) > 0 {
        opened += 1;
        assert!(opened < 2 * MAX_HANDLES, "no bound");
    }
    assert_eq!(dev.open_handles(), MAX_HANDLES as usize);
    assert_eq!(open(&mut dev, "hello.txt", open::READ), -(libc::EMFILE as i64));
    // A file volume is checked to be one, and a directory volume to be a directory.
    let file = tree.volume().join("hello.txt");
    assert!(matches!(HostVolume::open(&file, "/f", Volume::Dir), Err(VolumeError::NotDirectory { .. })));
    assert!(matches!(HostVolume::open(&tree.volume(), "/f", Volume::File), Err(VolumeError::NotFile { .. })));
    assert!(matches!(HostVolume::open(&file, "f", Volume::File), Err(VolumeError::Destination { .. })));
}

#[test]
fn a_file_volume_is_its_handle_and_a_read_only_one_is_not_written() {
    let tree = Tree::new("file");
    let log = tree.volume().join("hello.txt");
    let memory = GuestMemory::from_ranges(&[(GuestAddress(BASE), 2 << 20)]).unwrap();
    let volumes = vec![
        HostVolume::open(&log, "/dev/termination-log", Volume::File).unwrap(),
        HostVolume::open(&log, "/etc/hosts", Volume::ReadOnlyFile).unwrap(),
    ];
    let mut dev = FileDevice::new(memory, volumes);
    dev.memory.write_slice(b"exit 1: bad config", GuestAddress(DATA)).unwrap();
    assert_eq!(call(&mut dev, Op::SetSize, &[0, 0]).result, 0);
    assert_eq!(call(&mut dev, Op::Write, &[0, DATA, 18, 0]).result, 18);
    assert_eq!(std::fs::read(&log).unwrap(), b"exit 1: bad config");
    assert_eq!(read_all(&mut dev, 1), b"exit 1: bad config", "the same file, read-only");
    assert_eq!(call(&mut dev, Op::Write, &[1, DATA, 4, 0]).result, -(libc::EBADF as i64));
    assert_eq!(call(&mut dev, Op::SetSize, &[1, 0]).result, -(libc::EBADF as i64));
    assert_eq!(open(&mut dev, "x", open::READ), -(libc::ENOTDIR as i64), "nothing opens beneath a file");
}

#[test]
fn a_handle_named_to_close_first_is_closed_before_the_call() {
    let tree = Tree::new("close-first");
    let mut dev = tree.device(Volume::Dir);
    let first = open(&mut dev, "hello.txt", open::READ) as u64;
    assert_eq!(dev.open_handles(), 2);
    let [a, l] = path(&dev, PATH, "hello.txt");
    let reply = dev.call(Op::Open, &FileCall { args: [0, a, l, open::READ, 0, 0, 0, first + 1] }).unwrap();
    assert_eq!(reply.result as u64, first, "the closed handle's number is given out again");
    assert_eq!(dev.open_handles(), 2);
    // A volume, or a handle that is not open, is not closed by it.
    assert_eq!(dev.call(Op::Stat, &FileCall { args: [0, 0, 0, 0, 0, 0, 0, 1] }).unwrap().result, 0);
    assert_eq!(dev.call(Op::Stat, &FileCall { args: [0, 0, 0, 0, 0, 0, 0, 999] }).unwrap().result, 0);
    assert_eq!(dev.open_handles(), 2);
}

#[test]
fn symlinks_are_read_and_their_times_set_without_leading_out() {
    let tree = Tree::new("links");
    let volume = tree.volume();
    symlink("../secret", volume.join("up")).unwrap();
    let mut dev = tree.device(Volume::Dir);
    let [a, l] = path(&dev, PATH, "up");
    assert_eq!(call(&mut dev, Op::ReadLink, &[0, a, l, DATA, 64]).result, 9);
    let mut target = [0u8; 9];
    dev.memory.read_slice(&mut target, GuestAddress(DATA)).unwrap();
    assert_eq!(&target, b"../secret", "the link's own text");
    let [a, l] = path(&dev, PATH, "up/");
    assert!(call(&mut dev, Op::ReadLink, &[0, a, l, DATA, 64]).result < 0, "'up/' names what it points to");
    let [a, l] = path(&dev, PATH, "hello.txt");
    assert_eq!(call(&mut dev, Op::ReadLink, &[0, a, l, DATA, 64]).result, -(libc::EINVAL as i64), "no symlink");
    // Times: through the link (out: refused), or of the link itself; the secret keeps its own.
    let before = std::fs::metadata(tree.top.join("secret")).unwrap().modified().unwrap();
    let [a, l] = path(&dev, PATH, "up");
    let set = |follow: u64| [0, a, l, follow, 0, 5_000_000_000, times::MTIME];
    assert_eq!(call(&mut dev, Op::SetTimes, &set(1)).result, EPERM);
    assert_eq!(call(&mut dev, Op::SetTimes, &set(0)).result, 0);
    assert_eq!(std::fs::metadata(tree.top.join("secret")).unwrap().modified().unwrap(), before);
    let link = std::fs::symlink_metadata(volume.join("up")).unwrap();
    assert_eq!(link.modified().unwrap(), std::time::UNIX_EPOCH + std::time::Duration::from_secs(5));
    let [a, l] = path(&dev, PATH, "sub/..");
    assert_eq!(call(&mut dev, Op::SetTimes, &[0, a, l, 0, 0, 0, times::MTIME_NOW]).result, 0, "the volume root");
    let [a, l] = path(&dev, PATH, "sub/../..");
    assert_eq!(call(&mut dev, Op::SetTimes, &[0, a, l, 0, 0, 0, times::MTIME_NOW]).result, EPERM);
}

/// A device node in a volume (another container of the pod may make one) is never opened:
/// refused on sight, and the volume's own mount is a `nodev` copy besides.
#[test]
fn a_device_node_in_a_volume_is_never_opened() {
    let tree = Tree::new("device");
    let null = std::ffi::CString::new(tree.volume().join("null").into_os_string().into_encoded_bytes()).unwrap();
    // SAFETY: mknod on a NUL-terminated path (the tests run as root, as CI does).
    let made = unsafe { libc::mknod(null.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) };
    assert_eq!(made, 0, "mknod: {}", std::io::Error::last_os_error());
    let mut dev = tree.device(Volume::Dir);
    assert_eq!(open(&mut dev, "null", open::READ | open::WRITE), -(libc::ENXIO as i64));
    let [a, l] = path(&dev, PATH, "null");
    assert_eq!(call(&mut dev, Op::Stat, &[0, a, l, 0]).stat.kind, kind::CHARACTER_DEVICE, "seen, not opened");
    let root = dev.handles.get(0).unwrap().fd.as_raw_fd();
    assert_eq!(host::open_beneath(root, b"null", libc::O_RDONLY, 0).err(), Some(libc::EACCES), "nodev");
}

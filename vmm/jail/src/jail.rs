//! The jail a process that handles a tenant's input closes itself into, Firecracker's jailer
//! done from inside: a VMM process once its VM exists and before the guest's first
//! instruction, and the packer that reads a tenant's root filesystem. [`Jail::enter`], while
//! the process is still single-threaded:
//!
//! 1. a mount namespace of its own whose root is an empty, read-only tmpfs (holding read-only
//!    views of the directories it reads, for the packer), reached with `pivot_root`: no host
//!    path is left to open;
//! 2. resource limits: no core dumps, a bounded descriptor table (no file-size limit: a
//!    workload's stdout may be a regular file its user chose, written through a descriptor);
//! 3. an unprivileged uid and gid with no supplementary groups, no capabilities (but those
//!    named, for the packer), an empty bounding set and `no_new_privs`.
//!
//! The caller adds its seccomp filter (`crate::seccomp`) right after. Descriptors it inherited
//! but was not meant to have it closes first thing, [`close_inherited_descriptors`]: what it
//! opens itself afterwards is its own.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::path::{Path, PathBuf};

/// The highest capability number the kernel may know (`CAP_LAST_CAP` is 40 on 6.x); dropping
/// one it does not know fails harmlessly.
const LAST_CAP: u32 = 63;
/// `CAP_DAC_READ_SEARCH`: read any file, for the packer.
pub const CAP_DAC_READ_SEARCH: u32 = 2;

/// Where the jail's root comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JailRoot {
    /// An empty, read-only tmpfs.
    Empty,
    /// Read-only views of these directories at `/0`, `/1`, … of an empty, read-only tmpfs:
    /// names of the jail's choosing, so nothing in a view (a tenant's tree) decides where
    /// another is mounted. At most [`MAX_VIEWS`].
    Views(Vec<PathBuf>),
}

/// Most supplementary groups a jail keeps.
pub const MAX_GROUPS: usize = 32;

/// Most directories a [`JailRoot::Views`] shows.
pub const MAX_VIEWS: usize = 128;

/// What a jailed process keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Jail {
    pub root: JailRoot,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (none but for a VMM serving volumes to a pod or container that
    /// has them: its `fsGroup` and `supplementalGroups`), at most [`MAX_GROUPS`].
    pub groups: Vec<u32>,
    /// Capabilities kept (numbers); none for a VMM.
    pub keep_caps: Vec<u32>,
    /// The most descriptors the process may hold.
    pub max_fds: u64,
}

/// Errors while closing the jail: the process must not go on.
#[derive(Debug, thiserror::Error)]
pub enum JailError {
    #[error("The jail must be entered while the process has one thread (it has {0})")]
    Threads(usize),
    #[error("Cannot set up the jail: {step}")]
    Step {
        step: &'static str,
        #[source]
        source: std::io::Error,
    },
}

fn check(step: &'static str, rc: libc::c_long) -> Result<(), JailError> {
    if rc < 0 {
        return Err(JailError::Step { step, source: std::io::Error::last_os_error() });
    }
    Ok(())
}

fn c_path(path: &Path) -> CString {
    CString::new(path.as_os_str().as_encoded_bytes()).unwrap_or_default()
}

impl Jail {
    /// Closes the jail around the calling process (see the module doc).
    pub fn enter(&self) -> Result<(), JailError> {
        let threads = std::fs::read_dir("/proc/self/task").map(|d| d.count()).unwrap_or(0);
        if threads != 1 {
            return Err(JailError::Threads(threads));
        }
        self.pivot()?;
        self.limit()?;
        self.drop_privileges()
    }

    fn pivot(&self) -> Result<(), JailError> {
        // The new root is mounted over the working directory (the bundle, for a shim's child):
        // a directory that exists, shadowed in this namespace only.
        let here_path = std::env::current_dir().map_err(|source| JailError::Step { step: "getcwd", source })?;
        let here = c_path(&here_path);
        let none = std::ptr::null::<libc::c_char>();
        // SAFETY: plain system calls on NUL-terminated paths that outlive them; they change this
        // process's mount namespace only (a new one, private from the first mount on).
        unsafe {
            check("unshare", libc::unshare(libc::CLONE_NEWNS | libc::CLONE_NEWIPC).into())?;
            check(
                "private mounts",
                libc::mount(none, c"/".as_ptr(), none, libc::MS_REC | libc::MS_PRIVATE, std::ptr::null()).into(),
            )?;
            let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
            let views: &[PathBuf] = match &self.root {
                JailRoot::Empty => &[],
                JailRoot::Views(dirs) => dirs,
            };
            if views.len() > MAX_VIEWS {
                return Err(JailError::Step {
                    step: "count the views",
                    source: std::io::Error::from_raw_os_error(libc::E2BIG),
                });
            }
            // Opened before the root covers the working directory, which may hold them (a
            // bundle's rootfs), and bound from their descriptors.
            let mut sources = Vec::with_capacity(views.len());
            for dir in views {
                let fd = libc::open(c_path(dir).as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC);
                check("open a view", fd.into())?;
                sources.push(std::os::fd::OwnedFd::from_raw_fd(fd));
            }
            let options = CString::new(format!("size=4k,nr_inodes={},mode=0555", views.len() + 4)).unwrap_or_default();
            let rc = libc::mount(c"tmpfs".as_ptr(), here.as_ptr(), c"tmpfs".as_ptr(), flags, options.as_ptr().cast());
            check("mount the root", rc.into())?;
            for (index, source) in sources.iter().enumerate() {
                let from = CString::new(format!("/proc/self/fd/{}", source.as_raw_fd())).unwrap_or_default();
                let at = c_path(&here_path.join(index.to_string()));
                check("make a view's directory", libc::mkdir(at.as_ptr(), 0o555).into())?;
                let rc = libc::mount(from.as_ptr(), at.as_ptr(), none, libc::MS_BIND | libc::MS_REC, std::ptr::null());
                check("bind a view", rc.into())?;
                let read_only = libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | flags;
                check(
                    "remount a view read-only",
                    libc::mount(none, at.as_ptr(), none, read_only, std::ptr::null()).into(),
                )?;
            }
            let read_only = libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | flags;
            check(
                "remount the root read-only",
                libc::mount(none, here.as_ptr(), none, read_only, std::ptr::null()).into(),
            )?;
            check("enter the root", libc::chdir(here.as_ptr()).into())?;
            // The old root goes on top of the new one and is then detached: nothing else stays.
            check("pivot_root", libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()))?;
            check("detach the old root", libc::umount2(c".".as_ptr(), libc::MNT_DETACH).into())?;
            check("chdir /", libc::chdir(c"/".as_ptr()).into())?;
        }
        Ok(())
    }

    fn limit(&self) -> Result<(), JailError> {
        let set = |step, resource, value: u64| {
            let limit = libc::rlimit { rlim_cur: value, rlim_max: value };
            // SAFETY: setrlimit reads the struct, which lives for the call.
            check(step, unsafe { libc::setrlimit(resource, &limit) }.into())
        };
        set("RLIMIT_CORE", libc::RLIMIT_CORE, 0)?;
        // Lowered only: raising a hard limit needs a capability the node may not grant.
        let mut current = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit writes the struct, which lives for the call.
        check("getrlimit", unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut current) }.into())?;
        set("RLIMIT_NOFILE", libc::RLIMIT_NOFILE, self.max_fds.min(current.rlim_max))
    }

    fn drop_privileges(&self) -> Result<(), JailError> {
        let keep: u64 = self.keep_caps.iter().fold(0, |bits, &cap| bits | 1 << cap);
        // SAFETY: prctl, setgroups, setresgid, setresuid and capset only change this process's
        // credentials; the capset structs live for the call.
        unsafe {
            for cap in (0..=LAST_CAP).filter(|cap| keep & (1 << cap) == 0) {
                if libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) < 0 {
                    let error = std::io::Error::last_os_error();
                    // EINVAL past the last capability this kernel knows: nothing more to drop.
                    if error.raw_os_error() == Some(libc::EINVAL) {
                        break;
                    }
                    return Err(JailError::Step { step: "empty the bounding set", source: error });
                }
            }
            check(
                "clear ambient capabilities",
                libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0).into(),
            )?;
            if keep != 0 {
                check("keep capabilities", libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0).into())?;
            }
            let groups = &self.groups[..self.groups.len().min(MAX_GROUPS)];
            check("setgroups", libc::setgroups(groups.len(), groups.as_ptr()).into())?;
            check("setresgid", libc::setresgid(self.gid, self.gid, self.gid).into())?;
            check("setresuid", libc::setresuid(self.uid, self.uid, self.uid).into())?;
            // Version 3 capability sets: two 32-bit words each.
            let header = [0x2008_0522u32, 0];
            let low = keep as u32;
            let high = (keep >> 32) as u32;
            let data = [low, low, 0, high, high, 0];
            check("capset", libc::syscall(libc::SYS_capset, header.as_ptr(), data.as_ptr()))?;
            check("no_new_privs", libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0).into())?;
        }
        Ok(())
    }
}

/// Closes every descriptor but those in `keep`: what the process inherited without being meant
/// to (its parent's listeners, sockets, files), before it opens anything of its own.
pub fn close_inherited_descriptors(keep: &[RawFd]) -> Result<(), JailError> {
    let mut keep: Vec<u32> = keep.iter().filter_map(|&fd| u32::try_from(fd).ok()).collect();
    keep.sort_unstable();
    keep.dedup();
    let mut from = 0u32;
    for fd in keep.iter().copied().chain([u32::MAX]) {
        if fd > from {
            // SAFETY: closes descriptors nothing in this process uses: it has opened none yet,
            // and the caller named every inherited one it keeps.
            check("close descriptors", unsafe { libc::syscall(libc::SYS_close_range, from, fd - 1, 0) })?;
        }
        from = fd.saturating_add(1);
    }
    Ok(())
}

/// Gives the child `command` will start the descriptor `fd` as its descriptor `as_fd`, open
/// across `exec` (everything else it gets is the standard streams and what is not
/// close-on-exec, which the child closes first thing: [`close_inherited_descriptors`]).
pub fn give_descriptor(command: &mut std::process::Command, fd: RawFd, as_fd: RawFd) {
    use std::os::unix::process::CommandExt;
    // SAFETY: `dup2` and `fcntl` are async-signal-safe and the only calls made between fork and
    // exec; `dup2` onto itself would keep close-on-exec, so that case clears the flag instead.
    unsafe {
        command.pre_exec(move || {
            let done = if fd == as_fd { libc::fcntl(fd, libc::F_SETFD, 0) } else { libc::dup2(fd, as_fd) };
            if done == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

//! A container's root filesystem and its read-only volumes, packed into the archive the guest
//! reads (`wasmcell_abi::archive`) by a jailed child, `wasmcell-vmm pack ROOTFS BUDGET [GUEST
//! SOURCE]…`: the trees are the tenant's, every name, link and size in them hostile, and the
//! jailed VMM that runs the workload can open nothing by name. The child sees read-only views
//! of the root filesystem and of each volume's source, at `/0`, `/1`, … of an empty root
//! (`pivot_root`; names of the jail's choosing, so nothing in the tenant's tree decides where
//! a volume goes), keeps uid 0 with one capability, `CAP_DAC_READ_SEARCH` (to read files
//! whatever their mode, as the container's root user could), and runs under the packer
//! seccomp filter: it can read those trees and write its stdout, nothing else. Each view is
//! one preopen of the archive: the root filesystem as `/`, each volume at its destination. The
//! shim gives it a memfd as stdout and seals it once the child is done; the VMM reads the
//! archive from it.
//!
//! The verdict comes from the child's last line on stderr ([`DONE`]), not from its exit
//! status: in the shim, containerd-shim's reaper may collect the child before we can. The
//! child waits for its stdin to close before it reads anything, so that the shim can first
//! move it into the tenant's cgroup: the archive's memory (up to the workload's) is charged to
//! the tenant, not to containerd.

use crate::instance::InstanceError;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use wasmcell_bundle::spec::Volume;
use wasmcell_vmm::jail::{Jail, JailRoot, CAP_DAC_READ_SEARCH};
use wasmcell_vmm::seccomp::{self, ThreadKind};
use wasmcell_vmm::Preopen;

/// The child's last line when the archive is complete on its stdout.
const DONE: &str = "wasmcell-pack: done";
/// How much of the child's stderr is kept.
const STDERR_KEPT: u64 = 16 << 10;

/// Packs `rootfs` and `volumes` (at most `budget` bytes of archive: the workload's memory) in
/// a jailed child (`vmm`, the VMM binary) run in `bundle`, charged to the cgroup `charged_to`
/// (a [`crate::cgroup::charged_to`] path); the sealed memfd holding the archive.
pub fn pack(
    vmm: &Path,
    bundle: &Path,
    rootfs: &Path,
    volumes: &[Volume],
    budget: u64,
    charged_to: Option<&str>,
) -> Result<File, InstanceError> {
    let memfd = memfd().map_err(InstanceError::Pack)?;
    let mut command = Command::new(vmm);
    command.arg("pack").arg(rootfs).arg(budget.to_string());
    for volume in volumes {
        command.arg(&volume.destination).arg(&volume.source);
    }
    let mut child = command
        .current_dir(bundle)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(memfd.try_clone().map_err(InstanceError::Pack)?)
        .stderr(Stdio::piped())
        .spawn()
        .map_err(InstanceError::Pack)?;
    // The child waits on its stdin: it is alive, and has read nothing, until that closes.
    let stdin = child.stdin.take().expect("piped");
    if let Some(cgroup) = charged_to {
        if let Err(e) = crate::cgroup::move_into(cgroup, child.id()) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(InstanceError::Pack(e));
        }
    }
    drop(stdin);
    // Its stderr ends when it does.
    let mut said = Vec::new();
    let mut stderr = child.stderr.take().expect("piped");
    let _ = stderr.by_ref().take(STDERR_KEPT).read_to_end(&mut said);
    let _ = std::io::copy(&mut stderr, &mut std::io::sink());
    // Collects it unless the shim's reaper did already (ECHILD).
    let _ = child.wait();
    let said = String::from_utf8_lossy(&said);
    let last = said.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("the packer ended without a word");
    if last != DONE {
        return Err(InstanceError::Files(last.trim_start_matches("wasmcell: ").chars().take(500).collect()));
    }
    seal(&memfd).map_err(InstanceError::Pack)?;
    Ok(memfd)
}

fn memfd() -> std::io::Result<File> {
    // SAFETY: memfd_create takes a NUL-terminated name and returns a new descriptor we own.
    let fd = unsafe { libc::memfd_create(c"wasmcell-files".as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created and nothing else owns it.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// No more writes, growth or shrinking, by anyone holding the memfd.
fn seal(file: &File) -> std::io::Result<()> {
    let seals = libc::F_SEAL_WRITE | libc::F_SEAL_GROW | libc::F_SEAL_SHRINK | libc::F_SEAL_SEAL;
    // SAFETY: F_ADD_SEALS on a memfd we own.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The child: `wasmcell-vmm pack ROOTFS BUDGET [GUEST SOURCE]…`. The archive on stdout and
/// [`DONE`] on stderr (status 0), or one line on stderr saying why not (status 1).
pub fn child(rootfs: &Path, budget: &OsStr, volumes: &[OsString]) -> i32 {
    match pack_in_jail(rootfs, budget, volumes) {
        Ok(()) => {
            eprintln!("{DONE}");
            0
        }
        Err(message) => {
            eprintln!("wasmcell: {message}");
            1
        }
    }
}

fn pack_in_jail(rootfs: &Path, budget: &OsStr, volumes: &[OsString]) -> Result<(), String> {
    let budget: u64 = budget.to_str().and_then(|b| b.parse().ok()).ok_or("the budget is not a number")?;
    // Too many views are the jail's to refuse.
    if !volumes.len().is_multiple_of(2) {
        return Err(String::from("the volumes are not pairs of a guest path and a source"));
    }
    let mut views = vec![rootfs.to_path_buf()];
    let mut preopens = vec![Preopen { host: "/0".into(), guest: "/".into() }];
    for (index, pair) in volumes.chunks_exact(2).enumerate() {
        let guest = pair[0].to_str().ok_or("a volume's guest path is not text")?;
        views.push(PathBuf::from(&pair[1]));
        preopens.push(Preopen { host: format!("/{}", index + 1).into(), guest: guest.to_string() });
    }
    // Until the shim has put this process in the tenant's cgroup and closed our stdin.
    let _ = std::io::stdin().lock().read_to_end(&mut Vec::new());
    wasmcell_vmm::jail::close_inherited_descriptors(&[0, 1, 2]).map_err(|e| e.to_string())?;
    let jail = Jail {
        root: JailRoot::Views(views),
        uid: 0,
        gid: 0,
        groups: Vec::new(),
        keep_caps: vec![CAP_DAC_READ_SEARCH],
        // Two descriptors per level of the walk (a directory and its listing; at most 128
        // levels), and a file.
        max_fds: 512,
    };
    jail.enter().map_err(|e| crate::service::error_chain(&e))?;
    seccomp::apply(ThreadKind::Packer).map_err(|e| crate::service::error_chain(&e))?;
    let archive = wasmcell_vmm::pack_files(&preopens, budget).map_err(|e| crate::service::error_chain(&e))?;
    std::io::stdout().lock().write_all(&archive).map_err(|e| format!("cannot write the archive: {e}"))
}

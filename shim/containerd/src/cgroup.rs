//! The container's cgroup (`linux.cgroupsPath`): the VMM process joins it before booting, so
//! the VM's memory and CPU time are accounted to the container (what `ctr task metrics` and the
//! kubelet read) as they would be for runc; the shim removes it on delete. cgroupfs paths only:
//! a systemd-style `slice:prefix:name` is left alone (the VMM stays in the shim's cgroup).

use cgroups_rs::fs::{hierarchies, Cgroup};
use cgroups_rs::CgroupPid;

/// The path in every hierarchy, or `None` for a systemd-style path.
fn relative(path: &str) -> Option<&str> {
    (!path.contains(':')).then(|| path.trim_start_matches('/')).filter(|p| !p.is_empty())
}

/// Creates the cgroup at `path` (if needed) and moves the calling process into it.
pub fn join(path: &str) -> Result<(), String> {
    let Some(relative) = relative(path) else { return Ok(()) };
    let cgroup = Cgroup::new(hierarchies::auto(), relative).map_err(|e| format!("cannot create cgroup {path}: {e}"))?;
    cgroup
        .add_task_by_tgid(CgroupPid::from(u64::from(std::process::id())))
        .map_err(|e| format!("cannot join cgroup {path}: {e}"))
}

/// Kills whatever still runs in the cgroup at `path` (a VMM whose shim died), then removes it;
/// a missing cgroup is fine.
pub fn remove(path: &str) {
    let Some(relative) = relative(path) else { return };
    let cgroup = Cgroup::load(hierarchies::auto(), relative);
    // A few rounds: a process may be on its way out, or (never ours) forking.
    for _ in 0..50 {
        let procs = cgroup.procs();
        if procs.is_empty() {
            break;
        }
        for pid in procs {
            if let Ok(pid) = i32::try_from(pid.pid) {
                // SAFETY: `kill` only sends a signal. The pid was listed in the container's own
                // cgroup, which only the container's VMM joined.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    if let Err(e) = cgroup.delete() {
        log::warn!("cannot remove cgroup {path}: {e}");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_cgroupfs_paths_are_managed() {
        assert_eq!(super::relative("/ns/c1"), Some("ns/c1"));
        assert_eq!(super::relative("kubepods/pod1/c1"), Some("kubepods/pod1/c1"));
        assert_eq!(super::relative("system.slice:cri-containerd:c1"), None);
        assert_eq!(super::relative("/"), None);
    }
}

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

/// Removes the cgroup at `path` once its processes are gone; a missing one is fine.
pub fn remove(path: &str) {
    if let Some(relative) = relative(path) {
        let cgroup = Cgroup::load(hierarchies::auto(), relative);
        if let Err(e) = cgroup.delete() {
            log::warn!("cannot remove cgroup {path}: {e}");
        }
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

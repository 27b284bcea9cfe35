//! The container's cgroup (`linux.cgroupsPath`): the VMM process joins it before booting, so
//! the VM's memory and CPU time are accounted to the container (what `ctr task metrics` and the
//! kubelet read) as they would be for runc, and held to the container's limits
//! (`linux.resources`: memory, CPU shares, CFS quota); the shim removes it on delete.
//!
//! Both forms of the path are handled: cgroupfs (`/a/b`) and systemd's `slice:prefix:name`,
//! which CRI produces when the kubelet uses the systemd driver. The latter is created where
//! systemd would put the scope (`/a.slice/a-b.slice/prefix-name.scope`) directly in the cgroup
//! filesystem, as runc's cgroupfs fallback does: on a node where systemd runs, systemd does not
//! know of the scope (registering it over D-Bus is not done yet). A join or a limit that cannot
//! be applied fails the start: nothing runs unlimited by accident.

use crate::plan::CgroupLimits;
use cgroups_rs::fs::{cpu::CpuController, hierarchies, memory::MemController, Cgroup};
use cgroups_rs::CgroupPid;

/// What the VMM may use beyond its guest's memory: its own heap, threads and KVM's page tables
/// for the guest (charged to the cgroup).
pub const VMM_ALLOWANCE: u64 = 32 << 20;

/// The path in every hierarchy, relative to its root; `None` for none (`/` or empty).
pub fn relative(path: &str) -> Option<String> {
    let relative = match path.split(':').collect::<Vec<_>>().as_slice() {
        [slice, prefix, name] => systemd_path(slice, prefix, name)?,
        _ if path.contains(':') => return None,
        _ => path.trim_start_matches('/').to_string(),
    };
    (!relative.is_empty()).then_some(relative)
}

/// Where systemd puts `prefix-name.scope` in `slice` (a name ending in `.slice` is a slice of
/// its own): each dash of a slice's name is a level (`a-b.slice` is in `a.slice`).
fn systemd_path(slice: &str, prefix: &str, name: &str) -> Option<String> {
    let mut parts = Vec::new();
    if !slice.is_empty() && slice != "-.slice" {
        let stem = slice.strip_suffix(".slice")?;
        if stem.is_empty() || stem.split('-').any(str::is_empty) || stem.contains('/') {
            return None;
        }
        let mut level = String::new();
        for word in stem.split('-') {
            if !level.is_empty() {
                level.push('-');
            }
            level.push_str(word);
            parts.push(format!("{level}.slice"));
        }
    }
    if name.is_empty() || name.contains('/') || prefix.contains('/') {
        return None;
    }
    let unit = match (name.ends_with(".slice"), prefix.is_empty()) {
        (true, _) => name.to_string(),
        (false, true) => format!("{name}.scope"),
        (false, false) => format!("{prefix}-{name}.scope"),
    };
    parts.push(unit);
    Some(parts.join("/"))
}

/// Creates the cgroup at `path` (if needed), holds it to `limits` and moves the calling process
/// into it.
pub fn join(path: &str, limits: &CgroupLimits) -> Result<(), String> {
    let relative = relative(path).ok_or_else(|| format!("cannot use cgroup path {path:?}"))?;
    let cgroup =
        Cgroup::new(hierarchies::auto(), relative.as_str()).map_err(|e| format!("cannot create cgroup {path}: {e}"))?;
    apply(&cgroup, limits).map_err(|e| format!("cannot limit cgroup {path}: {e}"))?;
    cgroup
        .add_task_by_tgid(CgroupPid::from(u64::from(std::process::id())))
        .map_err(|e| format!("cannot join cgroup {path}: {e}"))
}

fn apply(cgroup: &Cgroup, limits: &CgroupLimits) -> Result<(), String> {
    if let Some(bytes) = limits.memory_bytes {
        let memory: &MemController = cgroup.controller_of().ok_or("no memory controller")?;
        let limit = bytes.saturating_add(VMM_ALLOWANCE).min(i64::MAX as u64) as i64;
        memory.set_limit(limit).map_err(|e| format!("memory limit {limit}: {e}"))?;
    }
    if limits.cpu_shares.is_some() || limits.cpu_quota.is_some() {
        let cpu: &CpuController = cgroup.controller_of().ok_or("no cpu controller")?;
        if let Some(shares) = limits.cpu_shares {
            cpu.set_shares(shares).map_err(|e| format!("CPU shares {shares}: {e}"))?;
        }
        if let Some(period) = limits.cpu_period {
            cpu.set_cfs_period(period).map_err(|e| format!("CFS period {period}: {e}"))?;
        }
        if let Some(quota) = limits.cpu_quota {
            cpu.set_cfs_quota(quota).map_err(|e| format!("CFS quota {quota}: {e}"))?;
        }
    }
    Ok(())
}

/// Where the work the shim does on a container's behalf before it runs (compiling its module,
/// packing its files) is charged, so that it counts against the tenant: the pod's cgroup (the
/// parent of a pod container's own), or a container's own when it has no pod; `None` when the
/// container names no cgroup.
pub fn charged_to(container: &str, in_pod: bool) -> Option<String> {
    let own = relative(container)?;
    if !in_pod {
        return Some(own);
    }
    own.rsplit_once('/').map(|(pod, _)| pod.to_string()).filter(|p| !p.is_empty())
}

/// Moves process `pid` into the cgroup at `relative` (a path [`relative`] or [`charged_to`]
/// gave), creating it with no limits of its own if needed.
pub fn move_into(relative: &str, pid: u32) -> std::io::Result<()> {
    let cgroup = Cgroup::new(hierarchies::auto(), relative).map_err(std::io::Error::other)?;
    cgroup.add_task_by_tgid(CgroupPid::from(u64::from(pid))).map_err(std::io::Error::other)
}

/// Kills whatever still runs in the cgroup at `path` (a VMM whose shim died), then removes it;
/// a missing cgroup is fine.
pub fn remove(path: &str) {
    let Some(relative) = relative(path) else { return };
    let cgroup = Cgroup::load(hierarchies::auto(), relative.as_str());
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
    use super::{charged_to, relative};

    #[test]
    fn a_tenants_compile_and_packing_are_charged_to_the_pod_or_to_the_container() {
        assert_eq!(charged_to("/kubepods/burstable/pod1/c1", true).as_deref(), Some("kubepods/burstable/pod1"));
        assert_eq!(charged_to("/k8s.io/c1", false).as_deref(), Some("k8s.io/c1"));
        assert_eq!(
            charged_to("kubepods-pod1.slice:cri-containerd:c1", true).as_deref(),
            Some("kubepods.slice/kubepods-pod1.slice")
        );
        assert_eq!(charged_to("c1", true), None, "a pod container's cgroup with no parent");
        assert_eq!(charged_to("/", false), None);
    }

    #[test]
    fn cgroupfs_paths_are_used_as_they_are() {
        assert_eq!(relative("/ns/c1").as_deref(), Some("ns/c1"));
        assert_eq!(relative("kubepods/pod1/c1").as_deref(), Some("kubepods/pod1/c1"));
        assert_eq!(relative("/"), None);
    }

    #[test]
    fn systemd_paths_become_where_systemd_puts_the_scope() {
        assert_eq!(
            relative("kubepods-burstable-pod12.slice:cri-containerd:abc").as_deref(),
            Some("kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod12.slice/cri-containerd-abc.scope")
        );
        assert_eq!(relative("system.slice:wasmcell:e2e").as_deref(), Some("system.slice/wasmcell-e2e.scope"));
        assert_eq!(relative("-.slice::c1").as_deref(), Some("c1.scope"));
        assert_eq!(relative("user.slice::sub.slice").as_deref(), Some("user.slice/sub.slice"));
        // Nothing that climbs out of its slice, or is not a slice.
        for bad in ["system.slice:x:../../etc", "a--b.slice:p:n", "a/b.slice:p:n", "notaslice:p:n", "a:b", "s.slice:p:"]
        {
            assert_eq!(relative(bad), None, "{bad}");
        }
    }
}

//! Kubernetes pods: one VM per pod. The pod's sandbox task spawns the pod's VMM, whose VM boots
//! with no workload ([`server`]); each container of the pod becomes a workload started in that
//! VM over the VMM's control channel ([`client`], [`protocol`]). A pod's containers all reach
//! the shim that serves its sandbox (containerd groups them by CRI's sandbox-id annotation), so
//! that shim keeps the pods it serves here, by sandbox id.

pub mod client;
pub mod server;
pub use wasmcell_bundle::protocol;

use client::PodVm;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

fn pods() -> std::sync::MutexGuard<'static, HashMap<String, Arc<PodVm>>> {
    static PODS: OnceLock<Mutex<HashMap<String, Arc<PodVm>>>> = OnceLock::new();
    PODS.get_or_init(Mutex::default).lock().unwrap_or_else(|e| e.into_inner())
}

/// Records the VM of the pod whose sandbox is `sandbox_id`.
pub fn register(sandbox_id: &str, pod: Arc<PodVm>) {
    pods().insert(sandbox_id.to_string(), pod);
}

/// The VM of the pod whose sandbox is `sandbox_id`, if this shim runs it.
pub fn find(sandbox_id: &str) -> Option<Arc<PodVm>> {
    pods().get(sandbox_id).cloned()
}

/// Forgets the pod (its VM has exited).
pub fn unregister(sandbox_id: &str) {
    pods().remove(sandbox_id);
}

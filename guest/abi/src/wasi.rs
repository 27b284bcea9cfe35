//! What the guest links: every function of WASI preview 1 (`wasi_snapshot_preview1`) for core
//! modules, every interface of WASI 0.2's `wasi:cli/command` world for components. The host
//! checks a module's or component's imports against these lists before it boots a VM, so that
//! a workload the guest cannot link fails early, with its import named.

/// The module WASI preview 1 functions are imported from.
pub const PREVIEW1_MODULE: &str = "wasi_snapshot_preview1";

/// Every function of the snapshot, sorted.
pub const PREVIEW1_FUNCTIONS: [&str; 46] = [
    "args_get",
    "args_sizes_get",
    "clock_res_get",
    "clock_time_get",
    "environ_get",
    "environ_sizes_get",
    "fd_advise",
    "fd_allocate",
    "fd_close",
    "fd_datasync",
    "fd_fdstat_get",
    "fd_fdstat_set_flags",
    "fd_fdstat_set_rights",
    "fd_filestat_get",
    "fd_filestat_set_size",
    "fd_filestat_set_times",
    "fd_pread",
    "fd_prestat_dir_name",
    "fd_prestat_get",
    "fd_pwrite",
    "fd_read",
    "fd_readdir",
    "fd_renumber",
    "fd_seek",
    "fd_sync",
    "fd_tell",
    "fd_write",
    "path_create_directory",
    "path_filestat_get",
    "path_filestat_set_times",
    "path_link",
    "path_open",
    "path_readlink",
    "path_remove_directory",
    "path_rename",
    "path_symlink",
    "path_unlink_file",
    "poll_oneoff",
    "proc_exit",
    "proc_raise",
    "random_get",
    "sched_yield",
    "sock_accept",
    "sock_recv",
    "sock_send",
    "sock_shutdown",
];

/// Whether the guest links `module::name`.
pub fn is_linked(module: &str, name: &str) -> bool {
    module == PREVIEW1_MODULE && PREVIEW1_FUNCTIONS.binary_search(&name).is_ok()
}

/// Every interface of WASI 0.2's command world, without version: what a component may import.
pub const COMMAND_INTERFACES: [&str; 27] = [
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stderr",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stderr",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:clocks/monotonic-clock",
    "wasi:clocks/wall-clock",
    "wasi:filesystem/preopens",
    "wasi:filesystem/types",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:random/random",
    "wasi:sockets/instance-network",
    "wasi:sockets/ip-name-lookup",
    "wasi:sockets/network",
    "wasi:sockets/tcp",
    "wasi:sockets/tcp-create-socket",
    "wasi:sockets/udp",
    "wasi:sockets/udp-create-socket",
];

/// The interfaces of `wasi:http` a component may import besides the command world's (those of
/// the `wasi:http/proxy` world; its other imports are all in [`COMMAND_INTERFACES`]).
pub const HTTP_INTERFACES: [&str; 2] = ["wasi:http/outgoing-handler", "wasi:http/types"];

/// The interface `name` names if it is one of a WASI 0.2 release (`wasi:cli/exit@0.2.3` →
/// `wasi:cli/exit`): the guest implements 0.2.12, and wasmtime links any `0.2.x` to it.
fn interface_0_2(name: &str) -> Option<&str> {
    let (interface, version) = name.split_once('@')?;
    let patch = version.strip_prefix("0.2.")?;
    (!patch.is_empty() && patch.bytes().all(|b| b.is_ascii_digit())).then_some(interface)
}

/// The interface a component import names, if the guest offers it at that version.
pub fn offered_interface(import: &str) -> Option<&'static str> {
    let interface = interface_0_2(import)?;
    [&COMMAND_INTERFACES[..], &HTTP_INTERFACES[..]]
        .into_iter()
        .find_map(|list| list.binary_search(&interface).ok().map(|at| list[at]))
}

/// Whether an export named `name` makes a component a command: `wasi:cli/run` of any `0.2.x`.
pub fn is_run_export(name: &str) -> bool {
    interface_0_2(name) == Some("wasi:cli/run")
}

/// Whether an export named `name` is what `wasmcell serve` calls: `wasi:http/incoming-handler`
/// of any `0.2.x`.
pub fn is_http_handler_export(name: &str) -> bool {
    interface_0_2(name) == Some("wasi:http/incoming-handler")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn component_interfaces_are_sorted_and_versioned() {
        assert!(COMMAND_INTERFACES.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(offered_interface("wasi:cli/exit@0.2.3"), Some("wasi:cli/exit"));
        assert_eq!(offered_interface("wasi:io/streams@0.2.12"), Some("wasi:io/streams"));
        assert_eq!(offered_interface("wasi:cli/exit"), None, "unversioned");
        assert_eq!(offered_interface("wasi:cli/exit@0.3.0"), None, "WASI 0.3");
        assert_eq!(offered_interface("wasi:cli/exit@0.2.0-rc-2023-11-10"), None, "a release candidate");
        assert_eq!(offered_interface("wasi:http/types@0.2.3"), Some("wasi:http/types"), "the proxy world's");
        assert_eq!(offered_interface("wasi:http/incoming-handler@0.2.3"), None, "an export, never an import");
        assert_eq!(offered_interface("wasi:cli/exit@0.2."), None);
        assert!(is_run_export("wasi:cli/run@0.2.0") && is_run_export("wasi:cli/run@0.2.12"));
        assert!(!is_run_export("wasi:cli/run@0.2.0-rc-2023-12-05") && !is_run_export("wasi:cli/run"));
        assert!(is_http_handler_export("wasi:http/incoming-handler@0.2.0"));
        assert!(
            !is_http_handler_export("wasi:http/incoming-handler@0.3.0")
                && !is_http_handler_export("wasi:cli/run@0.2.0")
        );
        assert!(HTTP_INTERFACES.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn the_list_is_sorted_for_binary_search() {
        assert!(PREVIEW1_FUNCTIONS.windows(2).all(|w| w[0] < w[1]));
        assert!(is_linked("wasi_snapshot_preview1", "fd_write"));
        assert!(!is_linked("wasi_snapshot_preview1", "fd_frobnicate"));
        assert!(!is_linked("env", "fd_write"));
    }
}

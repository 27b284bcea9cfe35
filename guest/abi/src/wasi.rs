//! The WASI preview 1 functions the guest links: every function of `wasi_snapshot_preview1`.
//! The host checks a module's imports against this list before it boots a VM, so that a module
//! the guest cannot link fails early, with its import named.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_sorted_for_binary_search() {
        assert!(PREVIEW1_FUNCTIONS.windows(2).all(|w| w[0] < w[1]));
        assert!(is_linked("wasi_snapshot_preview1", "fd_write"));
        assert!(!is_linked("wasi_snapshot_preview1", "fd_frobnicate"));
        assert!(!is_linked("env", "fd_write"));
    }
}

//! WASI preview 1 (`wasi_snapshot_preview1`), served by the guest itself.
//!
//! Every import of the snapshot is linked, so any WASI program instantiates. Calls that are not
//! implemented yet return `ENOSYS` and never trap. Every guest pointer goes through wasmtime's
//! bounds-checked memory accessors.

mod clock;
mod env;
mod errno;
mod poll;
mod proc;
mod stdio;

use alloc::vec::Vec;
use wasmcell_abi::workload::Workload;
use wasmcell_abi::BootInfo;
use wasmtime::{Caller, Extern, Linker, Memory};

pub use errno::Errno;
pub use proc::WasiExit;

/// The module that WASI preview 1 functions are imported from.
pub const MODULE: &str = "wasi_snapshot_preview1";

/// Per-instance WASI state.
pub struct WasiCtx {
    args: Vec<Vec<u8>>,
    env: Vec<Vec<u8>>,
    console: Option<crate::virtio::console::Console>,
    clocks: clock::Clocks,
    rng: rand_chacha::ChaCha20Rng,
}

impl WasiCtx {
    pub fn new(workload: &Workload<'_>, info: &BootInfo) -> Self {
        Self {
            args: workload.args().map(<[u8]>::to_vec).collect(),
            env: workload.env().map(<[u8]>::to_vec).collect(),
            console: None,
            clocks: clock::Clocks::new(info),
            rng: clock::new_rng(info),
        }
    }
}

/// The calling instance's exported memory.
fn memory(caller: &mut Caller<'_, WasiCtx>) -> Result<Memory, Errno> {
    match caller.get_export("memory") {
        Some(Extern::Memory(memory)) => Ok(memory),
        _ => Err(Errno::Fault),
    }
}

/// Writes `bytes` at `offset` of the caller's memory.
fn write_bytes(caller: &mut Caller<'_, WasiCtx>, offset: u32, bytes: &[u8]) -> Result<(), Errno> {
    let memory = memory(caller)?;
    memory.write(caller, offset as usize, bytes).map_err(|_| Errno::Fault)
}

/// Writes a little-endian `u32` at `offset` of the caller's memory.
fn write_u32(caller: &mut Caller<'_, WasiCtx>, offset: u32, value: u32) -> Result<(), Errno> {
    write_bytes(caller, offset, &value.to_le_bytes())
}

/// Links every `wasi_snapshot_preview1` function.
pub fn add_to_linker(linker: &mut Linker<WasiCtx>) -> wasmtime::Result<()> {
    clock::add_to_linker(linker)?;
    env::add_to_linker(linker)?;
    proc::add_to_linker(linker)?;
    stdio::add_to_linker(linker)?;
    poll::add_to_linker(linker)?;
    add_unimplemented(linker)
}

/// Links the calls not implemented yet: each returns `ENOSYS`.
fn add_unimplemented(linker: &mut Linker<WasiCtx>) -> wasmtime::Result<()> {
    macro_rules! enosys {
        ($($name:literal: ($($p:ty),*) $(-> $r:ty)?;)*) => {$(
            linker.func_wrap(MODULE, $name, |_: Caller<'_, WasiCtx>, $(_: $p),*| -> i32 { Errno::NoSys as i32 })?;
        )*};
    }
    enosys! {
        "fd_advise": (i32, i64, i64, i32);
        "fd_allocate": (i32, i64, i64);
        "fd_close": (i32);
        "fd_datasync": (i32);
        "fd_fdstat_set_flags": (i32, i32);
        "fd_fdstat_set_rights": (i32, i64, i64);
        "fd_filestat_get": (i32, i32);
        "fd_filestat_set_size": (i32, i64);
        "fd_filestat_set_times": (i32, i64, i64, i32);
        "fd_pread": (i32, i32, i32, i64, i32);
        "fd_pwrite": (i32, i32, i32, i64, i32);
        "fd_readdir": (i32, i32, i32, i64, i32);
        "fd_renumber": (i32, i32);
        "fd_seek": (i32, i64, i32, i32);
        "fd_sync": (i32);
        "fd_tell": (i32, i32);
        "path_create_directory": (i32, i32, i32);
        "path_filestat_get": (i32, i32, i32, i32, i32);
        "path_filestat_set_times": (i32, i32, i32, i32, i64, i64, i32);
        "path_link": (i32, i32, i32, i32, i32, i32, i32);
        "path_open": (i32, i32, i32, i32, i32, i64, i64, i32, i32);
        "path_readlink": (i32, i32, i32, i32, i32, i32);
        "path_remove_directory": (i32, i32, i32);
        "path_rename": (i32, i32, i32, i32, i32, i32);
        "path_symlink": (i32, i32, i32, i32, i32);
        "path_unlink_file": (i32, i32, i32);
        "proc_raise": (i32);
        "sock_accept": (i32, i32, i32);
        "sock_recv": (i32, i32, i32, i32, i32, i32);
        "sock_send": (i32, i32, i32, i32, i32);
        "sock_shutdown": (i32, i32);
    }
    Ok(())
}

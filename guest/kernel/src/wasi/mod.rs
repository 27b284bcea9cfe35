//! WASI preview 1 (`wasi_snapshot_preview1`), served by the guest itself; its state (stdio,
//! files, clocks, randomness) is what WASI 0.2 components use too (`crate::component`).
//!
//! Every import of the snapshot is linked, so any WASI program instantiates. The socket calls
//! serve the TCP listeners the command line preopens and the connections accepted from them
//! (`socket`); `proc_raise` answers `NOTSUP`, as wasmtime does. Nothing traps. Every guest
//! pointer goes through wasmtime's bounds-checked memory accessors.

mod clock;
mod env;
mod errno;
mod fd;
mod host;
mod io;
mod path;
pub(crate) mod poll;
mod proc;
mod socket;
pub(crate) mod stdio;

use alloc::collections::BTreeSet;
use alloc::string::String;
use alloc::vec::Vec;
use wasmcell_abi::archive::Archive;
use wasmcell_abi::file::Volume;
use wasmcell_abi::vcpu::VcpuInfo;
use wasmcell_abi::workload::Workload;
use wasmtime::{Caller, Extern, IntoFunc, Linker, Memory, Module};

pub use errno::Errno;
pub use fd::Preopen;
pub(crate) use path::lookup_node as lookup;
pub use proc::WasiExit;

/// The module that WASI preview 1 functions are imported from.
pub const MODULE: &str = "wasi_snapshot_preview1";

/// Per-instance WASI state.
pub struct WasiCtx {
    pub(crate) args: Vec<Vec<u8>>,
    pub(crate) env: Vec<Vec<u8>>,
    console: Option<crate::virtio::console::Console>,
    pub(crate) fds: fd::FdTable,
    /// The file device's handles of the read-only file volumes (opening one to write is
    /// `ROFS`, as for a file on a read-only bind mount).
    pub(crate) read_only_files: Vec<u32>,
    pub(crate) clocks: clock::Clocks,
    pub(crate) rng: rand_chacha::ChaCha20Rng,
}

impl WasiCtx {
    /// The context for `workload`, with its preopened TCP listeners (bound here: the error
    /// says why one could not be) and the preopened directories of `files` (the VMM's archive).
    pub fn new(workload: &Workload<'static>, files: Option<Archive<'static>>, info: &VcpuInfo) -> Result<Self, String> {
        let listeners = socket::preopen(workload.listen())?;
        let mut preopens = files.map(wasmcell_guest_fs::preopens).unwrap_or_default();
        let clocks = clock::Clocks::new(info);
        attach_file_volumes(workload, &mut preopens, clocks.realtime_ns())?;
        let volumes = host::preopens(volume_dirs(workload));
        let read_only_files = workload
            .volumes()
            .enumerate()
            .filter(|(_, entry)| entry.first().and_then(|&b| Volume::from_byte(b)) == Some(Volume::ReadOnlyFile))
            .map(|(index, _)| index as u32)
            .collect();
        Ok(Self {
            fds: fd::FdTable::new(listeners, preopens, volumes),
            read_only_files,
            args: workload.args().map(<[u8]>::to_vec).collect(),
            env: workload.env().map(<[u8]>::to_vec).collect(),
            console: None,
            clocks,
            rng: clock::new_rng(info),
        })
    }

    /// Writes `bytes` to the workload's stderr, if the console works (the runtime's last word).
    pub fn write_stderr(&mut self, bytes: &[u8]) {
        if let Ok(console) = stdio::console(self) {
            let _ = console.write(crate::virtio::console::Output::Stderr, bytes);
        }
    }

    /// Waits until the workload's queued output has been sent (before it waits or ends).
    pub fn flush_output(&mut self) -> Result<(), Errno> {
        match &mut self.console {
            Some(console) => console.flush().map_err(|_| Errno::Io),
            None => Ok(()),
        }
    }
}

/// The workload's directory volumes: `(handle, guest path)` each (its blob lives as long as
/// the workload, mapped read-only). Single-file volumes are not preopens.
fn volume_dirs<'a>(workload: &Workload<'a>) -> impl Iterator<Item = (u32, &'a [u8])> + 'a {
    workload.volumes().enumerate().filter_map(|(index, entry)| {
        let (&kind, path) = entry.split_first()?;
        let dir = matches!(Volume::from_byte(kind), Some(Volume::Dir | Volume::ReadOnlyDir));
        dir.then_some((index as u32, path))
    })
}

/// Places each file volume in the in-memory tree at its path: beneath the preopen whose path
/// is its longest prefix, or a new, empty `/` if none is (the workload has no root
/// filesystem). A path the tree cannot hold (a file or symlink on the way) fails the start.
fn attach_file_volumes(
    workload: &Workload<'static>,
    preopens: &mut Vec<(&'static [u8], wasmcell_guest_fs::NodeRef)>,
    now_ns: u64,
) -> Result<(), String> {
    for (index, entry) in workload.volumes().enumerate() {
        let Some((&kind, path)) = entry.split_first() else { continue };
        if !matches!(Volume::from_byte(kind), Some(Volume::File | Volume::ReadOnlyFile)) {
            continue;
        }
        let beneath = |name: &[u8]| name == b"/" || (path.starts_with(name) && path.get(name.len()) == Some(&b'/'));
        let best = preopens.iter().filter(|(name, _)| beneath(name)).max_by_key(|(name, _)| name.len());
        let (root, rest) = match best {
            Some((name, root)) => (root.clone(), &path[name.len()..]),
            None => {
                let root = wasmcell_guest_fs::Node::new_dir(now_ns);
                preopens.push((b"/", root.clone()));
                (root, path)
            }
        };
        wasmcell_guest_fs::attach_host_file(&root, rest, index as u32, now_ns)
            .map_err(|e| alloc::format!("cannot place the file volume at {}: {e:?}", String::from_utf8_lossy(path)))?;
    }
    Ok(())
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

/// A linker that takes only the WASI functions a module imports: wrapping a host function
/// costs several microseconds, and a program imports a handful of the snapshot's 45.
pub struct WasiLinker<'a> {
    linker: &'a mut Linker<WasiCtx>,
    wanted: BTreeSet<String>,
}

impl WasiLinker<'_> {
    /// Links `func` as `module::name` if the module imports it.
    pub fn func_wrap<Params, Args>(
        &mut self,
        module: &str,
        name: &str,
        func: impl IntoFunc<WasiCtx, Params, Args>,
    ) -> wasmtime::Result<&mut Self> {
        if module == MODULE && self.wanted.contains(name) {
            self.linker.func_wrap(module, name, func)?;
        }
        Ok(self)
    }
}

/// Links every `wasi_snapshot_preview1` function that `module` imports (all of them exist, so a
/// WASI import can only fail to link if its signature is wrong).
pub fn add_to_linker(linker: &mut Linker<WasiCtx>, module: &Module) -> wasmtime::Result<()> {
    let wanted = module.imports().filter(|i| i.module() == MODULE).map(|i| String::from(i.name())).collect();
    let linker = &mut WasiLinker { linker, wanted };
    clock::add_to_linker(linker)?;
    env::add_to_linker(linker)?;
    proc::add_to_linker(linker)?;
    fd::add_to_linker(linker)?;
    io::add_to_linker(linker)?;
    path::add_to_linker(linker)?;
    poll::add_to_linker(linker)?;
    socket::add_to_linker(linker)?;
    add_unimplemented(linker)
}

/// Links the call the guest does not offer, answering as wasmtime does.
fn add_unimplemented(linker: &mut WasiLinker<'_>) -> wasmtime::Result<()> {
    linker.func_wrap(MODULE, "proc_raise", |_: Caller<'_, WasiCtx>, _: i32| Errno::NotSup as i32)?;
    Ok(())
}

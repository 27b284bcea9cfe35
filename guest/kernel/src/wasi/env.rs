//! Arguments and environment: `args_*` and `environ_*`.

use super::errno::{to_errno, Errno};
use super::{write_bytes, write_u32, WasiCtx, WasiLinker, MODULE};
use alloc::vec::Vec;
use wasmtime::Caller;

/// Writes `strings` as NUL-terminated strings into `buf` and their addresses into `ptrs`.
fn write_strings(caller: &mut Caller<'_, WasiCtx>, strings: &[Vec<u8>], ptrs: u32, buf: u32) -> Result<(), Errno> {
    let mut at = buf;
    for (i, s) in strings.iter().enumerate() {
        let slot = ptrs.checked_add(u32::try_from(i * 4).map_err(|_| Errno::Overflow)?).ok_or(Errno::Fault)?;
        write_u32(caller, slot, at)?;
        write_bytes(caller, at, s)?;
        let end = at.checked_add(u32::try_from(s.len()).map_err(|_| Errno::Overflow)?).ok_or(Errno::Fault)?;
        write_bytes(caller, end, &[0])?;
        at = end.checked_add(1).ok_or(Errno::Fault)?;
    }
    Ok(())
}

/// Writes the count of `strings` and the bytes they take with their terminators.
fn write_sizes(
    caller: &mut Caller<'_, WasiCtx>,
    strings: &[Vec<u8>],
    count_ptr: u32,
    size_ptr: u32,
) -> Result<(), Errno> {
    let count = u32::try_from(strings.len()).map_err(|_| Errno::Overflow)?;
    let size = u32::try_from(strings.iter().map(|s| s.len() + 1).sum::<usize>()).map_err(|_| Errno::Overflow)?;
    write_u32(caller, count_ptr, count)?;
    write_u32(caller, size_ptr, size)
}

/// Runs `f` on the arguments (`args`) or the environment with the caller still usable.
fn with_strings(
    caller: &mut Caller<'_, WasiCtx>,
    args: bool,
    f: impl FnOnce(&mut Caller<'_, WasiCtx>, &[Vec<u8>]) -> Result<(), Errno>,
) -> i32 {
    fn pick(ctx: &mut WasiCtx, args: bool) -> &mut Vec<Vec<u8>> {
        if args {
            &mut ctx.args
        } else {
            &mut ctx.env
        }
    }
    let strings = core::mem::take(pick(caller.data_mut(), args));
    let result = f(caller, &strings);
    *pick(caller.data_mut(), args) = strings;
    to_errno(result)
}

pub fn add_to_linker(linker: &mut WasiLinker<'_>) -> wasmtime::Result<()> {
    linker.func_wrap(MODULE, "args_get", |mut c: Caller<'_, WasiCtx>, argv: u32, buf: u32| {
        with_strings(&mut c, true, |c, s| write_strings(c, s, argv, buf))
    })?;
    linker.func_wrap(MODULE, "args_sizes_get", |mut c: Caller<'_, WasiCtx>, count: u32, size: u32| {
        with_strings(&mut c, true, |c, s| write_sizes(c, s, count, size))
    })?;
    linker.func_wrap(MODULE, "environ_get", |mut c: Caller<'_, WasiCtx>, environ: u32, buf: u32| {
        with_strings(&mut c, false, |c, s| write_strings(c, s, environ, buf))
    })?;
    linker.func_wrap(MODULE, "environ_sizes_get", |mut c: Caller<'_, WasiCtx>, count: u32, size: u32| {
        with_strings(&mut c, false, |c, s| write_sizes(c, s, count, size))
    })?;
    Ok(())
}

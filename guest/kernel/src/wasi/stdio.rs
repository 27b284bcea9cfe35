//! The standard streams over the virtio console: what `fd_read` and `fd_write` do when the
//! descriptor is stdin, stdout or stderr.

use super::errno::Errno;
use super::io::iovecs;
use super::{memory, write_bytes, write_u32, WasiCtx};
use crate::virtio::console::{Console, Output};
use alloc::vec::Vec;
use wasmtime::Caller;

/// Most bytes gathered for one write or read (one VM exit); larger ones are split.
const MAX_TRANSFER: usize = 1 << 20;

/// The console, brought up on first use: programs that never touch stdio never pay for it.
pub(crate) fn console(ctx: &mut WasiCtx) -> Result<&mut Console, Errno> {
    if ctx.console.is_none() {
        let info = crate::vcpu::info();
        let high = wasmcell_abi::devices::console::queue_address_high(info.heap_start);
        ctx.console = Some(Console::new(info.console_mmio, high).map_err(|_| Errno::Io)?);
    }
    ctx.console.as_mut().ok_or(Errno::Io)
}

/// Gathers the iovecs (up to [`MAX_TRANSFER`] bytes) and writes them to `output`.
pub(super) fn write(
    caller: &mut Caller<'_, WasiCtx>,
    output: Output,
    iovs: u32,
    count: u32,
    out: u32,
) -> Result<(), Errno> {
    let mut bytes = Vec::new();
    {
        let vecs = iovecs(caller, iovs, count)?;
        let memory = memory(caller)?;
        let data = memory.data(&*caller);
        for (buf, len) in vecs {
            let len = len.min(MAX_TRANSFER - bytes.len());
            bytes.extend_from_slice(data.get(buf..buf.checked_add(len).ok_or(Errno::Fault)?).ok_or(Errno::Fault)?);
        }
    }
    console(caller.data_mut())?.write(output, &bytes).map_err(|_| Errno::Io)?;
    write_u32(caller, out, bytes.len() as u32)
}

/// Reads what stdin has (blocking until something or end of input) into the iovecs.
pub(super) fn read(caller: &mut Caller<'_, WasiCtx>, iovs: u32, count: u32, out: u32) -> Result<(), Errno> {
    let vecs = iovecs(caller, iovs, count)?;
    let total: usize = vecs.iter().map(|v| v.1).sum::<usize>().min(MAX_TRANSFER);
    let mut buf = alloc::vec![0u8; total];
    let n = if total == 0 { 0 } else { console(caller.data_mut())?.read(&mut buf).map_err(|_| Errno::Io)? };
    let mut at = 0;
    for (ptr, len) in vecs {
        if at == n {
            break;
        }
        let take = len.min(n - at);
        write_bytes(caller, ptr as u32, &buf[at..at + take])?;
        at += take;
    }
    write_u32(caller, out, n as u32)
}

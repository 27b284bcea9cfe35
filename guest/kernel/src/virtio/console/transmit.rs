//! One output stream's transmit queue, with writes staged in a buffer of the driver's own so
//! that a write returns once it is queued, without a VM exit.
//!
//! The device tells the driver when it wants no notification (`VRING_USED_F_NO_NOTIFY`): after a
//! notify it drained the queue and keeps draining it every few milliseconds while the vCPU runs,
//! and again whenever the vCPU waits. A write then costs a copy. The driver still notifies when
//! the device asks for it, when the queue or the staging buffer is full, and when it flushes
//! (before the workload ends, before it waits, before the other stream writes, so that the
//! two streams' order is kept).

use super::super::transport::FreshTransport;
use super::super::IdentityHal;
use super::ConsoleError;
use crate::control;
use alloc::boxed::Box;
use alloc::collections::VecDeque;
use core::sync::atomic::{fence, Ordering};
use virtio_drivers::queue::VirtQueue;
use virtio_drivers::transport::Transport;
use wasmcell_abi::control::WAIT_FOREVER;

/// Entries of a transmit queue: writes queued before the driver must notify.
pub const QUEUE_SIZE: usize = 64;
/// Bytes staged per stream; a larger write waits until the device has sent it.
const STAGING: usize = 16 * 1024;

type Queue = VirtQueue<IdentityHal, QUEUE_SIZE>;

/// A chain the device has not given back yet: its token and its bytes in the staging buffer.
#[derive(Clone, Copy)]
struct Queued {
    token: u16,
    start: usize,
    len: usize,
}

/// A transmit queue and its staging buffer.
pub struct Transmit {
    queue: Queue,
    index: u16,
    staging: Box<[u8; STAGING]>,
    /// Staged chains, oldest first (the device gives them back in order).
    queued: VecDeque<Queued>,
}

impl Transmit {
    /// Sets up queue `index` of `transport` as a transmit queue.
    pub fn new(transport: &mut FreshTransport, index: usize) -> Result<Self, ConsoleError> {
        Ok(Self {
            queue: Queue::new(transport, index as u16, false, false).map_err(|_| ConsoleError::Init)?,
            index: index as u16,
            staging: Box::new([0; STAGING]),
            queued: VecDeque::with_capacity(QUEUE_SIZE),
        })
    }

    /// Queues `bytes`: staged when they fit (the call returns at once), else sent and waited for.
    pub fn write(&mut self, bytes: &[u8], transport: &mut FreshTransport) -> Result<(), ConsoleError> {
        self.reclaim()?;
        if bytes.len() <= STAGING {
            if self.stage(bytes, transport)? {
                return Ok(());
            }
            self.flush(transport)?;
            if self.stage(bytes, transport)? {
                return Ok(());
            }
        }
        self.flush(transport)?;
        self.send_now(bytes, transport)
    }

    /// Returns once the device has sent everything queued.
    pub fn flush(&mut self, transport: &mut FreshTransport) -> Result<(), ConsoleError> {
        self.reclaim()?;
        if self.queued.is_empty() {
            return Ok(());
        }
        transport.notify(self.index);
        loop {
            self.reclaim()?;
            if self.queued.is_empty() {
                return Ok(());
            }
            control::wait(WAIT_FOREVER);
        }
    }

    /// Whether staged output is still queued.
    pub fn is_empty(&self) -> bool {
        self.queued.is_empty()
    }

    /// Copies `bytes` into the staging buffer and queues them; false if there is no room.
    fn stage(&mut self, bytes: &[u8], transport: &mut FreshTransport) -> Result<bool, ConsoleError> {
        if self.queue.available_desc() == 0 {
            return Ok(false);
        }
        let Some(start) = self.room(bytes.len()) else { return Ok(false) };
        let staged = &mut self.staging[start..start + bytes.len()];
        staged.copy_from_slice(bytes);
        // SAFETY: the staged bytes stay untouched in `self.staging` until `reclaim` pops this
        // token: `room` never hands out a range that a queued chain still covers.
        let token = unsafe { self.queue.add(&[staged], &mut []) }.map_err(|_| ConsoleError::Queue)?;
        self.queued.push_back(Queued { token, start, len: bytes.len() });
        // The device clears NO_NOTIFY and then checks the ring; the ring's update must be
        // visible before the flag is read, or both sides could miss this chain.
        fence(Ordering::SeqCst);
        if self.queue.should_notify() {
            transport.notify(self.index);
        }
        Ok(true)
    }

    /// Where `len` bytes fit in the staging buffer without covering a queued chain.
    fn room(&self, len: usize) -> Option<usize> {
        let (Some(first), Some(last)) = (self.queued.front(), self.queued.back()) else {
            return (len <= STAGING).then_some(0);
        };
        let end = last.start + last.len;
        if last.start >= first.start {
            // In use: [first.start, end). Free: after it, then before it.
            if end + len <= STAGING {
                Some(end)
            } else {
                (len <= first.start).then_some(0)
            }
        } else {
            // Wrapped; in use: [first.start, STAGING) and [0, end). Free: [end, first.start).
            (end + len <= first.start).then_some(end)
        }
    }

    /// Takes back the chains the device has sent.
    fn reclaim(&mut self) -> Result<(), ConsoleError> {
        while let Some(&Queued { token, start, len }) = self.queued.front() {
            if self.queue.peek_used() != Some(token) {
                break;
            }
            // SAFETY: the same buffer that was added with this token.
            unsafe { self.queue.pop_used(token, &[&self.staging[start..start + len]], &mut []) }
                .map_err(|_| ConsoleError::Queue)?;
            self.queued.pop_front();
        }
        Ok(())
    }

    /// Hands `bytes` (too large to stage) to the device and waits until it gave them back. The
    /// queue is empty (flushed) when this is called.
    fn send_now(&mut self, bytes: &[u8], transport: &mut FreshTransport) -> Result<(), ConsoleError> {
        // SAFETY: `bytes` outlives the buffer's time in the queue: it is popped before returning.
        let token = unsafe { self.queue.add(&[bytes], &mut []) }.map_err(|_| ConsoleError::Queue)?;
        transport.notify(self.index);
        while !self.queue.can_pop() {
            control::wait(WAIT_FOREVER);
        }
        // SAFETY: the same buffer that was added with this token.
        unsafe { self.queue.pop_used(token, &[bytes], &mut []) }.map_err(|_| ConsoleError::Queue)?;
        Ok(())
    }
}

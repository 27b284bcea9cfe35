//! A transmit queue (stdout, stderr) drained into its [`Output`] a bounded amount at a time.
//!
//! One VM exit does at most a [`Budget`] of work, whatever the guest queued (256 chains of 4 GiB
//! each, if it likes), and never waits for the output: a chain the output cannot take yet stays
//! where it is, with the device's place in it kept ([`Transmit`]'s cursor), and the rest is done
//! while the guest waits in the VMM for its buffer to come back. So a stop request is seen
//! within one budget's work, and a stalled reader costs the VMM nothing but a poll.
//!
//! Batching: once a notify has drained the queue, the device tells the driver not to notify
//! (`VRING_USED_F_NO_NOTIFY`) and the vCPU's thread drains it on a timer while the vCPU runs
//! ([`Transmit::tick`]); the first tick that finds nothing asks for notifies again. So a
//! workload that writes often pays a copy per write instead of a VM exit, and one that stopped
//! writing costs no timer. Every drain is bounded by the same [`Budget`].

use super::output::{Output, Written};
use crate::devices::virtio::chain::{self, Chain, Direction};
use crate::devices::virtio::DeviceError;
use crate::memory::GuestMemory;
use std::sync::atomic::Ordering;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Address, Bytes};

/// What one VM exit (or one slice of a wait) may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Bytes copied out of guest memory.
    pub bytes: u64,
    /// Chains taken off the queues (each at most a queue's size of descriptors).
    pub chains: u32,
}

impl Budget {
    /// Per exit: about a millisecond of copying on the machines we measure on.
    pub const PER_EXIT: Self = Self { bytes: 1 << 20, chains: 64 };
}

/// Bytes read from guest memory at a time.
const CHUNK: usize = 16 * 1024;

/// How far a drain got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Drained {
    /// Nothing is left to send.
    Idle,
    /// The output cannot take more now.
    Blocked,
    /// The budget ran out with work left.
    BudgetSpent,
}

/// A transmit queue's progress.
pub struct Transmit {
    queue: usize,
    current: Option<Cursor>,
    /// The driver was told not to notify: the queue is drained on the vCPU thread's timer.
    batching: bool,
}

/// A chain being sent: the buffer and the offset in it where sending resumes.
struct Cursor {
    chain: Chain,
    buffer: usize,
    offset: u32,
}

impl Transmit {
    /// The transmitter of queue number `queue`.
    pub fn new(queue: usize) -> Self {
        Self { queue, current: None, batching: false }
    }

    /// Whether the queue is drained on a timer rather than on notifies.
    pub fn batching(&self) -> bool {
        self.batching
    }

    /// After a notify that drained the queue: the driver need not notify any more, the timer
    /// drains the queue from now on.
    pub fn start_batching(&mut self, queue: &mut Queue, memory: &GuestMemory) -> Result<(), DeviceError> {
        if !self.batching {
            queue.disable_notification(memory).map_err(|_| DeviceError::BadRing { queue: self.queue })?;
            self.batching = true;
        }
        Ok(())
    }

    /// Notifies again (the vCPU waits: its wait drains the queue). What the driver queued before
    /// it saw the change is still on the ring, and is drained by whoever drains next.
    pub fn stop_batching(&mut self, queue: &mut Queue, memory: &GuestMemory) -> Result<(), DeviceError> {
        if self.batching {
            queue.enable_notification(memory).map_err(|_| DeviceError::BadRing { queue: self.queue })?;
            self.batching = false;
        }
        Ok(())
    }

    /// A timer tick: drains what `budget` allows; when there was nothing to drain, asks for
    /// notifies again (unless a chain arrived meanwhile). Whether the queue is still batching.
    pub fn tick(
        &mut self,
        queue: &mut Queue,
        memory: &GuestMemory,
        out: &mut Output,
        budget: &mut Budget,
    ) -> Result<bool, DeviceError> {
        if !self.batching {
            return Ok(false);
        }
        let (drained, completed) = self.drain(queue, memory, out, budget)?;
        if drained == Drained::Idle && !completed {
            // `enable_notification` orders the flag's write before the ring's read: a chain the
            // driver queued without notifying is seen here, or the driver sees the flag clear.
            let raced = queue.enable_notification(memory).map_err(|_| DeviceError::BadRing { queue: self.queue })?;
            if !raced {
                self.batching = false;
                return Ok(false);
            }
            queue.disable_notification(memory).map_err(|_| DeviceError::BadRing { queue: self.queue })?;
        }
        Ok(true)
    }

    /// Whether a chain is under way or waiting on the available ring.
    pub fn pending(&self, queue: &Queue, memory: &GuestMemory) -> bool {
        self.current.is_some()
            || queue.ready()
                && queue.avail_idx(memory, Ordering::Acquire).is_ok_and(|avail| avail.0 != queue.next_avail())
    }

    /// Forgets the chain under way (the driver reset the device).
    pub fn reset(&mut self) {
        self.current = None;
        self.batching = false;
    }

    /// Sends what `budget` allows from `queue` to `out`; whether any chain was completed (and
    /// given back to the driver), and how far it got.
    pub fn drain(
        &mut self,
        queue: &mut Queue,
        memory: &GuestMemory,
        out: &mut Output,
        budget: &mut Budget,
    ) -> Result<(Drained, bool), DeviceError> {
        let mut completed = false;
        loop {
            if self.current.is_none() {
                if budget.chains == 0 {
                    return Ok((Drained::BudgetSpent, completed));
                }
                let Some(chain) = chain::pop(queue, self.queue, memory, Direction::ToDevice)? else {
                    return Ok((Drained::Idle, completed));
                };
                budget.chains -= 1;
                self.current = Some(Cursor { chain, buffer: 0, offset: 0 });
            }
            let cursor = self.current.as_mut().expect("set above");
            if let Some(stopped) = send(cursor, memory, out, budget, self.queue)? {
                return Ok((stopped, completed));
            }
            let head = cursor.chain.head;
            self.current = None;
            queue.add_used(memory, head, 0).map_err(|_| DeviceError::BadRing { queue: self.queue })?;
            completed = true;
        }
    }
}

/// Sends the rest of `cursor`'s chain; `None` once all of it went out, else why it stopped.
fn send(
    cursor: &mut Cursor,
    memory: &GuestMemory,
    out: &mut Output,
    budget: &mut Budget,
    queue: usize,
) -> Result<Option<Drained>, DeviceError> {
    let mut chunk = [0u8; CHUNK];
    while let Some(buffer) = cursor.chain.buffers.get(cursor.buffer).copied() {
        let left = buffer.len - cursor.offset;
        if left == 0 {
            cursor.buffer += 1;
            cursor.offset = 0;
            continue;
        }
        if budget.bytes == 0 {
            return Ok(Some(Drained::BudgetSpent));
        }
        let n = (left as usize).min(CHUNK).min(budget.bytes as usize);
        let at = buffer.addr.unchecked_add(u64::from(cursor.offset));
        // The chain was checked to lie in `memory` when it was taken off the ring.
        memory.read_slice(&mut chunk[..n], at).map_err(|_| DeviceError::BufferOutside {
            queue,
            addr: buffer.addr.0,
            len: buffer.len,
        })?;
        match out.write(&chunk[..n]) {
            Written::WouldBlock => return Ok(Some(Drained::Blocked)),
            Written::Took(took) => {
                cursor.offset += took as u32;
                budget.bytes -= took as u64;
            }
        }
    }
    Ok(None)
}

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
//!
//! A drain gathers the chains it takes (up to [`GATHER`] at a time) into one staging buffer and
//! makes one `write` of it: a workload that writes a byte at a time costs the host a system
//! call per [`STAGE`] bytes, not per write. A chain is given back only once the output took all
//! of its bytes, so what the driver sees as written is written, in order.

use super::output::{Output, Written};
use crate::devices::virtio::chain::{self, Chain, Direction};
use crate::devices::virtio::DeviceError;
use crate::memory::GuestMemory;
use std::collections::VecDeque;
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

/// Bytes staged for one write at most.
const STAGE: usize = 64 * 1024;
/// Chains under way at most (one budget's worth).
const GATHER: usize = Budget::PER_EXIT.chains as usize;

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
    /// Chains taken off the ring and not yet wholly sent, oldest first.
    inflight: VecDeque<Cursor>,
    /// The bytes of the next write (kept to reuse its allocation).
    staging: Vec<u8>,
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
        Self { queue, inflight: VecDeque::new(), staging: Vec::new(), batching: false }
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
        !self.inflight.is_empty()
            || queue.ready()
                && queue.avail_idx(memory, Ordering::Acquire).is_ok_and(|avail| avail.0 != queue.next_avail())
    }

    /// Forgets the chains under way (the driver reset the device).
    pub fn reset(&mut self) {
        self.inflight.clear();
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
            while self.inflight.len() < GATHER && budget.chains > 0 {
                let Some(chain) = chain::pop(queue, self.queue, memory, Direction::ToDevice)? else { break };
                budget.chains -= 1;
                self.inflight.push_back(Cursor { chain, buffer: 0, offset: 0 });
            }
            if self.inflight.is_empty() {
                let drained = if budget.chains == 0 { Drained::BudgetSpent } else { Drained::Idle };
                return Ok((drained, completed));
            }
            let mut staging = std::mem::take(&mut self.staging);
            let staged = self.stage(memory, &mut staging, STAGE.min(budget.bytes as usize));
            let took = match staged {
                Ok(0) => 0,
                Ok(n) => match out.write(&staging[..n]) {
                    Written::WouldBlock => {
                        self.staging = staging;
                        return Ok((Drained::Blocked, completed));
                    }
                    Written::Took(took) => took,
                },
                Err(e) => {
                    self.staging = staging;
                    return Err(e);
                }
            };
            self.staging = staging;
            budget.bytes -= took as u64;
            completed |= self.advance(queue, memory, took)?;
            let unsent = self.inflight.front().is_some_and(|c| !c.done());
            if unsent && budget.bytes == 0 {
                return Ok((Drained::BudgetSpent, completed));
            }
        }
    }

    /// Copies the unsent bytes of the chains under way, in order, into `staging`, at most
    /// `limit` of them; how many. Cursors do not move: [`Transmit::advance`] moves them by what
    /// the output took.
    fn stage(&self, memory: &GuestMemory, staging: &mut Vec<u8>, limit: usize) -> Result<usize, DeviceError> {
        staging.clear();
        for cursor in &self.inflight {
            let (mut buffer, mut offset) = (cursor.buffer, cursor.offset);
            while let Some(b) = cursor.chain.buffers.get(buffer).copied() {
                let room = limit - staging.len();
                if room == 0 {
                    return Ok(staging.len());
                }
                let n = ((b.len - offset) as usize).min(room);
                let at = staging.len();
                staging.resize(at + n, 0);
                // The chain was checked to lie in `memory` when it was taken off the ring.
                memory
                    .read_slice(&mut staging[at..], b.addr.unchecked_add(u64::from(offset)))
                    .map_err(|_| DeviceError::BufferOutside { queue: self.queue, addr: b.addr.0, len: b.len })?;
                (buffer, offset) = (buffer + 1, 0);
            }
        }
        Ok(staging.len())
    }

    /// Moves the cursors past `sent` bytes and gives back every chain wholly sent (an empty one
    /// at once); whether any was.
    fn advance(&mut self, queue: &mut Queue, memory: &GuestMemory, mut sent: usize) -> Result<bool, DeviceError> {
        let mut completed = false;
        while let Some(cursor) = self.inflight.front_mut() {
            sent = cursor.skip(sent);
            if !cursor.done() {
                break;
            }
            let head = cursor.chain.head;
            self.inflight.pop_front();
            queue.add_used(memory, head, 0).map_err(|_| DeviceError::BadRing { queue: self.queue })?;
            completed = true;
        }
        Ok(completed)
    }
}

impl Cursor {
    /// Moves past up to `bytes` of the chain; what is left of `bytes`.
    fn skip(&mut self, mut bytes: usize) -> usize {
        while let Some(b) = self.chain.buffers.get(self.buffer) {
            let left = (b.len - self.offset) as usize;
            if left > bytes {
                self.offset += bytes as u32;
                return 0;
            }
            bytes -= left;
            self.buffer += 1;
            self.offset = 0;
        }
        bytes
    }

    /// Whether every byte of the chain was sent.
    fn done(&self) -> bool {
        self.chain.buffers[self.buffer..].iter().enumerate().all(|(i, b)| b.len == if i == 0 { self.offset } else { 0 })
    }
}

//! virtio-console with multiport (virtio 1.2, §5.3): the workload's stdin, stdout and stderr as
//! separate streams.
//!
//! Port 0 carries stdin (its receiveq) and stdout (its transmitq); port 1 carries stderr. The
//! control queues announce both ports and, when stdin reaches end of file, close port 0
//! (`PORT_OPEN` with value 0): that is how the guest learns of EOF.

mod control;
mod input;
mod output;
#[cfg(test)]
mod tests;
pub mod transmit;

pub use input::Input;
pub use output::Output;

use super::chain::{self, Direction};
use super::{DeviceError, VirtioDevice, VIRTIO_F_VERSION_1};
use crate::memory::GuestMemory;
use control::{ControlMessage, DEVICE_ADD, DEVICE_READY, PORT_OPEN, PORT_READY};
use std::collections::VecDeque;
use std::os::fd::RawFd;
use std::sync::atomic::Ordering;
use transmit::{Budget, Drained, Transmit};
use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::Bytes;
use wasmcell_abi::devices::console::{
    CONTROL_RECEIVEQ, CONTROL_TRANSMITQ, PORTS, QUEUES, QUEUE_MAX_SIZE, STDERR_TRANSMITQ, STDIN_RECEIVEQ,
    STDOUT_TRANSMITQ,
};

/// virtio device ID of a console.
const DEVICE_ID: u32 = 3;
/// `VIRTIO_CONSOLE_F_MULTIPORT`.
const F_MULTIPORT: u64 = 1 << 1;
/// Control messages waiting for the driver's receive buffers. Messages are never queued twice
/// (a repeated request gets one answer), so a driver that asks again and again without posting
/// buffers cannot make the list grow: only a handful of distinct answers exist.
pub const MAX_PENDING: usize = 8;
/// Bytes of stdin read per chain.
const STDIN_CHUNK: usize = 4096;

/// The console device: where each stream goes or comes from.
pub struct Console {
    stdin: Input,
    stdout: Output,
    stderr: Output,
    stdout_queue: Transmit,
    stderr_queue: Transmit,
    /// Control messages waiting for a buffer in the control receiveq.
    pending: VecDeque<ControlMessage>,
    stdin_closed: bool,
}

/// What resuming the output while the guest waits achieved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutputProgress {
    /// A chain was given back: the guest has something to look at.
    pub completed: bool,
    /// The budget ran out with work left: resume again (after checking for a stop).
    pub more: bool,
    /// Streams that cannot take more now, to poll for `POLLOUT`.
    pub blocked: [Option<RawFd>; 2],
}

impl Console {
    pub fn new(stdin: Input, stdout: Output, stderr: Output) -> Self {
        Self {
            stdin,
            stdout,
            stderr,
            stdout_queue: Transmit::new(STDOUT_TRANSMITQ),
            stderr_queue: Transmit::new(STDERR_TRANSMITQ),
            pending: VecDeque::new(),
            stdin_closed: false,
        }
    }

    /// Whether the guest has a stdin buffer posted and stdin may still deliver: the VMM then
    /// also wakes a WAIT when stdin becomes readable. Without a buffer posted there is nothing
    /// to deliver into: a readable stdin (a file, /dev/null at end of file) must not wake a
    /// guest that is not reading it, or every WAIT would return at once and the vCPU spin.
    pub fn wants_input(&self, queues: &[Queue], memory: &GuestMemory) -> bool {
        let queue = &queues[STDIN_RECEIVEQ];
        !self.stdin_closed
            && queue.ready()
            && queue.avail_idx(memory, Ordering::Acquire).is_ok_and(|avail| avail.0 != queue.next_avail())
    }

    /// The fd to poll for stdin, if there is one.
    pub fn input_fd(&self) -> Option<RawFd> {
        self.stdin.raw_fd()
    }

    /// Whether output the guest made available is still to be sent.
    pub fn output_pending(&self, queues: &[Queue], memory: &GuestMemory) -> bool {
        self.stdout_queue.pending(&queues[STDOUT_TRANSMITQ], memory)
            || self.stderr_queue.pending(&queues[STDERR_TRANSMITQ], memory)
    }

    /// Sends one budget's worth of pending output (while the guest waits for it).
    pub fn resume_output(&mut self, queues: &mut [Queue], memory: &GuestMemory) -> Result<OutputProgress, DeviceError> {
        let mut budget = Budget::PER_EXIT;
        let mut progress = OutputProgress::default();
        let streams = [
            (&mut self.stdout_queue, STDOUT_TRANSMITQ, &mut self.stdout),
            (&mut self.stderr_queue, STDERR_TRANSMITQ, &mut self.stderr),
        ];
        for (i, (transmit, queue, out)) in streams.into_iter().enumerate() {
            let (drained, completed) = transmit.drain(&mut queues[queue], memory, out, &mut budget)?;
            progress.completed |= completed;
            match drained {
                Drained::Idle => {}
                Drained::BudgetSpent => progress.more = true,
                Drained::Blocked => progress.blocked[i] = out.poll_fd(),
            }
        }
        Ok(progress)
    }

    /// Whether an output queue is drained on the vCPU thread's timer (`transmit`'s batching).
    pub fn batching(&self) -> bool {
        self.stdout_queue.batching() || self.stderr_queue.batching()
    }

    /// A tick of the vCPU thread's timer: drains batched output, one budget for both streams.
    /// Whether a queue is still batching (the timer goes on).
    pub fn tick_output(&mut self, queues: &mut [Queue], memory: &GuestMemory) -> Result<bool, DeviceError> {
        let mut budget = Budget::PER_EXIT;
        let stdout = self.stdout_queue.tick(&mut queues[STDOUT_TRANSMITQ], memory, &mut self.stdout, &mut budget)?;
        let stderr = self.stderr_queue.tick(&mut queues[STDERR_TRANSMITQ], memory, &mut self.stderr, &mut budget)?;
        Ok(stdout || stderr)
    }

    /// The vCPU waits: output goes back to notifies (the wait drains what is queued).
    pub fn stop_batching(&mut self, queues: &mut [Queue], memory: &GuestMemory) -> Result<(), DeviceError> {
        self.stdout_queue.stop_batching(&mut queues[STDOUT_TRANSMITQ], memory)?;
        self.stderr_queue.stop_batching(&mut queues[STDERR_TRANSMITQ], memory)
    }

    /// Moves what stdin has ready into the guest's stdin buffers (never blocks).
    pub fn fill_stdin(&mut self, queues: &mut [Queue], memory: &GuestMemory) -> Result<(), DeviceError> {
        if self.stdin_closed {
            return Ok(());
        }
        let mut chains = Budget::PER_EXIT.chains;
        let queue = &mut queues[STDIN_RECEIVEQ];
        while chains > 0 && self.stdin.ready() {
            let Some(chain) = chain::pop(queue, STDIN_RECEIVEQ, memory, Direction::FromDevice)? else {
                break;
            };
            chains -= 1;
            let mut buf = [0u8; STDIN_CHUNK];
            let capacity = (chain.len() as usize).min(buf.len());
            if capacity == 0 {
                queue.add_used(memory, chain.head, 0).map_err(|_| DeviceError::BadRing { queue: STDIN_RECEIVEQ })?;
                continue;
            }
            let n = self.stdin.read(&mut buf[..capacity]);
            if n == 0 {
                // End of file: give the buffer back unused and close the port.
                queue.go_to_previous_position();
                self.stdin_closed = true;
                self.push(ControlMessage::new(0, PORT_OPEN, 0));
                break;
            }
            let written = write_chain(memory, &chain, &buf[..n], STDIN_RECEIVEQ)?;
            queue
                .add_used(memory, chain.head, written as u32)
                .map_err(|_| DeviceError::BadRing { queue: STDIN_RECEIVEQ })?;
        }
        self.flush_control(queues, memory)
    }

    /// Handles control messages from the driver.
    fn drain_control(&mut self, queue: &mut Queue, memory: &GuestMemory) -> Result<(), DeviceError> {
        for _ in 0..Budget::PER_EXIT.chains {
            let Some(chain) = chain::pop(queue, CONTROL_TRANSMITQ, memory, Direction::ToDevice)? else {
                break;
            };
            let mut bytes = [0u8; ControlMessage::SIZE];
            let mut n = 0;
            for buffer in &chain.buffers {
                let take = (buffer.len as usize).min(bytes.len() - n);
                memory.read_slice(&mut bytes[n..n + take], buffer.addr).map_err(|_| DeviceError::BufferOutside {
                    queue: CONTROL_TRANSMITQ,
                    addr: buffer.addr.0,
                    len: buffer.len,
                })?;
                n += take;
            }
            if n == ControlMessage::SIZE {
                self.handle_control(ControlMessage::from_bytes(bytes));
            }
            queue.add_used(memory, chain.head, 0).map_err(|_| DeviceError::BadRing { queue: CONTROL_TRANSMITQ })?;
        }
        Ok(())
    }

    fn handle_control(&mut self, message: ControlMessage) {
        match (message.event, message.value) {
            (DEVICE_READY, 1) => {
                for port in 0..PORTS {
                    self.push(ControlMessage::new(port, DEVICE_ADD, 0));
                }
            }
            (PORT_READY, 1) if message.id < PORTS => {
                let open = !(message.id == 0 && self.stdin_closed);
                self.push(ControlMessage::new(message.id, PORT_OPEN, u16::from(open)));
            }
            _ => {}
        }
    }

    /// Queues a control message for the driver, unless the same one is waiting already.
    fn push(&mut self, message: ControlMessage) {
        if !self.pending.contains(&message) && self.pending.len() < MAX_PENDING {
            self.pending.push_back(message);
        }
    }

    /// Delivers pending control messages into the driver's control receive buffers.
    fn flush_control(&mut self, queues: &mut [Queue], memory: &GuestMemory) -> Result<(), DeviceError> {
        let queue = &mut queues[CONTROL_RECEIVEQ];
        while let Some(message) = self.pending.front().copied() {
            let Some(chain) = chain::pop(queue, CONTROL_RECEIVEQ, memory, Direction::FromDevice)? else {
                break;
            };
            let written = write_chain(memory, &chain, &message.to_bytes(), CONTROL_RECEIVEQ)?;
            queue
                .add_used(memory, chain.head, written as u32)
                .map_err(|_| DeviceError::BadRing { queue: CONTROL_RECEIVEQ })?;
            self.pending.pop_front();
        }
        Ok(())
    }

    /// Control messages waiting for the driver (for tests and fuzzing of the bound).
    #[cfg(any(test, feature = "fuzzing"))]
    pub fn pending_messages(&self) -> usize {
        self.pending.len()
    }
}

/// Writes `bytes` into the buffers of `chain` (device-writable, checked); how many fit.
fn write_chain(memory: &GuestMemory, chain: &chain::Chain, bytes: &[u8], queue: usize) -> Result<usize, DeviceError> {
    let mut written = 0;
    for buffer in &chain.buffers {
        if written == bytes.len() {
            break;
        }
        let take = (buffer.len as usize).min(bytes.len() - written);
        memory.write_slice(&bytes[written..written + take], buffer.addr).map_err(|_| DeviceError::BufferOutside {
            queue,
            addr: buffer.addr.0,
            len: buffer.len,
        })?;
        written += take;
    }
    Ok(written)
}

impl VirtioDevice for Console {
    fn device_id(&self) -> u32 {
        DEVICE_ID
    }

    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1 | F_MULTIPORT
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_MAX_SIZE; QUEUES]
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        // struct virtio_console_config { u16 cols; u16 rows; u32 max_nr_ports; u32 emerg_wr; }
        let mut config = [0u8; 12];
        config[4..8].copy_from_slice(&PORTS.to_le_bytes());
        let start = (offset as usize).min(config.len());
        let end = (start + data.len()).min(config.len());
        data.fill(0);
        data[..end - start].copy_from_slice(&config[start..end]);
    }

    fn queue_notify(&mut self, queue: usize, queues: &mut [Queue], memory: &GuestMemory) -> Result<(), DeviceError> {
        let mut budget = Budget::PER_EXIT;
        match queue {
            // All sent: the driver need not notify again while the vCPU runs (`transmit`).
            STDOUT_TRANSMITQ => {
                let (drained, _) =
                    self.stdout_queue.drain(&mut queues[queue], memory, &mut self.stdout, &mut budget)?;
                if drained == Drained::Idle {
                    self.stdout_queue.start_batching(&mut queues[queue], memory)?;
                }
            }
            STDERR_TRANSMITQ => {
                let (drained, _) =
                    self.stderr_queue.drain(&mut queues[queue], memory, &mut self.stderr, &mut budget)?;
                if drained == Drained::Idle {
                    self.stderr_queue.start_batching(&mut queues[queue], memory)?;
                }
            }
            CONTROL_TRANSMITQ => {
                self.drain_control(&mut queues[queue], memory)?;
                self.flush_control(queues, memory)?;
            }
            CONTROL_RECEIVEQ => self.flush_control(queues, memory)?,
            STDIN_RECEIVEQ => self.fill_stdin(queues, memory)?,
            _ => {}
        }
        Ok(())
    }

    fn reset(&mut self) {
        self.pending.clear();
        self.stdout_queue.reset();
        self.stderr_queue.reset();
    }

    fn flush(&mut self) {
        self.stdout.flush();
        self.stderr.flush();
    }

    fn finish(&mut self) {
        self.stdout.finish();
        self.stderr.finish();
    }
}

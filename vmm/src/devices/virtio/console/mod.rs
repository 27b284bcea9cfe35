//! virtio-console with multiport (virtio 1.2, §5.3): the workload's stdin, stdout and stderr as
//! separate streams.
//!
//! Port 0 carries stdin (its receiveq) and stdout (its transmitq); port 1 carries stderr. The
//! control queues announce both ports and, when stdin reaches end of file, close port 0
//! (`PORT_OPEN` with value 0): that is how the guest learns of EOF.

mod control;
mod input;
#[cfg(test)]
mod tests;

pub use input::Input;

use super::{VirtioDevice, VIRTIO_F_VERSION_1};
use crate::memory::GuestMemory;
use control::{ControlMessage, DEVICE_ADD, DEVICE_READY, PORT_OPEN, PORT_READY};
use std::collections::VecDeque;
use std::io::Write;
use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::{Bytes, GuestAddress};
use wasmcell_abi::devices::console::{
    CONTROL_RECEIVEQ, CONTROL_TRANSMITQ, PORTS, QUEUES, QUEUE_MAX_SIZE, STDERR_TRANSMITQ, STDIN_RECEIVEQ,
    STDOUT_TRANSMITQ,
};

/// virtio device ID of a console.
const DEVICE_ID: u32 = 3;
/// `VIRTIO_CONSOLE_F_MULTIPORT`.
const F_MULTIPORT: u64 = 1 << 1;

/// The console device: where each stream goes or comes from.
pub struct Console {
    stdin: Input,
    stdout: Box<dyn Write + Send>,
    stderr: Box<dyn Write + Send>,
    /// Control messages waiting for a buffer in the control receiveq.
    pending: VecDeque<ControlMessage>,
    stdin_closed: bool,
}

impl Console {
    pub fn new(stdin: Input, stdout: Box<dyn Write + Send>, stderr: Box<dyn Write + Send>) -> Self {
        Self { stdin, stdout, stderr, pending: VecDeque::new(), stdin_closed: false }
    }

    /// Whether the guest has a stdin buffer waiting and stdin may still deliver: the VMM then
    /// also wakes a WAIT when stdin becomes readable.
    pub fn wants_input(&self, queues: &[Queue], memory: &GuestMemory) -> bool {
        !self.stdin_closed && queues[STDIN_RECEIVEQ].is_valid(memory) && queues[STDIN_RECEIVEQ].ready()
    }

    /// The fd to poll for stdin, if there is one.
    pub fn input_fd(&self) -> Option<std::os::fd::RawFd> {
        self.stdin.raw_fd()
    }

    /// Moves what stdin has ready into the guest's stdin buffers (never blocks).
    pub fn fill_stdin(&mut self, queues: &mut [Queue], memory: &GuestMemory) {
        if self.stdin_closed {
            return;
        }
        let queue = &mut queues[STDIN_RECEIVEQ];
        while self.stdin.ready() {
            let Some(chain) = queue.pop_descriptor_chain(memory) else {
                return;
            };
            let head = chain.head_index();
            let mut buf = [0u8; 4096];
            let capacity: usize = chain.clone().writable().map(|d| d.len() as usize).sum::<usize>().min(buf.len());
            if capacity == 0 {
                let _ = queue.add_used(memory, head, 0);
                continue;
            }
            let n = self.stdin.read(&mut buf[..capacity]);
            let written = write_chain(memory, chain, &buf[..n]);
            if n == 0 {
                // End of file: give the buffer back unused and close the port.
                queue.go_to_previous_position();
                self.stdin_closed = true;
                self.pending.push_back(ControlMessage::new(0, PORT_OPEN, 0));
                break;
            }
            let _ = queue.add_used(memory, head, written as u32);
        }
        self.flush_control(queues, memory);
    }

    /// Writes every chain of transmit queue `queue` to `out`.
    fn drain_transmit(queue: &mut Queue, memory: &GuestMemory, out: &mut dyn Write) {
        let mut used = Vec::new();
        if let Ok(chains) = queue.iter(memory) {
            for chain in chains {
                let head = chain.head_index();
                for desc in chain.clone().readable() {
                    // In bounded chunks: the guest picks the length, up to 4 GiB.
                    let mut chunk = [0u8; 16 * 1024];
                    let mut done = 0u64;
                    let len = u64::from(desc.len());
                    while done < len {
                        let n = (len - done).min(chunk.len() as u64) as usize;
                        let Some(at) = desc.addr().0.checked_add(done) else { break };
                        if memory.read_slice(&mut chunk[..n], GuestAddress(at)).is_err() {
                            break;
                        }
                        // The user's stream closing does not stop the guest.
                        let _ = out.write_all(&chunk[..n]);
                        done += n as u64;
                    }
                }
                used.push(head);
            }
        }
        for head in used {
            let _ = queue.add_used(memory, head, 0);
        }
        let _ = out.flush();
    }

    /// Handles control messages from the driver.
    fn drain_control(&mut self, queue: &mut Queue, memory: &GuestMemory) {
        let mut used = Vec::new();
        if let Ok(chains) = queue.iter(memory) {
            for chain in chains {
                let head = chain.head_index();
                let mut bytes = [0u8; ControlMessage::SIZE];
                let mut n = 0;
                for desc in chain.clone().readable() {
                    let take = (desc.len() as usize).min(bytes.len() - n);
                    if memory.read_slice(&mut bytes[n..n + take], GuestAddress(desc.addr().0)).is_err() {
                        break;
                    }
                    n += take;
                }
                if n == ControlMessage::SIZE {
                    self.handle_control(ControlMessage::from_bytes(bytes));
                }
                used.push(head);
            }
        }
        for head in used {
            let _ = queue.add_used(memory, head, 0);
        }
    }

    fn handle_control(&mut self, message: ControlMessage) {
        match (message.event, message.value) {
            (DEVICE_READY, 1) => {
                for port in 0..PORTS {
                    self.pending.push_back(ControlMessage::new(port, DEVICE_ADD, 0));
                }
            }
            (PORT_READY, 1) if message.id < PORTS => {
                let open = !(message.id == 0 && self.stdin_closed);
                self.pending.push_back(ControlMessage::new(message.id, PORT_OPEN, u16::from(open)));
            }
            _ => {}
        }
    }

    /// Delivers pending control messages into the driver's control receive buffers.
    fn flush_control(&mut self, queues: &mut [Queue], memory: &GuestMemory) {
        let queue = &mut queues[CONTROL_RECEIVEQ];
        while let Some(message) = self.pending.front().copied() {
            let Some(chain) = queue.pop_descriptor_chain(memory) else {
                return;
            };
            let head = chain.head_index();
            let written = write_chain(memory, chain, &message.to_bytes());
            let _ = queue.add_used(memory, head, written as u32);
            self.pending.pop_front();
        }
    }
}

/// Writes `bytes` into the writable descriptors of `chain`; returns how many fit.
fn write_chain<M>(memory: &GuestMemory, chain: virtio_queue::DescriptorChain<M>, bytes: &[u8]) -> usize
where
    M: std::ops::Deref + Clone,
    M::Target: vm_memory::GuestMemory,
{
    let mut written = 0;
    for desc in chain.writable() {
        if written == bytes.len() {
            break;
        }
        let take = (desc.len() as usize).min(bytes.len() - written);
        if memory.write_slice(&bytes[written..written + take], GuestAddress(desc.addr().0)).is_err() {
            break;
        }
        written += take;
    }
    written
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

    fn queue_notify(&mut self, queue: usize, queues: &mut [Queue], memory: &GuestMemory) {
        match queue {
            STDOUT_TRANSMITQ => Self::drain_transmit(&mut queues[queue], memory, &mut self.stdout),
            STDERR_TRANSMITQ => Self::drain_transmit(&mut queues[queue], memory, &mut self.stderr),
            CONTROL_TRANSMITQ => {
                self.drain_control(&mut queues[queue], memory);
                self.flush_control(queues, memory);
            }
            CONTROL_RECEIVEQ => self.flush_control(queues, memory),
            STDIN_RECEIVEQ => self.fill_stdin(queues, memory),
            _ => {}
        }
    }

    fn reset(&mut self) {
        self.pending.clear();
    }
}

//! The guest's side of the virtio-console (multiport) that carries the workload's stdio: port 0
//! is stdin and stdout, port 1 is stderr (`wasmcell_abi::devices::console`). End of file on
//! stdin arrives as the device closing port 0. Output is staged and queued without a VM exit
//! where the device allows it (`transmit`).

mod transmit;

use super::transport::FreshTransport;
use super::IdentityHal;
use crate::control;
use alloc::boxed::Box;
use core::ptr::NonNull;
use transmit::Transmit;
use virtio_drivers::queue::VirtQueue;
use virtio_drivers::transport::mmio::{MmioTransport, VirtIOHeader};
use virtio_drivers::transport::{DeviceStatus, Transport};
use wasmcell_abi::control::WAIT_FOREVER;
use wasmcell_abi::devices::console::{
    CONTROL_RECEIVEQ, CONTROL_TRANSMITQ, MMIO_SIZE, QUEUE_MAX_SIZE, STDERR_TRANSMITQ, STDIN_RECEIVEQ, STDOUT_TRANSMITQ,
};

const QUEUE_SIZE: usize = 16;
const F_MULTIPORT: u64 = 1 << 1;
const F_VERSION_1: u64 = 1 << 32;
const DEVICE_READY: u16 = 0;
const DEVICE_ADD: u16 = 1;
const PORT_READY: u16 = 3;
const PORT_OPEN: u16 = 6;
const CONTROL_BUFFERS: usize = 4;
const STDIN_BUFFER: usize = 4096;

/// Which output stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Stdout,
    Stderr,
}

/// Errors of the console driver.
#[derive(Debug)]
pub enum ConsoleError {
    /// The device is missing or refused the driver.
    Init,
    /// A queue operation failed.
    Queue,
}

type Queue = VirtQueue<IdentityHal, QUEUE_SIZE>;

/// The console driver.
pub struct Console {
    transport: FreshTransport,
    stdin: Queue,
    stdout: Transmit,
    stderr: Transmit,
    control_rx: Queue,
    control_tx: Queue,
    control_buffers: Box<[[u8; 8]; CONTROL_BUFFERS]>,
    control_tokens: [Option<u16>; CONTROL_BUFFERS],
    stdin_buffer: Box<[u8; STDIN_BUFFER]>,
    stdin_token: Option<u16>,
    /// Received stdin bytes not yet read: `stdin_buffer[start..end]`.
    stdin_pending: (usize, usize),
    stdin_open: bool,
}

/// Hands `bytes` to the device on queue `index` and waits until it gave them back (control
/// messages). The device has, when the notify's VM exit returns.
fn send(queue: &mut Queue, index: usize, bytes: &[u8], transport: &mut FreshTransport) -> Result<(), ConsoleError> {
    // SAFETY: `bytes` outlives the buffer's time in the queue: this function pops it before
    // returning, and nothing else touches the queue meanwhile.
    let token = unsafe { queue.add(&[bytes], &mut []) }.map_err(|_| ConsoleError::Queue)?;
    if queue.should_notify() {
        transport.notify(index as u16);
    }
    while !queue.can_pop() {
        control::wait(WAIT_FOREVER);
    }
    // SAFETY: the same buffer that was added with this token.
    unsafe { queue.pop_used(token, &[bytes], &mut []) }.map_err(|_| ConsoleError::Queue)?;
    Ok(())
}

impl Console {
    /// Finds and initialises the device whose register block is at `base` (the workload's, from
    /// its vCPU info) and whose queue addresses' high halves reset to `address_high`, and
    /// completes the multiport handshake.
    pub fn new(base: u64, address_high: u32) -> Result<Self, ConsoleError> {
        if base & (MMIO_SIZE - 1) != 0 {
            return Err(ConsoleError::Init);
        }
        let header = NonNull::new(base as *mut VirtIOHeader).ok_or(ConsoleError::Init)?;
        // SAFETY: the VMM maps the MMIO window (uncached, user read-write) for the guest's whole
        // life; `base` is this workload's register block, which only this driver touches.
        let mmio = unsafe { MmioTransport::new(header, MMIO_SIZE as usize) }.map_err(|_| ConsoleError::Init)?;
        // SAFETY: as above; the transport resets the device (status 0) before any queue is set up.
        let mut transport = unsafe { FreshTransport::new(mmio, base as *mut u32, QUEUE_MAX_SIZE, address_high) };
        transport.set_status(DeviceStatus::empty());
        transport.set_status(DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER);
        let features = transport.read_device_features();
        if features & (F_MULTIPORT | F_VERSION_1) != F_MULTIPORT | F_VERSION_1 {
            return Err(ConsoleError::Init);
        }
        transport.write_driver_features(F_MULTIPORT | F_VERSION_1);
        transport.set_status(DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER | DeviceStatus::FEATURES_OK);
        if !transport.get_status().contains(DeviceStatus::FEATURES_OK) {
            return Err(ConsoleError::Init);
        }
        let queue = |transport: &mut FreshTransport, index: usize| {
            Queue::new(transport, index as u16, false, false).map_err(|_| ConsoleError::Init)
        };
        let stdin = queue(&mut transport, STDIN_RECEIVEQ)?;
        let stdout = Transmit::new(&mut transport, STDOUT_TRANSMITQ)?;
        let control_rx = queue(&mut transport, CONTROL_RECEIVEQ)?;
        let control_tx = queue(&mut transport, CONTROL_TRANSMITQ)?;
        let stderr = Transmit::new(&mut transport, STDERR_TRANSMITQ)?;
        transport.finish_init();
        let mut console = Self {
            transport,
            stdin,
            stdout,
            stderr,
            control_rx,
            control_tx,
            control_buffers: Box::new([[0; 8]; CONTROL_BUFFERS]),
            control_tokens: [None; CONTROL_BUFFERS],
            stdin_buffer: Box::new([0; STDIN_BUFFER]),
            stdin_token: None,
            stdin_pending: (0, 0),
            stdin_open: true,
        };
        console.post_control_buffers()?;
        console.send_control(u32::MAX, DEVICE_READY, 1)?;
        console.poll_control()?;
        Ok(console)
    }

    /// Writes all of `bytes` to stdout or stderr. Usually queued without a VM exit
    /// (`transmit`); whatever the other stream has queued is sent first, so the two streams
    /// keep the order the workload wrote them in.
    pub fn write(&mut self, output: Output, bytes: &[u8]) -> Result<(), ConsoleError> {
        if bytes.is_empty() {
            return Ok(());
        }
        let (this, other) = match output {
            Output::Stdout => (&mut self.stdout, &mut self.stderr),
            Output::Stderr => (&mut self.stderr, &mut self.stdout),
        };
        if !other.is_empty() {
            other.flush(&mut self.transport)?;
        }
        this.write(bytes, &mut self.transport)
    }

    /// Returns once the device has sent all queued output (before the workload ends or waits).
    pub fn flush(&mut self) -> Result<(), ConsoleError> {
        self.stdout.flush(&mut self.transport)?;
        self.stderr.flush(&mut self.transport)
    }

    /// Reads stdin into `buf`, sleeping in the VMM until something arrives; 0 is end of file.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize, ConsoleError> {
        // A prompt written before the read is out before the workload blocks on the answer.
        self.flush()?;
        loop {
            if let Some(n) = self.take_pending(buf) {
                return Ok(n);
            }
            self.collect_stdin()?;
            self.poll_control()?;
            if self.stdin_pending.0 < self.stdin_pending.1 {
                continue;
            }
            if !self.stdin_open {
                return Ok(0);
            }
            if self.stdin_token.is_none() {
                self.post_stdin_buffer()?;
                continue;
            }
            control::wait(WAIT_FOREVER);
        }
    }

    /// Whether a read would return at once (data or end of file), without waiting. Leaves a
    /// stdin buffer posted, so that the VMM wakes a WAIT when input arrives.
    pub fn stdin_ready(&mut self) -> Result<bool, ConsoleError> {
        self.collect_stdin()?;
        self.poll_control()?;
        if self.stdin_pending.0 < self.stdin_pending.1 || !self.stdin_open {
            return Ok(true);
        }
        if self.stdin_token.is_none() {
            self.post_stdin_buffer()?;
            self.collect_stdin()?;
            self.poll_control()?;
        }
        Ok(self.stdin_pending.0 < self.stdin_pending.1 || !self.stdin_open)
    }

    /// Bytes of stdin received and not yet read.
    pub fn stdin_pending(&self) -> usize {
        self.stdin_pending.1 - self.stdin_pending.0
    }

    fn take_pending(&mut self, buf: &mut [u8]) -> Option<usize> {
        let (start, end) = self.stdin_pending;
        if start == end || buf.is_empty() {
            return None;
        }
        let n = buf.len().min(end - start);
        buf[..n].copy_from_slice(&self.stdin_buffer[start..start + n]);
        self.stdin_pending.0 += n;
        Some(n)
    }

    fn post_stdin_buffer(&mut self) -> Result<(), ConsoleError> {
        // SAFETY: the buffer is owned by `self` and not touched until its token is popped in
        // `collect_stdin`.
        let token =
            unsafe { self.stdin.add(&[], &mut [&mut self.stdin_buffer[..]]) }.map_err(|_| ConsoleError::Queue)?;
        self.stdin_token = Some(token);
        self.transport.notify(STDIN_RECEIVEQ as u16);
        Ok(())
    }

    fn collect_stdin(&mut self) -> Result<(), ConsoleError> {
        let Some(token) = self.stdin_token else { return Ok(()) };
        if self.stdin.peek_used() != Some(token) {
            return Ok(());
        }
        // SAFETY: the same buffer that was added with this token.
        let len = unsafe { self.stdin.pop_used(token, &[], &mut [&mut self.stdin_buffer[..]]) }
            .map_err(|_| ConsoleError::Queue)?;
        self.stdin_token = None;
        self.stdin_pending = (0, (len as usize).min(STDIN_BUFFER));
        Ok(())
    }

    fn post_control_buffers(&mut self) -> Result<(), ConsoleError> {
        for i in 0..CONTROL_BUFFERS {
            if self.control_tokens[i].is_none() {
                // SAFETY: each control buffer is owned by `self` and only read after its token
                // is popped in `poll_control`.
                let token = unsafe { self.control_rx.add(&[], &mut [&mut self.control_buffers[i][..]]) }
                    .map_err(|_| ConsoleError::Queue)?;
                self.control_tokens[i] = Some(token);
            }
        }
        self.transport.notify(CONTROL_RECEIVEQ as u16);
        Ok(())
    }

    fn send_control(&mut self, id: u32, event: u16, value: u16) -> Result<(), ConsoleError> {
        let mut message = [0u8; 8];
        message[0..4].copy_from_slice(&id.to_le_bytes());
        message[4..6].copy_from_slice(&event.to_le_bytes());
        message[6..8].copy_from_slice(&value.to_le_bytes());
        send(&mut self.control_tx, CONTROL_TRANSMITQ, &message, &mut self.transport)
    }

    /// Handles every control message the device has delivered.
    fn poll_control(&mut self) -> Result<(), ConsoleError> {
        let mut handled = false;
        while let Some(token) = self.control_rx.peek_used() {
            let i = self.control_tokens.iter().position(|t| *t == Some(token)).ok_or(ConsoleError::Queue)?;
            // SAFETY: the same buffer that was added with this token.
            unsafe { self.control_rx.pop_used(token, &[], &mut [&mut self.control_buffers[i][..]]) }
                .map_err(|_| ConsoleError::Queue)?;
            self.control_tokens[i] = None;
            let m = self.control_buffers[i];
            let id = u32::from_le_bytes([m[0], m[1], m[2], m[3]]);
            let event = u16::from_le_bytes([m[4], m[5]]);
            let value = u16::from_le_bytes([m[6], m[7]]);
            match event {
                DEVICE_ADD => self.send_control(id, PORT_READY, 1)?,
                PORT_OPEN if id == 0 => self.stdin_open = value == 1,
                _ => {}
            }
            handled = true;
        }
        if handled {
            self.post_control_buffers()?;
        }
        Ok(())
    }
}

//! A VM from config to outcome: [`Vm::try_from`] does every setup step in boot order, [`Vm::run`]
//! runs it. Read top to bottom, this file is the boot sequence; `docs/boot.md` lists the same
//! steps with their inputs.

use crate::arch::{self, AddressSpaceError, VcpuSetupError};
use crate::boot_info::{self, BootInfoError, BootParams};
use crate::config::{ConfigError, VmConfig};
use crate::devices::control::ControlDevice;
use crate::devices::serial::SerialConsole;
use crate::devices::virtio::console::Console;
use crate::devices::virtio::mmio::MmioTransport;
use crate::devices::Devices;
use crate::files::{self, FilesError};
use crate::layout::{GuestLayout, LayoutError, WorkloadSizes};
use crate::loader::{self, LoadError};
use crate::memory::{self, GuestMemory, MemoryError};
use crate::outcome::{Outcome, RunReport};
use crate::vcpu::{self, Vcpu, VcpuError, VcpuShared, VcpuStop};
use event_manager::{EventManager, EventOps, EventSet, Events, MutEventSubscriber, SubscriberOps};
use kvm_ioctls::{Kvm, VmFd};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::eventfd::EventFd;
use vmm_sys_util::signal::Killable;
use vmm_sys_util::timerfd::TimerFd;

/// Errors that keep a VM from being built or run. A guest that misbehaves is not an error: it
/// is an [`Outcome`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Invalid VM configuration")]
    Config(#[from] ConfigError),
    #[error("Cannot pack the preopened directories")]
    Files(#[from] FilesError),
    #[error("Invalid guest image")]
    Image(#[from] LoadError),
    #[error("Cannot open /dev/kvm")]
    OpenKvm(#[source] kvm_ioctls::Error),
    #[error("Cannot create the KVM VM")]
    CreateVm(#[source] kvm_ioctls::Error),
    #[error("Cannot create guest memory")]
    Memory(#[from] MemoryError),
    #[error("Cannot build the guest address space")]
    AddressSpace(#[from] AddressSpaceError),
    #[error("Cannot lay out guest memory")]
    Layout(#[from] LayoutError),
    #[error("Cannot prepare the boot info")]
    BootInfo(#[from] BootInfoError),
    #[error("Cannot place the workload in guest memory")]
    PlaceWorkload(#[source] vm_memory::GuestMemoryError),
    #[error("Cannot create the vCPU")]
    CreateVcpu(#[source] kvm_ioctls::Error),
    #[error("Cannot set up the vCPU")]
    VcpuSetup(#[from] VcpuSetupError),
    #[error("Cannot set up the VMM's event loop")]
    EventLoop(#[source] std::io::Error),
    #[error("Cannot start the vCPU thread")]
    SpawnVcpu(#[source] std::io::Error),
    #[error("The vCPU thread panicked")]
    VcpuPanicked,
    #[error("The vCPU failed")]
    Vcpu(#[from] VcpuError),
}

impl From<event_manager::Error> for Error {
    fn from(e: event_manager::Error) -> Self {
        Error::EventLoop(std::io::Error::other(e))
    }
}

/// A booted-ready VM: memory loaded, vCPU at the guest's entry point, devices wired.
pub struct Vm {
    // Field order is drop order: the vCPU and VM fds close before the memory they map goes.
    vcpu: Vcpu,
    _vm: VmFd,
    _kvm: Kvm,
    _memory: GuestMemory,
    shared: Arc<VcpuShared>,
    kill: Arc<EventFd>,
    timeout: Option<Duration>,
    created: Instant,
}

/// Stops a running VM from another thread (or a signal handler's helper thread).
#[derive(Clone)]
pub struct VmHandle {
    kill: Arc<EventFd>,
}

impl VmHandle {
    /// Stops the VM; [`Vm::run`] returns [`Outcome::Killed`] (unless the guest ended first).
    pub fn kill(&self) {
        let _ = self.kill.write(1);
    }
}

impl TryFrom<VmConfig> for Vm {
    type Error = Error;

    fn try_from(config: VmConfig) -> Result<Self, Error> {
        let created = Instant::now();
        // 1. Validate everything that needs no KVM: bad input fails here, leaving nothing.
        config.validate()?;
        let ram_size = config.memory.bytes();
        let image = config.guest_image.load()?;
        let elf = loader::parse(&image)?;
        let blob = config.workload.as_ref().map(|w| w.encode()).transpose()?;
        let preopens = config.workload.as_ref().map_or(&[][..], |w| &w.preopens);
        let files = if preopens.is_empty() { Vec::new() } else { files::pack(preopens)? };
        let sizes = config.workload.as_ref().zip(blob.as_ref()).map(|(w, b)| WorkloadSizes {
            blob: b.len() as u64,
            files: files.len() as u64,
            payload: w.artifact.len() as u64,
        });
        let layout = GuestLayout::new(ram_size, elf.end, sizes)?;

        // 2. KVM VM and guest memory.
        let kvm = Kvm::new().map_err(Error::OpenKvm)?;
        let vm = kvm.create_vm().map_err(Error::CreateVm)?;
        let memory = memory::create(&vm, ram_size)?;

        // 3. Guest image, workload (blob, files and precompiled module), address space (page tables,
        //    GDT/TSS/IDT, exception stubs).
        loader::load(&memory, &image)?;
        if let (Some(workload), Some(blob), Some(payload), Some(blob_at)) =
            (&config.workload, &blob, &layout.payload, &layout.workload)
        {
            memory.write_slice(blob, GuestAddress(blob_at.start)).map_err(Error::PlaceWorkload)?;
            memory.write_slice(&workload.artifact, GuestAddress(payload.start)).map_err(Error::PlaceWorkload)?;
        }
        if let Some(files_at) = &layout.files {
            memory.write_slice(&files, GuestAddress(files_at.start)).map_err(Error::PlaceWorkload)?;
        }
        arch::configure_address_space(&memory, &elf, &layout)?;
        memory::advise_huge_pages(&memory, layout.huge_page_range());

        // 4. The vCPU, entering the guest in 64-bit CPL 3.
        let vcpu_fd = vm.create_vcpu(0).map_err(Error::CreateVcpu)?;
        arch::configure_vcpu(&kvm, &vcpu_fd, elf.entry)?;

        // 5. Boot info: the memory map, the TSC frequency, a random seed, the self-test.
        let params = BootParams {
            abi_version: config.abi_version,
            layout: &layout,
            tsc_khz: vcpu_fd.get_tsc_khz().map(u64::from).unwrap_or(0),
            clock: arch::clock_sample(&vcpu_fd),
            cpu_features: config.workload.as_ref().map_or(0, |w| w.cpu_features),
            selftest: config.selftest,
            log_level: config.log_level,
        };
        boot_info::write(&memory, &params)?;

        // 6. Devices: the serial log, the control device, the virtio console (stdio).
        let console = Console::new(config.stdin, config.stdout, config.stderr);
        let devices = Devices {
            serial: SerialConsole::new(config.log),
            control: ControlDevice::new(memory.clone()),
            console: MmioTransport::new(console, memory.clone()),
        };
        let shared = Arc::new(VcpuShared::new().map_err(Error::EventLoop)?);
        let kill = Arc::new(EventFd::new(libc::EFD_NONBLOCK | libc::EFD_CLOEXEC).map_err(Error::EventLoop)?);
        vcpu::install_kick_handler().map_err(Error::EventLoop)?;

        Ok(Vm {
            vcpu: Vcpu { fd: vcpu_fd, devices, memory: memory.clone() },
            _vm: vm,
            _kvm: kvm,
            _memory: memory,
            shared,
            kill,
            timeout: config.timeout,
            created,
        })
    }
}

impl Vm {
    /// A handle that can stop this VM while [`Vm::run`] is running.
    pub fn handle(&self) -> VmHandle {
        VmHandle { kill: self.kill.clone() }
    }

    /// Runs the guest to its end. This thread becomes the VMM's event loop; the vCPU gets its own.
    pub fn run(self) -> Result<RunReport, Error> {
        let Vm { vcpu, shared, kill, timeout, created, .. } = self;
        let mut timer = None;
        if let Some(timeout) = timeout {
            let mut fd = TimerFd::new().map_err(errno_to_io).map_err(Error::EventLoop)?;
            // The timeout counts from VM creation, like the boot-time figure.
            fd.reset(timeout.saturating_sub(created.elapsed()).max(Duration::from_nanos(1)), None)
                .map_err(errno_to_io)
                .map_err(Error::EventLoop)?;
            timer = Some(fd);
        }

        let vcpu_shared = shared.clone();
        let vcpu_thread = thread::Builder::new()
            .name("wasmcell-vcpu0".into())
            .spawn(move || {
                // Signals the event loop even if the vCPU thread panics, so `run` never hangs.
                let _done = DoneOnDrop(&vcpu_shared.done);
                vcpu.run(&vcpu_shared)
            })
            .map_err(Error::SpawnVcpu)?;

        let reason = wait_for_stop(&shared, &kill, timer.as_ref());
        if !matches!(reason, Ok(StopReason::VcpuDone)) {
            stop_vcpu(&shared, &vcpu_thread);
        }
        let (result, stopped_at) = vcpu_thread.join().map_err(|_| Error::VcpuPanicked)?;
        let outcome = match (result?, reason?) {
            (VcpuStop::Guest(outcome), _) => outcome,
            (VcpuStop::Stopped, StopReason::Timeout) => Outcome::Timeout,
            (VcpuStop::Stopped, _) => Outcome::Killed,
        };
        Ok(RunReport {
            outcome,
            boot_time: shared.boot_done.get().map(|t| t.duration_since(created)),
            run_time: stopped_at.duration_since(created),
        })
    }
}

fn errno_to_io(e: vmm_sys_util::errno::Error) -> std::io::Error {
    std::io::Error::from_raw_os_error(e.errno())
}

/// Writes the vCPU's `done` eventfd when dropped (on return or unwind).
struct DoneOnDrop<'a>(&'a EventFd);

impl Drop for DoneOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.write(1);
    }
}

/// Why the event loop decided the run is over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StopReason {
    VcpuDone,
    Timeout,
    Kill,
}

/// The event-loop subscriber that watches for the end of a run.
struct Supervisor {
    vcpu_done: i32,
    kill: i32,
    timer: Option<i32>,
    reason: Option<StopReason>,
}

impl MutEventSubscriber for Supervisor {
    fn init(&mut self, ops: &mut EventOps) {
        for fd in [Some(self.vcpu_done), Some(self.kill), self.timer].into_iter().flatten() {
            if let Err(e) = ops.add(Events::new_raw(fd, EventSet::IN)) {
                // Without its events the loop would never end: fail the run instead of hanging.
                eprintln!("wasmcell: cannot watch fd {fd}: {e:?}");
                self.reason = Some(StopReason::Kill);
            }
        }
    }

    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        let reason = match events.fd() {
            fd if fd == self.vcpu_done => StopReason::VcpuDone,
            fd if Some(fd) == self.timer => StopReason::Timeout,
            _ => StopReason::Kill,
        };
        // The vCPU finishing wins over a timeout or kill that raced with it.
        if self.reason != Some(StopReason::VcpuDone) {
            self.reason = Some(reason);
        }
    }
}

fn wait_for_stop(shared: &VcpuShared, kill: &EventFd, timer: Option<&TimerFd>) -> Result<StopReason, Error> {
    let mut manager = EventManager::<Supervisor>::new()?;
    let id = manager.add_subscriber(Supervisor {
        vcpu_done: shared.done.as_raw_fd(),
        kill: kill.as_raw_fd(),
        timer: timer.map(|t| t.as_raw_fd()),
        reason: None,
    });
    loop {
        if let Some(reason) = manager.subscriber_mut(id)?.reason {
            return Ok(reason);
        }
        manager.run()?;
    }
}

/// Makes the vCPU thread leave `KVM_RUN` (or a WAIT) and waits until it has.
fn stop_vcpu(shared: &VcpuShared, thread: &thread::JoinHandle<(Result<VcpuStop, VcpuError>, Instant)>) {
    shared.stop.store(true, Ordering::Release);
    let _ = shared.wake.write(1);
    // A kick that lands just before the thread enters KVM_RUN is lost, so kick until it is out.
    while !thread.is_finished() {
        let _ = thread.kill(vcpu::kick_signal());
        thread::sleep(Duration::from_micros(200));
    }
}

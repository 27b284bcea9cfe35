//! A VM from config to outcome: [`Vm::try_from`] does every setup step in boot order; then
//! [`Vm::run`] runs its one piece of work to the end (`wasmcell run`, `wasmcell boot`), or
//! [`Vm::boot`] brings a pod's VM up and [`Vm::start`] adds workloads while it runs. Read top to
//! bottom, this file is the boot sequence; `docs/boot.md` lists the same steps with their inputs.

use crate::arch::{self, AddressSpace, AddressSpaceError, VcpuEntry, VcpuPristine, VcpuSetupError, WorkloadSpace};
use crate::boot_info::{self, BootInfoError};
use crate::config::{ConfigError, GuestImage, VmConfig};
use crate::devices::control::ControlDevice;
use crate::devices::file::FileDevice;
use crate::devices::serial::SerialConsole;
use crate::devices::socket::SocketDevice;
use crate::devices::virtio::mmio::MmioTransport;
use crate::devices::{ConsoleSlot, Devices};
use crate::layout::{BaseLayout, LayoutError};
use crate::loader::{self, LoadError};
use crate::memory::{self, GuestMemory, MemoryError};
use crate::outcome::RunReport;
use crate::run::{self, VcpuRun};
use crate::vcpu::{self, RunControl, Vcpu, VcpuError};
use crate::window::{PrepareError, PreparedWorkload, Window, WindowError, WindowSlots};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::eventfd::EventFd;
use wasmcell_abi::boot_info::LOG_INFO;
use wasmcell_abi::control::MapRequest;
use wasmcell_abi::devices::console::{mmio_base, queue_address_high};
use wasmcell_abi::memory_map::{self as map, BOOT_VCPU, MAX_VCPUS, MAX_WINDOWS};
use wasmcell_abi::vcpu::{VcpuBlock, VcpuInfo, VCPU_INFO_MAGIC};

/// Errors that keep a VM from being built or run. A guest that misbehaves is not an error: it
/// is an [`crate::Outcome`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Invalid VM configuration")]
    Config(#[from] ConfigError),
    #[error("Invalid workload")]
    Workload(#[from] PrepareError),
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
    #[error("Cannot give the workload its memory")]
    Window(#[from] WindowError),
    #[error("Cannot set up the vCPU")]
    VcpuSetup(#[from] VcpuSetupError),
    #[error("The VM runs {MAX_VCPUS} vCPUs already")]
    TooManyVcpus,
    #[error("The VM has no workload memory slot left")]
    NoWindow,
    #[error("The VM has booted already")]
    AlreadyBooted,
    #[error("Cannot set up the VMM's event loop")]
    EventLoop(#[source] std::io::Error),
    #[error("Cannot start the vCPU thread")]
    SpawnVcpu(#[source] std::io::Error),
    #[error("The vCPU thread panicked")]
    VcpuPanicked,
    #[error("The vCPU failed")]
    Vcpu(#[from] VcpuError),
    #[error("The guest did not come up: {0}")]
    Boot(crate::Outcome),
}

impl From<event_manager::Error> for Error {
    fn from(e: event_manager::Error) -> Self {
        Error::EventLoop(std::io::Error::other(e))
    }
}

/// A VM ready to run: base RAM loaded, address space built, no vCPU running yet.
pub struct Vm {
    inner: Arc<VmInner>,
    kill: Arc<EventFd>,
    timeout: Option<Duration>,
    /// What [`Vm::run`] runs: a workload, or (without one) the boot vCPU's self-test.
    work: Option<PreparedWorkload>,
}

/// What every run of the VM shares.
pub(crate) struct VmInner {
    // Field order is drop order: the vCPU fds (in `state`) and the VM fd close before the
    // memory they map goes.
    state: Mutex<VmState>,
    fd: VmFd,
    kvm: Kvm,
    base_memory: GuestMemory,
    serial: Arc<Mutex<SerialConsole>>,
    /// Whether workloads may write the serial log (only when the guest was asked to log).
    serial_for_workloads: bool,
    entry: u64,
    /// The image's writable data as loaded, before any vCPU ran: each workload's copy.
    kernel_data: Vec<u8>,
    created: Instant,
}

/// What changes while the VM runs.
struct VmState {
    space: AddressSpace,
    windows: WindowSlots,
    /// vCPUs created so far; indices below this not in `idle` are running.
    vcpus_created: u32,
    /// vCPUs whose run ended, ready for another.
    idle: Vec<IdleVcpu>,
    tsc_khz: u64,
}

/// A vCPU between runs: its index, its fd, how many runs it has started so far, and its state
/// as created (put back before each later run).
pub(crate) struct IdleVcpu {
    pub index: u32,
    pub fd: VcpuFd,
    pub starts: u64,
    /// `None` for a vCPU that runs once (`Vm::run`).
    pub pristine: Option<VcpuPristine>,
}

/// Stops a [`Vm::run`] from another thread (or a signal handler's helper thread).
#[derive(Clone)]
pub struct VmHandle {
    kill: Arc<EventFd>,
}

impl VmHandle {
    /// Stops the VM; [`Vm::run`] returns [`crate::Outcome::Killed`] (unless the guest ended first).
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
        let image = config.guest_image.load()?;
        let elf = loader::parse(&image)?;
        let layout = BaseLayout::new(config.memory.bytes(), elf.end)?;
        let boot_params = boot_info::BootParams::new(&config, &layout);
        let kernel_data_len = elf.segments.iter().filter(|s| s.access.writable).map(|s| s.end - s.start).sum();
        let work = config.workload.map(|w| PreparedWorkload::new(w, kernel_data_len)).transpose()?;

        // 2. KVM VM and base RAM.
        let kvm = Kvm::new().map_err(Error::OpenKvm)?;
        let fd = kvm.create_vm().map_err(Error::CreateVm)?;
        arch::configure_vm(&fd);
        let base = memory::create_region(&fd, 0, 0, layout.ram_size)?;
        let base_memory = memory::view(vec![base.clone()])?;

        // 3. Guest image and address spaces (page tables, GDT/IDT, exception stubs); the image's
        //    writable data as loaded, for each workload's private copy.
        match (&config.guest_image, crate::guest_image::embedded_guest_file()) {
            (GuestImage::Embedded, Some((file, offset))) => {
                loader::load_mapped(&base_memory, &image, &elf, &loader::ImageFile { file, offset: *offset })?;
            }
            _ => loader::load(&base_memory, &image, &elf)?,
        }
        let space = AddressSpace::build(&base_memory, &elf, &layout)?;
        let kernel_data = space.read_kernel_data(&base_memory)?;

        // 4. Boot info: base RAM, the kernel heap, the self-test, the log level.
        boot_info::write(&base_memory, &boot_params)?;
        vcpu::install_kick_handler().map_err(Error::EventLoop)?;

        let state = VmState {
            space,
            windows: WindowSlots::new(window_limit(&kvm)),
            vcpus_created: 0,
            idle: Vec::new(),
            tsc_khz: 0,
        };
        let inner = VmInner {
            state: Mutex::new(state),
            fd,
            kvm,
            base_memory,
            serial: Arc::new(Mutex::new(SerialConsole::new(config.log))),
            serial_for_workloads: config.log_level >= LOG_INFO,
            entry: elf.entry,
            kernel_data,
            created,
        };
        let kill = Arc::new(EventFd::new(libc::EFD_NONBLOCK | libc::EFD_CLOEXEC).map_err(Error::EventLoop)?);
        Ok(Vm { inner: Arc::new(inner), kill, timeout: config.timeout, work })
    }
}

impl Vm {
    /// A handle that can stop this VM while [`Vm::run`] is running.
    pub fn handle(&self) -> VmHandle {
        VmHandle { kill: self.kill.clone() }
    }

    /// Runs the VM's one piece of work to its end: its workload, or the boot vCPU's self-test.
    /// This thread becomes the VMM's event loop (timeout, kill); the vCPU gets its own.
    pub fn run(self) -> Result<RunReport, Error> {
        let Vm { inner, kill, timeout, work } = self;
        let run = VmInner::start_vcpu(&inner, work, inner.created, false)?;
        run::supervise(run, timeout, &kill)
    }

    /// Brings a pod's VM up: the boot vCPU sets the kernel up, reports boot done and parks.
    /// Returns the boot time (VM creation → boot done); an error if the guest ended instead.
    pub fn boot(&self) -> Result<Duration, Error> {
        boot_info::set_pod(&self.inner.base_memory)?;
        let run = VmInner::start_vcpu(&self.inner, None, self.inner.created, true)?;
        let report = run.join()?;
        match (&report.outcome, report.boot_time) {
            (crate::Outcome::Parked, Some(boot_time)) => Ok(boot_time),
            _ => Err(Error::Boot(report.outcome)),
        }
    }

    /// Starts `workload` on a vCPU of its own, in a window of its own, while the VM runs. A bad
    /// workload fails before it touches the VM.
    pub fn start(&self, workload: crate::Workload) -> Result<VcpuRun, Error> {
        let started = Instant::now();
        let workload = PreparedWorkload::new(workload, self.inner.kernel_data.len() as u64)?;
        VmInner::start_vcpu(&self.inner, Some(workload), started, true)
    }
}

/// How many windows fit the guest's physical address space.
fn window_limit(kvm: &Kvm) -> u32 {
    let limit = ((1u64 << arch::guest_phys_bits(kvm)) - map::WINDOWS_START) / map::WINDOW_SPAN;
    limit.min(u64::from(MAX_WINDOWS)) as u32
}

impl VmInner {
    fn lock(&self) -> MutexGuard<'_, VmState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// 5. A vCPU, set up for `work` (in a window and an address space of its own) or, without
    ///    work, as the boot vCPU; its devices; its thread. A vCPU that may run again (`reusable`)
    ///    keeps its state as created, to be put back before its next run.
    fn start_vcpu(
        inner: &Arc<Self>,
        work: Option<PreparedWorkload>,
        origin: Instant,
        reusable: bool,
    ) -> Result<VcpuRun, Error> {
        let vcpu = inner.take_vcpu(work.is_none(), reusable)?;
        match inner.prepare_vcpu(&vcpu, work) {
            Ok((devices, window)) => {
                let IdleVcpu { index, fd, starts, pristine } = vcpu;
                let control = RunControl::new().map_err(Error::EventLoop);
                let control = match control {
                    Ok(control) => control,
                    Err(e) => {
                        inner.park_vcpu(IdleVcpu { index, fd, starts, pristine });
                        if let Some(window) = window {
                            inner.release(window);
                        }
                        return Err(e);
                    }
                };
                let pager = window.as_ref().and_then(|w| WindowPager::new(inner, w));
                let running = Vcpu { fd, devices, memory: inner.base_memory.clone(), pager };
                let vcpu = run::RunningVcpu { index, starts: starts + 1, pristine };
                run::spawn(inner.clone(), vcpu, running, Arc::new(control), window, origin)
            }
            Err(e) => {
                inner.park_vcpu(vcpu);
                Err(e)
            }
        }
    }

    /// A vCPU to run on: for the boot vCPU (`boot`) the VM's first, otherwise an idle one that
    /// can be reset, or a new one (which keeps its first state if `reusable`).
    fn take_vcpu(&self, boot: bool, reusable: bool) -> Result<IdleVcpu, Error> {
        let mut state = self.lock();
        if boot && state.vcpus_created > BOOT_VCPU {
            return Err(Error::AlreadyBooted);
        }
        if let Some(at) = state.idle.iter().position(|v| v.pristine.is_some()) {
            return Ok(state.idle.swap_remove(at));
        }
        if state.vcpus_created == MAX_VCPUS {
            return Err(Error::TooManyVcpus);
        }
        let index = state.vcpus_created;
        let (fd, pristine) = arch::create_vcpu(&self.kvm, &self.fd, &self.base_memory, index, reusable)?;
        if index == BOOT_VCPU {
            state.tsc_khz = arch::counter_khz(&fd);
        }
        state.vcpus_created += 1;
        Ok(IdleVcpu { index, fd, starts: 0, pristine })
    }

    /// Writes the vCPU's area and registers; places the workload's window and gives it its
    /// address space. Its devices, and its window if it has one.
    fn prepare_vcpu(
        &self,
        vcpu: &IdleVcpu,
        work: Option<PreparedWorkload>,
    ) -> Result<(Devices, Option<Window>), Error> {
        let index = vcpu.index;
        let area = map::vcpu_area(index);
        let control = ControlDevice::new(self.base_memory.clone(), area + map::VCPU_BLOCK);
        let serial = Some(self.serial.clone());
        let (mut info, console, sockets, files, window, stack_top, serial) = match work {
            None => {
                let info = VcpuInfo {
                    magic: VCPU_INFO_MAGIC,
                    index,
                    stack_bottom: area + map::VCPU_STACK,
                    stack_top: area + map::VCPU_AREA_SIZE,
                    ..Default::default()
                };
                (info, None, None, None, None, area + map::VCPU_AREA_SIZE, serial)
            }
            Some(work) => {
                let (window, view) = self.place(&work, index)?;
                let info = window.vcpu_info(index, &work, mmio_base(index));
                let high = queue_address_high(window.layout.heap.start);
                let sockets = work.network.map(|network| SocketDevice::new(view.clone(), network));
                let files = (!work.volumes.is_empty()).then(|| FileDevice::new(view.clone(), work.volumes));
                let transport = MmioTransport::new(work.console, view, high);
                let console = ConsoleSlot { base: mmio_base(index), transport, _window: window.region() };
                let stack_top = window.layout.stack.end;
                let serial = serial.filter(|_| self.serial_for_workloads);
                (info, Some(console), sockets, files, Some(window), stack_top, serial)
            }
        };
        let setup = (|| {
            let root = window.as_ref().and_then(|w| w.root).unwrap_or_else(|| self.lock().space.boot_root());
            let entry = VcpuEntry { index, entry: self.entry, stack_top, root, starts: vcpu.starts };
            arch::configure_vcpu(&self.kvm, &vcpu.fd, &entry, vcpu.pristine.as_ref())?;
            info.tsc_khz = self.lock().tsc_khz;
            info.random_seed = boot_info::random_seed()?;
            (info.clock_tsc, info.clock_realtime_ns) = arch::clock_sample(&vcpu.fd);
            write_vcpu_area(&self.base_memory, index, &info)?;
            Ok::<(), Error>(())
        })();
        if let Err(e) = setup {
            drop((sockets, files, console));
            if let Some(window) = window {
                self.release(window);
            }
            return Err(e);
        }
        Ok((Devices { serial, control, sockets, files, console }, window))
    }

    /// A window for `work` on vCPU `vcpu`: memory slot, contents, its address space; and the
    /// memory the workload's devices may touch (its stack and heap, nothing else).
    fn place(&self, work: &PreparedWorkload, vcpu: u32) -> Result<(Window, GuestMemory), Error> {
        let index = self.lock().windows.take().ok_or(Error::NoWindow)?;
        let mut window = match Window::create(&self.fd, index, work, &self.kernel_data) {
            Ok(window) => window,
            Err(e) => {
                self.lock().windows.give_back(index);
                return Err(e.into());
            }
        };
        let placed = window.memory().map_err(Error::from).and_then(|memory| {
            let space = WorkloadSpace { window: &window.layout, vcpu, console: mmio_base(vcpu) };
            let root = self.lock().space.map_workload(&memory, &space)?;
            Ok(root)
        });
        match placed {
            Ok(root) => window.root = Some(root),
            Err(e) => {
                self.release(window);
                return Err(e);
            }
        }
        match window.device_view() {
            Ok(view) => Ok((window, view)),
            Err(e) => {
                self.release(window);
                Err(Error::Window(e.into()))
            }
        }
    }

    /// Takes a window back out of the VM: its address space, memory slot and address. Its vCPU
    /// has stopped.
    pub(crate) fn release(&self, window: Window) {
        let mut state = self.lock();
        if let Some(root) = window.root {
            state.space.unmap_workload(root);
        }
        state.windows.give_back(window.index);
        drop(state);
        window.remove(&self.fd);
    }

    /// A vCPU whose run ended, for the next workload.
    pub(crate) fn park_vcpu(&self, vcpu: IdleVcpu) {
        self.lock().idle.push(vcpu);
    }

    pub(crate) fn created(&self) -> Instant {
        self.created
    }
}

/// What a workload's vCPU needs to map its guarded memories' pages as they grow
/// (`MAP_MEMORY`): the VM's page tables, its address space, its heap and its window's RAM.
pub(crate) struct WindowPager {
    vm: Arc<VmInner>,
    root: u64,
    heap: std::ops::Range<u64>,
    memory: GuestMemory,
}

impl WindowPager {
    fn new(vm: &Arc<VmInner>, window: &Window) -> Option<Self> {
        let memory = window.memory().ok()?;
        Some(Self { vm: vm.clone(), root: window.root?, heap: window.layout.heap.clone(), memory })
    }

    /// Maps the pages `request` names, if they are the workload's to map.
    pub fn map(&self, request: &MapRequest) -> Result<(), AddressSpaceError> {
        self.vm.lock().space.map_guarded(&self.memory, self.root, &self.heap, request)
    }
}

/// Writes vCPU `index`'s block (its own address, everything else zero) and info.
fn write_vcpu_area(memory: &GuestMemory, index: u32, info: &VcpuInfo) -> Result<(), Error> {
    let area = map::vcpu_area(index);
    let mut block = [0u8; map::PAGE_SIZE as usize];
    let this = std::mem::offset_of!(VcpuBlock, this);
    block[this..this + 8].copy_from_slice(&(area + map::VCPU_BLOCK).to_le_bytes());
    let write = |bytes: &[u8], at: u64| memory.write_slice(bytes, GuestAddress(at)).map_err(BootInfoError::Write);
    write(&block, area + map::VCPU_BLOCK)?;
    write(info.as_bytes(), area + map::VCPU_INFO)?;
    Ok(())
}

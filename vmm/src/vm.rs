//! A VM from config to outcome: [`Vm::try_from`] does every setup step in boot order; then
//! [`Vm::run`] runs its one piece of work to the end (`wasmcell run`, `wasmcell boot`), or
//! [`Vm::boot`] brings a pod's VM up and [`Vm::start`] adds workloads while it runs. Read top to
//! bottom, this file is the boot sequence; `docs/boot.md` lists the same steps with their inputs.

use crate::arch::{self, AddressSpace, AddressSpaceError, VcpuSetupError};
use crate::boot_info::{self, BootInfoError};
use crate::config::{ConfigError, VmConfig};
use crate::devices::control::ControlDevice;
use crate::devices::serial::SerialConsole;
use crate::devices::virtio::mmio::MmioTransport;
use crate::devices::{ConsoleSlot, Devices};
use crate::layout::{BaseLayout, LayoutError};
use crate::loader::{self, LoadError};
use crate::memory::{self, GuestMemory, MemoryError, Region};
use crate::outcome::RunReport;
use crate::run::{self, VcpuRun};
use crate::vcpu::{self, RunControl, Vcpu, VcpuError};
use crate::window::{PrepareError, PreparedWorkload, Window, WindowError, WindowSlots};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::eventfd::EventFd;
use wasmcell_abi::devices::console::{mmio_base, queue_address_high};
use wasmcell_abi::memory_map::{self as map, MAX_VCPUS, MAX_WINDOWS};
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
    #[error("The VM's guest kernel is stuck: a stopped workload kept a kernel lock")]
    Poisoned,
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
    base: Arc<Region>,
    base_memory: GuestMemory,
    serial: Arc<Mutex<SerialConsole>>,
    entry: u64,
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
    /// A vCPU was stopped while its guest held a kernel-wide lock: any vCPU may now wait for it
    /// forever, so no new one starts.
    poisoned: bool,
}

/// A vCPU between runs: its index, its fd, and how many runs it has started so far.
pub(crate) struct IdleVcpu {
    pub index: u32,
    pub fd: VcpuFd,
    pub starts: u64,
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
        let work = config.workload.map(PreparedWorkload::new).transpose()?;

        // 2. KVM VM and base RAM.
        let kvm = Kvm::new().map_err(Error::OpenKvm)?;
        let fd = kvm.create_vm().map_err(Error::CreateVm)?;
        let base = memory::create_region(&fd, 0, 0, layout.ram_size)?;
        let base_memory = memory::view(vec![base.clone()])?;

        // 3. Guest image and address space (page tables, GDT/IDT, exception stubs).
        loader::load(&base_memory, &image)?;
        let space = AddressSpace::build(&base_memory, &elf, &layout)?;

        // 4. Boot info: base RAM, the kernel heap, the self-test, the log level.
        boot_info::write(&base_memory, &boot_params)?;
        vcpu::install_kick_handler().map_err(Error::EventLoop)?;

        let state = VmState {
            space,
            windows: WindowSlots::new(window_limit(&kvm)),
            vcpus_created: 0,
            idle: Vec::new(),
            tsc_khz: 0,
            poisoned: false,
        };
        let inner = VmInner {
            state: Mutex::new(state),
            fd,
            kvm,
            base,
            base_memory,
            serial: Arc::new(Mutex::new(SerialConsole::new(config.log))),
            entry: elf.entry,
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
        let run = VmInner::start_vcpu(&inner, work, inner.created)?;
        run::supervise(run, timeout, &kill)
    }

    /// Brings a pod's VM up: the boot vCPU sets the kernel up, reports boot done and parks.
    /// Returns the boot time (VM creation → boot done); an error if the guest ended instead.
    pub fn boot(&self) -> Result<Duration, Error> {
        boot_info::set_pod(&self.inner.base_memory)?;
        let run = VmInner::start_vcpu(&self.inner, None, self.inner.created)?;
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
        let workload = PreparedWorkload::new(workload)?;
        VmInner::start_vcpu(&self.inner, Some(workload), started)
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

    /// 5. A vCPU, set up for `work` (in a window of its own) or, without work, as the boot vCPU;
    ///    its devices; its thread.
    fn start_vcpu(inner: &Arc<Self>, work: Option<PreparedWorkload>, origin: Instant) -> Result<VcpuRun, Error> {
        let IdleVcpu { index, fd, starts } = inner.take_vcpu()?;
        let block = map::vcpu_area(index) + map::VCPU_BLOCK;
        let prepared = RunControl::new(inner.base_memory.clone(), block)
            .map_err(Error::EventLoop)
            .and_then(|control| Ok((control, inner.prepare_vcpu(index, &fd, starts, work)?)));
        match prepared {
            Ok((control, (memory, devices, window))) => {
                let vcpu = Vcpu { fd, devices, memory };
                run::spawn(inner.clone(), index, starts + 1, vcpu, Arc::new(control), window, origin)
            }
            Err(e) => {
                inner.lock().idle.push(IdleVcpu { index, fd, starts });
                Err(e)
            }
        }
    }

    /// A vCPU to run on: an idle one, or a new one.
    fn take_vcpu(&self) -> Result<IdleVcpu, Error> {
        let mut state = self.lock();
        if state.poisoned {
            return Err(Error::Poisoned);
        }
        if let Some(idle) = state.idle.pop() {
            return Ok(idle);
        }
        if state.vcpus_created == MAX_VCPUS {
            return Err(Error::TooManyVcpus);
        }
        let index = state.vcpus_created;
        let fd = arch::create_vcpu(&self.kvm, &self.fd, &self.base_memory, index)?;
        if index == 0 {
            state.tsc_khz = fd.get_tsc_khz().map(u64::from).unwrap_or(0);
        }
        state.vcpus_created += 1;
        Ok(IdleVcpu { index, fd, starts: 0 })
    }

    /// Writes the vCPU's area and registers; places the workload's window.
    fn prepare_vcpu(
        &self,
        index: u32,
        fd: &VcpuFd,
        starts: u64,
        work: Option<PreparedWorkload>,
    ) -> Result<(GuestMemory, Devices, Option<Window>), Error> {
        let area = map::vcpu_area(index);
        let control = ControlDevice::new(self.base_memory.clone(), area + map::VCPU_BLOCK);
        let (mut info, memory, console, window, stack_top) = match work {
            None => {
                let info = VcpuInfo {
                    magic: VCPU_INFO_MAGIC,
                    index,
                    stack_bottom: area + map::VCPU_STACK,
                    stack_top: area + map::VCPU_AREA_SIZE,
                    ..Default::default()
                };
                (info, self.base_memory.clone(), None, None, area + map::VCPU_AREA_SIZE)
            }
            Some(work) => {
                let (window, memory) = self.place(&work)?;
                let info = window.vcpu_info(index, &work, mmio_base(index));
                let high = queue_address_high(window.layout.heap.start);
                let transport = MmioTransport::new(work.console, memory.clone(), high);
                let console = ConsoleSlot { base: mmio_base(index), transport };
                let stack_top = window.layout.stack.end;
                (info, memory, Some(console), Some(window), stack_top)
            }
        };
        let setup = (|| {
            let cr3 = window.as_ref().and_then(|w| w.root).unwrap_or_else(|| self.lock().space.base_root());
            arch::configure_vcpu(fd, self.entry, index, stack_top, cr3, starts)?;
            info.tsc_khz = self.lock().tsc_khz;
            info.random_seed = boot_info::random_seed()?;
            (info.clock_tsc, info.clock_realtime_ns) = arch::clock_sample(fd);
            write_vcpu_area(&self.base_memory, index, &info)?;
            Ok::<(), Error>(())
        })();
        if let Err(e) = setup {
            if let Some(window) = window {
                self.release(window, false);
            }
            return Err(e);
        }
        let devices = Devices { serial: self.serial.clone(), control, console };
        Ok((memory, devices, window))
    }

    /// A window for `work`: memory slot, contents, its address space; and the memory view of
    /// the workload's devices (base RAM and the window).
    fn place(&self, work: &PreparedWorkload) -> Result<(Window, GuestMemory), Error> {
        let index = self.lock().windows.take().ok_or(Error::NoWindow)?;
        let mut window = match Window::create(&self.fd, index, work) {
            Ok(window) => window,
            Err(e) => {
                self.lock().windows.give_back(index, true);
                return Err(e.into());
            }
        };
        let memory = match window.view(&self.base) {
            Ok(memory) => memory,
            Err(e) => {
                self.release(window, true);
                return Err(e.into());
            }
        };
        let mapped = self.lock().space.map_window(&memory, &window.layout);
        match mapped {
            Ok(root) => window.root = Some(root),
            Err(e) => {
                self.release(window, true);
                return Err(e.into());
            }
        }
        Ok((window, memory))
    }

    /// Takes a window back out of the VM: its address space, memory slot and address (`clean`:
    /// reusable). Its vCPU has stopped.
    pub(crate) fn release(&self, window: Window, clean: bool) {
        let mut state = self.lock();
        if let Some(root) = window.root {
            state.space.unmap_window(root);
        }
        state.windows.give_back(window.index, clean);
        drop(state);
        window.remove(&self.fd);
    }

    /// A vCPU whose run ended, for the next workload.
    pub(crate) fn park_vcpu(&self, vcpu: IdleVcpu) {
        self.lock().idle.push(vcpu);
    }

    /// A vCPU was stopped before its guest released its kernel-wide locks.
    pub(crate) fn poison(&self) {
        self.lock().poisoned = true;
    }

    pub(crate) fn created(&self) -> Instant {
        self.created
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

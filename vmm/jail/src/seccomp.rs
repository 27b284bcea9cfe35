//! Seccomp filters, one per kind of thread that handles a tenant's input (Firecracker's model, built with seccompiler):
//! the smallest allow-list each thread needs, installed by the thread itself before it does
//! anything the guest can influence, with `ioctl` narrowed by its request number.
//!
//! - [`ThreadKind::Vcpu`]: a vCPU thread, the one that decodes every exit of a possibly hostile
//!   guest. Installed first thing on every vCPU thread, in every process that runs a VM
//!   (`wasmcell run` as much as a pod's VMM): KVM_RUN and the two register reads of a fault
//!   report, the console's reads and writes, its timer, memory for the allocator, the socket
//!   device's non-blocking IPv4/IPv6 TCP and UDP calls with their few options, and nothing
//!   that opens files, maps executable memory or talks to another process but by socket.
//! - [`ThreadKind::Vmm`]: everything else in a jailed VMM process (`crate::jail`), installed
//!   when the jail closes, before any other thread exists: what creates vCPUs and windows,
//!   serves a pod's control channel and watches signals. KVM ioctls only; new threads only
//!   (`clone` with `CLONE_THREAD`; `clone3`, whose flags a filter cannot see, fails with
//!   ENOSYS and glibc falls back to `clone`); `open`/`openat` fail with EACCES (the jail has
//!   nothing to open, and code that tries, such as a `/proc` lookup, copes with an error);
//!   `rt_sigaction` for glibc's two internal signals only.
//! - [`ThreadKind::Packer`]: the process that reads a tenant's root filesystem into an archive:
//!   read-only opens, directory listings, reads, its output.
//! - [`ThreadKind::Compiler`]: the process that runs Cranelift on a tenant's module: reads the
//!   module, writes the artifact and its verdict, its worker threads and their memory.
//!
//! A thread that makes any other system call gets `SIGSYS`; the handler (installed with the
//! first filter) writes one line naming the call to stderr — and to the descriptor given to
//! [`report_violations_to`], a container's stderr, where its user looks — and ends the process
//! with status [`VIOLATION_STATUS`]. Filters can only be
//! added to, never removed, and `rt_sigaction` is in no list: a compromised thread cannot put
//! its own handler in place.

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen as Len, SeccompCmpOp as Op, SeccompCondition as Cond, SeccompFilter,
    SeccompRule,
};
use std::collections::BTreeMap;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Once, OnceLock};

/// Exit status of a process one of whose threads broke its filter (128 + SIGSYS, as if the
/// signal had killed it).
pub const VIOLATION_STATUS: i32 = 128 + libc::SIGSYS;

/// Where the violation handler also writes, if anywhere (-1: nowhere).
static REPORT_FD: AtomicI32 = AtomicI32::new(-1);

/// Has a violation reported on `fd` too (best effort, never blocking: `fd` should be
/// non-blocking). The descriptor must stay open for the process's life.
pub fn report_violations_to(fd: RawFd) {
    REPORT_FD.store(fd, Ordering::Relaxed);
}

/// Which allow-list a thread gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThreadKind {
    Vcpu,
    Vmm,
    Packer,
    Compiler,
}

/// Errors while installing a filter.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("Cannot build the {0:?} seccomp filter: {1}")]
    Build(ThreadKind, String),
    #[error("Cannot install the {0:?} seccomp filter")]
    Install(ThreadKind, #[source] seccompiler::Error),
}

/// KVM's ioctl type.
const KVMIO: u32 = 0xae;
/// `_IO(KVMIO, 0x80)`.
pub const KVM_RUN: u64 = 0xae80;
/// `_IOR(KVMIO, 0x81, struct kvm_regs)` (144 bytes, x86-64).
#[cfg(target_arch = "x86_64")]
pub const KVM_GET_REGS: u64 = 0x8090_ae81;
/// `_IOR(KVMIO, 0x83, struct kvm_sregs)` (312 bytes, x86-64).
#[cfg(target_arch = "x86_64")]
pub const KVM_GET_SREGS: u64 = 0x8138_ae83;
/// `_IOW(KVMIO, 0xab, struct kvm_one_reg)` (16 bytes).
pub const KVM_GET_ONE_REG: u64 = 0x4010_aeab;

/// The ioctls a vCPU thread makes besides `KVM_RUN`: the register reads of a fault report.
#[cfg(target_arch = "x86_64")]
const FAULT_REGISTER_READS: [u64; 2] = [KVM_GET_REGS, KVM_GET_SREGS];
#[cfg(target_arch = "aarch64")]
const FAULT_REGISTER_READS: [u64; 1] = [KVM_GET_ONE_REG];

/// Calls x86-64 keeps beside their successors, which are all aarch64 has (`openat`, `ppoll`,
/// `epoll_pwait`): allowed (or failed) with them where they exist.
mod legacy {
    #[cfg(target_arch = "x86_64")]
    pub const OPEN: Option<i64> = Some(libc::SYS_open);
    #[cfg(target_arch = "x86_64")]
    pub const POLL: Option<i64> = Some(libc::SYS_poll);
    #[cfg(target_arch = "x86_64")]
    pub const EPOLL_WAIT: Option<i64> = Some(libc::SYS_epoll_wait);
    #[cfg(not(target_arch = "x86_64"))]
    pub const OPEN: Option<i64> = None;
    #[cfg(not(target_arch = "x86_64"))]
    pub const POLL: Option<i64> = None;
    #[cfg(not(target_arch = "x86_64"))]
    pub const EPOLL_WAIT: Option<i64> = None;
}

/// Installs `kind`'s filters on the calling thread (and the threads it starts from now on).
pub fn apply(kind: ThreadKind) -> Result<(), SeccompError> {
    for program in programs(kind)? {
        seccompiler::apply_filter(program).map_err(|e| SeccompError::Install(kind, e))?;
    }
    Ok(())
}

/// `kind`'s programs, built once per process (and the SIGSYS handler installed with them): an
/// allow-list, and for some kinds filters that make a few allowed calls fail with an error
/// instead (the kernel applies the most restrictive answer of all filters).
fn programs(kind: ThreadKind) -> Result<&'static [BpfProgram], SeccompError> {
    static VCPU: OnceLock<Result<Vec<BpfProgram>, String>> = OnceLock::new();
    static VMM: OnceLock<Result<Vec<BpfProgram>, String>> = OnceLock::new();
    static PACKER: OnceLock<Result<Vec<BpfProgram>, String>> = OnceLock::new();
    static COMPILER: OnceLock<Result<Vec<BpfProgram>, String>> = OnceLock::new();
    install_violation_handler();
    let cell = match kind {
        ThreadKind::Vcpu => &VCPU,
        ThreadKind::Vmm => &VMM,
        ThreadKind::Packer => &PACKER,
        ThreadKind::Compiler => &COMPILER,
    };
    cell.get_or_init(|| build(kind).map_err(|e| e.to_string()))
        .as_deref()
        .map_err(|e| SeccompError::Build(kind, e.clone()))
}

/// Calls a jailed process with threads makes that fail instead of killing it: `clone3`, whose
/// flags no filter can read (glibc falls back to `clone`), and opens (the jail has nothing to
/// open; code that tries copes with an error).
fn jailed_failures() -> Vec<(i64, i32)> {
    let opens = [Some(libc::SYS_openat), legacy::OPEN].into_iter().flatten().map(|call| (call, libc::EACCES));
    std::iter::once((libc::SYS_clone3, libc::ENOSYS)).chain(opens).collect()
}

fn build(kind: ThreadKind) -> Result<Vec<BpfProgram>, seccompiler::Error> {
    let arch: seccompiler::TargetArch = std::env::consts::ARCH.try_into()?;
    let (allowed, failing) = match kind {
        ThreadKind::Vcpu => (vcpu_rules()?, vec![]),
        ThreadKind::Vmm => (vmm_rules()?, jailed_failures()),
        ThreadKind::Packer => (packer_rules()?, vec![]),
        ThreadKind::Compiler => (compiler_rules()?, jailed_failures()),
    };
    let mut programs = Vec::new();
    for (call, errno) in failing {
        let rules = BTreeMap::from([(call, vec![])]);
        let filter = SeccompFilter::new(rules, SeccompAction::Allow, SeccompAction::Errno(errno as u32), arch)?;
        programs.push(BpfProgram::try_from(filter)?);
    }
    let filter = SeccompFilter::new(allowed, SeccompAction::Trap, SeccompAction::Allow, arch)?;
    programs.push(BpfProgram::try_from(filter)?);
    Ok(programs)
}

type Rules = BTreeMap<i64, Vec<SeccompRule>>;

/// A rule matching when argument `index` equals one of `values`.
fn any_of(index: u8, values: &[u64]) -> Result<Vec<SeccompRule>, seccompiler::BackendError> {
    values.iter().map(|&v| SeccompRule::new(vec![Cond::new(index, Len::Qword, Op::Eq, v)?])).collect()
}

/// A rule matching when argument `index` has none of the bits of `mask`.
fn without_bits(index: u8, mask: u64) -> Result<Vec<SeccompRule>, seccompiler::BackendError> {
    Ok(vec![SeccompRule::new(vec![Cond::new(index, Len::Qword, Op::MaskedEq(mask), 0)?])?])
}

/// System calls every thread needs, whatever it does: memory for the allocator (never
/// executable), futexes, signals it is sent (a kick, a tick) and their return, leaving.
fn common_rules() -> Result<Rules, seccompiler::BackendError> {
    let exec = libc::PROT_EXEC as u64;
    let mut rules: Rules = [
        libc::SYS_brk,
        libc::SYS_munmap,
        libc::SYS_madvise,
        libc::SYS_mremap,
        libc::SYS_futex,
        libc::SYS_sched_yield,
        libc::SYS_rt_sigprocmask,
        libc::SYS_rt_sigreturn,
        libc::SYS_sigaltstack,
        libc::SYS_clock_gettime,
        libc::SYS_clock_nanosleep,
        libc::SYS_nanosleep,
        libc::SYS_getrandom,
        libc::SYS_gettid,
        libc::SYS_close,
        libc::SYS_read,
        libc::SYS_write,
        libc::SYS_exit,
        libc::SYS_exit_group,
    ]
    .into_iter()
    .map(|call| (call, vec![]))
    .collect();
    rules.insert(libc::SYS_mmap, without_bits(2, exec)?);
    rules.insert(libc::SYS_mprotect, without_bits(2, exec)?);
    let fcntl = [libc::F_GETFD, libc::F_GETFL, libc::F_SETFL].map(|c| c as u64);
    rules.insert(libc::SYS_fcntl, any_of(1, &fcntl)?);
    // The violation handler names the thread.
    rules.insert(libc::SYS_prctl, any_of(0, &[libc::PR_GET_NAME as u64])?);
    Ok(rules)
}

fn vcpu_rules() -> Result<Rules, seccompiler::BackendError> {
    let mut rules = common_rules()?;
    for call in
        [libc::SYS_ppoll, libc::SYS_sendto, libc::SYS_timer_create, libc::SYS_timer_settime, libc::SYS_timer_delete]
            .into_iter()
            .chain(legacy::POLL)
    {
        rules.insert(call, vec![]);
    }
    let ioctls: Vec<u64> = [KVM_RUN, libc::FIONREAD].into_iter().chain(FAULT_REGISTER_READS).collect();
    rules.insert(libc::SYS_ioctl, any_of(1, &ioctls)?);
    add_socket_rules(&mut rules)?;
    add_file_rules(&mut rules)?;
    Ok(rules)
}

/// What a workload's file device does (`wasmcell_vmm::devices::file`), on the volume
/// descriptors it holds: `openat2` (its `RESOLVE_BENEATH` is in a struct no filter can read:
/// what keeps a path beneath a volume is the device, and what an absolute path would meet is
/// the jail's empty root), and the calls on a pinned parent or an open file. Every call that
/// takes a directory descriptor must name one (never `AT_FDCWD`, the jail's empty root);
/// `renameat2` and `linkat` take no flags (no exchange or whiteout, never following a
/// symlink), `utimensat` only `AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW`.
fn add_file_rules(rules: &mut Rules) -> Result<(), seccompiler::BackendError> {
    for call in [
        libc::SYS_fstat,
        libc::SYS_pread64,
        libc::SYS_pwrite64,
        libc::SYS_lseek,
        libc::SYS_getdents64,
        libc::SYS_ftruncate,
        libc::SYS_fsync,
    ] {
        rules.insert(call, vec![]);
    }
    let not_cwd = |index: u8| Cond::new(index, Len::Dword, Op::Ne, libc::AT_FDCWD as u32 as u64);
    let flags_in = |index: u8, allowed: u64| Cond::new(index, Len::Qword, Op::MaskedEq(!allowed), 0);
    for (call, dirs) in [
        (libc::SYS_openat2, &[0u8][..]),
        (libc::SYS_newfstatat, &[0]),
        (libc::SYS_statx, &[0]),
        (libc::SYS_mkdirat, &[0]),
        (libc::SYS_unlinkat, &[0]),
        (libc::SYS_symlinkat, &[1]),
        (libc::SYS_readlinkat, &[0]),
    ] {
        let conditions = dirs.iter().map(|&i| not_cwd(i)).collect::<Result<Vec<_>, _>>()?;
        rules.insert(call, vec![SeccompRule::new(conditions)?]);
    }
    rules.insert(libc::SYS_renameat2, vec![SeccompRule::new(vec![not_cwd(0)?, not_cwd(2)?, flags_in(4, 0)?])?]);
    rules.insert(libc::SYS_linkat, vec![SeccompRule::new(vec![not_cwd(0)?, not_cwd(2)?, flags_in(4, 0)?])?]);
    let times = (libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW) as u64;
    rules.insert(libc::SYS_utimensat, vec![SeccompRule::new(vec![not_cwd(0)?, flags_in(3, times)?])?]);
    Ok(())
}

/// What a workload's socket device does (`wasmcell_vmm::devices::socket`): IPv4/IPv6 TCP and
/// UDP sockets, always non-blocking, and only the options it offers (never `SO_REUSEPORT`).
fn add_socket_rules(rules: &mut Rules) -> Result<(), seccompiler::BackendError> {
    for call in [
        libc::SYS_bind,
        libc::SYS_listen,
        libc::SYS_connect,
        libc::SYS_recvfrom,
        libc::SYS_shutdown,
        libc::SYS_getsockname,
        libc::SYS_getpeername,
    ] {
        rules.insert(call, vec![]);
    }
    let flags = (libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC) as u64;
    let mut sockets = Vec::new();
    for domain in [libc::AF_INET, libc::AF_INET6] {
        for kind in [libc::SOCK_STREAM, libc::SOCK_DGRAM] {
            sockets.push(SeccompRule::new(vec![
                Cond::new(0, Len::Dword, Op::Eq, domain as u64)?,
                Cond::new(1, Len::Dword, Op::Eq, kind as u64 | flags)?,
                Cond::new(2, Len::Dword, Op::Eq, 0)?,
            ])?);
        }
    }
    rules.insert(libc::SYS_socket, sockets);
    rules.insert(libc::SYS_accept4, any_of(3, &[flags])?);
    let options = [
        (libc::SOL_SOCKET, libc::SO_REUSEADDR),
        (libc::SOL_SOCKET, libc::SO_KEEPALIVE),
        (libc::SOL_SOCKET, libc::SO_RCVBUF),
        (libc::SOL_SOCKET, libc::SO_SNDBUF),
        (libc::IPPROTO_TCP, libc::TCP_KEEPIDLE),
        (libc::IPPROTO_TCP, libc::TCP_KEEPINTVL),
        (libc::IPPROTO_TCP, libc::TCP_KEEPCNT),
        (libc::IPPROTO_IP, libc::IP_TTL),
        (libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS),
        (libc::IPPROTO_IPV6, libc::IPV6_V6ONLY),
    ];
    let option_rules = |extra: &[(libc::c_int, libc::c_int)]| {
        options
            .iter()
            .chain(extra)
            .map(|&(level, name)| {
                SeccompRule::new(vec![
                    Cond::new(1, Len::Dword, Op::Eq, level as u64)?,
                    Cond::new(2, Len::Dword, Op::Eq, name as u64)?,
                ])
            })
            .collect::<Result<Vec<_>, _>>()
    };
    rules.insert(libc::SYS_setsockopt, option_rules(&[])?);
    rules.insert(libc::SYS_getsockopt, option_rules(&[(libc::SOL_SOCKET, libc::SO_ERROR)])?);
    Ok(())
}

/// What a process that starts threads needs for them: `clone` for threads only (`clone3` is
/// answered ENOSYS by another filter), what a thread does as it starts (its robust list, rseq,
/// its name, its CPU set), glibc's handlers for its two internal real-time signals (32, 33:
/// cancellation and set*id broadcast, installed when the first thread starts) and the other
/// `signals` named, and signals to this process's own threads only.
fn add_thread_rules(rules: &mut Rules, signals: &[libc::c_int]) -> Result<(), seccompiler::BackendError> {
    for call in
        [libc::SYS_clone3, libc::SYS_set_robust_list, libc::SYS_rseq, libc::SYS_sched_getaffinity, libc::SYS_getpid]
    {
        rules.insert(call, vec![]);
    }
    let thread = libc::CLONE_THREAD as u64;
    rules.insert(
        libc::SYS_clone,
        vec![SeccompRule::new(vec![Cond::new(0, Len::Qword, Op::MaskedEq(thread), thread)?])?],
    );
    let signals: Vec<u64> = [32, 33].iter().chain(signals).map(|&s| s as u64).collect();
    rules.insert(libc::SYS_rt_sigaction, any_of(0, &signals)?);
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() } as u64;
    rules.insert(libc::SYS_tgkill, any_of(0, &[pid])?);
    Ok(())
}

/// Looking at descriptors it was given, and opens that the other filter answers EACCES.
fn add_descriptor_rules(rules: &mut Rules) {
    for call in [libc::SYS_fstat, libc::SYS_statx, libc::SYS_newfstatat, libc::SYS_lseek, libc::SYS_openat]
        .into_iter()
        .chain(legacy::OPEN)
    {
        rules.insert(call, vec![]);
    }
}

fn vmm_rules() -> Result<Rules, seccompiler::BackendError> {
    let mut rules = vcpu_rules()?;
    add_thread_rules(&mut rules, &[])?;
    add_descriptor_rules(&mut rules);
    for call in [
        // Events, timers, epoll, the control channel, files it was handed.
        libc::SYS_eventfd2,
        libc::SYS_timerfd_create,
        libc::SYS_timerfd_settime,
        libc::SYS_epoll_create1,
        libc::SYS_epoll_ctl,
        libc::SYS_epoll_pwait,
        libc::SYS_recvfrom,
        libc::SYS_recvmsg,
        libc::SYS_sendmsg,
        libc::SYS_shutdown,
        libc::SYS_pread64,
        // The stop-signal watcher.
        libc::SYS_rt_sigtimedwait,
    ]
    .into_iter()
    .chain(legacy::EPOLL_WAIT)
    {
        rules.insert(call, vec![]);
    }
    // New threads name themselves; vCPU threads add their own filter (which only ever
    // restricts further).
    let prctl = [libc::PR_GET_NAME, libc::PR_SET_NAME, libc::PR_SET_NO_NEW_PRIVS].map(|c| c as u64);
    rules.insert(libc::SYS_prctl, any_of(0, &prctl)?);
    rules.insert(libc::SYS_seccomp, any_of(0, &[libc::SECCOMP_SET_MODE_FILTER as u64])?);
    let fcntl = [libc::F_GETFD, libc::F_SETFD, libc::F_GETFL, libc::F_SETFL, libc::F_DUPFD_CLOEXEC].map(|c| c as u64);
    rules.insert(libc::SYS_fcntl, any_of(1, &fcntl)?);
    // Every KVM ioctl (type 0xAE), on whichever KVM descriptor, and FIONREAD.
    rules.insert(
        libc::SYS_ioctl,
        vec![
            SeccompRule::new(vec![Cond::new(1, Len::Dword, Op::MaskedEq(0xff00), u64::from(KVMIO) << 8)?])?,
            SeccompRule::new(vec![Cond::new(1, Len::Qword, Op::Eq, libc::FIONREAD)?])?,
        ],
    );
    Ok(rules)
}

fn compiler_rules() -> Result<Rules, seccompiler::BackendError> {
    let mut rules = common_rules()?;
    // Worker threads, and the fault handlers wasmtime installs with an engine that uses
    // signals-based traps (the guest's configuration does).
    add_thread_rules(&mut rules, &[libc::SIGILL, libc::SIGBUS, libc::SIGFPE, libc::SIGSEGV])?;
    add_descriptor_rules(&mut rules);
    for call in [libc::SYS_ppoll].into_iter().chain(legacy::POLL) {
        rules.insert(call, vec![]);
    }
    rules.insert(libc::SYS_prctl, any_of(0, &[libc::PR_GET_NAME as u64, libc::PR_SET_NAME as u64])?);
    Ok(rules)
}

fn packer_rules() -> Result<Rules, seccompiler::BackendError> {
    let mut rules = common_rules()?;
    for call in [
        libc::SYS_getdents64,
        libc::SYS_readlinkat,
        libc::SYS_fstat,
        libc::SYS_newfstatat,
        libc::SYS_statx,
        libc::SYS_lseek,
        libc::SYS_dup,
    ] {
        rules.insert(call, vec![]);
    }
    // Opens for reading only (its root is read-only as well).
    let writing = (libc::O_WRONLY | libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC | libc::O_APPEND) as u64;
    if let Some(open) = legacy::OPEN {
        rules.insert(open, without_bits(1, writing)?);
    }
    rules.insert(libc::SYS_openat, without_bits(2, writing)?);
    let fcntl = [libc::F_GETFD, libc::F_SETFD, libc::F_GETFL, libc::F_DUPFD_CLOEXEC].map(|c| c as u64);
    rules.insert(libc::SYS_fcntl, any_of(1, &fcntl)?);
    Ok(rules)
}

/// Installs the SIGSYS handler, once per process.
fn install_violation_handler() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: a zeroed sigaction is a valid starting point; the handler only calls
        // async-signal-safe functions (`write`, `_exit`) on stack buffers.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_violation as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(libc::SIGSYS, &action, std::ptr::null_mut());
        }
    });
}

/// SIGSYS from a filter: says which call on which thread, then ends the process.
extern "C" fn on_violation(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo; for SIGSYS the system call number is the int
    // at offset 24 (`si_syscall` of the `_sigsys` member, after `si_call_addr`).
    let call = unsafe { info.cast::<u8>().add(24).cast::<libc::c_int>().read() };
    let mut name = [0u8; 16];
    // SAFETY: PR_GET_NAME writes at most 16 bytes, NUL included, into `name`.
    unsafe { libc::prctl(libc::PR_GET_NAME, name.as_mut_ptr()) };
    let mut line = [0u8; 160];
    let mut len = 0;
    for part in [
        &b"wasmcell: thread "[..],
        name.split(|&b| b == 0).next().unwrap_or(&[]),
        b" made system call ",
        decimal(call, &mut [0u8; 12]),
        b", which its seccomp filter forbids: the process stopped\n",
    ] {
        let take = part.len().min(line.len() - len);
        line[len..len + take].copy_from_slice(&part[..take]);
        len += take;
    }
    // SAFETY: `write` and `_exit` are async-signal-safe; `line` is valid for `len` bytes.
    unsafe {
        libc::write(libc::STDERR_FILENO, line.as_ptr().cast(), len);
        let report = REPORT_FD.load(Ordering::Relaxed);
        if report >= 0 {
            libc::write(report, line.as_ptr().cast(), len);
        }
        libc::_exit(VIOLATION_STATUS);
    }
}

/// `value` in decimal, in `buffer`, without allocating (for a signal handler).
fn decimal(value: libc::c_int, buffer: &mut [u8; 12]) -> &[u8] {
    let mut at = buffer.len();
    let mut rest = i64::from(value).unsigned_abs();
    loop {
        at -= 1;
        buffer[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if value < 0 {
        at -= 1;
        buffer[at] = b'-';
    }
    &buffer[at..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// The child half of the tests below: set by the parent, never by a user; names the file
    /// the child reports its violation to.
    const CHILD: &str = "WASMCELL_SECCOMP_TEST_CHILD";

    #[test]
    fn every_filter_builds() {
        for kind in [ThreadKind::Vcpu, ThreadKind::Vmm, ThreadKind::Packer, ThreadKind::Compiler] {
            assert!(programs(kind).unwrap().iter().all(|p| !p.is_empty()));
        }
        assert_eq!(decimal(41, &mut [0; 12]), b"41");
        assert_eq!(decimal(-7, &mut [0; 12]), b"-7");
    }

    /// In the child: a vCPU-filtered thread does what a vCPU thread does, then what it must
    /// not (opening a blocking socket: the socket device makes only non-blocking ones); the
    /// process must end on the second.
    #[test]
    #[ignore = "the child half of a_vcpu_thread_that_breaks_its_filter_stops_the_process_saying_why"]
    fn child_breaks_the_vcpu_filter() {
        let report = std::env::var_os(CHILD).expect("run by its parent test only");
        let report = std::fs::OpenOptions::new().append(true).open(report).unwrap();
        report_violations_to(std::os::fd::IntoRawFd::into_raw_fd(report));
        let thread = std::thread::Builder::new().name("wasmcell-vcpu9".into()).spawn(|| {
            apply(ThreadKind::Vcpu).unwrap();
            let allowed = vec![7u8; 1 << 20];
            std::thread::sleep(std::time::Duration::from_millis(1));
            drop(allowed);
            // SAFETY: the forbidden call itself; it never returns.
            unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
        });
        thread.unwrap().join().unwrap();
        std::process::exit(0);
    }

    #[test]
    fn a_vcpu_thread_that_breaks_its_filter_stops_the_process_saying_why() {
        let report = std::env::temp_dir().join(format!("wasmcell-seccomp-report-{}", std::process::id()));
        std::fs::write(&report, "").unwrap();
        let child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "seccomp::tests::child_breaks_the_vcpu_filter", "--ignored", "--nocapture"])
            .env(CHILD, &report)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&child.stderr);
        assert_eq!(child.status.code(), Some(VIOLATION_STATUS), "{stderr}");
        let expected = format!("wasmcell: thread wasmcell-vcpu9 made system call {}", libc::SYS_socket);
        assert!(stderr.contains(&expected), "{stderr}");
        let reported = std::fs::read_to_string(&report).unwrap();
        std::fs::remove_file(&report).unwrap();
        assert!(reported.starts_with(&expected), "the report descriptor got the line too: {reported:?}");
    }
}

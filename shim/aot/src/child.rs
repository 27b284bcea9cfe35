//! The compiler process (`BINARY __compile`): Cranelift runs on a tenant's module here, in a
//! child of the shim or of `wasmcell run`, confined before it reads the module: limits it sets
//! on itself — address space (`RLIMIT_AS`), CPU time (`RLIMIT_CPU`), no core dump — so that a
//! module that makes the compiler loop or balloon costs a dead child, never a wedged or
//! exhausted shim; when the parent asks (it runs as root: the shim), the jail of
//! `wasmcell_jail` (an empty root of its own, uid and gid 65534, no capabilities); and always
//! the compiler's seccomp filter (read the module, write the artifact, threads, memory). The
//! parent ([`crate::process`]) also stops it at a wall-clock deadline.
//!
//! Protocol, parent → child on stdin: one header line
//! `wasmcell-compile-v2 CPU_FEATURES MEMORY_BYTES CPU_SECONDS JAIL` (JAIL 1 or 0), then the
//! module's bytes to end of file. The child writes the artifact to its descriptor
//! [`ARTIFACT_FD`] (an empty file the parent created in a private directory and opened for it:
//! the child opens nothing) and ends its stderr with one record line: `ok`, `time`, `memory` or `error MESSAGE` (newlines and backslashes escaped),
//! after [`RECORD`]. Its exit status is not part of the protocol: in the shim, containerd-shim's
//! reaper may collect it first.

use crate::Compiler;
use std::io::{BufRead, BufReader, Read, Write};
use wasmcell_engine::Target;
use wasmcell_jail::jail::{Jail, JailRoot};
use wasmcell_jail::seccomp::{self, ThreadKind};

/// The first argument that makes the binary a compiler process.
pub const COMPILE_ACTION: &str = "__compile";
/// The header's first word.
pub(crate) const HEADER_TAG: &str = "wasmcell-compile-v3";
/// The descriptor the artifact is written to.
pub(crate) const ARTIFACT_FD: i32 = 3;
/// Who a compiler process started as root becomes.
const JAIL_ID: u32 = 65534;
/// What starts the child's result line on stderr.
pub(crate) const RECORD: &str = "wasmcell-compile:";

/// Becomes a compiler process, and exits, if this process was started as one (`argv[1]` is
/// [`COMPILE_ACTION`]); returns otherwise. Binaries that compile through
/// [`crate::CompilerProcess::this_executable`] call it first thing in `main`, before anything
/// parses the arguments.
pub fn run_if_compile_action() {
    if std::env::args_os().nth(1).is_some_and(|arg| arg == COMPILE_ACTION) {
        std::process::exit(serve());
    }
}

/// The child's work; its exit status (0 when the artifact was written).
pub(crate) fn serve() -> i32 {
    // A panic (a thread the compiler could not start under the limit, a Cranelift bug) is a
    // failure like any other; its message was printed by the panic hook already.
    let outcome = std::panic::catch_unwind(compile_request).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("the compiler panicked");
        Err(Failure::from_message(message.to_string()))
    });
    let record = match &outcome {
        Ok(()) => "ok".to_string(),
        Err(Failure::Memory) => "memory".to_string(),
        Err(Failure::Error(message)) => format!("error {}", escape(message)),
    };
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "\n{RECORD} {record}");
    i32::from(outcome.is_err())
}

enum Failure {
    /// The compiler ran out of address space.
    Memory,
    Error(String),
}

impl Failure {
    fn error(what: &str, e: impl std::fmt::Display) -> Self {
        Self::from_message(format!("{what}: {e}"))
    }

    /// A failure that says it ran out of memory is one. Under `RLIMIT_AS` that shows as
    /// `ENOMEM` from `mmap`, or as `EAGAIN` from `pthread_create`, which cannot map a stack.
    fn from_message(message: String) -> Self {
        const EXHAUSTED: [&str; 4] =
            ["Cannot allocate memory", "os error 12", "Resource temporarily unavailable", "os error 11"];
        if EXHAUSTED.iter().any(|sign| message.contains(sign)) {
            Failure::Memory
        } else {
            Failure::Error(message)
        }
    }
}

fn compile_request() -> Result<(), Failure> {
    let mut input = BufReader::new(std::io::stdin().lock());
    let mut header = String::new();
    input.by_ref().take(8192).read_line(&mut header).map_err(|e| Failure::error("cannot read the request", e))?;
    let request = Request::parse(&header).ok_or_else(|| Failure::Error("a malformed request".into()))?;
    request.limit_self()?;
    confine(request.jail)?;
    let mut module = Vec::new();
    input.read_to_end(&mut module).map_err(|e| Failure::error("cannot read the module", e))?;
    let compiled = Compiler::for_target(request.target, request.cpu_features).and_then(|c| c.compile(&module));
    let artifact = compiled.map_err(|e| Failure::from_message(chain(&e)))?;
    drop(module);
    // SAFETY: the parent hands the artifact's file over as ARTIFACT_FD and nothing else in this
    // process uses that number.
    let mut output = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(ARTIFACT_FD) };
    output.write_all(&artifact).map_err(|e| Failure::error("cannot write the artifact", e))
}

/// The jail (if asked) and the compiler's filter.
fn confine(jail: bool) -> Result<(), Failure> {
    if jail {
        let jail = Jail {
            root: JailRoot::Empty,
            uid: JAIL_ID,
            gid: JAIL_ID,
            groups: Vec::new(),
            keep_caps: Vec::new(),
            max_fds: 64,
        };
        jail.enter().map_err(|e| Failure::error("cannot jail the compiler", e))?;
    }
    seccomp::apply(ThreadKind::Compiler).map_err(|e| Failure::error("cannot confine the compiler", e))
}

struct Request {
    target: Target,
    cpu_features: u64,
    memory: u64,
    cpu_seconds: u64,
    jail: bool,
}

impl Request {
    fn parse(line: &str) -> Option<Self> {
        let mut words = line.split_ascii_whitespace();
        if words.next()? != HEADER_TAG {
            return None;
        }
        let mut number = || words.next()?.parse::<u64>().ok();
        let (cpu_features, memory, cpu_seconds) = (number()?, number()?, number()?);
        let jail = match number()? {
            0 => false,
            1 => true,
            _ => return None,
        };
        let target = Target::from_name(words.next()?)?;
        words.next().is_none().then_some(Self { target, cpu_features, memory, cpu_seconds, jail })
    }

    /// Limits this process before it reads the module. CPU time past the soft limit raises
    /// SIGXCPU, whose handler reports `time`; the hard limit, a second later, kills.
    fn limit_self(&self) -> Result<(), Failure> {
        // SAFETY: the handler only calls async-signal-safe functions (`write`, `_exit`).
        unsafe { libc::signal(libc::SIGXCPU, on_cpu_limit as *const () as libc::sighandler_t) };
        let limits = [
            (libc::RLIMIT_CORE, 0, 0),
            (libc::RLIMIT_CPU, self.cpu_seconds, self.cpu_seconds.saturating_add(1)),
            (libc::RLIMIT_AS, self.memory, self.memory),
        ];
        for (resource, soft, hard) in limits {
            let limit = libc::rlimit { rlim_cur: soft, rlim_max: hard };
            // SAFETY: `setrlimit` reads the struct we pass; lowering limits needs no privilege.
            if unsafe { libc::setrlimit(resource, &limit) } != 0 {
                return Err(Failure::error("cannot limit the compiler", std::io::Error::last_os_error()));
            }
        }
        Ok(())
    }
}

/// The `time` record, ready-made: the signal handler may not allocate.
pub(crate) const TIME_RECORD: &[u8] = b"\nwasmcell-compile: time\n";

extern "C" fn on_cpu_limit(_signal: libc::c_int) {
    // SAFETY: `write` and `_exit` are async-signal-safe; the record is a static buffer.
    unsafe {
        libc::write(libc::STDERR_FILENO, TIME_RECORD.as_ptr().cast(), TIME_RECORD.len());
        libc::_exit(1);
    }
}

/// The error's causes after its own message, as the compiler's: `crate::AotError::Compile`'s
/// message is added again by the parent.
fn chain(error: &crate::AotError) -> String {
    let mut text = String::new();
    let mut source = std::error::Error::source(error);
    while let Some(e) = source {
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&e.to_string());
        source = e.source();
    }
    if text.is_empty() {
        error.to_string()
    } else {
        text
    }
}

pub(crate) fn escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

pub(crate) fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match (c, c == '\\') {
            (_, true) => match chars.next() {
                Some('n') => out.push('\n'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            },
            (c, false) => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_messages_survive_the_trip() {
        let request = Request::parse(&format!("{HEADER_TAG} 5 1024 2 1 aarch64\n")).unwrap();
        assert_eq!((request.cpu_features, request.memory, request.cpu_seconds, request.jail), (5, 1024, 2, true));
        assert_eq!(request.target, Target::Aarch64);
        assert!(!Request::parse(&format!("{HEADER_TAG} 5 1024 2 0 x86_64")).unwrap().jail);
        assert!(Request::parse("wasmcell-compile-v2 5 1024 2 0").is_none(), "an older protocol");
        assert!(Request::parse(&format!("{HEADER_TAG} 5 1024 2 2 x86_64")).is_none());
        assert!(Request::parse(&format!("{HEADER_TAG} 5 1024 2 1 sparc")).is_none(), "an unknown target");
        assert!(Request::parse(&format!("{HEADER_TAG} 5 1024 2 1 x86_64 extra")).is_none());
        assert!(Request::parse(&format!("{HEADER_TAG} 5 1024 2 1")).is_none());
        let message = "unknown operator\n  --> 1:34\n  | a\\b";
        assert_eq!(unescape(&escape(message)), message);
        assert!(!escape(message).contains('\n'));
    }
}

//! The command line's grammar (clap) and how usage errors are reported: one line on stderr.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use wasmcell_abi::{SelfTest, ABI_VERSION};
use wasmcell_aot::Target;
use wasmcell_vmm::{MemorySize, Preopen};

#[derive(Parser)]
#[command(name = "wasmcell", version, about = "Run WebAssembly in KVM microVMs")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run a WebAssembly module (`.wasm` or `.wat`; a `.cwasm` with --allow-precompiled) in a microVM.
    Run(RunArgs),
    /// Serve a `wasi:http/proxy` component over HTTP/1.1 from a microVM (as `wasmtime serve`).
    Serve(ServeArgs),
    /// Compile a module ahead of time for the guest (`.wasm`/`.wat` → `.cwasm`).
    Compile(CompileArgs),
    /// Boot the guest with no workload; print its log, how it ended and the boot time.
    Boot(BootArgs),
    /// OCI images holding a module, for containerd (`ctr images import`).
    #[command(subcommand)]
    Image(ImageCommand),
    /// Install the containerd shim, register the `wasmcell` runtime handler in containerd's
    /// configuration, and print the Kubernetes RuntimeClass.
    Install(InstallArgs),
}

#[derive(Args)]
pub struct InstallArgs {
    /// containerd's configuration file (created if missing; `version = 3` selects the 2.x layout).
    #[arg(long, value_name = "PATH", default_value = "/etc/containerd/config.toml")]
    pub config: PathBuf,
    /// Where to install containerd-shim-wasmcell-v1 (a directory on containerd's PATH).
    #[arg(long, value_name = "DIR", default_value = "/usr/local/bin")]
    pub bin_dir: PathBuf,
    /// The runtime handler name (the RuntimeClass's `handler`).
    #[arg(long, value_name = "NAME", default_value = "wasmcell", value_parser = parse_handler)]
    pub handler: String,
    /// Say what would change without changing anything.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Subcommand)]
pub enum ImageCommand {
    /// Write an OCI image tarball whose entrypoint is the module (reproducible digests).
    Build(ImageBuildArgs),
}

#[derive(Args)]
pub struct ImageBuildArgs {
    /// The image reference containerd records, e.g. docker.io/wasmcell/hello:latest.
    #[arg(short, long, value_name = "REFERENCE")]
    pub tag: String,
    /// Where to write the tarball.
    #[arg(short, long, value_name = "PATH")]
    pub output: PathBuf,
    /// linux/amd64, linux/arm64 or wasi/wasm (import that one with `ctr images import --all-platforms`).
    #[arg(long, value_name = "OS/ARCH", default_value = "linux/amd64")]
    pub platform: wasmcell_image::Platform,
    /// Set an environment variable in the image config (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_env)]
    pub env: Vec<String>,
    /// The module (binary `.wasm`).
    pub module: PathBuf,
    /// Default arguments (the image's `Cmd`, after `--`).
    #[arg(last = true, value_name = "ARGS")]
    pub args: Vec<String>,
}

#[derive(Args)]
pub struct RunArgs {
    /// The module's memory in MiB: its linear memory, stack and runtime (the guest kernel's own
    /// memory comes on top).
    #[arg(long, value_name = "MIB", default_value = "256", value_parser = parse_memory)]
    pub memory: MemorySize,
    /// Stop the module after this long (e.g. 500ms, 10s, 2m); the exit status is then 124.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// Set an environment variable for the module (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_env)]
    pub env: Vec<String>,
    /// Let the module see a host directory, at GUEST (default: HOST as written). The directory is
    /// packed read-only into the VM; the module's writes stay in VM memory and vanish with it.
    #[arg(long = "dir", value_name = "HOST[::GUEST]", value_parser = parse_dir)]
    pub dirs: Vec<Preopen>,
    /// Let the module read and write a host directory or file, at GUEST (default: HOST as
    /// written), as a container volume: its writes reach the host at once ("ro": no writes).
    #[arg(long = "volume", value_name = "HOST[::GUEST][:ro]", value_parser = parse_volume)]
    pub volumes: Vec<VolumeArg>,
    /// Give the module the host's network (as `wasmtime run -S inherit-network`): its sockets
    /// are real sockets of this process's network namespace. Without it every address is denied.
    #[arg(long)]
    pub inherit_network: bool,
    /// Let the module look names up (as `wasmtime run -S allow-ip-name-lookup`): with this
    /// host's /etc/resolv.conf and /etc/hosts, through its own sockets. Needs --inherit-network.
    #[arg(long, requires = "inherit_network")]
    pub allow_ip_name_lookup: bool,
    /// Hand a preview-1 module a TCP listener bound to this address, as a descriptor from 3 on,
    /// before the --dir ones (repeatable; as `wasmtime run --tcplisten` before 47): it serves
    /// with `sock_accept`. Without --inherit-network the module can answer but not connect out.
    #[arg(long = "tcplisten", value_name = "IP:PORT")]
    pub tcplisten: Vec<std::net::SocketAddr>,
    /// Directory for cached compiled modules [default: $WASMCELL_CACHE_DIR, else ~/.cache/wasmcell].
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Print the VM's boot and run times and the workload vCPU's VM exits on stderr after the module ends.
    #[arg(long)]
    pub stats: bool,
    /// Run a precompiled `.cwasm` (from `wasmcell compile`): native code that runs as it is, so
    /// only for artifacts you trust, as with `wasmtime run --allow-precompiled`.
    #[arg(long)]
    pub allow_precompiled: bool,
    /// The module to run.
    pub module: PathBuf,
    /// Arguments passed to the module (after `--`).
    #[arg(last = true, value_name = "ARGS")]
    pub args: Vec<String>,
}

#[derive(Args)]
pub struct ServeArgs {
    /// The address to listen on (port 0: any free port; the one bound is printed).
    #[arg(long, value_name = "IP:PORT", default_value = "0.0.0.0:8080")]
    pub addr: std::net::SocketAddr,
    /// The component's memory in MiB: every request's instance, stack and runtime.
    #[arg(long, value_name = "MIB", default_value = "256", value_parser = parse_memory)]
    pub memory: MemorySize,
    /// Set an environment variable for the component (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_env)]
    pub env: Vec<String>,
    /// Let the component see a host directory, at GUEST, as `wasmcell run --dir` does.
    #[arg(long = "dir", value_name = "HOST[::GUEST]", value_parser = parse_dir)]
    pub dirs: Vec<Preopen>,
    /// Let the component look names up (this host's /etc/resolv.conf and /etc/hosts).
    #[arg(long)]
    pub allow_ip_name_lookup: bool,
    /// Directory for cached compiled modules [default: $WASMCELL_CACHE_DIR, else ~/.cache/wasmcell].
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Serve a precompiled `.cwasm` (native code: only artifacts you trust).
    #[arg(long)]
    pub allow_precompiled: bool,
    /// The component (it must export `wasi:http/incoming-handler`).
    pub component: PathBuf,
}

#[derive(Args)]
pub struct CompileArgs {
    /// Where to write the compiled module.
    #[arg(short, long, value_name = "PATH")]
    pub output: PathBuf,
    /// Compile for nodes of this architecture (`x86_64`/`amd64`, `aarch64`/`arm64`) instead of
    /// this one, for the baseline CPU features only (those every such node has).
    #[arg(long, value_name = "ARCH", value_parser = parse_target)]
    pub target: Option<Target>,
    /// The module to compile (`.wasm` or `.wat`).
    pub module: PathBuf,
}

#[derive(Args)]
pub struct BootArgs {
    /// Guest RAM in MiB (base RAM: the kernel and its heap).
    #[arg(long, value_name = "MIB", default_value = "128", value_parser = parse_memory)]
    pub memory: MemorySize,
    /// Stop the guest after this long (e.g. 500ms, 10s, 2m).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// Boot this guest ELF instead of the built-in one.
    #[arg(long, value_name = "PATH")]
    pub guest: Option<PathBuf>,
    /// Ask the guest to run a diagnostic instead of exiting 0.
    #[arg(long, value_name = "TEST")]
    pub selftest: Option<SelfTestArg>,
    /// Do not ask the guest for a log (each logged byte is a VM exit on nested KVM).
    #[arg(long)]
    pub quiet: bool,
    /// Argument of the self-test (exit code, milliseconds to wait or hold a lock, heap boxes).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub selftest_arg: u32,
}

/// The self-tests `--selftest` accepts.
#[derive(Clone, Copy, Default, ValueEnum)]
pub enum SelfTestArg {
    #[default]
    None,
    Exit,
    Panic,
    ReadUnmapped,
    Ud2,
    Hang,
    Wait,
    WriteCode,
    WriteSystem,
    StackOverflow,
    Heap,
    HoldLock,
    /// The VMM writes a boot info of another ABI version; the guest must refuse it.
    AbiMismatch,
}

impl SelfTestArg {
    /// The boot-info request and ABI version that carry this self-test.
    pub fn into_request(self, arg: u32) -> (SelfTest, u32) {
        let kind = match self {
            SelfTestArg::None | SelfTestArg::AbiMismatch => SelfTest::NONE,
            SelfTestArg::Exit => SelfTest::EXIT,
            SelfTestArg::Panic => SelfTest::PANIC,
            SelfTestArg::ReadUnmapped => SelfTest::READ_UNMAPPED,
            SelfTestArg::Ud2 => SelfTest::UD2,
            SelfTestArg::Hang => SelfTest::HANG,
            SelfTestArg::Wait => SelfTest::WAIT,
            SelfTestArg::WriteCode => SelfTest::WRITE_CODE,
            SelfTestArg::WriteSystem => SelfTest::WRITE_SYSTEM,
            SelfTestArg::StackOverflow => SelfTest::STACK_OVERFLOW,
            SelfTestArg::Heap => SelfTest::HEAP,
            SelfTestArg::HoldLock => SelfTest::HOLD_LOCK,
        };
        let version = if matches!(self, SelfTestArg::AbiMismatch) { ABI_VERSION + 1 } else { ABI_VERSION };
        (SelfTest { kind, arg }, version)
    }
}

/// A `--volume`: a host directory, where the module sees it, and whether it may write.
#[derive(Clone, Debug)]
pub struct VolumeArg {
    pub host: PathBuf,
    pub guest: String,
    pub read_only: bool,
}

fn parse_volume(value: &str) -> Result<VolumeArg, String> {
    let (rest, read_only) = match value.strip_suffix(":ro") {
        Some(rest) => (rest, true),
        None => (value.strip_suffix(":rw").unwrap_or(value), false),
    };
    let Preopen { host, guest } = parse_dir(rest).map_err(|_| format!("'{value}' is not HOST[::GUEST][:ro]"))?;
    if !guest.starts_with('/') {
        return Err(format!("'{value}': the guest path {guest} is not absolute"));
    }
    Ok(VolumeArg { host, guest, read_only })
}

fn parse_dir(value: &str) -> Result<Preopen, String> {
    let (host, guest) = value.split_once("::").unwrap_or((value, value));
    if host.is_empty() || guest.is_empty() {
        return Err(format!("'{value}' is not HOST[::GUEST]"));
    }
    Ok(Preopen { host: PathBuf::from(host), guest: guest.to_string() })
}

/// A handler name becomes a TOML key and a Kubernetes object name: DNS-label characters only.
fn parse_handler(s: &str) -> Result<String, String> {
    let valid = !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if valid {
        Ok(s.to_string())
    } else {
        Err(format!("'{s}' is not a valid handler name (lower-case letters, digits and '-')"))
    }
}

fn parse_env(s: &str) -> Result<String, String> {
    match s.split_once('=') {
        Some((key, _)) if !key.is_empty() => Ok(s.to_string()),
        _ => Err(format!("'{s}' is not KEY=VALUE")),
    }
}

fn parse_memory(s: &str) -> Result<MemorySize, String> {
    let mib: u64 = s.parse().map_err(|_| format!("'{s}' is not a number of MiB"))?;
    MemorySize::from_mib(mib).map_err(|e| e.to_string())
}

/// `500ms`, `10s`, `2m`, or a bare number of seconds.
/// An architecture to compile for.
pub fn parse_target(s: &str) -> Result<Target, String> {
    Target::from_name(s).ok_or_else(|| format!("unknown architecture {s:?} (x86_64, amd64, aarch64 or arm64)"))
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (number, unit) = s.find(|c: char| !c.is_ascii_digit() && c != '.').map_or((s, "s"), |i| s.split_at(i));
    let value: f64 = number.parse().map_err(|_| format!("'{s}' is not a duration (e.g. 500ms, 10s, 2m)"))?;
    let seconds = match unit {
        "ms" => value / 1e3,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("'{s}' has an unknown unit (use ms, s, m or h)")),
    };
    match Duration::try_from_secs_f64(seconds) {
        Ok(d) if !d.is_zero() => Ok(d),
        _ => Err(format!("'{s}' must be a positive duration")),
    }
}

/// Prints a clap error as one line (help and version go out as clap renders them).
pub fn report_usage_error(error: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = error.print();
        return ExitCode::from(if error.use_stderr() { 2 } else { 0 });
    }
    let text = error.to_string();
    let mut lines = text.lines();
    let mut first = lines.next().unwrap_or("invalid arguments").trim_start_matches("error: ").to_string();
    // "… were not provided:" is followed by the arguments, one an indented line each.
    if first.ends_with(':') {
        let listed: Vec<&str> = lines.take_while(|l| l.starts_with("  ")).map(str::trim).collect();
        first = format!("{first} {}", listed.join(", "));
    }
    eprintln!("wasmcell: error: {first} (see wasmcell --help)");
    ExitCode::from(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("10 parsecs").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("1e400s").is_err());
    }

    #[test]
    fn handler_names_are_dns_labels() {
        assert_eq!(parse_handler("wasmcell"), Ok("wasmcell".to_string()));
        assert!(parse_handler("wasm-cell2").is_ok());
        for bad in ["", "Wasmcell", "a.b", "-a", "a]", "a\"b"] {
            assert!(parse_handler(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn env_entries_need_a_key() {
        assert_eq!(parse_env("A=1"), Ok("A=1".to_string()));
        assert_eq!(parse_env("A="), Ok("A=".to_string()));
        assert!(parse_env("=1").is_err());
        assert!(parse_env("A").is_err());
    }

    #[test]
    fn abi_mismatch_changes_only_the_version() {
        assert_eq!(SelfTestArg::AbiMismatch.into_request(0), (SelfTest::default(), ABI_VERSION + 1));
        assert_eq!(SelfTestArg::Exit.into_request(3), (SelfTest { kind: SelfTest::EXIT, arg: 3 }, ABI_VERSION));
    }
}

//! Differential tests: every sample runs twice, in a wasmcell microVM (`wasmcell run`) and on
//! the host in std wasmtime with wasmtime-wasi — the reference — with the same arguments,
//! environment and stdin. Status, stdout and stderr must match byte for byte. Trap messages are
//! documented as differing (`docs/wasi.md`), so traps compare status only. Each sample runs
//! as a WASI preview 1 module and as a WASI 0.2 component (the same source built for
//! `wasm32-wasip2`), on both sides.

mod common;

use common::*;
use std::io::Write;
use std::process::{Command, Stdio};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

#[derive(Debug, PartialEq, Eq)]
struct Run {
    status: i32,
    stdout: String,
    stderr: String,
}

struct Case<'a> {
    module: String,
    args: &'a [&'a str],
    env: &'a [(&'a str, &'a str)],
    stdin: &'a [u8],
    /// A host directory preopened as `/data`.
    data: Option<std::path::PathBuf>,
    /// In the microVM, `data` is a write-through `--volume` rather than a `--dir` snapshot.
    volume: bool,
}

impl<'a> Case<'a> {
    fn new(module: String) -> Self {
        Self { module, args: &[], env: &[], stdin: b"", data: None, volume: false }
    }
}

/// Whether the file at `path` is a component (binary or text) rather than a core module.
fn is_component(path: &str) -> bool {
    std::fs::read(path).is_ok_and(|bytes| {
        (bytes.len() >= 8 && bytes[..4] == *b"\0asm" && bytes[6..8] == [1, 0]) || bytes.starts_with(b"(component")
    })
}

/// Host WASI for `case` (arguments, environment, stdin, `/data`), capturing stdout and stderr.
fn host_wasi(case: &Case) -> (WasiCtxBuilder, MemoryOutputPipe, MemoryOutputPipe) {
    let (stdout, stderr) = (MemoryOutputPipe::new(1 << 24), MemoryOutputPipe::new(1 << 24));
    let mut builder = WasiCtxBuilder::new();
    let argv: Vec<&str> = std::iter::once(case.module.as_str()).chain(case.args.iter().copied()).collect();
    builder.args(&argv).stdin(MemoryInputPipe::new(case.stdin.to_vec())).stdout(stdout.clone()).stderr(stderr.clone());
    for (key, value) in case.env {
        builder.env(key, value);
    }
    if let Some(data) = &case.data {
        builder.preopened_dir(data, "/data", FsPerms::ReadWrite).expect("preopen /data");
    }
    (builder, stdout, stderr)
}

/// The status `wasmtime run` ends with for how the entry point returned.
fn host_status(result: wasmtime::Result<i32>) -> i32 {
    match result {
        Ok(status) => status,
        Err(e) if e.downcast_ref::<I32Exit>().is_some() => e.downcast_ref::<I32Exit>().unwrap().0 & 0xff,
        Err(e) if e.is::<wasmtime::Trap>() => 134,
        // Any other error ends `wasmtime run` with status 1 (e.g. `proc_exit(126..)`).
        Err(_) => 1,
    }
}

/// The reference: the module in host wasmtime + wasmtime-wasi, as `wasmtime run` would run it.
fn on_host(case: &Case) -> Run {
    if is_component(&case.module) {
        return component_on_host(case);
    }
    let engine = wasmtime::Engine::default();
    let module = wasmtime::Module::from_file(&engine, &case.module).expect("host compiles the module");
    let mut linker = wasmtime::Linker::<WasiP1Ctx>::new(&engine);
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |ctx| ctx).unwrap();
    let (mut builder, stdout, stderr) = host_wasi(case);
    let mut store = wasmtime::Store::new(&engine, builder.build_p1());
    let instance = linker.instantiate(&mut store, &module).expect("host instantiates");
    let start = instance.get_typed_func::<(), ()>(&mut store, "_start").expect("_start");
    let status = host_status(start.call(&mut store, ()).map(|()| 0));
    drop(store);
    let text = |pipe: MemoryOutputPipe| String::from_utf8_lossy(&pipe.contents()).into_owned();
    Run { status, stdout: text(stdout), stderr: text(stderr) }
}

/// Host wasmtime's WASI 0.2 state for a component.
struct HostComponent {
    ctx: wasmtime_wasi::WasiCtx,
    table: wasmtime::component::ResourceTable,
}

impl wasmtime_wasi::WasiView for HostComponent {
    fn ctx(&mut self) -> wasmtime_wasi::WasiCtxView<'_> {
        wasmtime_wasi::WasiCtxView { ctx: &mut self.ctx, table: &mut self.table }
    }
}

/// The reference for a component: host wasmtime + wasmtime-wasi's WASI 0.2, as `wasmtime run`
/// runs a command component (no network).
fn component_on_host(case: &Case) -> Run {
    let engine = wasmtime::Engine::default();
    let component = wasmtime::component::Component::from_file(&engine, &case.module).expect("host compiles it");
    let mut linker = wasmtime::component::Linker::<HostComponent>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).unwrap();
    let (mut builder, stdout, stderr) = host_wasi(case);
    let host = HostComponent { ctx: builder.build(), table: wasmtime::component::ResourceTable::new() };
    let mut store = wasmtime::Store::new(&engine, host);
    let command = wasmtime_wasi::p2::bindings::sync::Command::instantiate(&mut store, &component, &linker)
        .expect("host instantiates");
    let status = host_status(command.wasi_cli_run().call_run(&mut store).map(|ran| if ran.is_ok() { 0 } else { 1 }));
    drop(store);
    let text = |pipe: MemoryOutputPipe| String::from_utf8_lossy(&pipe.contents()).into_owned();
    Run { status, stdout: text(stdout), stderr: text(stderr) }
}

/// The same module in a wasmcell microVM.
fn in_microvm(case: &Case) -> Run {
    require_kvm();
    let mut command = Command::new(env!("CARGO_BIN_EXE_wasmcell"));
    command.arg("run").arg("--cache-dir").arg(cache_dir());
    for (key, value) in case.env {
        command.arg("--env").arg(format!("{key}={value}"));
    }
    if let Some(data) = &case.data {
        command.arg(if case.volume { "--volume" } else { "--dir" }).arg(format!("{}::/data", data.display()));
    }
    command.arg(&case.module).arg("--").args(case.args);
    let mut child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = case.stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    Run {
        status: out.status.code().expect("exited"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn assert_same(case: Case) {
    let (host, guest) = (on_host(&case), in_microvm(&case));
    assert_eq!(guest, host, "{} differs from host wasmtime", case.module);
}

/// As [`assert_same`], each side with its own fresh copy of the file fixture as `/data`, so
/// that writes on the host side cannot change what the microVM sees.
fn assert_same_with_files(module: &str) {
    let (host_files, guest_files) = (Fixture::create(), Fixture::create());
    let host = on_host(&Case { data: Some(host_files.data()), ..Case::new(module.to_string()) });
    let guest = in_microvm(&Case { data: Some(guest_files.data()), ..Case::new(module.to_string()) });
    assert_eq!(guest, host, "{module} differs from host wasmtime");
}

/// Everything under `root`: each entry's path, kind and contents (a symlink's target).
fn tree(root: &std::path::Path) -> Vec<(String, String)> {
    let mut entries = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.strip_prefix(root).unwrap().display().to_string();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let what = if meta.is_symlink() {
                format!("-> {}", std::fs::read_link(&path).unwrap().display())
            } else if meta.is_dir() {
                dirs.push(path.clone());
                String::from("dir")
            } else {
                format!("{:?}", String::from_utf8_lossy(&std::fs::read(&path).unwrap()))
            };
            entries.push((name, what));
        }
    }
    entries.sort();
    entries
}

/// `module` with `/data` a write-through volume in the microVM and a `--dir` in host wasmtime
/// (which writes through too), each on a fresh copy of the fixture: the same output, and the
/// same tree on the host afterwards.
fn assert_same_through_volumes(module: &str) {
    assert_same_through_volumes_with(module, &[]);
}

/// [`assert_same_through_volumes`] with arguments.
fn assert_same_through_volumes_with(module: &str, args: &[&str]) {
    let (host_files, guest_files) = (Fixture::create(), Fixture::create());
    let host = on_host(&Case { data: Some(host_files.data()), args, ..Case::new(module.to_string()) });
    let guest =
        in_microvm(&Case { data: Some(guest_files.data()), volume: true, args, ..Case::new(module.to_string()) });
    assert_eq!(guest, host, "{module} through a volume differs from host wasmtime");
    // The fixture's absolute symlink names its own root: compare it relative to that.
    let relative = |files: &Fixture| {
        let root = files.root.display().to_string();
        tree(&files.root).into_iter().map(|(name, what)| (name, what.replace(&root, "ROOT"))).collect::<Vec<_>>()
    };
    assert_eq!(relative(&guest_files), relative(&host_files), "{module} left a different tree");
}

/// `wat` written to `path`, run on both sides, each with a fresh copy of the file fixture (in
/// the microVM a `--dir` snapshot, or with `volume` a write-through volume).
fn both_with_files(path: &std::path::Path, wat: &str, volume: bool) -> (Run, Run) {
    std::fs::write(path, wat).unwrap();
    let (host_files, guest_files) = (Fixture::create(), Fixture::create());
    let module = path.to_string_lossy().into_owned();
    let host = on_host(&Case { data: Some(host_files.data()), ..Case::new(module.clone()) });
    let guest = in_microvm(&Case { data: Some(guest_files.data()), volume, ..Case::new(module) });
    (host, guest)
}

/// How `what` differs between host wasmtime and the microVM, with `/data` a snapshot or a
/// volume, if it does ([`both_with_files`]).
fn difference(what: &str, path: &std::path::Path, wat: &str) -> Option<String> {
    [false, true].into_iter().find_map(|volume| {
        let (host, guest) = both_with_files(path, wat, volume);
        (host != guest).then(|| {
            format!(
                "{what}{}: host {} ({}), guest {} ({})",
                if volume { " (volume)" } else { "" },
                host.status,
                host.stderr.trim(),
                guest.status,
                guest.stderr.trim()
            )
        })
    })
}

/// The list the host checks imports against (`wasmcell_abi::wasi`) is exactly what wasmtime-wasi
/// links for preview 1.
#[test]
fn the_guest_offers_every_wasi_preview1_function() {
    let engine = wasmtime::Engine::default();
    let mut linker = wasmtime::Linker::<WasiP1Ctx>::new(&engine);
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |ctx| ctx).unwrap();
    let mut store = wasmtime::Store::new(&engine, WasiCtxBuilder::new().build_p1());
    let mut reference: Vec<String> = linker
        .iter(&mut store)
        .filter(|(module, _, _)| *module == wasmcell_abi::wasi::PREVIEW1_MODULE)
        .map(|(_, name, _)| name.to_string())
        .collect();
    reference.sort();
    assert_eq!(reference, wasmcell_abi::wasi::PREVIEW1_FUNCTIONS);
}

/// Sample `name` as a preview 1 module and as a component.
fn both_kinds(name: &str) -> [String; 2] {
    [sample(name), component(name)]
}

/// The samples that take no input: hello, stdout and stderr, and the network denied as in
/// `wasmtime run` without `-S inherit-network` (components: denied; preview 1: unsupported).
#[test]
fn samples_without_input() {
    for name in ["hello", "stderr", "net_denied"] {
        for module in both_kinds(name) {
            assert_same(Case::new(module));
        }
    }
}

#[test]
fn args() {
    for module in both_kinds("args") {
        assert_same(Case { args: &["one", "two words", "", "ünïcode", "--flag"], ..Case::new(module) });
    }
}

#[test]
fn env() {
    for module in both_kinds("env") {
        assert_same(Case { env: &[("B", "2"), ("A", "1"), ("EMPTY", "")], ..Case::new(module) });
    }
}

#[test]
fn exit_codes() {
    for module in both_kinds("exit_code") {
        for code in ["0", "3", "42", "125"] {
            assert_same(Case { args: &[code], ..Case::new(module.clone()) });
        }
    }
    // Rust's wasip2 std ends `exit(n)` for n ≠ 0 with `wasi:cli/exit` `exit(err)`: status 1 in
    // wasmtime (checked by `assert_same` above), and so in wasmcell.
    assert_eq!(on_host(&Case { args: &["3"], ..Case::new(component("exit_code")) }).status, 1);
    // A host function that refuses to go on (an empty `poll` list) is not a trap: status 1,
    // as in `wasmtime run`, with the reason on stderr (the host reference's goes to its CLI's
    // own stderr, not the component's).
    let empty_poll = Case::new(format!("{}/tests/modules/empty_poll_component.wat", env!("CARGO_MANIFEST_DIR")));
    let (host, guest) = (on_host(&empty_poll), in_microvm(&empty_poll));
    assert_eq!((host.status, guest.status), (1, 1), "{}", guest.stderr);
    assert!(guest.stderr.starts_with("Error: ") && guest.stderr.contains("empty list"), "{}", guest.stderr);
    // `exit-with-code` (WASI 0.2.12) carries the code itself.
    let module = format!("{}/tests/modules/exit_with_code_component.wat", env!("CARGO_MANIFEST_DIR"));
    assert_same(Case::new(module.clone()));
    assert_eq!(in_microvm(&Case::new(module)).status, 42);
}

/// Documented difference: wasmtime-wasi refuses `proc_exit` codes from 126 up (shells reserve
/// them) and fails with status 1; wasmcell passes them through like a native process would, so
/// that a container's status reaches containerd and Kubernetes as the program set it.
#[test]
fn exit_codes_from_126_pass_through_unlike_wasmtime() {
    for code in ["126", "255"] {
        let case = Case { args: &[code], ..Case::new(sample("exit_code")) };
        let (host, guest) = (on_host(&case), in_microvm(&case));
        assert_eq!(host.status, 1);
        assert_eq!(guest.status, code.parse::<i32>().unwrap());
        assert_eq!((&guest.stdout, &guest.stderr), (&host.stdout, &host.stderr));
    }
}

#[test]
fn stdin_echo() {
    for module in both_kinds("stdin_echo") {
        assert_same(Case { stdin: b"alpha\nbeta\n\ngamma", ..Case::new(module.clone()) });
        assert_same(Case::new(module));
    }
}

#[test]
fn clocks_random_and_sleep() {
    for kind in [sample, component] {
        assert_same(Case::new(kind("clocks")));
        assert_same(Case::new(kind("random")));
        assert_same(Case { args: &["20"], ..Case::new(kind("sleep")) });
    }
}

#[test]
fn cpu_bound_samples() {
    for kind in [sample, component] {
        assert_same(Case { args: &["20000"], ..Case::new(kind("nbody")) });
        assert_same(Case { args: &["2", "3"], ..Case::new(kind("sha256")) });
        assert_same(Case { args: &["1000"], ..Case::new(kind("fd_write_loop")) });
    }
}

#[test]
fn preopened_directories() {
    for module in ["fs_read", "fs_write", "fs_escape"] {
        assert_same_with_files(&sample(module));
        assert_same_with_files(&component(module));
    }
}

/// The same samples with `/data` a write-through volume: what they print, and what they leave
/// on the host (fs_write's files; fs_escape's refusals, with nothing made outside).
#[test]
fn volumes_as_wasmtime_dirs() {
    for module in ["fs_read", "fs_write", "fs_escape"] {
        assert_same_through_volumes(&sample(module));
        assert_same_through_volumes(&component(module));
    }
    assert_same_through_volumes(&component("descriptor_flags"));
    // What std offers beyond the file samples: links, symlinks (one out, refused), times, sizes.
    let ops = [
        "link",
        "/data/hello.txt",
        "/data/hard",
        "symlink",
        "hello.txt",
        "/data/soft",
        "readlink",
        "/data/soft",
        "readlink",
        "/data/out_link",
        "symlink",
        "/etc/passwd",
        "/data/abs2",
        "rename",
        "/data/hard",
        "/data/sub/moved",
        "truncate",
        "/data/sub/moved",
        "5",
        "touch",
        "/data/sub/moved",
        "read",
        "/data/soft",
        "read",
        "/data/out_link",
        "ls",
        "/data/sub",
        "rm",
        "/data/soft",
        "readlink",
        "/data/hello.txt",
        "link",
        "/data/out_link",
        "/data/l2",
    ];
    for kind in [sample, component] {
        assert_same_through_volumes_with(&kind("volume_ops"), &ops);
    }
}

/// Descriptor flags and open flags std never asks for, straight through the WASI 0.2 bindings
/// (component only): what `open-at` answers, the flags a descriptor reports, reads, writes and
/// streams on it — as wasmtime answers them, on the same fixture.
#[test]
fn descriptor_flags_as_in_wasmtime() {
    let out = in_microvm(&Case { data: Some(Fixture::create().data()), ..Case::new(component("descriptor_flags")) });
    assert!(out.stdout.starts_with("preopen flags DescriptorFlags(READ | MUTATE_DIRECTORY)\n"), "{}", out.stdout);
    assert_same_with_files(&component("descriptor_flags"));
}

/// Traps in components: the status wasmtime gives (134), the same output before it.
#[test]
fn component_traps() {
    let (host, guest) = (on_host(&Case::new(component("oob"))), in_microvm(&Case::new(component("oob"))));
    assert_eq!((guest.status, &guest.stdout), (host.status, &host.stdout));
    assert_eq!(host.status, 134);
}

/// Memory growth is bounded by the workload's memory, not by the host's: no host reference,
/// but a component grows exactly as far as the same program as a module does in the guest.
#[test]
fn components_grow_as_far_as_modules() {
    let (module, component) = (in_microvm(&Case::new(sample("grow"))), in_microvm(&Case::new(component("grow"))));
    assert_eq!(module.status, 0, "{}", module.stderr);
    assert!(module.stdout.starts_with("grew "), "{}", module.stdout);
    assert_eq!(component, module);
}

#[test]
fn hand_written_modules() {
    let module = |name: &str| format!("{}/tests/modules/{name}", env!("CARGO_MANIFEST_DIR"));
    assert_same(Case::new(module("hello.wat")));
    assert_same(Case::new(module("return.wat")));
    assert_same(Case { args: &["77"], ..Case::new(module("exit_with_arg.wat")) });
    assert_same(Case { env: &[("EXIT", "12")], ..Case::new(module("exit_with_env.wat")) });
    assert_same(Case { stdin: b"copy me", ..Case::new(module("echo.wat")) });
    assert_same(Case::new(module("exit_component.wat")));
}

#[test]
fn traps_have_the_same_status() {
    for name in ["unreachable.wat", "divide_by_zero.wat", "out_of_bounds.wat", "stack_overflow.wat"] {
        let case = Case::new(format!("{}/tests/modules/{name}", env!("CARGO_MANIFEST_DIR")));
        let (host, guest) = (on_host(&case), in_microvm(&case));
        assert_eq!((guest.status, &guest.stdout), (host.status, &host.stdout), "{name}");
        assert_eq!(host.status, 134);
    }
}

/// Accesses at the edge of linear memory, each a module of its own: what is in bounds runs, the
/// first byte out of bounds traps — loads, stores, accesses straddling the end, a constant offset
/// past 4 GiB, bulk memory, and the edge moved by `memory.grow` — exactly where host wasmtime
/// traps, and with wasmtime's message. (The guest checks bounds explicitly today; this is the
/// regression test for guard regions.)
#[test]
fn memory_edges_trap_where_host_wasmtime_traps() {
    let cases = [
        ("last byte", "(drop (i32.load8_u (i32.const 65535)))", 0),
        ("first byte past the end", "(drop (i32.load8_u (i32.const 65536)))", 134),
        ("load straddling the end", "(drop (i32.load (i32.const 65533)))", 134),
        ("i64 load ending at the end", "(drop (i64.load (i32.const 65528)))", 0),
        ("i64 store straddling the end", "(i64.store (i32.const 65529) (i64.const 1))", 134),
        ("store past the end", "(i32.store8 (i32.const 65536) (i32.const 1))", 134),
        ("offset past 4 GiB", "(drop (i32.load offset=4294967295 (i32.const 1)))", 134),
        ("fill to the end", "(memory.fill (i32.const 65000) (i32.const 7) (i32.const 536))", 0),
        ("fill one past the end", "(memory.fill (i32.const 65000) (i32.const 7) (i32.const 537))", 134),
        ("copy from past the end", "(memory.copy (i32.const 0) (i32.const 65535) (i32.const 2))", 134),
        (
            "grown: the old end is in bounds",
            "(drop (memory.grow (i32.const 1))) (drop (i32.load (i32.const 65536)))",
            0,
        ),
        (
            "grown: the new end is not",
            "(drop (memory.grow (i32.const 1))) (drop (i32.load8_u (i32.const 131072)))",
            134,
        ),
        // The guard region: everything of the 4 GiB reservation past the end, and the 32 MiB
        // after it, is unmapped; offsets beyond that are checked by the compiled code.
        ("deep in the reservation", "(drop (i32.load (i32.const 0x10000000)))", 134),
        ("store in the reservation", "(i32.store (i32.const 0x7fff0000) (i32.const 1))", 134),
        ("the last bytes of the 4 GiB index space", "(drop (i32.load (i32.const -4)))", 134),
        ("into the guard region", "(drop (i64.load offset=0x1000000 (i32.const -1)))", 134),
        ("past the guard region", "(drop (i32.load offset=0x2000000 (i32.const -1)))", 134),
        ("vector load straddling the end", "(drop (v128.load (i32.const 65521)))", 134),
        ("vector store ending at the end", "(v128.store (i32.const 65520) (v128.const i64x2 1 2))", 0),
        // A second memory: its own span, its own guard.
        ("second memory's last word", "(i32.store $second (i32.const 65532) (i32.const 7))", 0),
        ("past the second memory's end", "(drop (i32.load $second (i32.const 65534)))", 134),
        (
            "second memory grown",
            "(drop (memory.grow $second (i32.const 2))) (i32.store $second (i32.const 196604) (i32.const 7))",
            0,
        ),
    ];
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("edges-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (i, (what, body, status)) in cases.iter().enumerate() {
        let path = dir.join(format!("edge{i}.wat"));
        std::fs::write(&path, format!("(module (memory 1) (memory $second 1) (func (export \"_start\") {body}))"))
            .unwrap();
        let case = Case::new(path.to_string_lossy().into_owned());
        let (host, guest) = (on_host(&case), in_microvm(&case));
        assert_eq!((host.status, guest.status), (*status, *status), "{what}: {}", guest.stderr);
        if *status == 134 {
            assert!(guest.stderr.contains("out of bounds memory access"), "{what}: {}", guest.stderr);
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Preview-1 edge cases (the wasi-testsuite's and the code's): each module makes one call in a
/// situation host wasmtime answers with a particular errno, and exits with the errno it got.
/// `/data` (fd 3) is the file fixture; strings live at 100 ("hello.txt"), 200 (the second path
/// argument) and 300 (an absolute path).
#[test]
fn preview1_edge_cases_answer_the_errno_host_wasmtime_answers() {
    let cases: &[(&str, &str, &str, &str)] = &[
        // name, import signature, the call, the second path
        (
            "symlink to an absolute target",
            "path_symlink (param i32 i32 i32 i32 i32)",
            "(i32.const 300) (i32.const 11) (i32.const 3) (i32.const 200) (i32.const 3)",
            "abs",
        ),
        (
            "fd_allocate on a directory",
            "fd_allocate (param i32 i64 i64)",
            "(i32.const 3) (i64.const 0) (i64.const 10)",
            "",
        ),
        (
            "link to a path with a trailing slash",
            "path_link (param i32 i32 i32 i32 i32 i32 i32)",
            "(i32.const 3) (i32.const 0) (i32.const 100) (i32.const 9) (i32.const 3) (i32.const 200) (i32.const 4)",
            "new/",
        ),
        ("proc_raise", "proc_raise (param i32)", "(i32.const 6)", ""),
        ("sock_shutdown on a closed fd", "sock_shutdown (param i32 i32)", "(i32.const 99) (i32.const 1)", ""),
        ("sock_shutdown on a file", "sock_shutdown (param i32 i32)", "(i32.const 3) (i32.const 1)", ""),
        ("sock_accept on stdout", "sock_accept (param i32 i32 i32)", "(i32.const 1) (i32.const 0) (i32.const 400)", ""),
        (
            "sock_recv on a closed fd",
            "sock_recv (param i32 i32 i32 i32 i32 i32)",
            "(i32.const 99) (i32.const 400) (i32.const 0) (i32.const 0) (i32.const 404) (i32.const 408)",
            "",
        ),
        (
            "sock_send on a directory",
            "sock_send (param i32 i32 i32 i32 i32)",
            "(i32.const 3) (i32.const 400) (i32.const 0) (i32.const 0) (i32.const 404)",
            "",
        ),
        (
            "fd_advise on a directory",
            "fd_advise (param i32 i64 i64 i32)",
            "(i32.const 3) (i64.const 0) (i64.const 0) (i32.const 0)",
            "",
        ),
        (
            "fd_advise on stdout",
            "fd_advise (param i32 i64 i64 i32)",
            "(i32.const 1) (i64.const 0) (i64.const 0) (i32.const 0)",
            "",
        ),
        (
            "fd_fdstat_set_flags SYNC on stdout",
            "fd_fdstat_set_flags (param i32 i32)",
            "(i32.const 1) (i32.const 16)",
            "",
        ),
    ];
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("errno-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut differ = Vec::new();
    for (i, (what, import, call, second)) in cases.iter().enumerate() {
        let name = import.split_whitespace().next().unwrap();
        let signature = &import[name.len()..];
        let wat = format!(
            r#"(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (import "wasi_snapshot_preview1" "{name}" (func $f {signature} (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "hello.txt")
  (data (i32.const 200) "{second}")
  (data (i32.const 300) "/etc/passwd")
  (func (export "_start") (call $exit (call $f {call}))))"#
        );
        differ.extend(difference(what, &dir.join(format!("errno{i}.wat")), &wat));
    }
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(differ.is_empty(), "errnos differ:\n{}", differ.join("\n"));
}

/// `fd_fdstat_get` as host wasmtime reports it, byte for byte (hex on stdout): the standard
/// streams, the preopen, a file opened for reading, one opened for writing with APPEND, one
/// opened NONBLOCK, a directory opened for reading, and a file after
/// `fd_fdstat_set_flags(NONBLOCK)`.
#[test]
fn fdstat_matches_host_wasmtime() {
    let wat = r#"(module
  (import "wasi_snapshot_preview1" "fd_fdstat_get" (func $stat (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_fdstat_set_flags" (func $set (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open" (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "hello.txt")
  (data (i32.const 120) "sub")
  (data (i32.const 140) "0123456789abcdef")
  ;; Prints the 24-byte fdstat of $fd (or the errno) as 48 hex digits and a newline.
  (func $show (param $fd i32) (local $i i32) (local $b i32)
    (i32.store8 (i32.const 2000) (call $stat (local.get $fd) (i32.const 1000)))
    (loop $l
      (local.set $b (i32.load8_u (i32.add (i32.const 1000) (local.get $i))))
      (i32.store8 (i32.add (i32.const 3000) (i32.shl (local.get $i) (i32.const 1)))
        (i32.load8_u (i32.add (i32.const 140) (i32.shr_u (local.get $b) (i32.const 4)))))
      (i32.store8 (i32.add (i32.const 3001) (i32.shl (local.get $i) (i32.const 1)))
        (i32.load8_u (i32.add (i32.const 140) (i32.and (local.get $b) (i32.const 15)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 24))))
    (i32.store8 (i32.const 3048) (i32.add (i32.const 48) (i32.load8_u (i32.const 2000))))
    (i32.store8 (i32.const 3049) (i32.const 10))
    (i32.store (i32.const 4000) (i32.const 3000))
    (i32.store (i32.const 4004) (i32.const 50))
    (drop (call $write (i32.const 1) (i32.const 4000) (i32.const 1) (i32.const 4008))))
  (func $open_at (param $path i32) (param $len i32) (param $oflags i32) (param $rights i64) (param $fdflags i32) (result i32)
    (drop (call $open (i32.const 3) (i32.const 0) (local.get $path) (local.get $len) (local.get $oflags)
      (local.get $rights) (i64.const 0) (local.get $fdflags) (i32.const 5000)))
    (i32.load (i32.const 5000)))
  (func (export "_start") (local $fd i32)
    (call $show (i32.const 0)) (call $show (i32.const 1)) (call $show (i32.const 2)) (call $show (i32.const 3))
    (call $show (call $open_at (i32.const 100) (i32.const 9) (i32.const 0) (i64.const 2) (i32.const 0)))
    (call $show (call $open_at (i32.const 100) (i32.const 9) (i32.const 0) (i64.const 64) (i32.const 1)))
    (call $show (call $open_at (i32.const 100) (i32.const 9) (i32.const 0) (i64.const 2) (i32.const 4)))
    (call $show (call $open_at (i32.const 120) (i32.const 3) (i32.const 2) (i64.const 16386) (i32.const 0)))
    (local.set $fd (call $open_at (i32.const 100) (i32.const 9) (i32.const 0) (i64.const 66) (i32.const 0)))
    (drop (call $set (local.get $fd) (i32.const 4)))
    (call $show (local.get $fd))))"#;
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("fdstat-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for volume in [false, true] {
        let (host, guest) = both_with_files(&dir.join("fdstat.wat"), wat, volume);
        assert_eq!(host.stdout.lines().count(), 9, "{}", host.stdout);
        assert!(host.stdout.lines().all(|l| l.ends_with('0')), "every call succeeded on the host: {}", host.stdout);
        assert_eq!(guest, host, "volume: {volume}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A file opened with SYNC, DSYNC or RSYNC keeps the flags and `fd_fdstat_get` reports them
/// (host wasmtime 48 reports a file opened for writing with SYNC as neither synced nor writable:
/// no reference to compare with here).
#[test]
fn sync_flags_given_to_path_open_are_reported() {
    let fixture = Fixture::create();
    for flags in [2, 8, 16, 2 | 8 | 16] {
        let wat = format!(
            r#"(module
  (import "wasi_snapshot_preview1" "path_open" (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_fdstat_get" (func $stat (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "hello.txt")
  (func (export "_start")
    (drop (call $open (i32.const 3) (i32.const 0) (i32.const 100) (i32.const 9) (i32.const 0) (i64.const 66) (i64.const 0) (i32.const {flags}) (i32.const 200)))
    (drop (call $stat (i32.load (i32.const 200)) (i32.const 300)))
    (call $exit (i32.load16_u (i32.const 302)))))"#
        );
        let dir =
            std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("sync-{}-{flags}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("sync.wat");
        std::fs::write(&path, wat).unwrap();
        let guest = in_microvm(&Case { data: Some(fixture.data()), ..Case::new(path.to_string_lossy().into_owned()) });
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(guest.status, flags, "fdflags {flags}: {}", guest.stderr);
    }
}

/// What a descriptor may do follows the rights asked for at `path_open` as wasmtime decides it:
/// reading needs `FD_READ`, writing and resizing `FD_WRITE`. Each module opens `hello.txt` with
/// some rights and exits with the errno of one call on it.
#[test]
fn open_rights_decide_reads_and_writes_as_in_host_wasmtime() {
    let cases: &[(&str, u64, &str)] = &[
        (
            "read with FD_READDIR only",
            1 << 14,
            "(call $read (local.get $fd) (i32.const 500) (i32.const 1) (i32.const 520))",
        ),
        ("read with FD_READ", 1 << 1, "(call $read (local.get $fd) (i32.const 500) (i32.const 1) (i32.const 520))"),
        ("resize with FD_FILESTAT_SET_SIZE only", 1 << 22, "(call $size (local.get $fd) (i64.const 3))"),
        ("resize with FD_WRITE", 1 << 6, "(call $size (local.get $fd) (i64.const 3))"),
        (
            "write with FD_ALLOCATE only",
            1 << 8,
            "(call $write (local.get $fd) (i32.const 500) (i32.const 1) (i32.const 520))",
        ),
    ];
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("rights-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut differ = Vec::new();
    for (i, (what, rights, call)) in cases.iter().enumerate() {
        let wat = format!(
            r#"(module
  (import "wasi_snapshot_preview1" "path_open" (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_filestat_set_size" (func $size (param i32 i64) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "hello.txt")
  (data (i32.const 500) "\08\02\00\00\01\00\00\00")
  (func (export "_start") (local $fd i32) (local $errno i32)
    (local.set $errno (call $open (i32.const 3) (i32.const 0) (i32.const 100) (i32.const 9) (i32.const 0) (i64.const {rights}) (i64.const 0) (i32.const 0) (i32.const 200)))
    (if (local.get $errno) (then (call $exit (i32.add (i32.const 100) (local.get $errno)))))
    (local.set $fd (i32.load (i32.const 200)))
    (call $exit {call})))"#
        );
        differ.extend(difference(what, &dir.join(format!("rights{i}.wat")), &wat));
    }
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(differ.is_empty(), "errnos differ:\n{}", differ.join("\n"));
}

//! A tenant's compile and packing are charged to the tenant: the shim's compiler process (the
//! real binary's `__compile`, jailed) and packer (`wasmcell-vmm pack`) are moved into the pod's
//! or container's cgroup before they read what the tenant wrote, so their CPU time and memory
//! show there, not in containerd's cgroup.

use std::path::{Path, PathBuf};
use wasmcell_aot::{Cache, Compiler, CompilerProcess, Limits};

/// A module that takes the compiler a measurable while: many functions with some code each.
fn busy_module() -> String {
    let mut wat = String::from("(module (memory 1)");
    for i in 0..400 {
        wat.push_str(&format!(
            "(func (export \"f{i}\") (param i32) (result i32) (local i32) (local.set 1 (i32.const {i})) \
             (block (loop (br_if 1 (i32.eqz (local.get 0))) (local.set 1 (i32.add (local.get 1) \
             (i32.mul (local.get 0) (i32.const 7)))) (local.set 0 (i32.sub (local.get 0) (i32.const 1))) (br 0))) \
             (local.get 1))"
        ));
    }
    wat.push(')');
    wat
}

fn read_u64(path: &Path) -> u64 {
    std::fs::read_to_string(path).unwrap().trim().parse().unwrap()
}

#[test]
fn the_compile_runs_in_the_tenants_cgroup() {
    let name = format!("wasmcell-test-compile-{}", std::process::id());
    let (memory, cpuacct) =
        (PathBuf::from("/sys/fs/cgroup/memory").join(&name), PathBuf::from("/sys/fs/cgroup/cpuacct").join(&name));
    assert!(memory.parent().unwrap().is_dir(), "these tests need the cgroup v1 memory hierarchy");
    let cache_dir = std::env::temp_dir().join(format!("{name}-cache"));
    let target = name.clone();
    let process = CompilerProcess::binary(env!("CARGO_BIN_EXE_containerd-shim-wasmcell-v1"))
        .on_spawn(move |pid| wasmcell_shim::cgroup::move_into(&target, pid));
    let cache =
        Cache::open(&cache_dir, &Limits::from_lookup(|_| None).unwrap()).unwrap().with_compiler_process(process);
    let compiled = cache.get_or_compile(&Compiler::for_host().unwrap(), busy_module().as_bytes());
    let (cpu_ns, peak) =
        (read_u64(&cpuacct.join("cpuacct.usage")), read_u64(&memory.join("memory.max_usage_in_bytes")));
    wasmcell_shim::cgroup::remove(&name);
    let _ = std::fs::remove_dir_all(&cache_dir);
    compiled.unwrap();
    assert!(cpu_ns > 5_000_000, "the compile's CPU time was charged to the cgroup: {cpu_ns} ns");
    assert!(peak > 4 << 20, "and its memory: {peak} bytes at most");
    assert!(!memory.exists() && !cpuacct.exists(), "removed");
}

#[test]
fn a_compile_that_cannot_be_charged_fails() {
    let cache_dir = std::env::temp_dir().join(format!("wasmcell-test-uncharged-{}", std::process::id()));
    let process = CompilerProcess::binary(env!("CARGO_BIN_EXE_containerd-shim-wasmcell-v1"))
        .on_spawn(|_| Err(std::io::Error::other("no such cgroup")));
    let cache =
        Cache::open(&cache_dir, &Limits::from_lookup(|_| None).unwrap()).unwrap().with_compiler_process(process);
    let err = cache.get_or_compile(&Compiler::for_host().unwrap(), b"(module)").err().unwrap();
    let _ = std::fs::remove_dir_all(&cache_dir);
    assert!(format!("{err:?}").contains("no such cgroup"), "{err:?}");
}

#[test]
fn the_packing_runs_in_the_tenants_cgroup_and_its_archive_is_sealed() {
    let name = format!("wasmcell-test-pack-{}", std::process::id());
    let memory = PathBuf::from("/sys/fs/cgroup/memory").join(&name);
    let bundle = std::env::temp_dir().join(format!("{name}-bundle"));
    let rootfs = bundle.join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    std::fs::write(rootfs.join("big.bin"), vec![7u8; 8 << 20]).unwrap();
    let vmm = Path::new(env!("CARGO_BIN_EXE_wasmcell-vmm"));
    let packed = wasmcell_shim::packer::pack(vmm, &bundle, &rootfs, &[], 64 << 20, Some(&name));
    let peak = read_u64(&memory.join("memory.max_usage_in_bytes"));
    wasmcell_shim::cgroup::remove(&name);
    let _ = std::fs::remove_dir_all(&bundle);
    let archive = packed.unwrap();
    assert!(archive.metadata().unwrap().len() > 8 << 20, "the file is in the archive");
    assert!(peak > 8 << 20, "the packer's archive was charged to the cgroup: {peak} bytes at most");
    let sealed = std::io::Write::write(&mut &archive, b"x");
    assert!(sealed.is_err(), "the archive cannot be written any more");
}

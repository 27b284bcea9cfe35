//! Builds the guest unikernel (guest/kernel, its own cargo workspace) for the VMM's own
//! architecture (`x86_64-unknown-none` or `aarch64-unknown-none`) and hands its ELF to the VMM
//! crate, which embeds it: installing wasmcell is installing one
//! binary. The guest is always built with its release profile: a debug guest is large and slow,
//! and the host profile says nothing about what the guest should be.
//!
//! The same build makes the test-only attacker's image (`wasmcell-hostile`), whose path the
//! VMM's hostile-guest tests find in `WASMCELL_HOSTILE_GUEST` (empty when the guest was
//! prebuilt).

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The guest's target for the architecture the VMM is built for.
fn guest_target() -> &'static str {
    match env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("aarch64") => "aarch64-unknown-none",
        _ => "x86_64-unknown-none",
    }
}

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let guest_dir = manifest_dir.join("../guest/kernel");
    let abi_dir = manifest_dir.join("../guest/abi");
    let fs_dir = manifest_dir.join("../guest/fs");
    for dir in [&guest_dir, &abi_dir, &fs_dir] {
        for entry in ["src", "Cargo.toml", "Cargo.lock", "build.rs", "link.ld", ".cargo"] {
            let path = dir.join(entry);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
    println!("cargo:rerun-if-env-changed=WASMCELL_GUEST_ELF");

    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("wasmcell-guest.elf");
    // A prebuilt guest can be supplied (e.g. by a packager); otherwise build it.
    let (elf, hostile) = match env::var_os("WASMCELL_GUEST_ELF") {
        Some(path) => (PathBuf::from(path), PathBuf::new()),
        None => {
            let release = build_guest(&guest_dir, &manifest_dir);
            let hostile = release.join("wasmcell-hostile");
            (release.join("wasmcell-guest"), if hostile.exists() { hostile } else { PathBuf::new() })
        }
    };
    println!("cargo:rustc-env=WASMCELL_HOSTILE_GUEST={}", hostile.display());
    std::fs::copy(&elf, &out).unwrap_or_else(|e| panic!("copy {} to {}: {e}", elf.display(), out.display()));
}

/// Builds the guest workspace's images; the directory they are in.
fn build_guest(guest_dir: &Path, manifest_dir: &Path) -> PathBuf {
    let target_dir = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir.join("../target"))
        .join("guest");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let target = guest_target();
    let mut cmd = Command::new(cargo);
    // The guest's .cargo/config.toml (target, rustflags) is found from the working directory.
    cmd.current_dir(guest_dir).args(["build", "--release", "--target", target]).arg("--target-dir").arg(&target_dir);
    // Nothing of the host build's configuration may leak into the guest's.
    for (key, _) in env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("CARGO_") && key != "CARGO_HOME" && key != "CARGO_NET_OFFLINE"
            || key == "RUSTFLAGS"
            || key == "RUSTC_WORKSPACE_WRAPPER"
            || key == "RUSTC_WRAPPER"
            || key == "RUSTDOCFLAGS"
        {
            cmd.env_remove(key.as_ref());
        }
    }
    let status = cmd.status().expect("run cargo to build the guest");
    if !status.success() {
        let installed = Command::new("rustup")
            .args(["target", "list", "--installed"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).contains(target))
            .unwrap_or(true);
        if !installed {
            panic!("the guest needs the {target} target: run `rustup target add {target}`");
        }
        panic!("building the guest (guest/kernel) failed");
    }
    target_dir.join(target).join("release")
}

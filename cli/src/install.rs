//! `wasmcell install`: puts a node's containerd in a position to run the `wasmcell` RuntimeClass
//! — installs the shim where containerd finds it, registers the runtime handler in containerd's
//! configuration (the 1.6/1.7 or the 2.x layout, from the file's `version`), and prints the
//! RuntimeClass manifest. Idempotent: a second run changes nothing.

use crate::cli::InstallArgs;
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The shim binary containerd looks up for `io.containerd.wasmcell.v1`.
const SHIM_BINARY: &str = "containerd-shim-wasmcell-v1";
/// The VMM binary the shim spawns, next to it.
const VMM_BINARY: &str = "wasmcell-vmm";

/// Pod overhead the RuntimeClass declares: what a pod costs beyond its containers' requests.
/// Measured (docs/kubernetes.md, `ci/e2e/bench-density.sh`): 5.7 MiB of host memory per idle
/// pod at 50–100 pods (the shim's and the VMM's own pages, 1.9 + 0.8 MiB; KVM's VM and vCPU,
/// page tables and thread stacks, ~3 MiB); the VMM charges ~2.2 MiB to the pod's cgroup. Code
/// (the shim's, the VMM's, the guest kernel's, compiled modules) is shared by every pod.
const OVERHEAD_MEMORY: &str = "8Mi";
/// The shim and VMM threads are idle while the guest runs; boot is a few ms of one CPU.
const OVERHEAD_CPU: &str = "10m";

/// containerd's configuration layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigVersion {
    /// containerd 1.6 / 1.7 (`version = 2`).
    V2,
    /// containerd 2.x (`version = 3`).
    V3,
}

/// The configuration's `version`, from its top-level `version = N` line (containerd's default
/// when there is none is 1, which 1.6/1.7 read with the version-2 plugin names we write).
pub fn config_version(text: &str) -> anyhow::Result<ConfigVersion> {
    let line = text.lines().map(str::trim).find(|l| l.starts_with("version") && l.contains('='));
    match line.and_then(|l| l.split('=').nth(1)).map(str::trim) {
        None | Some("1") | Some("2") => Ok(ConfigVersion::V2),
        Some("3") => Ok(ConfigVersion::V3),
        Some(other) => bail!("Unsupported containerd configuration version {other}"),
    }
}

/// The TOML table header of `handler` in `version`'s layout.
pub fn handler_table(version: ConfigVersion, handler: &str) -> String {
    match version {
        ConfigVersion::V2 => format!(r#"[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{handler}]"#),
        ConfigVersion::V3 => format!(r#"[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.{handler}]"#),
    }
}

/// `text` with the handler registered, or `None` when it already is.
pub fn register_handler(text: &str, handler: &str) -> anyhow::Result<Option<String>> {
    let version = config_version(text)?;
    let table = handler_table(version, handler);
    if text.lines().any(|l| l.trim() == table) {
        return Ok(None);
    }
    let mut out = String::new();
    if text.trim().is_empty() {
        out.push_str(match version {
            ConfigVersion::V2 => "version = 2\n",
            ConfigVersion::V3 => "version = 3\n",
        });
    } else {
        out.push_str(text);
        if !text.ends_with('\n') {
            out.push('\n');
        }
    }
    out.push_str(&format!(
        "\n# wasmcell: Wasm workloads in KVM microVMs (RuntimeClass handler \"{handler}\")\n{table}\n  runtime_type = \"io.containerd.wasmcell.v1\"\n"
    ));
    Ok(Some(out))
}

/// The RuntimeClass that sends pods to `handler`.
pub fn runtime_class(handler: &str) -> String {
    format!(
        "apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata:\n  name: {handler}\nhandler: {handler}\noverhead:\n  podFixed:\n    memory: \"{OVERHEAD_MEMORY}\"\n    cpu: \"{OVERHEAD_CPU}\"\n"
    )
}

/// Writes `bytes` to `path` through a temporary file and a rename: never half a file.
fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let partial = path.with_extension("wasmcell-partial");
    let result = std::fs::write(&partial, bytes)
        .and_then(|()| std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(mode)))
        .and_then(|()| std::fs::rename(&partial, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result.with_context(|| format!("Cannot write {}", path.display()))
}

/// The binaries to install: the shim and the VMM it spawns, from next to this executable.
fn sources() -> anyhow::Result<Vec<PathBuf>> {
    let exe = std::env::current_exe().context("Cannot find the wasmcell binary")?;
    [SHIM_BINARY, VMM_BINARY]
        .iter()
        .map(|name| {
            let path = exe.with_file_name(name);
            if !path.is_file() {
                bail!("{name} is not next to {} (build it: cargo build --release -p wasmcell-shim)", exe.display());
            }
            Ok(path)
        })
        .collect()
}

pub fn install(args: InstallArgs) -> anyhow::Result<ExitCode> {
    let sources = sources()?;
    let text = match std::fs::read_to_string(&args.config) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("Cannot read {}", args.config.display())),
    };
    let updated = register_handler(&text, &args.handler)?;
    if args.dry_run {
        for source in &sources {
            eprintln!("wasmcell: would install {} into {}", source.display(), args.bin_dir.display());
        }
        match &updated {
            Some(_) => eprintln!("wasmcell: would register handler {:?} in {}", args.handler, args.config.display()),
            None => eprintln!("wasmcell: handler {:?} is already in {}", args.handler, args.config.display()),
        }
    } else {
        for source in &sources {
            let target = args.bin_dir.join(source.file_name().expect("a binary's name"));
            let same = std::fs::canonicalize(&target).ok() == std::fs::canonicalize(source).ok();
            if !same {
                let bytes = std::fs::read(source).with_context(|| format!("Cannot read {}", source.display()))?;
                write_atomically(&target, &bytes, 0o755)?;
            }
            eprintln!("wasmcell: installed {}", target.display());
        }
        match updated {
            Some(new_text) => {
                write_atomically(&args.config, new_text.as_bytes(), 0o644)?;
                eprintln!(
                    "wasmcell: registered handler {:?} in {}; restart containerd",
                    args.handler,
                    args.config.display()
                );
            }
            None => eprintln!("wasmcell: handler {:?} is already in {}", args.handler, args.config.display()),
        }
    }
    print!("{}", runtime_class(&args.handler));
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_follows_the_config_version() {
        assert_eq!(config_version("").unwrap(), ConfigVersion::V2);
        assert_eq!(config_version("version = 2\nroot = \"/x\"").unwrap(), ConfigVersion::V2);
        assert_eq!(config_version("  version=3\n").unwrap(), ConfigVersion::V3);
        assert!(config_version("version = 4").is_err());
        let v3 = register_handler("version = 3\n", "wasmcell").unwrap().unwrap();
        assert!(v3.contains("[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.wasmcell]\n  runtime_type = \"io.containerd.wasmcell.v1\""));
        let v2 = register_handler("version = 2\n[grpc]\n  address = \"/s\"", "wasmcell").unwrap().unwrap();
        assert!(v2.starts_with("version = 2\n[grpc]\n  address = \"/s\"\n"));
        assert!(v2.contains("[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.wasmcell]\n"));
    }

    #[test]
    fn registering_twice_changes_nothing() {
        let once = register_handler("", "wasmcell").unwrap().unwrap();
        assert!(once.starts_with("version = 2\n"));
        assert_eq!(register_handler(&once, "wasmcell").unwrap(), None);
        assert!(register_handler(&once, "other").unwrap().is_some(), "another handler is another table");
    }

    #[test]
    fn the_runtime_class_names_the_handler_and_its_overhead() {
        let manifest = runtime_class("wasmcell");
        assert!(manifest.contains("kind: RuntimeClass\nmetadata:\n  name: wasmcell\nhandler: wasmcell\n"));
        assert!(manifest.contains("podFixed:\n    memory: \"8Mi\"\n    cpu: \"10m\"\n"));
    }
}

//! `create` of the real instance on images a hostile tenant could push: a precompiled artifact
//! as the entrypoint, a module too large to read, a FIFO where the module should be. Each fails
//! at once with one clear line and leaves the bundle as it found it. No containerd and no KVM:
//! all of this fails before any VM (the containerd end-to-end script runs the same images).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use wasmcell_shim::instance::{CreateRequest, Instance, VmInstance};

/// A bundle as containerd lays it out (config.json, rootfs/) whose entrypoint is `/ENTRYPOINT`.
struct Bundle(PathBuf);

impl Bundle {
    fn new(name: &str, entrypoint: &str) -> Self {
        Self::with_mounts(name, entrypoint, serde_json::json!([]))
    }

    /// With the spec's `mounts`.
    fn with_mounts(name: &str, entrypoint: &str, mounts: serde_json::Value) -> Self {
        let dir = std::env::temp_dir().join(format!("wasmcell-hostile-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("rootfs")).unwrap();
        let config = serde_json::json!({
            "ociVersion": "1.0.2",
            "process": { "args": [format!("/{entrypoint}")], "cwd": "/", "user": { "uid": 0, "gid": 0 } },
            "root": { "path": "rootfs" },
            "mounts": mounts,
        });
        std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
        Self(dir)
    }

    fn rootfs(&self, name: &str) -> PathBuf {
        self.0.join("rootfs").join(name)
    }

    /// Every path in the bundle, sorted.
    fn listing(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                out.push(path.clone());
                if std::fs::symlink_metadata(&path).unwrap().is_dir() {
                    walk(&path, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.0, &mut out);
        out.sort();
        out
    }

    /// `create` fails within a second with `message`, and the bundle is left as it was.
    fn assert_refused(&self, message: &str) {
        let before = self.listing();
        let request = CreateRequest { id: "hostile".into(), bundle: self.0.clone(), ..Default::default() };
        let began = Instant::now();
        let err = VmInstance::create(&request).err().expect("create must fail");
        assert!(began.elapsed() < Duration::from_secs(1), "took {:?}", began.elapsed());
        assert_eq!(wasmcell_shim::service::error_chain(&err), message);
        assert_eq!(self.listing(), before, "nothing left behind");
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_precompiled_entrypoint_is_refused_at_create() {
    let bundle = Bundle::new("cwasm", "app.cwasm");
    // A genuine artifact for this host: exactly what the guest would have run as native code.
    let artifact = wasmcell_aot::Compiler::for_host().unwrap().compile(b"(module)").unwrap();
    std::fs::write(bundle.rootfs("app.cwasm"), artifact).unwrap();
    bundle.assert_refused(
        "/app.cwasm is a precompiled artifact: wasmcell compiles images' Wasm itself and never runs native code \
         from an image",
    );
}

#[test]
fn an_oversized_module_is_refused_before_it_is_read() {
    let bundle = Bundle::new("huge", "huge.wasm");
    // 2 GiB that take no disk, past the default 128 MiB limit.
    std::fs::File::create(bundle.rootfs("huge.wasm")).unwrap().set_len(2 << 30).unwrap();
    bundle.assert_refused("The module /huge.wasm is larger than 128 MiB (the node's WASMCELL_MAX_MODULE_SIZE)");
}

#[test]
fn a_fifo_entrypoint_is_refused_without_blocking() {
    let bundle = Bundle::new("fifo", "app.wasm");
    let path = std::ffi::CString::new(bundle.rootfs("app.wasm").into_os_string().into_encoded_bytes()).unwrap();
    // SAFETY: `path` is a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o644) }, 0);
    bundle.assert_refused("No Wasm module at /app.wasm in the image");
}

/// A volume, read-only or writable, whose source is missing, a socket, a FIFO or a device
/// fails the start naming it, before anything is compiled, packed or opened; so do more
/// volumes served from the host than a VMM holds.
#[test]
fn a_volume_whose_source_is_missing_or_no_file_is_refused_at_create() {
    let outside = std::env::temp_dir().join(format!("wasmcell-hostile-volume-src-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&outside);
    std::fs::create_dir_all(&outside).unwrap();
    let socket = outside.join("control.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let fifo = outside.join("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo on a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let odd = "is neither a directory nor a regular file";
    for (name, source, reason) in [
        ("missing", outside.join("nothing"), "does not exist"),
        ("socket", socket, odd),
        ("fifo", fifo, odd),
        ("device", std::path::PathBuf::from("/dev/null"), odd),
    ] {
        for mode in ["ro", "rw"] {
            let mounts = serde_json::json!([{
                "destination": "/etc/config", "type": "bind", "source": source, "options": ["rbind", mode],
            }]);
            let bundle = Bundle::with_mounts(&format!("volume-{name}-{mode}"), "app.wasm", mounts);
            std::fs::write(bundle.rootfs("app.wasm"), b"\0asm\x01\0\0\0").unwrap();
            bundle.assert_refused(&format!(
                "The volume at /etc/config cannot be mounted: its source {} {reason}",
                source.display()
            ));
        }
    }
    let many: Vec<_> = (0..17)
        .map(|i| serde_json::json!({"destination": format!("/v{i}"), "type": "bind", "source": &outside, "options": ["rbind", "rw"]}))
        .collect();
    let bundle = Bundle::with_mounts("volume-many", "app.wasm", serde_json::Value::Array(many));
    std::fs::write(bundle.rootfs("app.wasm"), b"\0asm\x01\0\0\0").unwrap();
    bundle.assert_refused(&format!(
        "The volume at /v16 cannot be mounted: its source {} is one volume too many: at most 16 writable or single-file volumes are served",
        outside.display()
    ));
    let _ = std::fs::remove_dir_all(&outside);
}

//! A container's read-only volumes packed beside its root filesystem by the real jailed packer
//! (`wasmcell-vmm pack`): each is a preopen of the archive at its destination, read from its
//! source and nothing else — a symlink in it stays a symlink (the guest confines it), and the
//! image's own directory at the same path is not what the volume holds.

use std::io::{Read, Seek};
use std::path::{Path, PathBuf};
use wasmcell_abi::archive::{Archive, Kind};
use wasmcell_shim::spec::Volume;

struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The entry at `path` (names from `root`) in the archive, if any.
fn find<'a>(archive: &Archive<'a>, root: &str, path: &[&str]) -> Option<wasmcell_abi::archive::Entry<'a>> {
    let mut entry = archive.roots().filter_map(|i| archive.entry(i)).find(|e| e.name == root.as_bytes())?;
    for name in path {
        entry = entry.children().filter_map(|i| archive.entry(i)).find(|e| e.name == name.as_bytes())?;
    }
    Some(entry)
}

#[test]
fn volumes_are_packed_at_their_destinations_from_their_sources_only() {
    let dir = Dir(std::env::temp_dir().join(format!("wasmcell-test-volumes-{}", std::process::id())));
    let (bundle, rootfs) = (dir.0.join("bundle"), dir.0.join("bundle/rootfs"));
    std::fs::create_dir_all(rootfs.join("etc/config")).unwrap();
    std::fs::write(rootfs.join("etc/config/from-image.txt"), "the image's").unwrap();
    let (config, secret) = (dir.0.join("configmap"), dir.0.join("secret"));
    std::fs::create_dir_all(config.join("..2026_12_03")).unwrap();
    std::fs::write(config.join("..2026_12_03/app.yaml"), "replicas: 3\n").unwrap();
    // The kubelet's layout: the files are symlinks into a timestamped directory.
    std::os::unix::fs::symlink("..2026_12_03/app.yaml", config.join("app.yaml")).unwrap();
    std::os::unix::fs::symlink("/etc/shadow", config.join("escape")).unwrap();
    std::fs::create_dir_all(&secret).unwrap();
    std::fs::write(secret.join("token"), "s3cr3t").unwrap();
    let volumes = [
        Volume { destination: "/etc/config".into(), source: config.clone(), read_only: true },
        Volume {
            destination: "/var/run/secrets/kubernetes.io/serviceaccount".into(),
            source: secret.clone(),
            read_only: true,
        },
    ];
    let vmm = Path::new(env!("CARGO_BIN_EXE_wasmcell-vmm"));
    let mut file = wasmcell_shim::packer::pack(vmm, &bundle, &rootfs, &volumes, 64 << 20, None).unwrap();
    let mut bytes = Vec::new();
    file.rewind().unwrap();
    file.read_to_end(&mut bytes).unwrap();
    let archive = Archive::parse(&bytes).expect("a valid archive");
    let roots: Vec<&[u8]> = archive.roots().filter_map(|i| archive.entry(i)).map(|e| e.name).collect();
    assert_eq!(roots, [&b"/"[..], b"/etc/config", b"/var/run/secrets/kubernetes.io/serviceaccount"]);
    let data = |root, path: &[&str]| find(&archive, root, path).map(|e| (e.kind, e.data().to_vec()));
    assert_eq!(data("/", &["etc", "config", "from-image.txt"]), Some((Kind::File, b"the image's".to_vec())));
    assert_eq!(data("/etc/config", &["..2026_12_03", "app.yaml"]), Some((Kind::File, b"replicas: 3\n".to_vec())));
    assert_eq!(data("/etc/config", &["app.yaml"]), Some((Kind::Symlink, b"..2026_12_03/app.yaml".to_vec())));
    assert_eq!(data("/etc/config", &["escape"]), Some((Kind::Symlink, b"/etc/shadow".to_vec())), "not followed");
    assert_eq!(data("/etc/config", &["from-image.txt"]), None, "the image's directory is not the volume");
    assert_eq!(
        data("/var/run/secrets/kubernetes.io/serviceaccount", &["token"]),
        Some((Kind::File, b"s3cr3t".to_vec()))
    );
}

#[test]
fn a_volume_source_that_is_no_directory_fails_the_packing() {
    let dir = Dir(std::env::temp_dir().join(format!("wasmcell-test-volume-file-{}", std::process::id())));
    let (bundle, rootfs) = (dir.0.join("bundle"), dir.0.join("bundle/rootfs"));
    std::fs::create_dir_all(&rootfs).unwrap();
    let missing = Volume { destination: "/etc/config".into(), source: dir.0.join("missing"), read_only: true };
    let vmm = Path::new(env!("CARGO_BIN_EXE_wasmcell-vmm"));
    let err = wasmcell_shim::packer::pack(vmm, &bundle, &rootfs, &[missing], 64 << 20, None).unwrap_err();
    assert!(wasmcell_shim::service::error_chain(&err).starts_with("Cannot pack the root filesystem"), "{err}");
}

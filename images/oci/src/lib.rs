//! OCI image tarballs holding one Wasm module, for `ctr images import` and registries: the
//! packaging end of the flow (`wasmcell image build` → import → `ctr run --runtime
//! io.containerd.wasmcell.v1` → the shim finds the module at the entrypoint in the rootfs).
//!
//! The module goes into a single uncompressed tar layer at `/<name>.wasm`, named as the image's
//! entrypoint. The platform is `linux/amd64` (runs anywhere a Linux image would be scheduled) or
//! `wasi/wasm` (what `docker buildx --platform wasi/wasm` produces; `ctr images import` needs
//! `--all-platforms` for it). Everything is deterministic: fixed timestamps, sorted JSON keys,
//! no creation date, so the same inputs give the same digests.

mod tar;

use sha2::{Digest, Sha256};
use tar::TarWriter;

pub use tar::TarError;

const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";
const INDEX_TYPE: &str = "application/vnd.oci.image.index.v1+json";

/// Where the image says it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Platform {
    LinuxAmd64,
    LinuxArm64,
    WasiWasm,
}

impl Platform {
    /// `(os, architecture)` as OCI spells them.
    pub fn os_arch(self) -> (&'static str, &'static str) {
        match self {
            Platform::LinuxAmd64 => ("linux", "amd64"),
            Platform::LinuxArm64 => ("linux", "arm64"),
            Platform::WasiWasm => ("wasi", "wasm"),
        }
    }
}

impl std::str::FromStr for Platform {
    type Err = ImageError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "linux/amd64" => Ok(Platform::LinuxAmd64),
            "linux/arm64" => Ok(Platform::LinuxArm64),
            "wasi/wasm" => Ok(Platform::WasiWasm),
            _ => Err(ImageError::Platform(text.to_string())),
        }
    }
}

/// What goes into the image.
#[derive(Clone, Debug)]
pub struct ImageSpec {
    /// The image reference containerd records, e.g. `docker.io/wasmcell/hello:latest`.
    pub reference: String,
    /// The entrypoint's file name in the root filesystem, e.g. `hello.wasm`.
    pub entrypoint_name: String,
    /// The entrypoint's bytes: a Wasm module for wasmcell (see [`is_wasm`]); the tests also pack
    /// native binaries, for runc.
    pub entrypoint: Vec<u8>,
    pub platform: Platform,
    /// Default arguments after the entrypoint (`Cmd`).
    pub args: Vec<String>,
    /// `KEY=VALUE` entries.
    pub env: Vec<String>,
}

/// Why an image cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("Unknown platform {0:?}: use linux/amd64, linux/arm64 or wasi/wasm")]
    Platform(String),
    #[error("Invalid image reference {0:?}: expected NAME[:TAG], e.g. docker.io/wasmcell/hello:latest")]
    Reference(String),
    #[error("Invalid entrypoint name {0:?}: a plain file name is expected")]
    EntrypointName(String),
    #[error("Invalid environment entry {0:?}: expected KEY=VALUE")]
    Env(String),
    #[error(transparent)]
    Tar(#[from] TarError),
}

/// A content-addressed blob of the layout.
struct Blob {
    media_type: &'static str,
    digest: String,
    bytes: Vec<u8>,
}

impl Blob {
    fn new(media_type: &'static str, bytes: Vec<u8>) -> Self {
        Self { media_type, digest: digest(&bytes), bytes }
    }

    fn descriptor(&self) -> serde_json::Value {
        serde_json::json!({ "mediaType": self.media_type, "digest": self.digest, "size": self.bytes.len() })
    }
}

/// `sha256:<hex>` of `bytes`.
pub fn digest(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// Whether `bytes` are a binary WebAssembly module (or component), by its header.
pub fn is_wasm(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\0asm")
}

/// A built image: the tarball and the manifest's digest (what `ctr images ls` shows).
pub struct Image {
    pub tarball: Vec<u8>,
    pub manifest_digest: String,
}

/// Builds the OCI image layout tarball for `spec`.
pub fn build(spec: &ImageSpec) -> Result<Image, ImageError> {
    build_with_layers(spec, &[])
}

/// [`build`], with `extra_layers` (uncompressed tar archives, taken as they are) applied over
/// the module's layer, in order. The end-to-end tests use it for images a hostile tenant could
/// push: hard-link bombs, FIFOs, device nodes, symlinks out of the root filesystem.
pub fn build_with_layers(spec: &ImageSpec, extra_layers: &[Vec<u8>]) -> Result<Image, ImageError> {
    validate(spec)?;
    let mut layer = TarWriter::default();
    layer.append(&spec.entrypoint_name, 0o755, &spec.entrypoint)?;
    let layer = Blob::new(LAYER_TYPE, layer.finish());
    let extra: Vec<Blob> = extra_layers.iter().map(|tar| Blob::new(LAYER_TYPE, tar.clone())).collect();
    let layers: Vec<&Blob> = std::iter::once(&layer).chain(&extra).collect();

    let (os, architecture) = spec.platform.os_arch();
    let entrypoint = format!("/{}", spec.entrypoint_name);
    let config = serde_json::json!({
        "architecture": architecture,
        "os": os,
        "config": {
            "Entrypoint": [entrypoint],
            "Cmd": spec.args,
            "Env": spec.env,
            "WorkingDir": "/",
        },
        "rootfs": { "type": "layers", "diff_ids": layers.iter().map(|l| &l.digest).collect::<Vec<_>>() },
    });
    let config = Blob::new(CONFIG_TYPE, serde_json::to_vec(&config).expect("JSON values serialize"));

    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": config.descriptor(),
        "layers": layers.iter().map(|l| l.descriptor()).collect::<Vec<_>>(),
    });
    let manifest = Blob::new(MANIFEST_TYPE, serde_json::to_vec(&manifest).expect("JSON values serialize"));

    let tag = tag_of(&spec.reference);
    let mut descriptor = manifest.descriptor();
    descriptor["platform"] = serde_json::json!({ "os": os, "architecture": architecture });
    descriptor["annotations"] = serde_json::json!({
        // containerd names the imported image after this one; other tools use the tag.
        "io.containerd.image.name": spec.reference,
        "org.opencontainers.image.ref.name": tag,
    });
    let index = serde_json::json!({ "schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": [descriptor] });

    let mut tarball = TarWriter::default();
    tarball.append("oci-layout", 0o644, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    tarball.append("index.json", 0o644, &serde_json::to_vec(&index).expect("JSON values serialize"))?;
    for blob in layers.iter().copied().chain([&config, &manifest]) {
        let path = format!("blobs/sha256/{}", blob.digest.trim_start_matches("sha256:"));
        tarball.append(&path, 0o644, &blob.bytes)?;
    }
    Ok(Image { tarball: tarball.finish(), manifest_digest: manifest.digest })
}

fn validate(spec: &ImageSpec) -> Result<(), ImageError> {
    let name = &spec.entrypoint_name;
    if name.is_empty() || name.contains('/') || name == "." || name == ".." || name.len() > 100 {
        return Err(ImageError::EntrypointName(name.clone()));
    }
    let reference = &spec.reference;
    let valid = !reference.is_empty()
        && reference.chars().all(|c| c.is_ascii_alphanumeric() || "._-/:@".contains(c))
        && !reference.starts_with(['/', ':', '.'])
        && !name_of(reference).is_empty()
        && name_of(reference) == name_of(reference).to_ascii_lowercase();
    if !valid {
        return Err(ImageError::Reference(reference.clone()));
    }
    if let Some(bad) = spec.env.iter().find(|e| e.split_once('=').is_none_or(|(k, _)| k.is_empty())) {
        return Err(ImageError::Env(bad.clone()));
    }
    Ok(())
}

/// `reference` split into its name and tag: a `:` after the last `/` starts the tag (a `:`
/// before it belongs to a registry's port).
fn split_reference(reference: &str) -> (&str, Option<&str>) {
    match reference.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, Some(tag)),
        _ => (reference, None),
    }
}

/// The repository part of `reference`, which must be lower case.
fn name_of(reference: &str) -> &str {
    split_reference(reference).0
}

/// The tag of `reference` (`latest` when it has none).
fn tag_of(reference: &str) -> &str {
    split_reference(reference).1.unwrap_or("latest")
}

#[cfg(test)]
mod tests;

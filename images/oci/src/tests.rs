use super::*;

const MODULE: &[u8] = b"\0asm\x01\0\0\0";

fn spec(platform: Platform) -> ImageSpec {
    ImageSpec {
        reference: "registry.local:5000/wasmcell/hello:v1".into(),
        entrypoint_name: "hello.wasm".into(),
        entrypoint: MODULE.to_vec(),
        platform,
        args: vec!["a".into()],
        env: vec!["GREETING=hi".into()],
    }
}

/// The files of a tarball written by [`TarWriter`], in order.
fn entries(tarball: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = 0;
    while tarball[at] != 0 {
        let header = &tarball[at..at + 512];
        let name = String::from_utf8(header[..100].split(|&b| b == 0).next().unwrap().to_vec()).unwrap();
        let size = usize::from_str_radix(std::str::from_utf8(&header[124..135]).unwrap(), 8).unwrap();
        out.push((name, tarball[at + 512..at + 512 + size].to_vec()));
        at += 512 + size.next_multiple_of(512);
    }
    out
}

fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap()
}

fn blob<'a>(files: &'a [(String, Vec<u8>)], digest: &str) -> &'a [u8] {
    let path = format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"));
    let (_, bytes) = files.iter().find(|(name, _)| *name == path).expect("blob present");
    assert_eq!(super::digest(bytes), digest, "blob content matches its name");
    bytes
}

#[test]
fn the_layout_links_index_manifest_config_and_layer() {
    let image = build(&spec(Platform::LinuxAmd64)).unwrap();
    let files = entries(&image.tarball);
    assert_eq!(files[0], ("oci-layout".to_string(), br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()));
    let index = json(&files[1].1);
    let descriptor = &index["manifests"][0];
    assert_eq!(descriptor["digest"], image.manifest_digest.as_str());
    assert_eq!(descriptor["platform"]["os"], "linux");
    assert_eq!(descriptor["platform"]["architecture"], "amd64");
    assert_eq!(descriptor["annotations"]["io.containerd.image.name"], "registry.local:5000/wasmcell/hello:v1");
    assert_eq!(descriptor["annotations"]["org.opencontainers.image.ref.name"], "v1");

    let manifest = json(blob(&files, &image.manifest_digest));
    let config = json(blob(&files, manifest["config"]["digest"].as_str().unwrap()));
    assert_eq!(config["config"]["Entrypoint"], serde_json::json!(["/hello.wasm"]));
    assert_eq!(config["config"]["Cmd"], serde_json::json!(["a"]));
    assert_eq!(config["config"]["Env"], serde_json::json!(["GREETING=hi"]));
    let layer_digest = manifest["layers"][0]["digest"].as_str().unwrap();
    assert_eq!(config["rootfs"]["diff_ids"][0], layer_digest, "uncompressed layer: diff id = digest");
    let layer = entries(blob(&files, layer_digest));
    assert_eq!(layer, vec![("hello.wasm".to_string(), MODULE.to_vec())]);
}

#[test]
fn extra_layers_follow_the_module_in_order() {
    let extra = vec![b"first layer".to_vec(), b"second layer".to_vec()];
    let image = build_with_layers(&spec(Platform::LinuxAmd64), &extra).unwrap();
    let files = entries(&image.tarball);
    let manifest = json(blob(&files, &image.manifest_digest));
    let config = json(blob(&files, manifest["config"]["digest"].as_str().unwrap()));
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 3);
    for (i, bytes) in extra.iter().enumerate() {
        let digest = layers[i + 1]["digest"].as_str().unwrap();
        assert_eq!(blob(&files, digest), &bytes[..], "taken as it is");
        assert_eq!(config["rootfs"]["diff_ids"][i + 1], digest);
    }
    assert_eq!(
        build_with_layers(&spec(Platform::LinuxAmd64), &[]).unwrap().tarball,
        build(&spec(Platform::LinuxAmd64)).unwrap().tarball
    );
}

#[test]
fn wasi_images_say_so_in_config_and_index() {
    let image = build(&spec(Platform::WasiWasm)).unwrap();
    let files = entries(&image.tarball);
    let index = json(&files[1].1);
    assert_eq!(index["manifests"][0]["platform"], serde_json::json!({"os": "wasi", "architecture": "wasm"}));
    let manifest = json(blob(&files, &image.manifest_digest));
    let config = json(blob(&files, manifest["config"]["digest"].as_str().unwrap()));
    assert_eq!((config["os"].as_str(), config["architecture"].as_str()), (Some("wasi"), Some("wasm")));
}

#[test]
fn digests_are_reproducible_and_depend_on_the_inputs() {
    let a = build(&spec(Platform::LinuxAmd64)).unwrap();
    let b = build(&spec(Platform::LinuxAmd64)).unwrap();
    assert_eq!(a.tarball, b.tarball);
    assert_eq!(a.manifest_digest, b.manifest_digest);
    let mut other = spec(Platform::LinuxAmd64);
    other.args.clear();
    assert_ne!(build(&other).unwrap().manifest_digest, a.manifest_digest);
    assert_ne!(build(&spec(Platform::WasiWasm)).unwrap().manifest_digest, a.manifest_digest);
}

#[test]
fn bad_inputs_are_refused_with_the_cause() {
    assert!(is_wasm(MODULE));
    assert!(!is_wasm(b"#!/bin/sh"));
    for name in ["", "a/b.wasm", ".."] {
        let mut bad = spec(Platform::LinuxAmd64);
        bad.entrypoint_name = name.into();
        assert!(matches!(build(&bad), Err(ImageError::EntrypointName(_))), "{name:?}");
    }
    for reference in ["", "Hello:latest", "localhost:5000/Hello", "/x", "a b", ":v1"] {
        let mut bad = spec(Platform::LinuxAmd64);
        bad.reference = reference.into();
        assert!(matches!(build(&bad), Err(ImageError::Reference(_))), "{reference:?}");
    }
    let mut bad = spec(Platform::LinuxAmd64);
    bad.env = vec!["NOVALUE".into()];
    assert!(matches!(build(&bad), Err(ImageError::Env(_))));
    assert!("windows/amd64".parse::<Platform>().is_err());
    assert_eq!("wasi/wasm".parse::<Platform>().unwrap(), Platform::WasiWasm);
}

#[test]
fn tags_default_to_latest() {
    assert_eq!(tag_of("docker.io/library/hello"), "latest");
    assert_eq!(tag_of("localhost:5000/hello"), "latest");
    assert_eq!(tag_of("localhost:5000/hello:v2"), "v2");
}

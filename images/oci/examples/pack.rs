//! Packs any file as an image's entrypoint, without `wasmcell image build`'s Wasm check: the
//! end-to-end tests use it for the runc side of the hybrid node (a static native binary) and for
//! deliberately broken or hostile images (`--layer`: a tar archive added as a layer over the
//! entrypoint's, as it is).
//!
//! Usage: `pack [--layer LAYER.tar]... REFERENCE FILE OUTPUT.tar [ARGS...]` (platform linux/amd64).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut argv: Vec<String> = std::env::args().skip(1).collect();
    let mut layers = Vec::new();
    while argv.first().is_some_and(|a| a == "--layer") && argv.len() > 1 {
        layers.push(std::fs::read(argv.remove(1))?);
        argv.remove(0);
    }
    let [reference, file, output, args @ ..] = argv.as_slice() else {
        return Err("usage: pack [--layer LAYER.tar]... REFERENCE FILE OUTPUT.tar [ARGS...]".into());
    };
    let path = std::path::Path::new(file);
    let spec = wasmcell_image::ImageSpec {
        reference: reference.clone(),
        entrypoint_name: path.file_name().ok_or("FILE has no file name")?.to_string_lossy().into_owned(),
        entrypoint: std::fs::read(path)?,
        platform: wasmcell_image::Platform::LinuxAmd64,
        args: args.to_vec(),
        env: Vec::new(),
    };
    std::fs::write(output, wasmcell_image::build_with_layers(&spec, &layers)?.tarball)?;
    Ok(())
}

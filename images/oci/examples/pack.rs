//! Packs any file as an image's entrypoint, without `wasmcell image build`'s Wasm check: the
//! end-to-end tests use it for the runc side of the hybrid node (a static native binary) and for
//! deliberately broken images.
//!
//! Usage: `pack REFERENCE FILE OUTPUT.tar [ARGS...]` (platform linux/amd64).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let [reference, file, output, args @ ..] = argv.as_slice() else {
        return Err("usage: pack REFERENCE FILE OUTPUT.tar [ARGS...]".into());
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
    std::fs::write(output, wasmcell_image::build(&spec)?.tarball)?;
    Ok(())
}

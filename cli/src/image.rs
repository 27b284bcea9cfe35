//! `wasmcell image build`: a module → an OCI image tarball (`wasmcell_image`) that
//! `ctr images import` accepts and `ctr run --runtime io.containerd.wasmcell.v1` runs.

use crate::cli::ImageBuildArgs;
use anyhow::Context;
use std::process::ExitCode;
use wasmcell_image::ImageSpec;

pub fn build(args: ImageBuildArgs) -> anyhow::Result<ExitCode> {
    let module =
        std::fs::read(&args.module).with_context(|| format!("Cannot read module {}", args.module.display()))?;
    if !wasmcell_image::is_wasm(&module) {
        anyhow::bail!("{} is not a WebAssembly binary", args.module.display());
    }
    let entrypoint_name = args
        .module
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .with_context(|| format!("{} has no file name", args.module.display()))?;
    let spec = ImageSpec {
        reference: args.tag,
        entrypoint_name,
        entrypoint: module,
        platform: args.platform,
        args: args.args,
        env: args.env,
    };
    let image =
        wasmcell_image::build(&spec).with_context(|| format!("Cannot build an image of {}", args.module.display()))?;
    // Written next to the target and renamed, so a failed write never leaves a partial tarball.
    let partial = args.output.with_extension("partial");
    std::fs::write(&partial, &image.tarball)
        .and_then(|()| std::fs::rename(&partial, &args.output))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&partial);
        })
        .with_context(|| format!("Cannot write {}", args.output.display()))?;
    println!("{} {}", spec.reference, image.manifest_digest);
    Ok(ExitCode::SUCCESS)
}

//! The OCI runtime spec (`config.json`) the shim maps to a workload: its contents come from the
//! pod spec a tenant wrote. Any bytes give a workload description or a one-line error.

#![no_main]

use libfuzzer_sys::fuzz_target;
use wasmcell_bundle::spec::ContainerSpec;

fuzz_target!(|json: &[u8]| {
    if let Ok(spec) = ContainerSpec::parse(json) {
        assert!(!spec.args.is_empty() && !spec.args[0].is_empty(), "a workload always names its module");
        assert!(spec.memory_mib >= wasmcell_bundle::spec::MIN_MEMORY_MIB);
    }
});

//! The import check the shim runs on a tenant's module before compiling it: any bytes (binary
//! or text) give a verdict, never a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let _ = wasmcell_aot::check_imports(bytes);
});

//! Imports a function no WASI host offers (`env::wasmcell_missing`): every runtime must refuse
//! to instantiate it, naming the import.
#[link(wasm_import_module = "env")]
extern "C" {
    fn wasmcell_missing() -> i32;
}

fn main() {
    // SAFETY: never runs: instantiation fails on the unsatisfiable import.
    let value = unsafe { wasmcell_missing() };
    println!("{value}");
}

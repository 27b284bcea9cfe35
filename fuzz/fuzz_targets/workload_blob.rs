//! The workload blob (arguments, environment, listen and serve addresses) the guest parses: any bytes either fail to
//! parse or give exactly the counts they claim, each entry inside the blob.

#![no_main]

use libfuzzer_sys::fuzz_target;
use wasmcell_abi::workload::Workload;

fuzz_target!(|bytes: &[u8]| {
    let Some(workload) = Workload::parse(bytes) else { return };
    assert_eq!(workload.args().count(), workload.argc());
    assert_eq!(workload.env().count(), workload.envc());
    assert_eq!(workload.listen().count(), workload.listenc());
    let entries = workload.args().chain(workload.env()).chain(workload.listen()).chain(workload.serve());
    let total: usize = entries.map(|e| e.len()).sum();
    assert!(total <= bytes.len());
});

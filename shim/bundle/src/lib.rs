//! The shim's data at its process boundaries, kept apart from the shim so that the parsers of
//! untrusted input can be tested and fuzzed without containerd, KVM or a compiler:
//! - [`spec`]: a bundle's `config.json` (written by containerd from what a tenant asked for)
//!   reduced to a Wasm workload's description;
//! - [`plan`]: what `create` hands a VMM child, written into the bundle;
//! - [`protocol`]: the messages between the shim and a pod's VMM on its control channel, where
//!   a VMM taken over by its guest may write anything.
//!
//! The shim (`wasmcell-shim`) re-exports each under its old path.

pub mod plan;
pub mod protocol;
pub mod spec;

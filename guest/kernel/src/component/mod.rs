//! WASI 0.2 (the `wasi:cli/command` world) for components, served by the guest itself.
//!
//! In the flow: the runtime finds a component artifact → [`link`] adds the host side of each
//! WASI 0.2 interface the component imports (ours, from `bindgen!` over the WASI 0.2.12 WIT in
//! `guest/kernel/wit`, synchronous) → the runtime calls `wasi:cli/run`. Everything with the same
//! meaning as in preview 1 is preview 1's: one file tree (`--dir` preopens), one console for
//! stdio, one clock and one random generator, all in [`WasiCtx`]. What is only the component
//! model's lives here: resources (streams, pollables, descriptors) in a [`ResourceTable`].
//! Sockets are the host's, through the socket device, for a workload with a network (as
//! `wasmtime run -S inherit-network`); without one every address is denied.

mod cli;
mod clocks;
mod filesystem;
pub mod http;
mod io;
mod node;
mod sockets;

use crate::wasi::WasiCtx;
use alloc::collections::BTreeSet;
use alloc::format;
use alloc::string::String;
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};

pub use io::{InputStream, IoError, OutputStream, Pollable};

mod bindings {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "wasi:cli/command",
        imports: { default: trappable },
        with: {
            "wasi:io/error.error": crate::component::IoError,
            "wasi:io/poll.pollable": crate::component::Pollable,
            "wasi:io/streams.input-stream": crate::component::InputStream,
            "wasi:io/streams.output-stream": crate::component::OutputStream,
            "wasi:filesystem/types.descriptor": crate::component::filesystem::Descriptor,
            "wasi:filesystem/types.directory-entry-stream": crate::component::filesystem::DirectoryEntries,
            "wasi:sockets/network.network": crate::component::sockets::Network,
            "wasi:sockets/ip-name-lookup.resolve-address-stream": crate::component::sockets::ResolveAddressStream,
            "wasi:sockets/tcp.tcp-socket": crate::component::sockets::TcpSocket,
            "wasi:sockets/udp.udp-socket": crate::component::sockets::UdpSocket,
            "wasi:sockets/udp.incoming-datagram-stream": crate::component::sockets::IncomingDatagrams,
            "wasi:sockets/udp.outgoing-datagram-stream": crate::component::sockets::OutgoingDatagrams,
        },
    });
}

use bindings::wasi;
pub use bindings::Command;

/// Per-instance state of a component: preview 1's WASI state and the component's resources.
pub struct ComponentCtx {
    pub wasi: WasiCtx,
    table: ResourceTable,
    /// `wasi:random/insecure-seed`: fixed for the instance's life.
    insecure_seed: (u64, u64),
    /// The request being served (`wasmcell serve`).
    http: http::HttpState,
}

impl ComponentCtx {
    pub fn new(mut wasi: WasiCtx) -> Self {
        use rand_chacha::rand_core::Rng;
        let insecure_seed = (wasi.rng.next_u64(), wasi.rng.next_u64());
        Self { wasi, table: ResourceTable::new(), insecure_seed, http: http::HttpState::default() }
    }
}

type Host = HasSelf<ComponentCtx>;
type AddToLinker = fn(&mut Linker<ComponentCtx>) -> wasmtime::Result<()>;

/// The host side of every interface the guest offers (`wasmcell_abi::wasi::COMMAND_INTERFACES`
/// and `HTTP_INTERFACES`),
/// by interface name without version.
const INTERFACES: &[(&str, AddToLinker)] = &[
    ("wasi:cli/environment", |l| wasi::cli::environment::add_to_linker::<_, Host>(l, |c| c)),
    ("wasi:cli/exit", |l| wasi::cli::exit::add_to_linker::<_, Host>(l, |c| c)),
    ("wasi:cli/stdin", |l| wasi::cli::stdin::add_to_linker::<_, Host>(l, |c| c)),
    ("wasi:cli/stdout", |l| wasi::cli::stdout::add_to_linker::<_, Host>(l, |c| c)),
    ("wasi:cli/stderr", |l| wasi::cli::stderr::add_to_linker::<_, Host>(l, |c| c)),
    ("wasi:cli/terminal-input", |l| wasi::cli::terminal_input::add_to_linker::<_, Host>(l, |c| c)),
    ("wasi:cli/terminal-output", |l| wasi::cli::terminal_output::add_to_linker::<_, Host>(l, |c| c)),
    ("wasi:cli/terminal-stdin", |l| wasi::cli::terminal_stdin::add_to_linker::<_, Host>(l, |c| c)),
    ("wasi:cli/terminal-stdout", |l| wasi::cli::terminal_stdout::add_to_linker::<_, Host>(l, |c| c)),
    ("wasi:cli/terminal-stderr", |l| wasi::cli::terminal_stderr::add_to_linker::<_, Host>(l, |c| c)),
    ("wasi:io/error", |l| wasi::io::error::add_to_linker::<_, Host>(l, |c| c)),
    ("wasi:io/poll", |l| wasi::io::poll::add_to_linker::<_, Host>(l, |c| c)),
    ("wasi:io/streams", |l| wasi::io::streams::add_to_linker::<_, Host>(l, |c| c)),
    ("wasi:clocks/monotonic-clock", |l| wasi::clocks::monotonic_clock::add_to_linker::<_, Host>(l, |c| c)),
    ("wasi:clocks/wall-clock", |l| wasi::clocks::wall_clock::add_to_linker::<_, Host>(l, |c| c)),
    ("wasi:filesystem/types", |l| wasi::filesystem::types::add_to_linker::<_, Host>(l, |c| c)),
    ("wasi:filesystem/preopens", |l| wasi::filesystem::preopens::add_to_linker::<_, Host>(l, |c| c)),
    ("wasi:random/random", |l| wasi::random::random::add_to_linker::<_, Host>(l, |c| c)),
    ("wasi:random/insecure", |l| wasi::random::insecure::add_to_linker::<_, Host>(l, |c| c)),
    ("wasi:random/insecure-seed", |l| wasi::random::insecure_seed::add_to_linker::<_, Host>(l, |c| c)),
    ("wasi:sockets/network", |l| wasi::sockets::network::add_to_linker::<_, Host>(l, &Default::default(), |c| c)),
    ("wasi:sockets/instance-network", |l| wasi::sockets::instance_network::add_to_linker::<_, Host>(l, |c| c)),
    ("wasi:sockets/tcp", |l| wasi::sockets::tcp::add_to_linker::<_, Host>(l, |c| c)),
    ("wasi:sockets/tcp-create-socket", |l| wasi::sockets::tcp_create_socket::add_to_linker::<_, Host>(l, |c| c)),
    ("wasi:sockets/udp", |l| wasi::sockets::udp::add_to_linker::<_, Host>(l, |c| c)),
    ("wasi:sockets/udp-create-socket", |l| wasi::sockets::udp_create_socket::add_to_linker::<_, Host>(l, |c| c)),
    ("wasi:sockets/ip-name-lookup", |l| wasi::sockets::ip_name_lookup::add_to_linker::<_, Host>(l, |c| c)),
    ("wasi:http/types", http::add_types),
    ("wasi:http/outgoing-handler", http::add_outgoing_handler),
];

/// Links the WASI 0.2 interfaces `component` imports, and only those: linking costs time per
/// function and a command imports a handful of the world's interfaces. An import that is not
/// WASI 0.2 fails here, naming it (the host checked this before boot; this is the backstop).
pub fn link(linker: &mut Linker<ComponentCtx>, component: &Component) -> Result<(), String> {
    let engine = linker.engine().clone();
    let mut linked = BTreeSet::new();
    for (name, _) in component.component_type().imports(&engine) {
        let interface = wasmcell_abi::wasi::offered_interface(name);
        let Some((offered, add)) = INTERFACES.iter().find(|(offered, _)| Some(*offered) == interface) else {
            return Err(format!("the component imports `{name}`, which the guest does not offer"));
        };
        // Two versions of one interface are served by one definition (semver-compatible).
        if linked.insert(*offered) {
            add(linker).map_err(|e| format!("cannot link `{name}`: {e:#}"))?;
        }
    }
    Ok(())
}

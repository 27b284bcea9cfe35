//! containerd's side of the binary (`containerd_shim::Shim`): the `start` action (spawn the
//! serving shim, one per container or per Kubernetes pod, and record its socket), the `delete` action (clean up a
//! bundle whose shim is gone; containerd 1.6 runs it after every shim disconnect, so it is
//! idempotent and fast), and the task service with containerd's event publisher.

use crate::instance::{cleanup_bundle, VmInstance};
use crate::service::{EventSink, Service};
use crate::spec::ContainerSpec;
use containerd_shim::protos::protobuf::MessageDyn;
use containerd_shim::protos::ttrpc::context::Context;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::{api, Config, DeleteResponse, Error, ExitSignal, Flags, StartOpts};
use std::os::unix::net::UnixStream;
use std::sync::Arc;

/// The shim of one container.
pub struct WasmcellShim {
    namespace: String,
    id: String,
    address: String,
    exit: Arc<ExitSignal>,
}

/// Publishes task events to containerd (`$TTRPC_ADDRESS`) over a connection of their own.
///
/// Not over one held open: ttrpc's synchronous client polls its connection every 10 ms for as
/// long as it lives, so a held publisher made every idle pod's shim wake 100 times a second
/// (0.3 % of a CPU per pod). Events are a handful per container; a connection costs ~0.2 ms.
struct Publisher {
    address: String,
    namespace: String,
}

impl EventSink for Publisher {
    fn publish(&self, topic: &str, event: Box<dyn MessageDyn>) {
        let published = RemotePublisher::new(&self.address)
            .and_then(|remote| remote.publish(Context::default(), topic, &self.namespace, event));
        if let Err(e) = published {
            log::warn!("cannot publish {topic}: {e}");
        }
    }
}

impl containerd_shim::Shim for WasmcellShim {
    type T = Service<VmInstance>;

    fn new(_runtime_id: &str, args: &Flags, _config: &mut Config) -> Self {
        Self {
            namespace: args.namespace.clone(),
            id: args.id.clone(),
            address: args.address.clone(),
            exit: Arc::new(ExitSignal::default()),
        }
    }

    fn start_shim(&mut self, opts: StartOpts) -> Result<String, Error> {
        // A pod's containers share the shim its sandbox started (containerd runs `start` in
        // each container's bundle); anything else gets its own.
        let grouping = std::env::current_dir()
            .ok()
            .and_then(|bundle| ContainerSpec::load(&bundle).ok())
            .and_then(|spec| spec.sandbox_id)
            .unwrap_or_else(|| opts.id.clone());
        // The pod's shim is already serving: join it without spawning a process.
        let pod_address = containerd_shim::socket_address(&opts.address, &opts.namespace, &grouping);
        if grouping != opts.id && UnixStream::connect(pod_address.trim_start_matches("unix://")).is_ok() {
            containerd_shim::util::write_address(&pod_address)?;
            return Ok(pod_address);
        }
        let (_pid, address) = containerd_shim::spawn(opts, &grouping, Vec::new())?;
        // Recorded in the bundle so that containerd removes the socket with the task.
        containerd_shim::util::write_address(&address)?;
        Ok(address)
    }

    fn delete_shim(&mut self) -> Result<DeleteResponse, Error> {
        if let Ok(bundle) = std::env::current_dir() {
            cleanup_bundle(&bundle);
        }
        // The socket path is derived, not read from the bundle: containerd may have removed the
        // bundle's `address` file already.
        let socket = containerd_shim::socket_address(&self.address, &self.namespace, &self.id);
        let _ = std::fs::remove_file(socket.trim_start_matches("unix://"));
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let mut exited_at = containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp::new();
        exited_at.seconds = now.as_secs() as i64;
        Ok(api::DeleteResponse { exit_status: 137, exited_at: Some(exited_at).into(), ..Default::default() })
    }

    fn wait(&mut self) {
        self.exit.wait();
    }

    fn create_task_service(&self, publisher: RemotePublisher) -> Self::T {
        // containerd_shim connected this publisher from `$TTRPC_ADDRESS`; dropping it ends its
        // polling thread (see `Publisher`).
        drop(publisher);
        let address = std::env::var("TTRPC_ADDRESS").unwrap_or_default();
        let events = Arc::new(Publisher { address, namespace: self.namespace.clone() });
        Service::new(events, self.exit.clone())
    }
}

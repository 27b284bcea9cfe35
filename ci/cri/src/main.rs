//! `wasmcell-cri`: the CRI calls the kubelet makes, one subcommand each, for the Kubernetes
//! end-to-end checks (crictl is not packaged in Debian). It talks CRI v1 to containerd's socket,
//! exactly as the kubelet does: a pod with `runtimeClassName: wasmcell` arrives as
//! RunPodSandbox with `runtime_handler = "wasmcell"`.
//!
//! Output is plain: an id, an exit code, a `key=value` line, log text. Errors are one line on
//! stderr and status 1.

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use std::path::PathBuf;
use std::time::Duration;
use tonic::transport::{Channel, Endpoint, Uri};

#[derive(Parser)]
#[command(name = "wasmcell-cri", about = "Drive containerd's CRI plugin as the kubelet does")]
struct Cli {
    /// containerd's gRPC socket.
    #[arg(long, value_name = "PATH")]
    socket: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// RunPodSandbox; prints the pod id and saves the pod config for `create`.
    Runp {
        #[arg(long)]
        name: String,
        /// The runtime handler (RuntimeClass handler); empty for the default (runc).
        #[arg(long, default_value = "")]
        runtime: String,
        /// Share the node's network namespace instead of a CNI-configured one.
        #[arg(long)]
        host_network: bool,
        /// Where the pod's container logs go.
        #[arg(long, value_name = "DIR")]
        log_dir: PathBuf,
        /// File to save the pod config to (JSON), for `create`.
        #[arg(long, value_name = "FILE")]
        save: PathBuf,
        /// A supplementary group of the pod (what the kubelet passes for `fsGroup` and
        /// `supplementalGroups`), repeatable.
        #[arg(long = "supplemental-group", value_name = "GID")]
        supplemental_groups: Vec<i64>,
    },
    /// CreateContainer in a pod; prints the container id.
    Create {
        pod: String,
        /// The pod config `runp --save` wrote.
        #[arg(long, value_name = "FILE")]
        pod_config: PathBuf,
        #[arg(long)]
        name: String,
        #[arg(long)]
        image: String,
        #[arg(long = "env", value_name = "KEY=VALUE")]
        env: Vec<String>,
        #[arg(long, value_name = "BYTES")]
        memory_limit: Option<i64>,
        /// A volume, as the kubelet passes one (`:ro` read-only), repeatable.
        #[arg(long = "mount", value_name = "HOST:CONTAINER[:ro]")]
        mounts: Vec<String>,
        /// Replaces the image's command (CRI `command`).
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// StartContainer.
    Start { id: String },
    /// Waits until the container has exited; prints its exit code.
    Wait {
        id: String,
        #[arg(long, default_value_t = 30)]
        timeout_secs: u64,
    },
    /// ContainerStatus as one line: state, exit code, reason, message.
    Inspect { id: String },
    /// The container's log (CRI log file), messages only, each stream to its own.
    Logs { id: String },
    /// The host path of the container's mount at CONTAINER_PATH, from ContainerStatus: where
    /// the kubelet reads a termination message (`terminationMessagePath`) after the exit.
    Mount { id: String, container_path: String },
    /// StopContainer.
    Stop {
        id: String,
        #[arg(long, default_value_t = 10)]
        timeout_secs: i64,
    },
    /// RemoveContainer.
    Rm { id: String },
    /// PodSandboxStatus as one line: state, runtime handler.
    Inspectp { id: String },
    /// Prints a pod's IP address (its network namespace's, from the CNI).
    Ip { id: String },
    /// StopPodSandbox.
    Stopp { id: String },
    /// RemovePodSandbox.
    Rmp { id: String },
    /// ListPodSandbox: one id per line.
    Pods,
    /// ListContainers: one id per line.
    Ps,
}

async fn connect(socket: PathBuf) -> anyhow::Result<RuntimeServiceClient<Channel>> {
    let channel = Endpoint::try_from("http://[::]:0")?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(socket).await?)) }
        }))
        .await
        .context("Cannot connect to containerd's CRI socket")?;
    Ok(RuntimeServiceClient::new(channel))
}

/// The gRPC status message alone (tonic's Display adds code and metadata).
fn call_error(status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{}", status.message())
}

/// `HOST:CONTAINER[:ro]` as a CRI mount.
fn mount(text: &str) -> anyhow::Result<cri::Mount> {
    let (host, rest) = text.split_once(':').with_context(|| format!("{text} is not HOST:CONTAINER[:ro]"))?;
    let (container, readonly) = match rest.strip_suffix(":ro") {
        Some(container) => (container, true),
        None => (rest, false),
    };
    Ok(cri::Mount { host_path: host.into(), container_path: container.into(), readonly, ..Default::default() })
}

fn key_values(entries: &[String]) -> anyhow::Result<Vec<cri::KeyValue>> {
    entries
        .iter()
        .map(|e| match e.split_once('=') {
            Some((key, value)) => Ok(cri::KeyValue { key: key.into(), value: value.into() }),
            None => bail!("'{e}' is not KEY=VALUE"),
        })
        .collect()
}

async fn container_status(
    client: &mut RuntimeServiceClient<Channel>,
    id: &str,
) -> anyhow::Result<cri::ContainerStatus> {
    let request = cri::ContainerStatusRequest { container_id: id.into(), verbose: false };
    let response = client.container_status(request).await.map_err(call_error)?.into_inner();
    response.status.with_context(|| format!("No status for container {id}"))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wasmcell-cri: {}", format!("{e:#}").lines().next().unwrap_or_default());
            std::process::ExitCode::from(1)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut client = connect(cli.socket).await?;
    match cli.command {
        Command::Runp { name, runtime, host_network, log_dir, save, supplemental_groups } => {
            let network = if host_network { cri::NamespaceMode::Node } else { cri::NamespaceMode::Pod };
            let config = cri::PodSandboxConfig {
                metadata: Some(cri::PodSandboxMetadata {
                    name: name.clone(),
                    uid: format!("uid-{name}"),
                    namespace: "default".into(),
                    attempt: 0,
                }),
                log_directory: log_dir.to_string_lossy().into_owned(),
                linux: Some(cri::LinuxPodSandboxConfig {
                    security_context: Some(cri::LinuxSandboxSecurityContext {
                        namespace_options: Some(cri::NamespaceOption { network: network as i32, ..Default::default() }),
                        supplemental_groups,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            };
            std::fs::write(&save, serde_json::to_vec(&config)?)
                .with_context(|| format!("Cannot write {}", save.display()))?;
            let request = cri::RunPodSandboxRequest { config: Some(config), runtime_handler: runtime };
            let response = client.run_pod_sandbox(request).await.map_err(call_error)?.into_inner();
            println!("{}", response.pod_sandbox_id);
        }
        Command::Create { pod, pod_config, name, image, env, memory_limit, mounts, command } => {
            let sandbox: cri::PodSandboxConfig = serde_json::from_slice(
                &std::fs::read(&pod_config).with_context(|| format!("Cannot read {}", pod_config.display()))?,
            )?;
            let config = cri::ContainerConfig {
                metadata: Some(cri::ContainerMetadata { name: name.clone(), attempt: 0 }),
                image: Some(cri::ImageSpec { image, ..Default::default() }),
                command,
                envs: key_values(&env)?,
                mounts: mounts.iter().map(|m| mount(m)).collect::<anyhow::Result<_>>()?,
                log_path: format!("{name}.log"),
                linux: memory_limit.map(|bytes| cri::LinuxContainerConfig {
                    resources: Some(cri::LinuxContainerResources {
                        memory_limit_in_bytes: bytes,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            };
            let request = cri::CreateContainerRequest {
                pod_sandbox_id: pod,
                config: Some(config),
                sandbox_config: Some(sandbox),
            };
            let response = client.create_container(request).await.map_err(call_error)?.into_inner();
            println!("{}", response.container_id);
        }
        Command::Start { id } => {
            client.start_container(cri::StartContainerRequest { container_id: id }).await.map_err(call_error)?;
        }
        Command::Wait { id, timeout_secs } => {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout_secs);
            loop {
                let status = container_status(&mut client, &id).await?;
                if status.state == cri::ContainerState::ContainerExited as i32 {
                    println!("{}", status.exit_code);
                    break;
                }
                if tokio::time::Instant::now() >= deadline {
                    bail!("Container {id} has not exited after {timeout_secs} s");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Command::Inspect { id } => {
            let status = container_status(&mut client, &id).await?;
            let state = cri::ContainerState::try_from(status.state).map_or("?", |s| s.as_str_name());
            println!(
                "state={state} exit_code={} reason={} message={}",
                status.exit_code, status.reason, status.message
            );
        }
        Command::Mount { id, container_path } => {
            let status = container_status(&mut client, &id).await?;
            let mount = status.mounts.iter().find(|m| m.container_path == container_path);
            let mount = mount.with_context(|| format!("The container has no mount at {container_path}"))?;
            println!("{}", mount.host_path);
        }
        Command::Logs { id } => {
            let status = container_status(&mut client, &id).await?;
            let text = std::fs::read_to_string(&status.log_path)
                .with_context(|| format!("Cannot read the log {}", status.log_path))?;
            // CRI log lines: `<RFC 3339 time> <stdout|stderr> <F|P> <message>`.
            for line in text.lines() {
                let mut parts = line.splitn(4, ' ');
                let (_, stream, tag, message) = (parts.next(), parts.next(), parts.next(), parts.next().unwrap_or(""));
                let end = if tag == Some("P") { "" } else { "\n" };
                match stream {
                    Some("stderr") => eprint!("{message}{end}"),
                    _ => print!("{message}{end}"),
                }
            }
        }
        Command::Stop { id, timeout_secs } => {
            let request = cri::StopContainerRequest { container_id: id, timeout: timeout_secs };
            client.stop_container(request).await.map_err(call_error)?;
        }
        Command::Rm { id } => {
            client.remove_container(cri::RemoveContainerRequest { container_id: id }).await.map_err(call_error)?;
        }
        Command::Inspectp { id } => {
            let request = cri::PodSandboxStatusRequest { pod_sandbox_id: id.clone(), verbose: false };
            let response = client.pod_sandbox_status(request).await.map_err(call_error)?.into_inner();
            let status = response.status.with_context(|| format!("No status for pod {id}"))?;
            let state = cri::PodSandboxState::try_from(status.state).map_or("?", |s| s.as_str_name());
            println!("state={state} runtime_handler={}", status.runtime_handler);
        }
        Command::Ip { id } => {
            let request = cri::PodSandboxStatusRequest { pod_sandbox_id: id.clone(), verbose: false };
            let response = client.pod_sandbox_status(request).await.map_err(call_error)?.into_inner();
            let network =
                response.status.and_then(|s| s.network).with_context(|| format!("No network for pod {id}"))?;
            println!("{}", network.ip);
        }
        Command::Stopp { id } => {
            client.stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: id }).await.map_err(call_error)?;
        }
        Command::Rmp { id } => {
            client.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: id }).await.map_err(call_error)?;
        }
        Command::Pods => {
            let response = client.list_pod_sandbox(cri::ListPodSandboxRequest::default()).await.map_err(call_error)?;
            for pod in response.into_inner().items {
                println!("{}", pod.id);
            }
        }
        Command::Ps => {
            let response = client.list_containers(cri::ListContainersRequest::default()).await.map_err(call_error)?;
            for container in response.into_inner().containers {
                println!("{}", container.id);
            }
        }
    }
    Ok(())
}

//! What the shim and a pod's VMM say to each other over the VMM's control channel (a socket
//! pair the shim made when it spawned the VMM; the VMM's end is its fd 3): one JSON object per
//! line each way. The shim asks; the VMM answers a start, and reports each workload's exit.
//! Every line is at most [`MAX_MESSAGE`] bytes, sent or received: neither side buffers without
//! bound what the other writes, and a longer line ends the channel.

use crate::plan::WorkloadPlan;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, Read, Write};

/// The VMM's end of the channel in its process.
pub const CHANNEL_FD: i32 = 3;

/// The longest line either side sends or accepts, newline included. A start carries a
/// container's arguments, environment and paths: a few KiB, rarely more than a few hundred;
/// 1 MiB leaves room for large environments and still bounds what a broken or compromised peer
/// makes the other side hold.
pub const MAX_MESSAGE: usize = 1 << 20;

/// Shim → VMM.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// Start container `id`'s workload: answered by [`Event::Started`] or [`Event::Failed`].
    Start { id: String, workload: WorkloadPlan },
    /// Stop container `id`'s workload; its exit status will say `signal`.
    Kill { id: String, signal: u32 },
}

/// VMM → shim.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// The pod's VM is up (sent once, first).
    Ready { boot_ms: f64 },
    /// The pod's VM could not be started (sent instead of `Ready`; the VMM then exits).
    NotReady { message: String },
    /// The workload runs.
    Started { id: String },
    /// The workload could not be started (a one-line reason).
    Failed { id: String, message: String },
    /// The workload ended with this exit status.
    Exited { id: String, status: u32 },
}

/// Writes `message` as one line. A message longer than [`MAX_MESSAGE`] is refused before
/// anything is written (`InvalidInput`): the channel stays usable.
pub fn send<T: Serialize>(out: &mut impl Write, message: &T) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(message).map_err(std::io::Error::other)?;
    line.push(b'\n');
    if line.len() > MAX_MESSAGE {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("the message is {} bytes, more than the channel's {MAX_MESSAGE}", line.len()),
        ));
    }
    out.write_all(&line)
}

/// Reads the next message; `None` at end of stream. A line that does not parse or is longer
/// than [`MAX_MESSAGE`] (read no further than that) is an error: the peer is our own binary,
/// so it means a broken channel, which the caller closes.
pub fn receive<T: for<'de> Deserialize<'de>>(input: &mut impl BufRead) -> std::io::Result<Option<T>> {
    let mut line = Vec::new();
    let read = input.by_ref().take(MAX_MESSAGE as u64).read_until(b'\n', &mut line)?;
    if read == 0 {
        return Ok(None);
    }
    if line.len() == MAX_MESSAGE && line.last() != Some(&b'\n') {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("a message longer than the channel's {MAX_MESSAGE} bytes"),
        ));
    }
    serde_json::from_slice(&line).map(Some).map_err(std::io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_travel_one_per_line() {
        let workload = WorkloadPlan {
            artifact: "/cache/m.cwasm".into(),
            cpu_features: 5,
            args: vec!["/app.wasm".into(), "x y".into()],
            env: vec!["A=1".into()],
            memory_mib: 64,
            rootfs: "/b/rootfs".into(),
            stdin: String::new(),
            stdout: "/fifo/out".into(),
            stderr: "/fifo/err".into(),
        };
        let requests = [Request::Start { id: "c1".into(), workload }, Request::Kill { id: "c1".into(), signal: 15 }];
        let mut wire = Vec::new();
        for r in &requests {
            send(&mut wire, r).unwrap();
        }
        assert_eq!(wire.iter().filter(|&&b| b == b'\n').count(), 2);
        let mut input = std::io::Cursor::new(wire);
        for r in &requests {
            assert_eq!(receive::<Request>(&mut input).unwrap().as_ref(), Some(r));
        }
        assert_eq!(receive::<Request>(&mut input).unwrap(), None);
        assert!(receive::<Event>(&mut std::io::Cursor::new(b"{\"nonsense\":1}\n".to_vec())).is_err());
    }

    #[test]
    fn messages_are_bounded_both_ways() {
        let fits = |len: usize| Event::Failed { id: "c".into(), message: "x".repeat(len) };
        // What surrounds the message: the JSON around it and the newline.
        let mut wire = Vec::new();
        send(&mut wire, &fits(0)).unwrap();
        let overhead = wire.len();
        wire.clear();
        send(&mut wire, &fits(MAX_MESSAGE - overhead)).unwrap();
        assert_eq!(wire.len(), MAX_MESSAGE, "the largest message");
        assert_eq!(receive::<Event>(&mut std::io::Cursor::new(&wire)).unwrap(), Some(fits(MAX_MESSAGE - overhead)));

        let err = send(&mut Vec::new(), &fits(MAX_MESSAGE)).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "refused before writing: {err}");

        // A peer that never ends its line: refused after MAX_MESSAGE bytes, not buffered on.
        let endless = std::io::repeat(b'x');
        let mut input = std::io::BufReader::new(endless);
        let err = receive::<Event>(&mut input).unwrap_err();
        assert_eq!(err.to_string(), "a message longer than the channel's 1048576 bytes");
    }
}

//! The workload description the VMM places in guest memory for the guest runtime: the module's
//! arguments and environment, the TCP listeners a preview-1 module is handed (`wasmcell run
//! --tcplisten`), the volumes the file device serves it, and for `wasmcell serve` the address
//! to serve HTTP on, as a flat, length-prefixed blob (mapped read-only).
//!
//! Layout, all integers little-endian `u32`:
//! `argc, envc, listenc, volumec, then argc + envc + listenc + volumec entries of (len, len
//! bytes)`, then optionally one more entry: the address (`IP:PORT`, text) a `wasi:http/proxy`
//! component is served on. Environment entries are `KEY=VALUE`; listen entries are `IP:PORT`
//! text, each bound by the guest and preopened from descriptor 3, in order; volume entries are
//! a [`crate::file::Volume`] byte then the guest path, volume `i` being the file device's
//! handle `i`. The guest parses it with bounds checks; nothing here trusts a length.

/// What a blob holds, borrowed: each part is a list of byte strings.
#[derive(Clone, Copy, Debug, Default)]
pub struct Parts<'a> {
    pub args: &'a [&'a [u8]],
    pub env: &'a [&'a [u8]],
    pub listen: &'a [&'a [u8]],
    pub volumes: &'a [&'a [u8]],
    pub serve: Option<&'a [u8]>,
}

impl<'a> Parts<'a> {
    fn entries(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        let (args, env, listen, volumes) = (self.args, self.env, self.listen, self.volumes);
        args.iter().chain(env).chain(listen).chain(volumes).copied().chain(self.serve)
    }
}

/// The counts before the entries.
const HEADER: usize = 16;

/// Bytes needed to encode `parts`.
pub fn encoded_len(parts: &Parts<'_>) -> usize {
    HEADER + parts.entries().map(|s| 4 + s.len()).sum::<usize>()
}

/// Encodes `parts` into `out`, which must be exactly [`encoded_len`] bytes. Returns `None` if
/// it is not, or if a count or length does not fit in a `u32`.
pub fn encode(parts: &Parts<'_>, out: &mut [u8]) -> Option<()> {
    if out.len() != encoded_len(parts) {
        return None;
    }
    let counts = [parts.args.len(), parts.env.len(), parts.listen.len(), parts.volumes.len()];
    for (at, count) in counts.into_iter().enumerate() {
        out[at * 4..at * 4 + 4].copy_from_slice(&u32::try_from(count).ok()?.to_le_bytes());
    }
    let mut at = HEADER;
    for s in parts.entries() {
        out[at..at + 4].copy_from_slice(&u32::try_from(s.len()).ok()?.to_le_bytes());
        out[at + 4..at + 4 + s.len()].copy_from_slice(s);
        at += 4 + s.len();
    }
    Some(())
}

/// A parsed workload blob: borrowed views of its arguments, environment and addresses.
#[derive(Clone, Copy, Debug)]
pub struct Workload<'a> {
    argc: usize,
    envc: usize,
    listenc: usize,
    volumec: usize,
    entries: &'a [u8],
    serve: Option<&'a [u8]>,
}

impl<'a> Workload<'a> {
    /// Parses and validates the whole blob; `None` if any length runs past its end.
    pub fn parse(blob: &'a [u8]) -> Option<Self> {
        let argc = read_u32(blob, 0)? as usize;
        let envc = read_u32(blob, 4)? as usize;
        let listenc = read_u32(blob, 8)? as usize;
        let volumec = read_u32(blob, 12)? as usize;
        let entries = blob.get(HEADER..)?;
        // Walk every entry once so that later iteration cannot fail.
        let mut count = 0usize;
        let mut rest = entries;
        while count < argc.checked_add(envc)?.checked_add(listenc)?.checked_add(volumec)? {
            let len = read_u32(rest, 0)? as usize;
            rest = rest.get(4usize.checked_add(len)?..)?;
            count += 1;
        }
        // What follows is the serve address, exactly one entry, or nothing.
        let serve = match rest {
            [] => None,
            _ => {
                let len = read_u32(rest, 0)? as usize;
                (rest.len() == 4usize.checked_add(len)?).then(|| &rest[4..])?.into()
            }
        };
        Some(Self { argc, envc, listenc, volumec, entries, serve })
    }

    /// The address to serve a `wasi:http/proxy` component on (`wasmcell serve`), if any.
    pub fn serve(&self) -> Option<&'a [u8]> {
        self.serve
    }

    fn entries(&self) -> impl Iterator<Item = &'a [u8]> {
        let mut rest = self.entries;
        core::iter::from_fn(move || {
            let len = read_u32(rest, 0)? as usize;
            let entry = rest.get(4..4 + len)?;
            rest = &rest[4 + len..];
            Some(entry)
        })
    }

    /// The arguments, `argv[0]` first.
    pub fn args(&self) -> impl Iterator<Item = &'a [u8]> {
        self.entries().take(self.argc)
    }

    /// The environment, `KEY=VALUE` each.
    pub fn env(&self) -> impl Iterator<Item = &'a [u8]> {
        self.entries().skip(self.argc).take(self.envc)
    }

    /// The addresses (`IP:PORT`) of the TCP listeners to preopen for a preview-1 module.
    pub fn listen(&self) -> impl Iterator<Item = &'a [u8]> {
        self.entries().skip(self.argc + self.envc).take(self.listenc)
    }

    /// The volumes: a [`crate::file::Volume`] byte, then the guest path, each.
    pub fn volumes(&self) -> impl Iterator<Item = &'a [u8]> {
        self.entries().skip(self.argc + self.envc + self.listenc).take(self.volumec)
    }

    /// Number of arguments.
    pub fn argc(&self) -> usize {
        self.argc
    }

    /// Number of environment entries.
    pub fn envc(&self) -> usize {
        self.envc
    }

    /// Number of listen addresses.
    pub fn listenc(&self) -> usize {
        self.listenc
    }
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let args: [&[u8]; 3] = [b"app.wasm", b"", b"x y"];
        let env: [&[u8]; 1] = [b"K=V"];
        let listen: [&[u8]; 2] = [b"127.0.0.1:0", b"[::1]:8080"];
        let mut buf = [0u8; 128];
        let parts = Parts { args: &args, env: &env, ..Parts::default() };
        let len = encoded_len(&parts);
        encode(&parts, &mut buf[..len]).unwrap();
        let w = Workload::parse(&buf[..len]).unwrap();
        assert_eq!((w.argc(), w.envc()), (3, 1));
        assert!(w.args().eq(args.iter().copied()));
        assert!(w.env().eq(env.iter().copied()));
        assert_eq!((w.listen().count(), w.serve()), (0, None));
        assert!(encode(&parts, &mut buf[..len - 1]).is_none());

        let volumes: [&[u8]; 2] = [b"d/data", b"f/dev/termination-log"];
        let parts = Parts { listen: &listen, volumes: &volumes, ..parts };
        let len = encoded_len(&parts);
        encode(&parts, &mut buf[..len]).unwrap();
        let w = Workload::parse(&buf[..len]).unwrap();
        assert!(w.args().eq(args.iter().copied()) && w.env().eq(env.iter().copied()));
        assert!(w.listen().eq(listen.iter().copied()));
        assert!(w.volumes().eq(volumes.iter().copied()));
        assert_eq!(w.serve(), None);

        let serve = Some(&b"127.0.0.1:8080"[..]);
        let parts = Parts { serve, listen: &[], volumes: &[], ..parts };
        let len = encoded_len(&parts);
        encode(&parts, &mut buf[..len]).unwrap();
        let w = Workload::parse(&buf[..len]).unwrap();
        assert!(w.args().eq(args.iter().copied()) && w.env().eq(env.iter().copied()));
        assert_eq!(w.serve(), serve);
        // Anything after the serve address, or an address cut short, is refused.
        assert!(Workload::parse(&buf[..len - 1]).is_none());
        buf[len] = 0;
        assert!(Workload::parse(&buf[..len + 1]).is_none());
    }

    #[test]
    fn hostile_blobs_are_refused() {
        assert!(Workload::parse(b"").is_none());
        // Claims one argument of 0xffff_ffff bytes.
        assert!(Workload::parse(&[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]).is_none());
        // Claims 2^32-1 arguments, listeners or volumes.
        let max = [0xff; 4];
        for at in 0..4 {
            let mut blob = [0u8; 16];
            blob[at * 4..at * 4 + 4].copy_from_slice(&max);
            assert!(Workload::parse(&blob).is_none());
        }
        // Counts that overflow when added.
        assert!(Workload::parse(&[0xff; 16]).is_none());
        assert!(Workload::parse(&[0; 16]).is_some());
        // The old (v11) header, without a volume count, is too short.
        assert!(Workload::parse(&[0; 12]).is_none());
    }
}

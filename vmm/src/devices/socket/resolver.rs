//! The resolver files a workload's name lookups read: read once, when the workload is
//! configured (before any jail closes), and copied into the guest on each [`Op::Resolver`]
//! call. The VMM never resolves a name itself: the guest parses the files and sends its DNS
//! queries through the workload's own UDP sockets, so a lookup reaches exactly what the
//! workload's sockets reach, and no resolver library runs in the VMM.
//!
//! [`Op::Resolver`]: wasmcell_abi::socket::Op::Resolver

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;
use wasmcell_abi::socket::{ResolverFiles, MAX_TRANSFER};

/// `resolv.conf` and the hosts file of a workload, as [`ResolverFiles`] lays them out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolver {
    files: Arc<[u8]>,
}

impl Resolver {
    pub fn new(resolv_conf: &[u8], hosts: &[u8]) -> Self {
        Self { files: ResolverFiles::join(resolv_conf, hosts).into() }
    }

    /// The files at these paths; one that is missing or not a regular file reads as empty (a
    /// resolver without `resolv.conf` asks 127.0.0.1, as glibc's does).
    pub fn from_files(resolv_conf: &Path, hosts: &Path) -> Self {
        Self::new(&Self::read_file(resolv_conf), &Self::read_file(hosts))
    }

    /// At most `MAX_TRANSFER` bytes of a regular file; empty for one that is missing or is
    /// not a regular file (opened without blocking, so a FIFO named there cannot stall the
    /// caller).
    pub fn read_file(path: &Path) -> Vec<u8> {
        let Ok(file) = File::options().read(true).custom_flags(libc::O_NONBLOCK).open(path) else {
            return Vec::new();
        };
        if !file.metadata().is_ok_and(|m| m.is_file()) {
            return Vec::new();
        }
        let mut bytes = Vec::new();
        match file.take(MAX_TRANSFER).read_to_end(&mut bytes) {
            Ok(_) => bytes,
            Err(_) => Vec::new(),
        }
    }

    /// This host's: `/etc/resolv.conf` and `/etc/hosts`.
    pub fn system() -> Self {
        Self::from_files(Path::new("/etc/resolv.conf"), Path::new("/etc/hosts"))
    }

    pub fn files(&self) -> &[u8] {
        &self.files
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_files_and_fifos_read_as_empty_and_big_ones_are_cut() {
        let dir = std::env::temp_dir().join(format!("wasmcell-resolver-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("fifo");
        let _ = std::fs::remove_file(&fifo);
        let path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
        let big = dir.join("big");
        std::fs::write(&big, vec![b'#'; 1 << 20]).unwrap();
        let resolver = Resolver::from_files(&fifo, &dir.join("missing"));
        assert_eq!(ResolverFiles::split(resolver.files()), Some((&[][..], &[][..])));
        let resolver = Resolver::from_files(&big, &big);
        assert_eq!(resolver.files().len() as u64, MAX_TRANSFER - 4);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

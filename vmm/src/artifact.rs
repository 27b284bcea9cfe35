//! The compiled module a workload runs, as the caller hands it over: bytes in memory, or a file
//! of the compilation cache. A file is mapped into the workload's window rather than copied
//! (`Window::create`): every VM that runs the same module shares its pages in the host's page
//! cache, and starting one costs no read and no copy of the module.

use std::fs::File;
use std::io;

/// A precompiled module or component (`Engine::precompile_module` / `precompile_component`
/// output for the guest target).
pub enum Artifact {
    /// Copied into the window.
    Bytes(Vec<u8>),
    /// Mapped into the window, copy-on-write: the file is never written through the mapping.
    /// It must not change while a VM maps it (cache entries are written once and replaced only
    /// by a rename).
    File { file: File, len: u64 },
}

impl Artifact {
    /// The artifact in `file` (its length now).
    pub fn map(file: File) -> io::Result<Self> {
        let len = file.metadata()?.len();
        Ok(Self::File { file, len })
    }

    pub fn len(&self) -> u64 {
        match self {
            Self::Bytes(bytes) => bytes.len() as u64,
            Self::File { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for Artifact {
    fn default() -> Self {
        Self::Bytes(Vec::new())
    }
}

impl From<Vec<u8>> for Artifact {
    fn from(bytes: Vec<u8>) -> Self {
        Self::Bytes(bytes)
    }
}

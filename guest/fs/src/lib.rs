//! The guest's file tree, under the WASI layer: each preopened directory is a tree whose
//! read-only lower layer is the VMM's archive (`wasmcell_abi::archive`), read in place, and
//! whose writes live in guest memory, like a container's writable layer and just as ephemeral.
//!
//! Directories are expanded from the archive on first use; a file's content stays a borrowed
//! slice of the archive until it is first written, then it is copied ([`Contents`]). Every
//! path is resolved by [`resolve`], which never leaves the directory it starts from.
#![no_std]

extern crate alloc;

mod error;
mod node;
mod ops;
mod path;

pub use error::Error;
pub use node::{Contents, Dir, FileType, Kind, Node, NodeRef, Stat};
pub use ops::{attach_host_file, create_dir, link, open, read_link, remove_dir, rename, symlink, unlink, OpenFlags};
pub use path::{resolve, Resolved, MAX_SYMLINKS};

use alloc::vec::Vec;
use wasmcell_abi::archive::Archive;

/// The preopened directories of `archive`: `(guest path, root directory)` each.
pub fn preopens(archive: Archive<'static>) -> Vec<(&'static [u8], NodeRef)> {
    archive
        .roots()
        .filter_map(|index| Some((archive.entry(index)?.name, Node::from_archive(archive, index)?)))
        .collect()
}

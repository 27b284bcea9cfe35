//! Path operations: open (and create), make and remove directories, unlink, rename, symlinks.
//! Each resolves its paths with [`resolve`] first, so none can reach outside its start.

use crate::node::{Contents, Kind, Node, NodeRef};
use crate::path::{resolve, Resolved};
use crate::Error;
use alloc::rc::Rc;
use alloc::vec::Vec;

/// How [`open`] treats a missing or existing target.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenFlags {
    /// Create the file if it is missing.
    pub create: bool,
    /// Fail unless the target is a directory.
    pub directory: bool,
    /// With `create`: fail if the target exists.
    pub exclusive: bool,
    /// Cut an existing file to zero length.
    pub truncate: bool,
    /// Follow a symlink in the last component.
    pub follow: bool,
}

/// Opens (or creates) the file or directory at `path` from `start`.
pub fn open(start: &NodeRef, path: &[u8], flags: OpenFlags, now_ns: u64) -> Result<NodeRef, Error> {
    let resolved = resolve(start, path, flags.follow)?;
    let node = match resolved.node {
        Some(node) => {
            if flags.create && flags.exclusive {
                return Err(Error::Exist);
            }
            node
        }
        None => {
            let (Some((parent, name)), true) = (resolved.parent, flags.create) else { return Err(Error::NoEnt) };
            if flags.directory || resolved.trailing_slash {
                return Err(Error::IsDir);
            }
            let file = Node::new(Kind::File(Contents::Owned(Vec::new())), now_ns);
            insert(&parent, name, file.clone(), now_ns)?;
            return Ok(file);
        }
    };
    {
        let mut target = node.borrow_mut();
        match target.kind {
            Kind::Dir(_) if flags.truncate => return Err(Error::IsDir),
            Kind::Dir(_) => {}
            Kind::Symlink(_) if flags.directory => return Err(Error::NotDir),
            // Opening a symlink itself (no follow) is refused, as with O_NOFOLLOW.
            Kind::Symlink(_) => return Err(Error::Loop),
            Kind::File(_) if flags.directory || resolved.trailing_slash => return Err(Error::NotDir),
            Kind::File(_) if flags.truncate => target.set_size(0, now_ns)?,
            Kind::File(_) => {}
            // Truncated by the WASI layer, through the device, if it was opened for writing.
            Kind::Host(_) if flags.directory || resolved.trailing_slash => return Err(Error::NotDir),
            Kind::Host(_) => {}
        }
    }
    Ok(node)
}

/// Makes an empty directory at `path`.
pub fn create_dir(start: &NodeRef, path: &[u8], now_ns: u64) -> Result<(), Error> {
    let (parent, name) = missing(resolve(start, path, false)?)?;
    insert(&parent, name, Node::new_dir(now_ns), now_ns)
}

/// Makes a symlink at `path` whose target is `target` (not checked: it may dangle).
pub fn symlink(target: &[u8], start: &NodeRef, path: &[u8], now_ns: u64) -> Result<(), Error> {
    // An absolute target could only ever leave the preopen: refused, as wasmtime refuses it.
    if target.starts_with(b"/") {
        return Err(Error::Perm);
    }
    let resolved = resolve(start, path, false)?;
    if resolved.trailing_slash {
        return Err(Error::NoEnt);
    }
    let (parent, name) = missing(resolved)?;
    insert(&parent, name, Node::new(Kind::Symlink(Contents::Owned(target.to_vec())), now_ns), now_ns)
}

/// Makes `new` (from `new_start`) another name of the file at `old` (from `old_start`).
pub fn link(
    old_start: &NodeRef,
    old: &[u8],
    follow: bool,
    new_start: &NodeRef,
    new: &[u8],
    now_ns: u64,
) -> Result<(), Error> {
    let node = resolve(old_start, old, follow)?.node.ok_or(Error::NoEnt)?;
    if node.borrow().is_dir() {
        return Err(Error::Perm);
    }
    let resolved = resolve(new_start, new, false)?;
    // A new name ending in `/` names a directory, which a link to a file cannot be.
    if resolved.trailing_slash {
        return Err(Error::NoEnt);
    }
    let (parent, name) = missing(resolved)?;
    insert(&parent, name, node, now_ns)
}

/// A symlink's target.
pub fn read_link(start: &NodeRef, path: &[u8]) -> Result<Vec<u8>, Error> {
    let node = resolve(start, path, false)?.node.ok_or(Error::NoEnt)?;
    let node = node.borrow();
    match &node.kind {
        Kind::Symlink(target) => Ok(target.bytes().to_vec()),
        _ => Err(Error::Inval),
    }
}

/// Removes the empty directory at `path`.
pub fn remove_dir(start: &NodeRef, path: &[u8], now_ns: u64) -> Result<(), Error> {
    let (parent, name, node) = existing(resolve(start, path, false)?)?;
    if !node.borrow_mut().dir()?.is_empty() {
        return Err(Error::NotEmpty);
    }
    remove(&parent, &name, now_ns)
}

/// Removes the file or symlink at `path`.
pub fn unlink(start: &NodeRef, path: &[u8], now_ns: u64) -> Result<(), Error> {
    let resolved = resolve(start, path, false)?;
    let trailing_slash = resolved.trailing_slash;
    let (parent, name, node) = existing(resolved)?;
    if node.borrow().is_dir() {
        return Err(Error::IsDir);
    }
    if trailing_slash {
        return Err(Error::NotDir);
    }
    remove(&parent, &name, now_ns)
}

/// Moves `old` (from `old_start`) to `new` (from `new_start`), replacing what `new` names if
/// POSIX `rename` would.
pub fn rename(old_start: &NodeRef, old: &[u8], new_start: &NodeRef, new: &[u8], now_ns: u64) -> Result<(), Error> {
    let (old_parent, old_name, node) = existing(resolve(old_start, old, false)?)?;
    let target = resolve(new_start, new, false)?;
    let replaced = target.node.clone();
    let (new_parent, new_name) = target.parent.ok_or(Error::Inval)?;
    let moving_dir = node.borrow().is_dir();
    if let Some(replaced) = &replaced {
        if Rc::ptr_eq(replaced, &node) {
            return Ok(());
        }
        let mut replaced = replaced.borrow_mut();
        match (moving_dir, replaced.is_dir()) {
            (true, false) => return Err(Error::NotDir),
            (false, true) => return Err(Error::IsDir),
            (true, true) if !replaced.dir()?.is_empty() => return Err(Error::NotEmpty),
            _ => {}
        }
    }
    if moving_dir && (Rc::ptr_eq(&new_parent, &node) || contains(&node, &new_parent)) {
        return Err(Error::Inval);
    }
    remove(&old_parent, &old_name, now_ns)?;
    new_parent.borrow_mut().dir()?.insert(new_name, node);
    new_parent.borrow_mut().mtime_ns = now_ns;
    Ok(())
}

/// Whether `dir`'s subtree holds `needle`. Iterative: a workload can nest directories as deep
/// as its memory allows, far deeper than the guest's stack would take recursion.
fn contains(dir: &NodeRef, needle: &NodeRef) -> bool {
    let mut pending = alloc::vec![dir.clone()];
    while let Some(dir) = pending.pop() {
        let mut dir = dir.borrow_mut();
        let Kind::Dir(entries) = &mut dir.kind else { continue };
        for child in entries.entries().values() {
            if Rc::ptr_eq(child, needle) {
                return true;
            }
            pending.push(child.clone());
        }
    }
    false
}

fn missing(resolved: Resolved) -> Result<(NodeRef, Vec<u8>), Error> {
    match (resolved.parent, resolved.node) {
        (Some(parent), None) => Ok(parent),
        _ => Err(Error::Exist),
    }
}

fn existing(resolved: Resolved) -> Result<(NodeRef, Vec<u8>, NodeRef), Error> {
    match (resolved.parent, resolved.node) {
        (Some((parent, name)), Some(node)) => Ok((parent, name, node)),
        (None, Some(_)) => Err(Error::Inval),
        (_, None) => Err(Error::NoEnt),
    }
}

/// Places the host file `handle` at `path` beneath `root` (a file volume), making the
/// directories on the way that the tree lacks and replacing what was there. A component that
/// is a file or symlink in the tree stops it: `NotDir`.
pub fn attach_host_file(root: &NodeRef, path: &[u8], handle: u32, now_ns: u64) -> Result<(), Error> {
    let mut parts = path.split(|&b| b == b'/').filter(|p| !p.is_empty() && *p != b".");
    let Some(mut name) = parts.next() else { return Err(Error::Inval) };
    let mut dir = root.clone();
    for next in parts {
        if name == b".." {
            return Err(Error::Escape);
        }
        let child = dir.borrow_mut().dir()?.get(name).cloned();
        let child = match child {
            Some(child) if child.borrow().is_dir() => child,
            Some(_) => return Err(Error::NotDir),
            None => {
                let made = Node::new_dir(now_ns);
                insert(&dir, name.to_vec(), made.clone(), now_ns)?;
                made
            }
        };
        dir = child;
        name = next;
    }
    if name == b".." {
        return Err(Error::Escape);
    }
    insert(&dir, name.to_vec(), Node::new(Kind::Host(handle), now_ns), now_ns)
}

fn insert(parent: &NodeRef, name: Vec<u8>, node: NodeRef, now_ns: u64) -> Result<(), Error> {
    let mut parent = parent.borrow_mut();
    parent.dir()?.insert(name, node);
    parent.mtime_ns = now_ns;
    Ok(())
}

fn remove(parent: &NodeRef, name: &[u8], now_ns: u64) -> Result<(), Error> {
    let mut parent = parent.borrow_mut();
    parent.dir()?.remove(name).ok_or(Error::NoEnt)?;
    parent.mtime_ns = now_ns;
    Ok(())
}

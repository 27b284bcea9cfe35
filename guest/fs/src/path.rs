//! Path resolution, confined to the directory it starts from: an absolute path, a `..` above
//! the start, or a symlink whose target does either is refused with [`Error::Escape`], the
//! same rules cap-std enforces for wasmtime on the host.

use crate::node::{Kind, NodeRef};
use crate::Error;
use alloc::collections::VecDeque;
use alloc::vec::Vec;

/// Most symlinks followed while resolving one path (Linux's limit).
pub const MAX_SYMLINKS: u32 = 40;

/// Where a path leads.
#[derive(Debug)]
pub struct Resolved {
    /// The directory holding the last component and its name; `None` when the path names the
    /// start directory itself or ends in `.` or `..`.
    pub parent: Option<(NodeRef, Vec<u8>)>,
    /// The node the path names; `None` if only the last component is missing.
    pub node: Option<NodeRef>,
    /// The path ended with `/`: it must name a directory.
    pub trailing_slash: bool,
}

/// Resolves `path` from the directory `start`. A symlink in the last component is followed
/// only when `follow` is set (or the path ends in `/`); all others always are.
pub fn resolve(start: &NodeRef, path: &[u8], follow: bool) -> Result<Resolved, Error> {
    if path.is_empty() {
        return Err(Error::NoEnt);
    }
    if path[0] == b'/' {
        return Err(Error::Escape);
    }
    let trailing_slash = path.ends_with(b"/");
    let mut pending: VecDeque<Vec<u8>> = components(path).map(<[u8]>::to_vec).collect();
    // The directories walked through, `start` first: `..` pops, but never `start`.
    let mut stack: Vec<NodeRef> = alloc::vec![start.clone()];
    let mut symlinks = 0;
    loop {
        let Some(component) = pending.pop_front() else {
            // The path ended in `.`/`..` (or was only those): it names the directory on top.
            return Ok(Resolved { parent: None, node: stack.last().cloned(), trailing_slash });
        };
        let last = pending.is_empty();
        let dir = stack.last().expect("stack never empties").clone();
        match component.as_slice() {
            b"." => continue,
            b".." => {
                if stack.len() == 1 {
                    return Err(Error::Escape);
                }
                stack.pop();
                continue;
            }
            _ => {}
        }
        let child = dir.borrow_mut().dir()?.get(&component).cloned();
        let Some(child) = child else {
            if last {
                return Ok(Resolved { parent: Some((dir, component)), node: None, trailing_slash });
            }
            return Err(Error::NoEnt);
        };
        let target = match &child.borrow().kind {
            Kind::Symlink(target) if !last || follow || trailing_slash => Some(target.bytes().to_vec()),
            _ => None,
        };
        if let Some(target) = target {
            symlinks += 1;
            if symlinks > MAX_SYMLINKS {
                return Err(Error::Loop);
            }
            if target.is_empty() {
                return Err(Error::NoEnt);
            }
            if target[0] == b'/' {
                return Err(Error::Escape);
            }
            // The target's components replace the symlink's, relative to the same directory.
            for component in components(&target).rev() {
                pending.push_front(component.to_vec());
            }
            continue;
        }
        if last {
            return Ok(Resolved { parent: Some((dir, component)), node: Some(child), trailing_slash });
        }
        if !child.borrow().is_dir() {
            return Err(Error::NotDir);
        }
        stack.push(child);
    }
}

fn components(path: &[u8]) -> impl DoubleEndedIterator<Item = &[u8]> {
    path.split(|&b| b == b'/').filter(|c| !c.is_empty())
}

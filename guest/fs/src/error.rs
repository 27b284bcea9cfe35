//! Why a file-tree operation failed; the WASI layer turns each into its `errno`.

/// A file-tree error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// No such file or directory.
    NoEnt,
    /// It already exists.
    Exist,
    /// A path component, or the target, is not a directory.
    NotDir,
    /// The target is a directory.
    IsDir,
    /// The directory is not empty.
    NotEmpty,
    /// The path leads outside the directory it is resolved in (`..`, absolute paths, symlinks).
    Escape,
    /// Not allowed for this target (e.g. a hard link to a directory).
    Perm,
    /// Too many symlinks.
    Loop,
    /// Not valid for this target (e.g. renaming a directory into itself).
    Inval,
    /// Guest memory is exhausted.
    NoSpace,
    /// An offset or size too large.
    TooBig,
}

//! Everything that can go wrong when reading energy counters, with the fix where one exists.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file or device exists but this process may not read it.
    #[error("permission denied: {path}")]
    PermissionDenied { path: PathBuf, fix: String },

    /// The file, directory or device does not exist.
    #[error("not found: {path} ({why})")]
    Missing {
        path: PathBuf,
        why: String,
        fix: String,
    },

    /// The file exists but its content is not what the kernel writes there.
    #[error("malformed {path}: {detail}")]
    Malformed { path: PathBuf, detail: String },

    /// Any other I/O failure.
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// The path the error is about.
    pub fn path(&self) -> &std::path::Path {
        match self {
            Error::PermissionDenied { path, .. }
            | Error::Missing { path, .. }
            | Error::Malformed { path, .. }
            | Error::Io { path, .. } => path,
        }
    }

    /// What the user can do about it, when there is something to do.
    pub fn fix(&self) -> Option<&str> {
        match self {
            Error::PermissionDenied { fix, .. } | Error::Missing { fix, .. } => Some(fix),
            Error::Malformed { .. } | Error::Io { .. } => None,
        }
    }

    /// A short machine-readable tag: "permission", "missing", "malformed", "io".
    pub fn kind(&self) -> &'static str {
        match self {
            Error::PermissionDenied { .. } => "permission",
            Error::Missing { .. } => "missing",
            Error::Malformed { .. } => "malformed",
            Error::Io { .. } => "io",
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

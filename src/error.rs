//! One error type for the whole crate: every message names the file, line or field at fault.

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The operating system refused a read or write.
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// A file's bytes do not form what they claim to be (truncated, corrupt, unsupported).
    #[error("{source_name}: {message}")]
    Format {
        source_name: String,
        message: String,
    },
    /// A request that cannot be carried out as asked (a prompt longer than the context, a bad option).
    #[error("{0}")]
    Input(String),
    /// The compute device failed: a read-back from the GPU, a lost device.
    #[error("{0}")]
    Device(String),
    /// A model or batch that the device cannot hold, known before allocating (see
    /// [`crate::memory`]).
    #[error(
        "out of memory on {device}: {what} needs {} but {device} allows {} for {limit_of}; use the CPU, a smaller model or smaller batches",
        crate::memory::Bytes(*asked),
        crate::memory::Bytes(*limit)
    )]
    OutOfMemory {
        device: String,
        what: String,
        asked: u64,
        limit: u64,
        limit_of: String,
    },
    /// A call the lab's current state does not allow (a run step before a run is started, a
    /// method that needs a reward model before one is trained, …): the page says what to do first.
    #[error("{0}")]
    LabState(String),
    /// A data-parallel run failed between its replicas: a collective operation, a node that
    /// stopped answering, nodes that disagree on the model, data or settings.
    #[error("{0}")]
    Distributed(String),
    /// A download failed or gave other bytes than those pinned.
    #[error("{url}: {message}")]
    Download { url: String, message: String },
    /// Another program the lab runs (the benchmark's PyTorch twin) could not start, failed, or
    /// wrote what cannot be read.
    #[error("{program}: {message}")]
    External { program: String, message: String },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn format(source_name: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Format {
            source_name: source_name.into(),
            message: message.into(),
        }
    }

    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// Reads a whole file, naming it in the error.
pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

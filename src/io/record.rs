//! burn records as bytes (named MessagePack, full precision): the exact state of a module or an
//! optimiser, parameter ids included, so a resumed run continues bit for bit.

use crate::backend::Backend;
use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Record, Recorder};

use crate::error::{Error, Result};

type Bytes = NamedMpkBytesRecorder<FullPrecisionSettings>;

pub fn to_bytes<B: Backend, R: Record<B>>(record: R) -> Result<Vec<u8>> {
    Recorder::<B>::record(&Bytes::default(), record, ())
        .map_err(|e| Error::Input(format!("could not serialise a record: {e}")))
}

/// Reads a record written by [`to_bytes`]; `source` names the file in the error.
pub fn from_bytes<B: Backend, R: Record<B>>(
    bytes: Vec<u8>,
    source: &str,
    device: &B::Device,
) -> Result<R> {
    Recorder::<B>::load(&Bytes::default(), bytes, device).map_err(|e| {
        Error::Input(format!(
            "{source}: not a checkpoint record of this model or optimiser ({e})"
        ))
    })
}

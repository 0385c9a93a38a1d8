//! The project's own checkpoints: one safetensors file whose header metadata carries the model
//! config and the tokenizer, so a single file is a complete, self-describing policy.

use std::collections::HashMap;

use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;

use super::tokenizer::Tokenizer;
use crate::error::{Error, Result};
use crate::model::weights::{HostTensor, NamedWeights};
use crate::model::LlamaConfig;

const FORMAT: &str = "alignlab";
const FORMAT_VERSION: &str = "1";

/// Serialises weights, config and tokenizer into safetensors bytes.
pub fn to_bytes(config: &LlamaConfig, weights: &NamedWeights, tokenizer: &Tokenizer) -> Vec<u8> {
    to_bytes_with_metadata(config, weights, tokenizer, &[])
}

/// As [`to_bytes`], with further metadata entries (a reward model's description).
pub fn to_bytes_with_metadata(
    config: &LlamaConfig,
    weights: &NamedWeights,
    tokenizer: &Tokenizer,
    extra: &[(&str, String)],
) -> Vec<u8> {
    let raw: Vec<(String, Vec<usize>, Vec<u8>)> = weights
        .tensors
        .iter()
        .map(|(name, t)| {
            let bytes = t.data.iter().flat_map(|v| v.to_le_bytes()).collect();
            (name.clone(), t.shape.clone(), bytes)
        })
        .collect();
    let views = raw.iter().map(|(name, shape, bytes)| {
        (
            name.as_str(),
            TensorView::new(Dtype::F32, shape.clone(), bytes).expect("shape matches data"),
        )
    });
    let mut metadata = HashMap::from([
        ("format".to_string(), FORMAT.to_string()),
        ("format_version".to_string(), FORMAT_VERSION.to_string()),
        (
            "config".to_string(),
            serde_json::to_string(config).expect("config serialises"),
        ),
        ("tokenizer".to_string(), tokenizer.to_json()),
    ]);
    for (key, value) in extra {
        metadata.insert(key.to_string(), value.clone());
    }
    safetensors::serialize(views, Some(metadata)).expect("in-memory serialisation")
}

pub fn is_safetensors(bytes: &[u8]) -> bool {
    // An 8-byte little-endian header length, then a JSON object.
    bytes.len() > 9 && bytes[8] == b'{'
}

/// One header metadata entry of a safetensors file, if the file has it.
pub fn metadata_entry(bytes: &[u8], key: &str) -> Option<String> {
    let (_, header) = SafeTensors::read_metadata(bytes).ok()?;
    header.metadata().as_ref()?.get(key).cloned()
}

/// Reads a checkpoint written by [`to_bytes`].
pub fn from_bytes(
    bytes: &[u8],
    source_name: &str,
) -> Result<(LlamaConfig, NamedWeights, Tokenizer)> {
    let bad = |message: String| Error::format(source_name, message);
    let (_, header) = SafeTensors::read_metadata(bytes)
        .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
    let metadata = header.metadata().clone().unwrap_or_default();
    if metadata.get("format").map(String::as_str) != Some(FORMAT) {
        return Err(bad(
            "safetensors file has no alignlab metadata (format, config, tokenizer)".into(),
        ));
    }
    let field = |key: &str| {
        metadata
            .get(key)
            .ok_or_else(|| bad(format!("metadata field `{key}` is missing")))
    };
    let config: LlamaConfig = serde_json::from_str(field("config")?)
        .map_err(|e| bad(format!("metadata field `config`: {e}")))?;
    config.validate(source_name)?;
    let tokenizer = Tokenizer::from_json(field("tokenizer")?, source_name)?;
    let tensors =
        SafeTensors::deserialize(bytes).map_err(|e| bad(format!("corrupt safetensors: {e}")))?;
    let mut weights = NamedWeights::new(source_name);
    for (name, view) in tensors.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(bad(format!(
                "tensor `{name}` has dtype {:?}; checkpoints hold F32",
                view.dtype()
            )));
        }
        let data = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        weights.insert(name, HostTensor::new(view.shape().to_vec(), data));
    }
    Ok((config, weights, tokenizer))
}

//! Weights on the host, by name, between a file format and the model. Every loader produces this
//! map and the model is built from it in one place, so each format only knows how to read bytes.
//!
//! Names follow Hugging Face's Llama (`model.layers.0.self_attn.q_proj.weight`, shapes
//! `[out, in]`), with one difference: q/k rows are in the interleaved-pair RoPE order used by
//! llama.cpp (GGUF) and llama2.c, not HF's rotate-half order.

use std::collections::BTreeMap;

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl HostTensor {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Self { shape, data }
    }

    /// A matrix's transpose ([out, in] ↔ [in, out]).
    pub fn transposed(self) -> Self {
        let (rows, cols) = (self.shape[0], self.shape[1]);
        let mut data = vec![0.0; rows * cols];
        for r in 0..rows {
            for c in 0..cols {
                data[c * rows + r] = self.data[r * cols + c];
            }
        }
        Self::new(vec![cols, rows], data)
    }

    /// Rows `start..start + count` of a matrix, or elements of a vector.
    pub fn rows(&self, start: usize, count: usize) -> Self {
        let width: usize = self.shape[1..].iter().product();
        let mut shape = self.shape.clone();
        shape[0] = count;
        Self::new(
            shape,
            self.data[start * width..(start + count) * width].to_vec(),
        )
    }

    /// Rows (or vector elements) stacked in order.
    pub fn concat_rows(parts: &[HostTensor]) -> Self {
        let mut shape = parts[0].shape.clone();
        shape[0] = parts.iter().map(|p| p.shape[0]).sum();
        Self::new(
            shape,
            parts.iter().flat_map(|p| p.data.iter().copied()).collect(),
        )
    }
}

#[derive(Debug, Clone, Default)]
pub struct NamedWeights {
    pub source_name: String,
    pub tensors: BTreeMap<String, HostTensor>,
}

impl NamedWeights {
    pub fn new(source_name: impl Into<String>) -> Self {
        Self {
            source_name: source_name.into(),
            tensors: BTreeMap::new(),
        }
    }

    pub fn insert(&mut self, name: impl Into<String>, tensor: HostTensor) {
        self.tensors.insert(name.into(), tensor);
    }

    /// Takes a tensor out, checking its shape; the error names the file, the tensor and both shapes.
    pub fn take(&mut self, name: &str, shape: &[usize]) -> Result<HostTensor> {
        let tensor = self
            .tensors
            .remove(name)
            .ok_or_else(|| Error::format(&self.source_name, format!("missing tensor `{name}`")))?;
        if tensor.shape != shape {
            return Err(Error::format(
                &self.source_name,
                format!(
                    "tensor `{name}` has shape {:?}, expected {:?}",
                    tensor.shape, shape
                ),
            ));
        }
        Ok(tensor)
    }

    /// The same tensors with every name prefixed (how one file holds several models).
    pub fn prefixed(self, prefix: &str) -> Self {
        Self {
            source_name: self.source_name,
            tensors: self
                .tensors
                .into_iter()
                .map(|(name, t)| (format!("{prefix}{name}"), t))
                .collect(),
        }
    }

    /// Takes out every tensor whose name starts with `prefix`, with the prefix removed.
    pub fn take_prefixed(&mut self, prefix: &str) -> Self {
        let names: Vec<String> = self
            .tensors
            .keys()
            .filter(|n| n.starts_with(prefix))
            .cloned()
            .collect();
        let mut out = Self::new(format!("{} ({prefix}…)", self.source_name));
        for name in names {
            let tensor = self.tensors.remove(&name).expect("listed");
            out.insert(&name[prefix.len()..], tensor);
        }
        out
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }
}

/// Which way the q/k rows of one head are being reordered. transformers (and llama.cpp's NEOX
/// rope, used for Qwen) rotates the two halves of each head; we rotate interleaved pairs.
/// Attention scores are unchanged when queries and keys are permuted alike.
#[derive(Clone, Copy)]
pub enum RopeOrder {
    /// transformers' halves → interleaved pairs (loading).
    ToInterleaved,
    /// interleaved pairs → halves (exporting).
    ToHalves,
}

/// Reorders the rows (or elements) of every head of a q/k projection.
pub fn permute_heads(tensor: HostTensor, head_dim: usize, order: RopeOrder) -> HostTensor {
    let width: usize = tensor.shape[1..].iter().product();
    let mut data = vec![0.0; tensor.data.len()];
    let half = head_dim / 2;
    for head_start in (0..tensor.shape[0]).step_by(head_dim) {
        for i in 0..half {
            for (interleaved, halves) in [(2 * i, i), (2 * i + 1, i + half)] {
                let (to, from) = match order {
                    RopeOrder::ToInterleaved => (interleaved, halves),
                    RopeOrder::ToHalves => (halves, interleaved),
                };
                let (to, from) = ((head_start + to) * width, (head_start + from) * width);
                data[to..to + width].copy_from_slice(&tensor.data[from..from + width]);
            }
        }
    }
    HostTensor::new(tensor.shape, data)
}

pub mod names {
    pub const EMBED: &str = "model.embed_tokens.weight";
    pub const FINAL_NORM: &str = "model.norm.weight";
    pub const LM_HEAD: &str = "lm_head.weight";
    /// Learned position embeddings (GPT-2's `wpe`).
    pub const POSITIONS: &str = "model.embed_positions.weight";

    pub fn layer(index: usize, suffix: &str) -> String {
        format!("model.layers.{index}.{suffix}")
    }
    pub const Q: &str = "self_attn.q_proj.weight";
    pub const K: &str = "self_attn.k_proj.weight";
    pub const V: &str = "self_attn.v_proj.weight";
    pub const O: &str = "self_attn.o_proj.weight";
    pub const GATE: &str = "mlp.gate_proj.weight";
    pub const UP: &str = "mlp.up_proj.weight";
    pub const DOWN: &str = "mlp.down_proj.weight";
    pub const ATTN_NORM: &str = "input_layernorm.weight";
    pub const MLP_NORM: &str = "post_attention_layernorm.weight";
    pub const Q_NORM: &str = "self_attn.q_norm.weight";
    pub const K_NORM: &str = "self_attn.k_norm.weight";

    /// Whether a tensor holds query/key rows in RoPE's order (projections, their biases, per-head
    /// norms).
    pub fn is_rotated(name: &str) -> bool {
        [Q, K, Q_NORM, K_NORM]
            .iter()
            .any(|suffix| name.ends_with(suffix) || name.ends_with(&bias_of(suffix)))
    }

    /// The bias beside a weight: `….q_proj.weight` → `….q_proj.bias`.
    pub fn bias_of(weight: &str) -> String {
        format!("{}.bias", weight.strip_suffix(".weight").unwrap_or(weight))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rope_permutation_is_undone_on_export() {
        let tensor = HostTensor::new(vec![8, 2], (0..16).map(|v| v as f32).collect());
        let inward = permute_heads(tensor.clone(), 4, RopeOrder::ToInterleaved);
        // Head 0 rows [0 1 2 3] in halves order → [0 2 1 3] interleaved.
        assert_eq!(&inward.data[..8], &[0., 1., 4., 5., 2., 3., 6., 7.]);
        assert_eq!(permute_heads(inward, 4, RopeOrder::ToHalves), tensor);
    }
}

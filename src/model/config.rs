//! Hyperparameters of the Llama-style decoder, whatever file they came from.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub dim: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    /// Grouped-query attention: each key/value head serves `n_heads / n_kv_heads` query heads.
    pub n_kv_heads: usize,
    /// Width of the SwiGLU hidden layer.
    pub hidden_dim: usize,
    /// Longest sequence (prompt + completion) the model is used with; RoPE tables are this long.
    pub max_seq_len: usize,
    pub norm_eps: f64,
    /// RoPE base frequency (10,000 in Llama 1/2 and llama2.c).
    pub rope_theta: f64,
}

/// Sizes beyond these are not small models and almost surely a corrupt header.
const MAX_DIM: usize = 1 << 16;
const MAX_LAYERS: usize = 1 << 10;
const MAX_VOCAB: usize = 1 << 21;
const MAX_SEQ: usize = 1 << 20;

impl LlamaConfig {
    /// A model small enough for unit tests of code around the model.
    #[cfg(test)]
    pub(crate) fn tiny() -> Self {
        Self {
            vocab_size: 16,
            dim: 8,
            n_layers: 1,
            n_heads: 2,
            n_kv_heads: 1,
            hidden_dim: 12,
            max_seq_len: 16,
            norm_eps: 1e-5,
            rope_theta: 10_000.0,
        }
    }

    pub fn head_dim(&self) -> usize {
        self.dim / self.n_heads
    }

    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim()
    }

    /// Checks that the shapes are consistent and plausible; `source_name` goes into the error.
    pub fn validate(&self, source_name: &str) -> Result<()> {
        let bad = |message: String| Err(Error::format(source_name, message));
        let fields = [
            ("vocab_size", self.vocab_size, MAX_VOCAB),
            ("dim", self.dim, MAX_DIM),
            ("n_layers", self.n_layers, MAX_LAYERS),
            ("n_heads", self.n_heads, MAX_DIM),
            ("n_kv_heads", self.n_kv_heads, MAX_DIM),
            ("hidden_dim", self.hidden_dim, MAX_DIM * 8),
            ("max_seq_len", self.max_seq_len, MAX_SEQ),
        ];
        for (name, value, max) in fields {
            if value == 0 || value > max {
                return bad(format!(
                    "header field {name} = {value} is outside 1..={max}"
                ));
            }
        }
        if !self.dim.is_multiple_of(self.n_heads) {
            return bad(format!(
                "dim {} is not divisible by n_heads {}",
                self.dim, self.n_heads
            ));
        }
        if !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return bad(format!(
                "n_heads {} is not divisible by n_kv_heads {}",
                self.n_heads, self.n_kv_heads
            ));
        }
        if !self.head_dim().is_multiple_of(2) {
            return bad(format!(
                "head size {} is odd; rotary embeddings need an even head size",
                self.head_dim()
            ));
        }
        if !(self.norm_eps > 0.0 && self.norm_eps < 1.0) {
            return bad(format!("norm_eps {} is outside (0, 1)", self.norm_eps));
        }
        if !(self.rope_theta > 1.0 && self.rope_theta.is_finite()) {
            return bad(format!(
                "rope_theta {} must be finite and > 1",
                self.rope_theta
            ));
        }
        Ok(())
    }

    /// Number of parameters of the policy (embedding, blocks, final norm, output head).
    pub fn num_params(&self) -> usize {
        let per_layer = 2 * self.dim
            + self.dim * self.dim * 2
            + 2 * self.dim * self.kv_dim()
            + 3 * self.dim * self.hidden_dim;
        2 * self.vocab_size * self.dim + self.n_layers * per_layer + self.dim
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn stories260k() -> LlamaConfig {
        LlamaConfig {
            vocab_size: 512,
            dim: 64,
            n_layers: 5,
            n_heads: 8,
            n_kv_heads: 4,
            hidden_dim: 172,
            max_seq_len: 512,
            norm_eps: 1e-5,
            rope_theta: 10_000.0,
        }
    }

    #[test]
    fn stories260k_has_the_parameter_count_hf_reports() {
        // Its GGUF has a separate output head, which HF counts.
        assert_eq!(stories260k().num_params(), 292_800);
    }

    #[test]
    fn implausible_headers_are_rejected_with_the_field_name() {
        let mut config = stories260k();
        config.n_kv_heads = 3;
        let message = config.validate("m.bin").unwrap_err().to_string();
        assert!(
            message.contains("m.bin") && message.contains("n_kv_heads"),
            "{message}"
        );
        let mut config = stories260k();
        config.dim = usize::MAX;
        let message = config.validate("m.bin").unwrap_err().to_string();
        assert!(message.contains("dim"), "{message}");
    }
}

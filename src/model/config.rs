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
    /// Where the checkpoint family departs from the Llama block (none for stories260K-class
    /// files and alignlab's own; absent in checkpoints written before it existed).
    #[serde(default)]
    pub arch: Architecture,
}

/// The block as Llama has it, unless a field says otherwise. One decoder with these switches
/// covers Llama, Mistral, Qwen2, Qwen3 and GPT-2, as llama.cpp's one graph does.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Architecture {
    /// The family, as `config.json`'s `model_type` names it (`llama`, `qwen2`, …); exports
    /// write it back.
    pub family: Family,
    /// Width of one attention head when it is not `dim / n_heads` (Qwen3, some Llamas).
    pub head_dim: Option<usize>,
    /// Bias on the query, key and value projections (Qwen2).
    pub qkv_bias: bool,
    /// Bias on the attention output and the MLP projections (GPT-2; Llama's `attention_bias`
    /// and `mlp_bias`).
    pub out_bias: bool,
    pub mlp_bias: bool,
    /// RMSNorm over each query and key head before RoPE (Qwen3).
    pub qk_norm: bool,
    /// The output head is the token embedding (its gradient is the sum of both uses).
    pub tied_embeddings: bool,
    pub rope_scaling: Option<RopeScaling>,
    /// The context the checkpoint states when it is longer than the RoPE tables built here
    /// ([`MAX_CONTEXT`]); exports write it back.
    pub stated_context: Option<usize>,
}

/// Which decoder the switches of [`Architecture`] modify.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// RMSNorm, RoPE, SwiGLU (Llama, Mistral, Qwen2, Qwen3: they differ by the switches).
    #[default]
    Llama,
    Mistral,
    Qwen2,
    Qwen3,
    /// LayerNorm with bias, learned positions, GELU (tanh) MLP, biases everywhere.
    Gpt2,
}

impl Family {
    pub fn is_gpt2(self) -> bool {
        self == Family::Gpt2
    }
}

/// How RoPE frequencies are stretched for long contexts (`rope_scaling` in `config.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum RopeScaling {
    /// Every frequency divided by `factor` (position interpolation).
    Linear { factor: f64 },
    /// Llama 3.1's: long wavelengths divided by `factor`, short ones kept, a smooth ramp between.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: f64,
    },
}

impl RopeScaling {
    /// The rotation frequency θ_i after scaling.
    pub fn apply(&self, theta: f64) -> f64 {
        match *self {
            RopeScaling::Linear { factor } => theta / factor,
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings: original,
            } => {
                let wavelength = 2.0 * std::f64::consts::PI / theta;
                if wavelength < original / high_freq_factor {
                    theta
                } else if wavelength > original / low_freq_factor {
                    theta / factor
                } else {
                    let smooth = (original / wavelength - low_freq_factor)
                        / (high_freq_factor - low_freq_factor);
                    (1.0 - smooth) * theta / factor + smooth * theta
                }
            }
        }
    }
}

/// RoPE tables are built for this many positions at most: enough for the lab's sequences,
/// without 128k-position tables for a Llama 3 or a Qwen. A longer sequence is an error naming
/// the context.
pub const MAX_CONTEXT: usize = 4096;

/// Sizes beyond these are not small models and almost surely a corrupt header.
const MAX_DIM: usize = 1 << 16;
const MAX_LAYERS: usize = 1 << 10;
const MAX_VOCAB: usize = 1 << 21;
const MAX_SEQ: usize = 1 << 20;

/// Shapes a `random:NAME` model takes (random weights, for benchmarks and experiments at a
/// size no checkpoint at hand has).
pub const RANDOM_SHAPES: &[&str] = &["llama-124m", "stories260k"];

impl LlamaConfig {
    /// A shape of [`RANDOM_SHAPES`]: `llama-124m` is GPT-2 small's size as a Llama (768 wide,
    /// 12 layers of 12 heads, GPT-2's 50,257-token vocabulary tied to the output head, 1,024
    /// positions, and a 2,080-wide SwiGLU, which brings it to GPT-2 small's 124.4M parameters);
    /// `stories260k` is stories260K's.
    pub fn random_shape(name: &str) -> Option<Self> {
        let llama =
            |vocab_size, dim, n_layers, n_heads, n_kv_heads, hidden_dim, max_seq_len| Self {
                vocab_size,
                dim,
                n_layers,
                n_heads,
                n_kv_heads,
                hidden_dim,
                max_seq_len,
                norm_eps: 1e-5,
                rope_theta: 10_000.0,
                arch: Architecture::default(),
            };
        match name {
            "llama-124m" => {
                let mut config = llama(50_257, 768, 12, 12, 12, 2080, 1024);
                config.arch.tied_embeddings = true;
                Some(config)
            }
            "stories260k" => Some(llama(512, 64, 5, 8, 4, 172, 512)),
            _ => None,
        }
    }

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
            arch: Architecture::default(),
        }
    }

    pub fn head_dim(&self) -> usize {
        self.arch.head_dim.unwrap_or(self.dim / self.n_heads)
    }

    /// Width of all query heads together (`dim` unless the head width is explicit).
    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim()
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
        if self.arch.head_dim.is_none() && !self.dim.is_multiple_of(self.n_heads) {
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
        if self.head_dim() == 0 || self.head_dim() > MAX_DIM {
            return bad(format!(
                "head_dim {} is outside 1..={MAX_DIM}",
                self.head_dim()
            ));
        }
        if !self.arch.family.is_gpt2() && !self.head_dim().is_multiple_of(2) {
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

    /// Number of parameters of the policy (embedding, blocks, final norm, output head), as
    /// transformers counts them.
    pub fn num_params(&self) -> usize {
        let arch = &self.arch;
        let (dim, q_dim, kv_dim, hidden) = (self.dim, self.q_dim(), self.kv_dim(), self.hidden_dim);
        let gpt2 = arch.family.is_gpt2();
        let norm = if gpt2 { 2 * dim } else { dim };
        let mlp_matrices = if gpt2 { 2 } else { 3 };
        let per_layer = 2 * norm
            + 2 * dim * q_dim
            + 2 * dim * kv_dim
            + mlp_matrices * dim * hidden
            + usize::from(arch.qkv_bias) * (q_dim + 2 * kv_dim)
            + usize::from(arch.out_bias) * dim
            + usize::from(arch.mlp_bias) * (hidden * (mlp_matrices - 1) + dim)
            + usize::from(arch.qk_norm) * 2 * self.head_dim();
        let head = if arch.tied_embeddings {
            0
        } else {
            self.vocab_size * dim
        };
        let positions = if gpt2 { self.max_seq_len * dim } else { 0 };
        self.vocab_size * dim + head + positions + self.n_layers * per_layer + norm
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
            arch: Default::default(),
        }
    }

    #[test]
    fn stories260k_has_the_parameter_count_hf_reports() {
        // Its GGUF has a separate output head, which HF counts.
        assert_eq!(stories260k().num_params(), 292_800);
    }

    #[test]
    fn the_random_shapes_have_their_stated_sizes() {
        let gpt2_small = LlamaConfig::random_shape("llama-124m").unwrap();
        // GPT-2 small has 124,439,808 (transformers' count).
        assert_eq!(gpt2_small.num_params(), 124_435_968);
        let shape = LlamaConfig::random_shape("stories260k").unwrap();
        assert_eq!(shape.num_params(), stories260k().num_params());
        for name in RANDOM_SHAPES {
            LlamaConfig::random_shape(name)
                .unwrap()
                .validate(name)
                .unwrap();
        }
        assert!(LlamaConfig::random_shape("gpt-5").is_none());
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

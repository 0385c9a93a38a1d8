//! A Llama-style decoder (Touvron et al. 2023): token embedding, pre-norm blocks of RMSNorm →
//! grouped-query attention with rotary embeddings → RMSNorm → SwiGLU MLP, final RMSNorm, output
//! head. Layout choices for speed on small models: q/k/v are one matmul and gate/up another.
//!
//! Two entry points share the blocks: [`Llama::forward_hidden`] for whole right-padded sequences
//! (scoring, training: positions 0..T, causal attention), and [`Llama::forward_cached`] for
//! incremental decoding with left-padded prompts and a [`KvCache`].

use burn::module::{Module, Param};
use burn::tensor::activation::silu;
use burn::tensor::backend::Backend;
use burn::tensor::module::{attention, embedding};
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Int, Tensor, TensorData};

use super::cache::KvCache;
use super::config::LlamaConfig;
use super::weights::{names, HostTensor, NamedWeights};
use crate::error::Result;
use crate::host::read_vec;
use crate::ops::reciprocal;

#[derive(Module, Debug)]
pub struct Block<B: Backend> {
    attn_norm: Param<Tensor<B, 1>>,
    /// [dim, n_heads·head_dim]
    wq: Param<Tensor<B, 2>>,
    /// [dim, n_kv_heads·head_dim] each
    wk: Param<Tensor<B, 2>>,
    wv: Param<Tensor<B, 2>>,
    /// [dim, dim]
    wo: Param<Tensor<B, 2>>,
    mlp_norm: Param<Tensor<B, 1>>,
    /// [dim, hidden_dim] each. Two matmuls rather than one fused and split: the split halves
    /// would be strided views, which the CPU backend's elementwise kernels walk slowly.
    w_gate: Param<Tensor<B, 2>>,
    w_up: Param<Tensor<B, 2>>,
    /// [hidden_dim, dim]
    w_down: Param<Tensor<B, 2>>,
}

#[derive(Module, Debug)]
pub struct Llama<B: Backend> {
    /// [vocab, dim]
    embed: Param<Tensor<B, 2>>,
    blocks: Vec<Block<B>>,
    final_norm: Param<Tensor<B, 1>>,
    /// [dim, vocab]
    lm_head: Param<Tensor<B, 2>>,
    /// Rotary tables for the query and key projections; constants, not parameters.
    rope_q: Rope<B>,
    rope_k: Rope<B>,
    #[module(skip)]
    config: LlamaConfig,
}

/// Which keys a query may see.
enum AttentionMask<B: Backend> {
    /// Keys up to the query's own position, nothing else masked.
    Causal,
    /// `true` = hidden; [batch, 1, q_len, k_len], broadcast over heads.
    Explicit(Tensor<B, 4, Bool>),
}

/// `x @ w` for a batch of sequences, as one 2-D matmul.
fn linear<B: Backend>(x: Tensor<B, 3>, w: Tensor<B, 2>) -> Tensor<B, 3> {
    let [batch, seq, d_in] = x.dims();
    let d_out = w.dims()[1];
    x.reshape([batch * seq, d_in])
        .matmul(w)
        .reshape([batch, seq, d_out])
}

fn rms_norm<B: Backend>(x: Tensor<B, 3>, weight: Tensor<B, 1>, eps: f64) -> Tensor<B, 3> {
    let inv_rms = reciprocal(x.clone().powi_scalar(2).mean_dim(2).add_scalar(eps).sqrt()); // [B, T, 1]
    x * inv_rms * weight.unsqueeze::<3>()
}

/// Rotary position embeddings on a whole projection ([B, T, heads·head_dim]), rotating the
/// interleaved pairs (x[2i], x[2i+1]) of each head by position·θ_i as llama.cpp and llama2.c do:
/// `x·cos + (x·P)·sin`, where P swaps each pair and negates its first element. Everything stays
/// contiguous in the projection's own layout (no 5-D views), which the CPU backend needs to be fast.
#[derive(Module, Debug)]
pub struct Rope<B: Backend> {
    /// [max_seq_len, heads·head_dim]: cos(p·θ_i) at both elements of pair i of every head.
    cos: Tensor<B, 2>,
    sin: Tensor<B, 2>,
    /// [heads·head_dim, heads·head_dim]: the pair swap with sign.
    swap: Tensor<B, 2>,
}

impl<B: Backend> Rope<B> {
    fn new(config: &LlamaConfig, heads: usize, device: &B::Device) -> Self {
        let head_dim = config.head_dim();
        let width = heads * head_dim;
        let mut cos = Vec::with_capacity(config.max_seq_len * width);
        let mut sin = Vec::with_capacity(config.max_seq_len * width);
        for position in 0..config.max_seq_len {
            for _ in 0..heads {
                for i in 0..head_dim / 2 {
                    let theta = config.rope_theta.powf(-(2.0 * i as f64) / head_dim as f64);
                    let angle = position as f64 * theta;
                    cos.extend([angle.cos() as f32; 2]);
                    sin.extend([angle.sin() as f32; 2]);
                }
            }
        }
        let mut swap = vec![0.0f32; width * width];
        for pair in (0..width).step_by(2) {
            swap[(pair + 1) * width + pair] = -1.0; // out[2i] = −x[2i+1]
            swap[pair * width + pair + 1] = 1.0; // out[2i+1] = x[2i]
        }
        let table = |data: Vec<f32>| {
            tensor(
                HostTensor::new(vec![config.max_seq_len, width], data),
                device,
            )
        };
        Self {
            cos: table(cos),
            sin: table(sin),
            swap: tensor(HostTensor::new(vec![width, width], swap), device),
        }
    }

    /// The rotation for positions 0..seq, shared by every row (tables [1, seq, width]).
    fn leading(&self, seq: usize) -> Rotation<B> {
        let width = self.swap.dims()[0];
        Rotation {
            cos: self.cos.clone().narrow(0, 0, seq).reshape([1, seq, width]),
            sin: self.sin.clone().narrow(0, 0, seq).reshape([1, seq, width]),
            swap: self.swap.clone(),
        }
    }

    /// The rotation at each row's own positions ([B, T] → tables [B, T, width]).
    fn at(&self, positions: Tensor<B, 2, Int>) -> Rotation<B> {
        let [batch, seq] = positions.dims();
        let width = self.swap.dims()[0];
        let flat = positions.reshape([batch * seq]);
        let rows = |table: &Tensor<B, 2>, index: Tensor<B, 1, Int>| {
            table.clone().select(0, index).reshape([batch, seq, width])
        };
        Rotation {
            cos: rows(&self.cos, flat.clone()),
            sin: rows(&self.sin, flat),
            swap: self.swap.clone(),
        }
    }
}

/// RoPE at the positions of one forward pass.
struct Rotation<B: Backend> {
    /// [B or 1, T, width]
    cos: Tensor<B, 3>,
    sin: Tensor<B, 3>,
    swap: Tensor<B, 2>,
}

impl<B: Backend> Rotation<B> {
    /// x: [B, T, width] → the same, rotated.
    fn apply(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let swapped = linear(x.clone(), self.swap.clone());
        x * self.cos.clone() + swapped * self.sin.clone()
    }
}

/// The rotations a forward pass applies to queries and keys.
struct RopeTables<B: Backend> {
    q: Rotation<B>,
    k: Rotation<B>,
}

impl<B: Backend> Block<B> {
    fn forward(
        &self,
        x: Tensor<B, 3>,
        config: &LlamaConfig,
        rope: &RopeTables<B>,
        mask: &AttentionMask<B>,
        cache: Option<(&mut KvCache<B>, usize)>,
    ) -> Tensor<B, 3> {
        let [batch, seq, dim] = x.dims();
        let (n_heads, n_kv, head_dim) = (config.n_heads, config.n_kv_heads, config.head_dim());
        let h = rms_norm(x.clone(), self.attn_norm.val(), config.norm_eps);
        let q = linear(h.clone(), self.wq.val()); // [B, T, H·hd]
        let k = linear(h.clone(), self.wk.val()); // [B, T, KV·hd]
        let v = linear(h, self.wv.val()); // [B, T, KV·hd]
        let q = rope.q.apply(q);
        let k = rope.k.apply(k);
        let q = q.reshape([batch, seq, n_heads, head_dim]).swap_dims(1, 2); // [B, H, T, hd]
        let k = k.reshape([batch, seq, n_kv, head_dim]).swap_dims(1, 2); // [B, KV, T, hd]
        let v = v.reshape([batch, seq, n_kv, head_dim]).swap_dims(1, 2); // [B, KV, T, hd]
        let (k, v) = match cache {
            Some((cache, layer)) => cache.append(layer, k, v), // [B, KV, T_cached + T, hd]
            None => (k, v),
        };
        let k_len = k.dims()[2];
        let group = n_heads / n_kv;
        let out = match mask {
            AttentionMask::Causal => {
                let options = AttentionModuleOptions {
                    is_causal: true,
                    ..Default::default()
                };
                attention(
                    q,
                    repeat_kv(k, group),
                    repeat_kv(v, group),
                    None,
                    None,
                    options,
                )
            }
            AttentionMask::Explicit(hidden) if seq == 1 => {
                // One query per head: fold the query heads of each kv group into the query axis
                // so keys and values are used without being repeated.
                let q = q.reshape([batch, n_kv, group, head_dim]);
                let hidden = hidden.clone().expand([batch, n_kv, group, k_len]);
                attention(q, k, v, Some(hidden), None, Default::default())
                    .reshape([batch, n_heads, 1, head_dim])
            }
            AttentionMask::Explicit(hidden) => {
                let hidden = hidden.clone().expand([batch, n_heads, seq, k_len]);
                attention(
                    q,
                    repeat_kv(k, group),
                    repeat_kv(v, group),
                    Some(hidden),
                    None,
                    Default::default(),
                )
            }
        }; // [B, H, T, hd]
        let out = out.swap_dims(1, 2).reshape([batch, seq, dim]);
        let x = x + linear(out, self.wo.val());

        let h = rms_norm(x.clone(), self.mlp_norm.val(), config.norm_eps);
        let gate = linear(h.clone(), self.w_gate.val()); // [B, T, hidden]
        let up = linear(h, self.w_up.val()); // [B, T, hidden]
        x + linear(silu(gate) * up, self.w_down.val())
    }
}

/// [B, KV, T, hd] → [B, KV·group, T, hd], query head h reading kv head h / group.
fn repeat_kv<B: Backend>(x: Tensor<B, 4>, group: usize) -> Tensor<B, 4> {
    if group == 1 {
        return x;
    }
    let [batch, n_kv, seq, head_dim] = x.dims();
    x.unsqueeze_dim::<5>(2)
        .expand([batch, n_kv, group, seq, head_dim])
        .reshape([batch, n_kv * group, seq, head_dim])
}

fn tensor<B: Backend, const D: usize>(host: HostTensor, device: &B::Device) -> Tensor<B, D> {
    Tensor::from_data(TensorData::new(host.data, host.shape), device)
}

/// [out, in] (checkpoint layout) → [in, out] (our matmul layout).
fn transposed(host: HostTensor) -> HostTensor {
    let (rows, cols) = (host.shape[0], host.shape[1]);
    let mut data = vec![0.0; rows * cols];
    for r in 0..rows {
        for c in 0..cols {
            data[c * rows + r] = host.data[r * cols + c];
        }
    }
    HostTensor::new(vec![cols, rows], data)
}

impl<B: Backend> Llama<B> {
    /// A freshly initialised model: N(0, 0.02²) matrices, the residual output projections
    /// scaled by 1/√(2·layers) (GPT-2's scheme), unit norms. Seeded on the host, so the same seed
    /// gives the same weights on every backend.
    pub fn init(config: &LlamaConfig, seed: u64, device: &B::Device) -> Result<Self> {
        let mut weights = NamedWeights::new("initialisation");
        let mut stream = seed;
        let mut normal = |shape: Vec<usize>, std: f32| {
            stream = stream
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let data = crate::init::normal(&shape, std, stream);
            HostTensor::new(shape, data)
        };
        let (dim, hidden, kv_dim, vocab) = (
            config.dim,
            config.hidden_dim,
            config.kv_dim(),
            config.vocab_size,
        );
        let residual_std = 0.02 / (2.0 * config.n_layers as f32).sqrt();
        weights.insert(names::EMBED, normal(vec![vocab, dim], 0.02));
        weights.insert(names::LM_HEAD, normal(vec![vocab, dim], 0.02));
        for layer in 0..config.n_layers {
            let name = |suffix| names::layer(layer, suffix);
            weights.insert(name(names::Q), normal(vec![dim, dim], 0.02));
            weights.insert(name(names::K), normal(vec![kv_dim, dim], 0.02));
            weights.insert(name(names::V), normal(vec![kv_dim, dim], 0.02));
            weights.insert(name(names::O), normal(vec![dim, dim], residual_std));
            weights.insert(name(names::GATE), normal(vec![hidden, dim], 0.02));
            weights.insert(name(names::UP), normal(vec![hidden, dim], 0.02));
            weights.insert(name(names::DOWN), normal(vec![dim, hidden], residual_std));
            weights.insert(
                name(names::ATTN_NORM),
                HostTensor::new(vec![dim], vec![1.0; dim]),
            );
            weights.insert(
                name(names::MLP_NORM),
                HostTensor::new(vec![dim], vec![1.0; dim]),
            );
        }
        weights.insert(
            names::FINAL_NORM,
            HostTensor::new(vec![dim], vec![1.0; dim]),
        );
        Self::from_weights(config, weights, device)
    }

    /// Builds the model from named weights, checking every shape against the config.
    pub fn from_weights(
        config: &LlamaConfig,
        mut weights: NamedWeights,
        device: &B::Device,
    ) -> Result<Self> {
        config.validate(&weights.source_name)?;
        let (dim, hidden, vocab, kv_dim) = (
            config.dim,
            config.hidden_dim,
            config.vocab_size,
            config.kv_dim(),
        );
        let embed = weights.take(names::EMBED, &[vocab, dim])?;
        let lm_head = if weights.contains(names::LM_HEAD) {
            weights.take(names::LM_HEAD, &[vocab, dim])?
        } else {
            embed.clone() // tied embeddings
        };
        let mut blocks = Vec::with_capacity(config.n_layers);
        for layer in 0..config.n_layers {
            let mut take =
                |suffix: &str, shape: &[usize]| weights.take(&names::layer(layer, suffix), shape);
            let q = transposed(take(names::Q, &[dim, dim])?);
            let k = transposed(take(names::K, &[kv_dim, dim])?);
            let v = transposed(take(names::V, &[kv_dim, dim])?);
            let o = transposed(take(names::O, &[dim, dim])?);
            let gate = transposed(take(names::GATE, &[hidden, dim])?);
            let up = transposed(take(names::UP, &[hidden, dim])?);
            let down = transposed(take(names::DOWN, &[dim, hidden])?);
            let attn_norm = take(names::ATTN_NORM, &[dim])?;
            let mlp_norm = take(names::MLP_NORM, &[dim])?;
            blocks.push(Block {
                attn_norm: Param::from_tensor(tensor(attn_norm, device)),
                wq: Param::from_tensor(tensor(q, device)),
                wk: Param::from_tensor(tensor(k, device)),
                wv: Param::from_tensor(tensor(v, device)),
                wo: Param::from_tensor(tensor(o, device)),
                mlp_norm: Param::from_tensor(tensor(mlp_norm, device)),
                w_gate: Param::from_tensor(tensor(gate, device)),
                w_up: Param::from_tensor(tensor(up, device)),
                w_down: Param::from_tensor(tensor(down, device)),
            });
        }
        let final_norm = weights.take(names::FINAL_NORM, &[dim])?;
        Ok(Self {
            embed: Param::from_tensor(tensor(embed, device)),
            blocks,
            final_norm: Param::from_tensor(tensor(final_norm, device)),
            lm_head: Param::from_tensor(tensor(transposed(lm_head), device)),
            rope_q: Rope::new(config, config.n_heads, device),
            rope_k: Rope::new(config, config.n_kv_heads, device),
            config: config.clone(),
        })
    }

    /// Reads the weights back to the host under the checkpoint names (async: browser-safe).
    pub async fn to_weights(&self) -> Result<NamedWeights> {
        async fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Result<HostTensor> {
            let shape = t.dims().to_vec();
            Ok(HostTensor::new(shape, read_vec(t).await?))
        }
        let mut weights = NamedWeights::new("model");
        weights.insert(names::EMBED, host(self.embed.val()).await?);
        for (layer, block) in self.blocks.iter().enumerate() {
            let name = |suffix| names::layer(layer, suffix);
            weights.insert(name(names::Q), transposed(host(block.wq.val()).await?));
            weights.insert(name(names::K), transposed(host(block.wk.val()).await?));
            weights.insert(name(names::V), transposed(host(block.wv.val()).await?));
            weights.insert(name(names::O), transposed(host(block.wo.val()).await?));
            weights.insert(
                name(names::GATE),
                transposed(host(block.w_gate.val()).await?),
            );
            weights.insert(name(names::UP), transposed(host(block.w_up.val()).await?));
            weights.insert(
                name(names::DOWN),
                transposed(host(block.w_down.val()).await?),
            );
            weights.insert(name(names::ATTN_NORM), host(block.attn_norm.val()).await?);
            weights.insert(name(names::MLP_NORM), host(block.mlp_norm.val()).await?);
        }
        weights.insert(names::FINAL_NORM, host(self.final_norm.val()).await?);
        weights.insert(names::LM_HEAD, transposed(host(self.lm_head.val()).await?));
        Ok(weights)
    }

    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    pub fn device(&self) -> B::Device {
        self.embed.val().device()
    }

    /// Final-normed hidden states of whole sequences at positions 0..T with causal attention.
    /// Right padding is harmless: no real token attends to a later pad.
    ///
    /// # Shapes
    /// - `tokens`: [batch, seq]
    /// - returns [batch, seq, dim]
    pub fn forward_hidden(&self, tokens: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        let seq = tokens.dims()[1];
        let tables = RopeTables {
            q: self.rope_q.leading(seq),
            k: self.rope_k.leading(seq),
        };
        self.run_blocks(tokens, &tables, AttentionMask::Causal, None)
    }

    /// Next-token logits of whole sequences: [batch, seq] → [batch, seq, vocab].
    pub fn forward(&self, tokens: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        self.logits(self.forward_hidden(tokens))
    }

    /// [batch, seq, dim] → [batch, seq, vocab]
    pub fn logits(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        linear(hidden, self.lm_head.val())
    }

    /// Runs new tokens through the model, attending to what `cache` holds, and appends their
    /// keys and values to it. Rows are left-padded: `cache` knows each row's padding and position.
    ///
    /// # Shapes
    /// - `tokens`: [batch, new]
    /// - returns hidden states [batch, new, dim]
    pub fn forward_cached(
        &self,
        tokens: Tensor<B, 2, Int>,
        cache: &mut KvCache<B>,
    ) -> Tensor<B, 3> {
        let new = tokens.dims()[1];
        let positions = cache.positions(new); // [B, new]
        let tables = RopeTables {
            q: self.rope_q.at(positions.clone()),
            k: self.rope_k.at(positions),
        };
        let hidden_keys = cache.attention_mask(new); // [B, 1, new, cached + new]
        let out = self.run_blocks(
            tokens,
            &tables,
            AttentionMask::Explicit(hidden_keys),
            Some(cache),
        );
        cache.advance(new);
        out
    }

    fn run_blocks(
        &self,
        tokens: Tensor<B, 2, Int>,
        tables: &RopeTables<B>,
        mask: AttentionMask<B>,
        mut cache: Option<&mut KvCache<B>>,
    ) -> Tensor<B, 3> {
        let mut x = embedding(self.embed.val(), tokens); // [B, T, dim]
        for (layer, block) in self.blocks.iter().enumerate() {
            let layer_cache = cache.as_deref_mut().map(|c| (c, layer));
            x = block.forward(x, &self.config, tables, &mask, layer_cache);
        }
        rms_norm(x, self.final_norm.val(), self.config.norm_eps)
    }
}

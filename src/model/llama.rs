//! A Llama-style decoder (Touvron et al. 2023): token embedding, pre-norm blocks of RMSNorm →
//! grouped-query attention with rotary embeddings → RMSNorm → SwiGLU MLP, final RMSNorm, output
//! head. The same blocks take the departures of other families from [`Architecture`]: biases
//! (Qwen2, GPT-2), per-head q/k norms (Qwen3), LayerNorm, learned positions and a GELU MLP (GPT-2),
//! a tied output head.
//!
//! Two entry points share the blocks: [`Llama::forward_hidden`] for whole right-padded sequences
//! (scoring, training: positions 0..T, causal attention), and [`Llama::forward_cached`] for
//! incremental decoding with left-padded prompts and a [`KvCache`].
//!
//! [`Architecture`]: super::config::Architecture

use crate::backend::Backend;
use burn::module::{Module, Param};
use burn::tensor::activation::silu;
use burn::tensor::module::embedding;
use burn::tensor::{Int, Tensor};

use super::attention::{attention, AttentionMask};
use super::cache::KvCache;
use super::config::LlamaConfig;
use super::layers::{gelu_tanh, matmul, rms_norm, tensor, Linear, Norm};
use super::rope::{RopeTables, RotaryTables};
use super::weights::{names, HostTensor, NamedWeights};
use crate::error::Result;
use crate::host::read_vec;

#[derive(Module, Debug)]
pub struct Block<B: Backend> {
    attn_norm: Norm<B>,
    /// [dim, n_heads·head_dim]
    q: Linear<B>,
    /// [dim, n_kv_heads·head_dim] each
    k: Linear<B>,
    v: Linear<B>,
    /// Per-head RMSNorm of queries and keys before RoPE, [head_dim] (Qwen3).
    q_norm: Option<Param<Tensor<B, 1>>>,
    k_norm: Option<Param<Tensor<B, 1>>>,
    /// [n_heads·head_dim, dim]
    o: Linear<B>,
    mlp_norm: Norm<B>,
    /// [dim, hidden_dim]; absent in GPT-2's plain GELU MLP. Gate and up are two matmuls rather
    /// than one fused and split: the split halves would be strided views, which the CPU
    /// backend's elementwise kernels walk slowly.
    gate: Option<Linear<B>>,
    up: Linear<B>,
    /// [hidden_dim, dim]
    down: Linear<B>,
}

#[derive(Module, Debug)]
pub struct Llama<B: Backend> {
    /// [vocab, dim]
    embed: Param<Tensor<B, 2>>,
    /// Learned position embeddings [max_seq_len, dim] (GPT-2); RoPE models have none.
    positions: Option<Param<Tensor<B, 2>>>,
    blocks: Vec<Block<B>>,
    final_norm: Norm<B>,
    /// [dim, vocab]; `None` when the head is the embedding (tied).
    lm_head: Option<Param<Tensor<B, 2>>>,
    /// Rotary tables for the query and key projections; constants, not parameters.
    rope: Option<RotaryTables<B>>,
    #[module(skip)]
    config: LlamaConfig,
}

/// [B, T, heads·head_dim] → the same, each head RMS-normalised with `weight` [head_dim].
fn per_head_norm<B: Backend>(
    x: Tensor<B, 3>,
    weight: &Param<Tensor<B, 1>>,
    head_dim: usize,
    eps: f64,
) -> Tensor<B, 3> {
    let [batch, seq, width] = x.dims();
    let heads = rms_norm(
        x.reshape([batch, seq * width / head_dim, head_dim]),
        weight.val(),
        eps,
    );
    heads.reshape([batch, seq, width])
}

/// The residual stream between sublayers: what has been added to it so far, and the last
/// sublayer's output, not yet added, so that the next norm adds it in the same kernel.
#[derive(Clone)]
struct ResidualStream<B: Backend> {
    sum: Tensor<B, 3>,
    pending: Option<Tensor<B, 3>>,
}

impl<B: Backend> ResidualStream<B> {
    fn new(x: Tensor<B, 3>) -> Self {
        Self {
            sum: x,
            pending: None,
        }
    }

    fn adding(sum: Tensor<B, 3>, update: Tensor<B, 3>) -> Self {
        Self {
            sum,
            pending: Some(update),
        }
    }

    /// Adds the pending output and normalises: (the stream, its norm).
    fn add_and_norm(self, norm: &Norm<B>, eps: f64) -> (Tensor<B, 3>, Tensor<B, 3>) {
        match self.pending {
            Some(update) => norm.add_and_forward(self.sum, update, eps),
            None => (self.sum.clone(), norm.forward(self.sum, eps)),
        }
    }

    /// The stream with the pending output added.
    fn resolved(self) -> Tensor<B, 3> {
        match self.pending {
            Some(update) => self.sum + update,
            None => self.sum,
        }
    }
}

impl<B: Backend> Block<B> {
    fn forward(
        &self,
        stream: ResidualStream<B>,
        config: &LlamaConfig,
        rope: Option<&RopeTables<B>>,
        mask: &AttentionMask<B>,
        cache: Option<(&mut KvCache<B>, usize)>,
    ) -> ResidualStream<B> {
        let (n_heads, n_kv, head_dim) = (config.n_heads, config.n_kv_heads, config.head_dim());
        let eps = config.norm_eps;
        let (x, h) = stream.add_and_norm(&self.attn_norm, eps);
        let [batch, seq, _] = x.dims();
        let mut q = self.q.forward(h.clone()); // [B, T, H·hd]
        let mut k = self.k.forward(h.clone()); // [B, T, KV·hd]
        let v = self.v.forward(h); // [B, T, KV·hd]
        if let (Some(q_norm), Some(k_norm)) = (&self.q_norm, &self.k_norm) {
            q = per_head_norm(q, q_norm, head_dim, eps);
            k = per_head_norm(k, k_norm, head_dim, eps);
        }
        if let Some(rope) = rope {
            q = rope.q.apply(q);
            k = rope.k.apply(k);
        }
        let q = q.reshape([batch, seq, n_heads, head_dim]).swap_dims(1, 2); // [B, H, T, hd]
        let k = k.reshape([batch, seq, n_kv, head_dim]).swap_dims(1, 2); // [B, KV, T, hd]
        let v = v.reshape([batch, seq, n_kv, head_dim]).swap_dims(1, 2); // [B, KV, T, hd]
        let (k, v) = match cache {
            Some((cache, layer)) => cache.append(layer, k, v), // [B, KV, T_cached + T, hd]
            None => (k, v),
        };
        let out = attention(q, k, v, mask); // [B, H, T, hd]
        let out = out
            .swap_dims(1, 2)
            .reshape([batch, seq, n_heads * head_dim]);
        let stream = ResidualStream::adding(x, self.o.forward(out));

        let (x, h) = stream.add_and_norm(&self.mlp_norm, eps);
        let activated = match &self.gate {
            Some(gate) => silu(gate.forward(h.clone())) * self.up.forward(h), // [B, T, hidden]
            None => gelu_tanh(self.up.forward(h)),
        };
        ResidualStream::adding(x, self.down.forward(activated))
    }
}

/// Builds layers from named weights, checking each shape, taking (so freeing) each host tensor
/// as soon as it is on the device.
struct Builder<'a, B: Backend> {
    weights: NamedWeights,
    config: &'a LlamaConfig,
    device: &'a B::Device,
}

impl<B: Backend> Builder<'_, B> {
    fn vector(&mut self, name: &str, len: usize) -> Result<Tensor<B, 1>> {
        Ok(tensor(self.weights.take(name, &[len])?, self.device))
    }

    fn linear(&mut self, name: &str, [out, input]: [usize; 2], bias: bool) -> Result<Linear<B>> {
        let weight = self.weights.take(name, &[out, input])?.transposed();
        let bias = match bias {
            true => Some(self.vector(&names::bias_of(name), out)?),
            false => None,
        };
        Ok(Linear::new(tensor(weight, self.device), bias))
    }

    fn norm(&mut self, name: &str) -> Result<Norm<B>> {
        let dim = self.config.dim;
        let weight = self.vector(name, dim)?;
        let bias = match self.config.arch.family.is_gpt2() {
            true => Some(self.vector(&names::bias_of(name), dim)?),
            false => None,
        };
        Ok(Norm::new(weight, bias))
    }

    fn block(&mut self, layer: usize) -> Result<Block<B>> {
        let config = self.config;
        let arch = &config.arch;
        let (dim, q_dim, kv_dim, hidden) = (
            config.dim,
            config.q_dim(),
            config.kv_dim(),
            config.hidden_dim,
        );
        let name = |suffix: &str| names::layer(layer, suffix);
        let qk_norm = |builder: &mut Self, suffix: &str| -> Result<_> {
            Ok(match arch.qk_norm {
                true => Some(Param::from_tensor(
                    builder.vector(&name(suffix), config.head_dim())?,
                )),
                false => None,
            })
        };
        Ok(Block {
            attn_norm: self.norm(&name(names::ATTN_NORM))?,
            q: self.linear(&name(names::Q), [q_dim, dim], arch.qkv_bias)?,
            k: self.linear(&name(names::K), [kv_dim, dim], arch.qkv_bias)?,
            v: self.linear(&name(names::V), [kv_dim, dim], arch.qkv_bias)?,
            q_norm: qk_norm(self, names::Q_NORM)?,
            k_norm: qk_norm(self, names::K_NORM)?,
            o: self.linear(&name(names::O), [dim, q_dim], arch.out_bias)?,
            mlp_norm: self.norm(&name(names::MLP_NORM))?,
            gate: match arch.family.is_gpt2() {
                true => None,
                false => Some(self.linear(&name(names::GATE), [hidden, dim], arch.mlp_bias)?),
            },
            up: self.linear(&name(names::UP), [hidden, dim], arch.mlp_bias)?,
            down: self.linear(&name(names::DOWN), [dim, hidden], arch.mlp_bias)?,
        })
    }
}

/// Every tensor a model of `config` has, by checkpoint name and shape ([out, in] for matrices).
pub fn parameter_shapes(config: &LlamaConfig) -> Vec<(String, Vec<usize>)> {
    let arch = &config.arch;
    let (dim, q_dim, kv_dim, hidden, vocab) = (
        config.dim,
        config.q_dim(),
        config.kv_dim(),
        config.hidden_dim,
        config.vocab_size,
    );
    let gpt2 = arch.family.is_gpt2();
    let mut shapes: Vec<(String, Vec<usize>)> = vec![(names::EMBED.into(), vec![vocab, dim])];
    // The head second: `init` draws in this order, and did before other families existed.
    if !arch.tied_embeddings {
        shapes.push((names::LM_HEAD.into(), vec![vocab, dim]));
    }
    if gpt2 {
        shapes.push((names::POSITIONS.into(), vec![config.max_seq_len, dim]));
    }
    let push_linear = |shapes: &mut Vec<_>, name: String, out, input, bias| {
        if bias {
            shapes.push((names::bias_of(&name), vec![out]));
        }
        shapes.push((name, vec![out, input]));
    };
    let push_norm = |shapes: &mut Vec<(String, Vec<usize>)>, name: String| {
        if gpt2 {
            shapes.push((names::bias_of(&name), vec![dim]));
        }
        shapes.push((name, vec![dim]));
    };
    for layer in 0..config.n_layers {
        let name = |suffix: &str| names::layer(layer, suffix);
        push_norm(&mut shapes, name(names::ATTN_NORM));
        push_linear(&mut shapes, name(names::Q), q_dim, dim, arch.qkv_bias);
        push_linear(&mut shapes, name(names::K), kv_dim, dim, arch.qkv_bias);
        push_linear(&mut shapes, name(names::V), kv_dim, dim, arch.qkv_bias);
        if arch.qk_norm {
            shapes.push((name(names::Q_NORM), vec![config.head_dim()]));
            shapes.push((name(names::K_NORM), vec![config.head_dim()]));
        }
        push_linear(&mut shapes, name(names::O), dim, q_dim, arch.out_bias);
        push_norm(&mut shapes, name(names::MLP_NORM));
        if !gpt2 {
            push_linear(&mut shapes, name(names::GATE), hidden, dim, arch.mlp_bias);
        }
        push_linear(&mut shapes, name(names::UP), hidden, dim, arch.mlp_bias);
        push_linear(&mut shapes, name(names::DOWN), dim, hidden, arch.mlp_bias);
    }
    push_norm(&mut shapes, names::FINAL_NORM.into());
    shapes
}

impl<B: Backend> Llama<B> {
    /// A freshly initialised model: N(0, 0.02²) matrices, the residual output projections
    /// scaled by 1/√(2·layers) (GPT-2's scheme), unit norms, zero biases. Seeded on the host, so
    /// the same seed gives the same weights on every backend.
    pub fn init(config: &LlamaConfig, seed: u64, device: &B::Device) -> Result<Self> {
        Self::from_weights(config, init_weights(config, seed), device)
    }

    /// Builds the model from named weights, checking every shape against the config. A
    /// checkpoint without an output head gets a tied one.
    pub fn from_weights(
        config: &LlamaConfig,
        weights: NamedWeights,
        device: &B::Device,
    ) -> Result<Self> {
        config.validate(&weights.source_name)?;
        let (dim, vocab) = (config.dim, config.vocab_size);
        let mut config = config.clone();
        if !weights.contains(names::LM_HEAD) {
            config.arch.tied_embeddings = true;
        }
        let mut builder = Builder::<B> {
            weights,
            config: &config,
            device,
        };
        let embed = tensor(builder.weights.take(names::EMBED, &[vocab, dim])?, device);
        let positions = match config.arch.family.is_gpt2() {
            true => {
                let shape = [config.max_seq_len, dim];
                let table = builder.weights.take(names::POSITIONS, &shape)?;
                Some(Param::from_tensor(tensor(table, device)))
            }
            false => None,
        };
        let blocks = (0..config.n_layers)
            .map(|layer| builder.block(layer))
            .collect::<Result<Vec<_>>>()?;
        let final_norm = builder.norm(names::FINAL_NORM)?;
        let lm_head = match config.arch.tied_embeddings {
            true => None,
            false => {
                let head = builder.weights.take(names::LM_HEAD, &[vocab, dim])?;
                Some(Param::from_tensor(tensor(head.transposed(), device)))
            }
        };
        let rope = match config.arch.family.is_gpt2() {
            true => None,
            false => Some(RotaryTables::new(&config, device)),
        };
        Ok(Self {
            embed: Param::from_tensor(embed),
            positions,
            blocks,
            final_norm,
            lm_head,
            rope,
            config,
        })
    }

    /// Reads the weights back to the host under the checkpoint names (async: browser-safe).
    pub async fn to_weights(&self) -> Result<NamedWeights> {
        async fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Result<HostTensor> {
            let shape = t.dims().to_vec();
            Ok(HostTensor::new(shape, read_vec(t).await?))
        }
        async fn linear<B: Backend>(
            weights: &mut NamedWeights,
            name: String,
            layer: &Linear<B>,
        ) -> Result<()> {
            if let Some(bias) = &layer.bias {
                weights.insert(names::bias_of(&name), host(bias.val()).await?);
            }
            weights.insert(
                name,
                HostTensor::transposed(host(layer.weight.val()).await?),
            );
            Ok(())
        }
        async fn norm<B: Backend>(
            weights: &mut NamedWeights,
            name: String,
            layer: &Norm<B>,
        ) -> Result<()> {
            if let Some(bias) = &layer.bias {
                weights.insert(names::bias_of(&name), host(bias.val()).await?);
            }
            weights.insert(name, host(layer.weight.val()).await?);
            Ok(())
        }
        let mut weights = NamedWeights::new("model");
        weights.insert(names::EMBED, host(self.embed.val()).await?);
        if let Some(positions) = &self.positions {
            weights.insert(names::POSITIONS, host(positions.val()).await?);
        }
        for (layer, block) in self.blocks.iter().enumerate() {
            let name = |suffix| names::layer(layer, suffix);
            let w = &mut weights;
            norm(w, name(names::ATTN_NORM), &block.attn_norm).await?;
            linear(w, name(names::Q), &block.q).await?;
            linear(w, name(names::K), &block.k).await?;
            linear(w, name(names::V), &block.v).await?;
            if let (Some(q_norm), Some(k_norm)) = (&block.q_norm, &block.k_norm) {
                w.insert(name(names::Q_NORM), host(q_norm.val()).await?);
                w.insert(name(names::K_NORM), host(k_norm.val()).await?);
            }
            linear(w, name(names::O), &block.o).await?;
            norm(w, name(names::MLP_NORM), &block.mlp_norm).await?;
            if let Some(gate) = &block.gate {
                linear(w, name(names::GATE), gate).await?;
            }
            linear(w, name(names::UP), &block.up).await?;
            linear(w, name(names::DOWN), &block.down).await?;
        }
        norm(&mut weights, names::FINAL_NORM.into(), &self.final_norm).await?;
        if let Some(head) = &self.lm_head {
            weights.insert(
                names::LM_HEAD,
                HostTensor::transposed(host(head.val()).await?),
            );
        }
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
        let [batch, seq] = tokens.dims();
        let mut x = embedding(self.embed.val(), tokens); // [B, T, dim]
        if let Some(positions) = &self.positions {
            x = x + positions.val().narrow(0, 0, seq).unsqueeze::<3>();
        }
        let rope = self.rope.as_ref().map(|rope| rope.leading(batch, seq));
        self.run_blocks(x, rope.as_ref(), AttentionMask::Causal, None)
    }

    /// The residual stream after each block (before the final norm), for methods that read the
    /// model's activations: [batch, seq] → one [batch, seq, dim] per layer.
    pub fn block_outputs(&self, tokens: Tensor<B, 2, Int>) -> Vec<Tensor<B, 3>> {
        let [batch, seq] = tokens.dims();
        crate::throughput::count_positions(batch * seq);
        let mut x = embedding(self.embed.val(), tokens);
        if let Some(positions) = &self.positions {
            x = x + positions.val().narrow(0, 0, seq).unsqueeze::<3>();
        }
        let rope = self.rope.as_ref().map(|rope| rope.leading(batch, seq));
        let mut stream = ResidualStream::new(x);
        self.blocks
            .iter()
            .map(|block| {
                stream = block.forward(
                    stream.clone(),
                    &self.config,
                    rope.as_ref(),
                    &AttentionMask::Causal,
                    None,
                );
                stream.clone().resolved()
            })
            .collect()
    }

    /// Next-token logits of whole sequences: [batch, seq] → [batch, seq, vocab].
    pub fn forward(&self, tokens: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        self.logits(self.forward_hidden(tokens))
    }

    /// [batch, seq, dim] → [batch, seq, vocab]
    pub fn logits(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        match &self.lm_head {
            Some(head) => matmul(hidden, head.val()),
            None => matmul(hidden, self.embed.val().transpose()),
        }
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
        let mut x = embedding(self.embed.val(), tokens); // [B, new, dim]
        if let Some(table) = &self.positions {
            x = x + embedding(table.val(), positions.clone());
        }
        let rope = self.rope.as_ref().map(|rope| rope.at(positions));
        let visible = cache.visible_slots(new);
        let out = self.run_blocks(
            x,
            rope.as_ref(),
            AttentionMask::Cached(visible),
            Some(cache),
        );
        cache.advance(new);
        out
    }

    fn run_blocks(
        &self,
        x: Tensor<B, 3>,
        rope: Option<&RopeTables<B>>,
        mask: AttentionMask<B>,
        mut cache: Option<&mut KvCache<B>>,
    ) -> Tensor<B, 3> {
        let [batch, positions, _] = x.dims();
        crate::throughput::count_positions(batch * positions);
        let mut stream = ResidualStream::new(x);
        for (layer, block) in self.blocks.iter().enumerate() {
            let layer_cache = cache.as_deref_mut().map(|c| (c, layer));
            stream = block.forward(stream, &self.config, rope, &mask, layer_cache);
        }
        let (_, normed) = stream.add_and_norm(&self.final_norm, self.config.norm_eps);
        normed
    }
}

/// [`Llama::init`]'s weights, on the host (a `random:` checkpoint is made of them).
pub fn init_weights(config: &LlamaConfig, seed: u64) -> NamedWeights {
    let mut weights = NamedWeights::new("initialisation");
    let mut stream = seed;
    let residual_std = 0.02 / (2.0 * config.n_layers as f32).sqrt();
    for (name, shape) in parameter_shapes(config) {
        let len = shape.iter().product();
        let data = if name.ends_with(".bias") {
            vec![0.0; len]
        } else if shape.len() == 1 {
            vec![1.0; len] // a norm's scale
        } else {
            stream = stream
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let residual = name.ends_with(names::O) || name.ends_with(names::DOWN);
            let std = if residual { residual_std } else { 0.02 };
            crate::init::normal(&shape, std, stream)
        };
        weights.insert(name, HostTensor::new(shape, data));
    }
    weights
}

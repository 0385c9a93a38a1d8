//! Rotary position embeddings (Su et al. 2021), with the frequency scalings long-context
//! checkpoints use.

use crate::backend::Backend;
use burn::module::Module;
use burn::tensor::{Int, Tensor};

use super::config::LlamaConfig;
use super::layers::{matmul, tensor};
use super::weights::HostTensor;
use crate::shapes::compiles_kernels;

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
                    let theta = match &config.arch.rope_scaling {
                        Some(scaling) => scaling.apply(theta),
                        None => theta,
                    };
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

    /// The rotation for positions 0..seq, shared by every row: tables [1, seq, width] broadcast
    /// over the batch on GPU backends; on CPU backends [batch, seq, width], copied once per
    /// forward pass, because flex's elementwise ops walk a broadcast operand element by element
    /// (10% of scoring 32 × 256 tokens on stories260K went to that, every layer, q and k).
    fn leading(&self, batch: usize, seq: usize) -> Rotation<B> {
        let width = self.swap.dims()[0];
        let rows = if compiles_kernels::<B>(&self.cos.device()) {
            1
        } else {
            batch
        };
        let table = |table: &Tensor<B, 2>| {
            table
                .clone()
                .narrow(0, 0, seq)
                .reshape([1, seq, width])
                .repeat_dim(0, rows)
        };
        Rotation {
            cos: table(&self.cos),
            sin: table(&self.sin),
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
pub(super) struct Rotation<B: Backend> {
    /// [B or 1, T, width]
    cos: Tensor<B, 3>,
    sin: Tensor<B, 3>,
    swap: Tensor<B, 2>,
}

impl<B: Backend> Rotation<B> {
    /// x: [B, T, width] → the same, rotated.
    pub(super) fn apply(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let swapped = matmul(x.clone(), self.swap.clone());
        x * self.cos.clone() + swapped * self.sin.clone()
    }
}

/// The tables for queries and for keys (they differ in width under grouped-query attention).
#[derive(Module, Debug)]
pub struct RotaryTables<B: Backend> {
    q: Rope<B>,
    k: Rope<B>,
}

impl<B: Backend> RotaryTables<B> {
    pub(super) fn new(config: &LlamaConfig, device: &B::Device) -> Self {
        Self {
            q: Rope::new(config, config.n_heads, device),
            k: Rope::new(config, config.n_kv_heads, device),
        }
    }

    pub(super) fn leading(&self, batch: usize, seq: usize) -> RopeTables<B> {
        RopeTables {
            q: self.q.leading(batch, seq),
            k: self.k.leading(batch, seq),
        }
    }

    pub(super) fn at(&self, positions: Tensor<B, 2, Int>) -> RopeTables<B> {
        RopeTables {
            q: self.q.at(positions.clone()),
            k: self.k.at(positions),
        }
    }
}

/// The rotations a forward pass applies to queries and keys.
pub(super) struct RopeTables<B: Backend> {
    pub(super) q: Rotation<B>,
    pub(super) k: Rotation<B>,
}

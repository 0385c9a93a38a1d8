//! Grouped-query attention, softmax(q·kᵀ/√d + mask)·v, the way each backend runs it fastest:
//! - CubeCL backends (wgpu, CUDA): alignlab's flash-style kernel, forward and backward
//!   ([`Kernels::flash_attention`](crate::backend::Kernels::flash_attention)): training never writes the [T, S] scores, and one kernel per
//!   head dimension serves every shape;
//! - CPU backends, inference: [`cpu_attention`], on the host, every head on the CPU's threads,
//!   reading the projections' order;
//! - CPU backends, training: the same kernel trait as the GPUs, whose CPU implementation runs
//!   forward and backward on the host (`alignlab_shaders::cpu_flash`): one pass over the keys
//!   each query sees, no [T, S] weights stored.

use crate::backend::{AttentionInput, Backend};
use burn::tensor::module::attention as fused_attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Int, Tensor, TensorPrimitive};

use super::cpu_attention;
use crate::shapes::compiles_kernels;

/// Which keys a query may see.
pub(super) enum AttentionMask<B: Backend> {
    /// Keys up to the query's own position, nothing else masked.
    Causal,
    /// A step of cached decoding over left-padded rows.
    Cached(VisibleSlots<B>),
}

/// The key slots each query of a cached decoding step sees: query t of row b sees slots
/// `first_key[b] ..= query_offset + t`, in two forms for the two kinds of backend.
pub(super) struct VisibleSlots<B: Backend> {
    /// `true` = hidden; [batch, 1, q_len, k_len], broadcast over heads.
    pub hidden: Tensor<B, 4, Bool>,
    /// [batch]: each row's first token's slot (its left padding).
    pub first_key: Tensor<B, 1, Int>,
    /// Slots filled before the step.
    pub query_offset: usize,
}

/// q [B, H, T, hd], k and v [B, KV, S, hd] (H a multiple of KV; query head h reads key/value
/// head h / (H / KV)) → [B, H, T, hd].
pub(super) fn attention<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    mask: &AttentionMask<B>,
) -> Tensor<B, 4> {
    let device = q.device();
    // GPUs, and training on CPUs (whose kernel runs on the host, forward and backward).
    if compiles_kernels::<B>(&device) || B::ad_enabled(&device) {
        flash(q, k, v, mask)
    } else if q.dims()[2] == 1 {
        // A decoding step: one query per head, too little work to be worth the host's round
        // trip.
        fused(q, k, v, mask)
    } else {
        let hidden = match mask {
            AttentionMask::Causal => None,
            AttentionMask::Cached(visible) => Some(visible.hidden.clone()),
        };
        cpu_attention::attention(q, k, v, hidden)
    }
}

/// alignlab's attention kernel ([`Kernels::flash_attention`](crate::backend::Kernels::flash_attention)).
fn flash<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    mask: &AttentionMask<B>,
) -> Tensor<B, 4> {
    let (batch, queries, keys) = (q.dims()[0], q.dims()[2], k.dims()[2]);
    let (first_key, query_offset) = match mask {
        AttentionMask::Causal => (Tensor::zeros([batch], &q.device()), keys - queries),
        AttentionMask::Cached(visible) => (visible.first_key.clone(), visible.query_offset),
    };
    let output = B::flash_attention(AttentionInput {
        query: q.into_primitive().tensor(),
        key: k.into_primitive().tensor(),
        value: v.into_primitive().tensor(),
        first_key: first_key.into_primitive(),
        query_offset,
    });
    Tensor::from_primitive(TensorPrimitive::Float(output))
}

/// burn's attention op.
fn fused<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    mask: &AttentionMask<B>,
) -> Tensor<B, 4> {
    let [batch, heads, seq, head_dim] = q.dims();
    let [_, kv_heads, keys, _] = k.dims();
    let group = heads / kv_heads;
    match mask {
        AttentionMask::Causal => causal(q, repeat_kv(k, group), repeat_kv(v, group)),
        AttentionMask::Cached(VisibleSlots { hidden, .. }) if seq == 1 => {
            // One query per head: fold the query heads of each kv group into the query axis
            // so keys and values are used without being repeated.
            let q = q.reshape([batch, kv_heads, group, head_dim]);
            let hidden = hidden.clone().expand([batch, kv_heads, group, keys]);
            fused_attention(q, k, v, Some(hidden), None, Default::default())
                .reshape([batch, heads, 1, head_dim])
        }
        AttentionMask::Cached(VisibleSlots { hidden, .. }) => {
            let hidden = hidden.clone().expand([batch, heads, seq, keys]);
            fused_attention(
                q,
                repeat_kv(k, group),
                repeat_kv(v, group),
                Some(hidden),
                None,
                Default::default(),
            )
        }
    }
}

/// burn's causal attention, q [B, H, T, hd] over k and v [B, H, S, hd] (one key/value head per
/// query head): query t sees keys 0..=t + (S − T).
fn causal<B: Backend>(q: Tensor<B, 4>, k: Tensor<B, 4>, v: Tensor<B, 4>) -> Tensor<B, 4> {
    let options = AttentionModuleOptions {
        is_causal: true,
        ..Default::default()
    };
    fused_attention(q, k, v, None, None, options)
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

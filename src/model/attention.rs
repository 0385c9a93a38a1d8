//! Grouped-query attention, softmax(q·kᵀ/√d + mask)·v, the way each backend runs it fastest:
//! - CubeCL backends (wgpu, CUDA): alignlab's flash-style kernel, forward and backward
//!   ([`Kernels::flash_attention`](crate::backend::Kernels::flash_attention)): training never writes the [T, S] scores, and one kernel per
//!   head dimension serves every shape;
//! - CPU backends, inference: [`cpu_attention`], on the host, every head on the CPU's threads;
//! - CPU backends, training: burn's op (its autodiff differentiates through the decomposition
//!   matmul, softmax, matmul) on blocks of queries ([`in_query_blocks`]).

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
    if compiles_kernels::<B>(&device) {
        flash(q, k, v, mask)
    } else if B::ad_enabled(&device) {
        in_query_blocks(q, k, v, mask)
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

/// Causal attention split into blocks of 32 queries, each attending only to the keys up to its
/// last position. burn's attention computes every score of the square and masks half; blocks of
/// 32 compute about half as many (56% at 256 positions), and the backward pass follows. The
/// blocks start at fixed positions, so a row's numbers do not depend on the length of the
/// longest row it is batched with.
fn in_query_blocks<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    mask: &AttentionMask<B>,
) -> Tensor<B, 4> {
    const BLOCK: usize = 32;
    let seq = q.dims()[2];
    if !matches!(mask, AttentionMask::Causal) || seq <= BLOCK {
        return fused(q, k, v, mask);
    }
    let group = q.dims()[1] / k.dims()[1];
    let (k, v) = (repeat_kv(k, group), repeat_kv(v, group));
    let blocks = (0..seq)
        .step_by(BLOCK)
        .map(|start| {
            // Queries s..e see keys 0..e, the last e − s of them causally (offset s).
            let end = (start + BLOCK).min(seq);
            causal(
                q.clone().narrow(2, start, end - start),
                k.clone().narrow(2, 0, end),
                v.clone().narrow(2, 0, end),
            )
        })
        .collect();
    Tensor::cat(blocks, 2)
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

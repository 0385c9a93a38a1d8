use burn::tensor::backend::Backend;
use burn::tensor::ops::{FloatTensor, IntTensor};

use crate::reference;

/// One attention call: softmax(q·kᵀ/√hd)·v where query t of batch row b sees the keys
/// `first_key[b] ..= query_offset + t` (and no others). Causal attention over a whole sequence is
/// `first_key = 0`, `query_offset = S − T`; a step of cached decoding over left-padded rows is
/// `first_key = padding`, `query_offset = slots filled before the step`, so the empty slots after
/// the filled ones are never read. A query that sees no key (a pad's own position) gets zeros.
#[derive(Debug, Clone)]
pub struct AttentionInput<B: Backend> {
    /// [B, H, T, hd]
    pub query: FloatTensor<B>,
    /// [B, KV, S, hd]: query head h reads key/value head h / (H / KV).
    pub key: FloatTensor<B>,
    /// [B, KV, S, hd]
    pub value: FloatTensor<B>,
    /// [B], each row's first visible key.
    pub first_key: IntTensor<B>,
    /// Query t sees keys up to `query_offset + t`.
    pub query_offset: usize,
}

/// What the attention forward pass keeps for its backward pass.
#[derive(Debug, Clone)]
pub struct AttentionOutput<B: Backend> {
    /// [B, H, T, hd]
    pub output: FloatTensor<B>,
    /// log Σ_j exp(q·k_j/√hd) of each query over the keys it sees, 0 for one that sees none:
    /// [B, H, T]. The backward pass rebuilds each attention weight from it and one dot product.
    pub log_sum_exp: FloatTensor<B>,
}

/// The gradients of an attention call with respect to its query, key and value.
#[derive(Debug, Clone)]
pub struct AttentionGrads<B: Backend> {
    pub query: FloatTensor<B>,
    pub key: FloatTensor<B>,
    pub value: FloatTensor<B>,
}

/// A residual add and the RMSNorm of its result, from one kernel.
#[derive(Debug, Clone)]
pub struct ResidualNorm<B: Backend> {
    /// `residual + update` [.., D]: the stream later blocks add to.
    pub sum: FloatTensor<B>,
    /// RMSNorm of the sum [.., D]: the next layer's input.
    pub normed: FloatTensor<B>,
}

/// The operations alignlab runs as kernels of its own, at the level of burn's backend
/// primitives. A method's default is the unfused composition of burn ops ([`reference`]); a
/// backend with a kernel overrides it.
pub trait Kernels: Backend {
    /// `log_softmax(logits)[target]` over the last axis: logits [.., V] and targets [..] →
    /// log-probs [..]. The log-prob of the next token that every alignment loss is built on; a
    /// kernel reads each row of logits once and never writes the [.., V] log-probs.
    fn log_softmax_gather(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
    ) -> FloatTensor<Self> {
        reference::log_softmax_gather::<Self>(logits, targets)
    }

    /// The gradient of [`Self::log_softmax_gather`] with respect to the logits, given the
    /// gradient of its output `grad` [..]: `grad · (one_hot(target) − softmax(logits))` [.., V],
    /// the softmax recomputed from the logits.
    fn log_softmax_gather_backward(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        reference::log_softmax_gather_backward::<Self>(logits, targets, grad)
    }

    /// RMSNorm over the last axis (Zhang & Sennrich 2019): `x / √(mean(x²) + eps) · weight`,
    /// x [.., D] and weight [D] → [.., D]. A kernel reads each row once.
    fn rms_norm(x: FloatTensor<Self>, weight: FloatTensor<Self>, eps: f64) -> FloatTensor<Self> {
        reference::rms_norm::<Self>(x, weight, eps)
    }

    /// The gradients of [`Self::rms_norm`] with respect to x and the weight, given the gradient
    /// of its output `grad` [.., D]: with r = 1/√(mean(x²) + eps), n = x·r and g = grad·weight,
    /// `r · (g − n · mean(g·n))` [.., D] and `Σ_rows grad·n` [D].
    fn rms_norm_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        eps: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        reference::rms_norm_backward::<Self>(x, weight, grad, eps)
    }

    /// `residual + update` and its RMSNorm ([`Self::rms_norm`]): what a pre-norm decoder does
    /// between sublayers. A kernel reads both terms once and writes the sum and the normed sum;
    /// the unfused path writes the sum, then reads it again. Its backward pass is the add's (the
    /// gradient passes to both terms) after [`Self::rms_norm_backward`]: nothing of its own.
    fn add_rms_norm(
        residual: FloatTensor<Self>,
        update: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        eps: f64,
    ) -> ResidualNorm<Self> {
        reference::add_rms_norm::<Self>(residual, update, weight, eps)
    }

    /// Attention ([`AttentionInput`]) → [B, H, T, hd]. A kernel runs one pass over each query's
    /// keys with an online softmax (flash-style): the [T, S] scores are never written, in the
    /// forward or the backward pass.
    fn flash_attention(input: AttentionInput<Self>) -> FloatTensor<Self> {
        Self::flash_attention_forward(input).output
    }

    /// [`Self::flash_attention`] with the log-sum-exp its backward pass needs.
    fn flash_attention_forward(input: AttentionInput<Self>) -> AttentionOutput<Self> {
        reference::attention_forward::<Self>(input)
    }

    /// The gradients of [`Self::flash_attention`] given the gradient of its output `grad`
    /// [B, H, T, hd] (FlashAttention-2's backward, Dao 2023, Algorithm 2): with
    /// P = exp(q·kᵀ/√hd − lse), dP = grad·vᵀ and δ = rowsum(grad ∘ output),
    /// dS = P ∘ (dP − δ), dq = dS·k/√hd, dk = dSᵀ·q/√hd, dv = Pᵀ·grad, summed over the query
    /// heads that share a key/value head.
    fn flash_attention_backward(
        input: AttentionInput<Self>,
        saved: AttentionOutput<Self>,
        grad: FloatTensor<Self>,
    ) -> AttentionGrads<Self> {
        reference::attention_backward::<Self>(input, saved, grad)
    }
}

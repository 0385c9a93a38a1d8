//! The unfused definitions of [`Kernels`](crate::Kernels)' operations in burn's tensor ops: what
//! CPU backends run, and what every kernel must equal.

use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::backend::Backend;
use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{IndexingUpdateOp, Int, Shape, Tensor, TensorMetadata, TensorPrimitive};

use crate::{AttentionGrads, AttentionInput, AttentionOutput, ResidualNorm};

/// `log_softmax(logits, −1).gather(−1, targets)`: [.., V], [..] → [..].
pub fn log_softmax_gather<B: Backend>(
    logits: FloatTensor<B>,
    targets: IntTensor<B>,
) -> FloatTensor<B> {
    let out_shape = targets.shape();
    let (logits, targets) = as_rows::<B>(logits, targets);
    let logprobs = log_softmax(logits, 1).gather(1, targets).reshape([-1]);
    B::float_reshape(logprobs.into_primitive().tensor(), out_shape)
}

/// `grad · (one_hot(target) − softmax(logits))`: [.., V], [..], [..] → [.., V].
pub fn log_softmax_gather_backward<B: Backend>(
    logits: FloatTensor<B>,
    targets: IntTensor<B>,
    grad: FloatTensor<B>,
) -> FloatTensor<B> {
    let logits_shape = logits.shape();
    let (logits, targets) = as_rows::<B>(logits, targets);
    let rows = targets.dims()[0];
    let grad = Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(grad)).reshape([rows, 1]);
    let probabilities = softmax(logits, 1);
    let one_hot = probabilities.zeros_like().scatter(
        1,
        targets,
        Tensor::ones([rows, 1], &grad.device()),
        IndexingUpdateOp::Add,
    );
    let out = (one_hot - probabilities) * grad;
    B::float_reshape(out.into_primitive().tensor(), logits_shape)
}

/// `x / √(mean(x²) + eps) · weight`: [.., D], [D] → [.., D]. The reciprocal is a division:
/// burn-ndarray's `recip` is approximate on part of a buffer (alignlab's `ops::reciprocal`).
pub fn rms_norm<B: Backend>(x: FloatTensor<B>, weight: FloatTensor<B>, eps: f64) -> FloatTensor<B> {
    let shape = x.shape();
    let (x, weight) = (
        as_rows_of::<B>(x),
        Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(weight)),
    );
    let inv_rms = inverse_rms(&x, eps);
    let out = x * inv_rms * weight.unsqueeze::<2>();
    B::float_reshape(out.into_primitive().tensor(), shape)
}

/// `residual + update`, and [`rms_norm`] of it.
pub fn add_rms_norm<B: Backend>(
    residual: FloatTensor<B>,
    update: FloatTensor<B>,
    weight: FloatTensor<B>,
    eps: f64,
) -> ResidualNorm<B> {
    let sum = B::float_add(residual, update);
    let normed = rms_norm::<B>(sum.clone(), weight, eps);
    ResidualNorm { sum, normed }
}

/// RMSNorm's gradients with respect to x [.., D] and the weight [D].
pub fn rms_norm_backward<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    grad: FloatTensor<B>,
    eps: f64,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let shape = x.shape();
    let (x, grad) = (as_rows_of::<B>(x), as_rows_of::<B>(grad));
    let weight = Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(weight));
    let inv_rms = inverse_rms(&x, eps); // [rows, 1]
    let normed = x * inv_rms.clone();
    let grad_weight = (grad.clone() * normed.clone()).sum_dim(0).reshape([-1]);
    let scaled = grad * weight.unsqueeze::<2>();
    let grad_x = (scaled.clone() - normed.clone() * (scaled * normed).mean_dim(1)) * inv_rms;
    (
        B::float_reshape(grad_x.into_primitive().tensor(), shape),
        grad_weight.into_primitive().tensor(),
    )
}

/// 1/√(mean(x²) + eps) of each row: [rows, D] → [rows, 1].
fn inverse_rms<B: Backend>(x: &Tensor<B, 2>, eps: f64) -> Tensor<B, 2> {
    let rms = x.clone().powi_scalar(2).mean_dim(1).add_scalar(eps).sqrt();
    rms.ones_like() / rms
}

/// A tensor [.., D] as rows [rows, D].
fn as_rows_of<B: Backend>(x: FloatTensor<B>) -> Tensor<B, 2> {
    let shape = x.shape();
    let width = shape[shape.num_dims() - 1];
    let rows = shape.num_elements() / width;
    Tensor::from_primitive(TensorPrimitive::Float(B::float_reshape(
        x,
        Shape::new([rows, width]),
    )))
}

/// Logits as rows [rows, V] and targets as a column [rows, 1].
fn as_rows<B: Backend>(
    logits: FloatTensor<B>,
    targets: IntTensor<B>,
) -> (Tensor<B, 2>, Tensor<B, 2, Int>) {
    let logits = as_rows_of::<B>(logits);
    let rows = logits.dims()[0];
    let targets = B::int_reshape(targets, Shape::new([rows, 1]));
    (logits, Tensor::from_primitive(targets))
}

/// An attention call in burn tensors, the query heads that share a key/value head folded into
/// the query axis so that keys and values are used without being repeated.
struct FoldedAttention<B: Backend> {
    /// [B, KV, G·T, hd] with G = H / KV query heads per key/value head.
    query: Tensor<B, 4>,
    /// [B, KV, S, hd]
    key: Tensor<B, 4>,
    value: Tensor<B, 4>,
    /// 1 where a query sees a key, 0 elsewhere: [B, KV, G·T, S].
    visible: Tensor<B, 4>,
    /// [B, H, T, hd]
    query_dims: [usize; 4],
    scale: f64,
}

/// Below any score: hidden keys' scores, so that their weights are exactly 0.
const HIDDEN: f64 = -1.0e30;

impl<B: Backend> FoldedAttention<B> {
    fn new(input: AttentionInput<B>) -> Self {
        let query = Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(input.query));
        let key = Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(input.key));
        let value = Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(input.value));
        let query_dims = query.dims();
        let [batch, heads, queries, head_dim] = query_dims;
        let [_, kv_heads, keys, _] = key.dims();
        let folded = heads / kv_heads * queries;
        let device = query.device();
        let first_key = Tensor::<B, 1, Int>::from_primitive(input.first_key);
        let shape = [batch, kv_heads, folded, keys];
        let slot = Tensor::<B, 1, Int>::arange(0..keys as i64, &device)
            .reshape([1, 1, 1, keys])
            .expand(shape);
        let offset = input.query_offset as i64;
        let last = Tensor::<B, 1, Int>::arange(offset..offset + queries as i64, &device)
            .reshape([1, queries])
            .repeat_dim(0, heads / kv_heads)
            .reshape([1, 1, folded, 1])
            .expand(shape);
        let first = first_key.reshape([batch, 1, 1, 1]).expand(shape);
        let visible = slot.clone().greater_equal(first).float() * slot.lower_equal(last).float();
        Self {
            query: query.reshape([batch, kv_heads, folded, head_dim]),
            key,
            value,
            visible,
            query_dims,
            scale: 1.0 / (head_dim as f64).sqrt(),
        }
    }

    /// q·kᵀ/√hd where a key is visible, [`HIDDEN`] elsewhere: [B, KV, G·T, S].
    fn scores(&self) -> Tensor<B, 4> {
        let scores = self
            .query
            .clone()
            .matmul(self.key.clone().swap_dims(2, 3))
            .mul_scalar(self.scale);
        scores * self.visible.clone() + (self.visible.clone() - 1.0) * (-HIDDEN)
    }

    /// A [B, H, T, ..] tensor with the query heads folded: [B, KV, G·T, width].
    fn fold(&self, tensor: FloatTensor<B>, width: usize) -> Tensor<B, 4> {
        let [batch, kv_heads, folded, _] = self.visible.dims();
        Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(B::float_reshape(
            tensor,
            Shape::new([batch, kv_heads, folded, width]),
        )))
    }

    /// A folded tensor back in [B, H, T, hd], or [B, H, T] without the head dimension.
    fn unfold(&self, tensor: Tensor<B, 4>, with_head_dim: bool) -> FloatTensor<B> {
        let [batch, heads, queries, head_dim] = self.query_dims;
        let shape = if with_head_dim {
            Shape::new([batch, heads, queries, head_dim])
        } else {
            Shape::new([batch, heads, queries])
        };
        B::float_reshape(tensor.into_primitive().tensor(), shape)
    }
}

/// softmax(q·kᵀ/√hd over each query's visible keys)·v and the log-sum-exp of each query's
/// scores; zeros (and a log-sum-exp of 0) for a query that sees no key.
pub fn attention_forward<B: Backend>(input: AttentionInput<B>) -> AttentionOutput<B> {
    let attention = FoldedAttention::new(input);
    let scores = attention.scores();
    let max = scores.clone().max_dim(3);
    let weights = (scores - max.clone()).exp() * attention.visible.clone();
    let sum = weights.clone().sum_dim(3); // [B, KV, G·T, 1]
    let sees_a_key = sum.clone().greater_elem(0.0).float();
    let sum = sum.clamp_min(f32::MIN_POSITIVE);
    // Normalised before the product, not after: on wgpu (lavapipe), burn 0.21's fusion gave
    // wrong values for this product followed by the division (right ones on the CPU backends;
    // a product of fresh random tensors followed by a division did not show it).
    let output = (weights / sum.clone()).matmul(attention.value.clone());
    let log_sum_exp = (max + sum.log()) * sees_a_key;
    AttentionOutput {
        output: attention.unfold(output, true),
        log_sum_exp: attention.unfold(log_sum_exp, false),
    }
}

/// The gradients of [`attention_forward`], from the weights rebuilt with the saved log-sum-exp.
pub fn attention_backward<B: Backend>(
    input: AttentionInput<B>,
    saved: AttentionOutput<B>,
    grad: FloatTensor<B>,
) -> AttentionGrads<B> {
    let attention = FoldedAttention::new(input);
    let head_dim = attention.query_dims[3];
    let log_sum_exp = attention.fold(saved.log_sum_exp, 1);
    let output = attention.fold(saved.output, head_dim);
    let grad = attention.fold(grad, head_dim);
    let weights = (attention.scores() - log_sum_exp).exp() * attention.visible.clone();
    let grad_value = weights.clone().swap_dims(2, 3).matmul(grad.clone());
    let grad_weights = grad.clone().matmul(attention.value.clone().swap_dims(2, 3));
    let delta = (grad * output).sum_dim(3);
    let grad_scores = weights * (grad_weights - delta);
    let grad_query = grad_scores
        .clone()
        .matmul(attention.key.clone())
        .mul_scalar(attention.scale);
    let grad_key = grad_scores
        .swap_dims(2, 3)
        .matmul(attention.query.clone())
        .mul_scalar(attention.scale);
    AttentionGrads {
        query: attention.unfold(grad_query, true),
        key: grad_key.into_primitive().tensor(),
        value: grad_value.into_primitive().tensor(),
    }
}

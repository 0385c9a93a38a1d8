//! The unfused definitions of [`Kernels`](crate::Kernels)' operations in burn's tensor ops: what
//! CPU backends run, and what every kernel must equal.

use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::backend::Backend;
use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{IndexingUpdateOp, Int, Shape, Tensor, TensorMetadata, TensorPrimitive};

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

use burn::tensor::backend::Backend;
use burn::tensor::ops::{FloatTensor, IntTensor};

use crate::reference;

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
}

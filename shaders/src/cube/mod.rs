//! Kernels written in CubeCL: one source compiled to WGSL for WebGPU (the page, and Vulkan
//! natively) and to CUDA.

mod attention;
mod log_softmax_gather;
mod rms_norm;
mod rows;

use burn::tensor::ops::{FloatTensor, IntTensor};
use burn_cubecl::{BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement};

use crate::{AttentionGrads, AttentionInput, AttentionOutput, Kernels, ResidualNorm};

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> Kernels
    for CubeBackend<R, F, I, BT>
{
    fn log_softmax_gather(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
    ) -> FloatTensor<Self> {
        log_softmax_gather::forward(logits, targets)
    }

    fn log_softmax_gather_backward(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        log_softmax_gather::backward(logits, targets, grad)
    }

    fn rms_norm(x: FloatTensor<Self>, weight: FloatTensor<Self>, eps: f64) -> FloatTensor<Self> {
        rms_norm::forward(x, weight, eps)
    }

    fn rms_norm_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        eps: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        rms_norm::backward::<R, F, I, BT>(x, weight, grad, eps)
    }

    fn add_rms_norm(
        residual: FloatTensor<Self>,
        update: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        eps: f64,
    ) -> ResidualNorm<Self> {
        let (sum, normed) = rms_norm::add_forward(residual, update, weight, eps);
        ResidualNorm { sum, normed }
    }

    fn flash_attention_forward(input: AttentionInput<Self>) -> AttentionOutput<Self> {
        attention::forward(input)
    }

    fn flash_attention_backward(
        input: AttentionInput<Self>,
        saved: AttentionOutput<Self>,
        grad: FloatTensor<Self>,
    ) -> AttentionGrads<Self> {
        attention::backward(input, saved, grad)
    }
}

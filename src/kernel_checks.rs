//! How far each of alignlab's kernels ([`Kernels`](crate::backend::Kernels)) is from burn's
//! unfused composition on the same backend, in values and in gradients: what the kernel tests
//! assert, natively on the CPU backends and on WebGPU in the browser. Each returns the largest
//! absolute differences as one-element tensors, read by the caller (synchronously natively,
//! asynchronously in the browser).

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor};

use crate::backend::AutodiffBackend;
use crate::logprobs::gather_logprobs;
use crate::model::rms_norm;

/// Weights 1/n, 2/n, …, 1 in the shape `dims` (n elements): the backward passes start from a
/// weighted sum, so that every element's gradient is scaled differently, and of order one.
fn ramp<B: AutodiffBackend, const D: usize>(dims: [usize; D], device: &B::Device) -> Tensor<B, D> {
    let count = dims.iter().product::<usize>() as i64;
    Tensor::<B, 1, Int>::arange(1..count + 1, device)
        .float()
        .div_scalar(count as f64)
        .reshape(dims)
}

/// [`gather_logprobs`] against `log_softmax` + `gather`: [values, logits' gradients].
pub fn log_prob_deviation<B: AutodiffBackend>(
    logits: Tensor<B::InnerBackend, 3>,
    targets: Tensor<B::InnerBackend, 2, Int>,
) -> [Tensor<B::InnerBackend, 1>; 2] {
    let [batch, seq, _] = logits.dims();
    let weights = ramp::<B, 2>([batch, seq], &logits.device());
    let run = |fused: bool| {
        let logits = Tensor::<B, 3>::from_inner(logits.clone()).require_grad();
        let targets = Tensor::<B, 2, Int>::from_inner(targets.clone());
        let logprobs = if fused {
            gather_logprobs(logits.clone(), targets)
        } else {
            log_softmax(logits.clone(), 2)
                .gather(2, targets.unsqueeze_dim(2))
                .squeeze_dim(2)
        };
        let grads = (logprobs.clone() * weights.clone()).sum().backward();
        (
            logprobs.inner(),
            logits.grad(&grads).expect("the logits' gradient"),
        )
    };
    let ((fused, fused_grad), (unfused, unfused_grad)) = (run(true), run(false));
    [
        largest_gap(fused, unfused),
        largest_gap(fused_grad, unfused_grad),
    ]
}

/// [`rms_norm`] against `x / √(mean(x²) + eps) · weight` in burn ops: [values, x's gradients,
/// the weight's gradients].
pub fn rms_norm_deviation<B: AutodiffBackend>(
    x: Tensor<B::InnerBackend, 3>,
    weight: Tensor<B::InnerBackend, 1>,
    eps: f64,
) -> [Tensor<B::InnerBackend, 1>; 3] {
    let weights = ramp::<B, 3>(x.dims(), &x.device());
    let run = |fused: bool| {
        let x = Tensor::<B, 3>::from_inner(x.clone()).require_grad();
        let weight = Tensor::<B, 1>::from_inner(weight.clone()).require_grad();
        let normed = if fused {
            rms_norm(x.clone(), weight.clone(), eps)
        } else {
            let rms = x.clone().powi_scalar(2).mean_dim(2).add_scalar(eps).sqrt();
            x.clone() / rms * weight.clone().unsqueeze::<3>()
        };
        let grads = (normed.clone() * weights.clone()).sum().backward();
        (
            normed.inner(),
            x.grad(&grads).expect("x's gradient"),
            weight.grad(&grads).expect("the weight's gradient"),
        )
    };
    let (fused, unfused) = (run(true), run(false));
    [
        largest_gap(fused.0, unfused.0),
        largest_gap(fused.1, unfused.1),
        largest_gap(fused.2, unfused.2),
    ]
}

fn largest_gap<B: burn::tensor::backend::Backend, const D: usize>(
    a: Tensor<B, D>,
    b: Tensor<B, D>,
) -> Tensor<B, 1> {
    (a - b).abs().max().reshape([1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex, NdArray};
    use burn::tensor::{Distribution, ElementConversion};

    fn read<B: burn::tensor::backend::Backend>(gap: Tensor<B, 1>) -> f32 {
        gap.into_scalar().elem()
    }

    /// On the CPU backends the kernels' forward passes are the unfused composition and their
    /// backward passes their own (softmax − one-hot from the logits), checked against burn's
    /// autodiff through log_softmax and gather. A vocabulary of 300 and logits up to ±40
    /// (softmax's overflow without the running maximum).
    #[test]
    fn the_log_prob_kernel_equals_the_unfused_path_in_values_and_gradients() {
        fn deviation<B: AutodiffBackend>() -> Vec<f32> {
            let device = Default::default();
            let logits = Tensor::random([3, 7, 300], Distribution::Uniform(-40.0, 40.0), &device);
            let targets = Tensor::random([3, 7], Distribution::Uniform(0.0, 300.0), &device);
            log_prob_deviation::<B>(logits, targets).map(read).to_vec()
        }
        for (backend, gaps) in [
            ("flex", deviation::<Autodiff<Flex>>()),
            ("ndarray", deviation::<Autodiff<NdArray>>()),
        ] {
            assert!(gaps.iter().all(|&gap| gap < 1e-4), "{backend}: {gaps:?}");
        }
    }

    /// RMSNorm's own backward pass against burn's autodiff through the composition, on a width
    /// of 300 (more than a cube's 256 units).
    #[test]
    fn the_rms_norm_kernel_equals_the_unfused_path_in_values_and_gradients() {
        fn deviation<B: AutodiffBackend>() -> Vec<f32> {
            let device = Default::default();
            let x = Tensor::random([3, 7, 300], Distribution::Normal(0.5, 2.0), &device);
            let weight = Tensor::random([300], Distribution::Uniform(0.5, 1.5), &device);
            rms_norm_deviation::<B>(x, weight, 1e-5).map(read).to_vec()
        }
        for (backend, gaps) in [
            ("flex", deviation::<Autodiff<Flex>>()),
            ("ndarray", deviation::<Autodiff<NdArray>>()),
        ] {
            assert!(gaps.iter().all(|&gap| gap < 1e-4), "{backend}: {gaps:?}");
        }
    }
}

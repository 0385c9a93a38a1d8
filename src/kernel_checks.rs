//! How far each of alignlab's kernels ([`Kernels`](crate::backend::Kernels)) is from burn's
//! unfused composition on the same backend, in values and in gradients: what the kernel tests
//! assert, natively on the CPU backends and on WebGPU in the browser. Each returns the largest
//! absolute differences as one-element tensors, read by the caller (synchronously natively,
//! asynchronously in the browser).

use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Bool, Distribution, Int, Tensor, TensorData, TensorPrimitive};

use crate::backend::{AttentionInput, AutodiffBackend};
use crate::logprobs::gather_logprobs;
use crate::model::{add_rms_norm, rms_norm};

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

/// [`add_rms_norm`] against `residual + update` and the RMSNorm of it in burn ops, with both the
/// sum and the norm used downstream (as in a decoder block): [the sum's values, the norm's
/// values, the residual's, the update's and the weight's gradients].
pub fn add_rms_norm_deviation<B: AutodiffBackend>(
    [residual, update]: [Tensor<B::InnerBackend, 3>; 2],
    weight: Tensor<B::InnerBackend, 1>,
    eps: f64,
) -> [Tensor<B::InnerBackend, 1>; 5] {
    let weights = ramp::<B, 3>(residual.dims(), &residual.device());
    let run = |fused: bool| {
        let residual = Tensor::<B, 3>::from_inner(residual.clone()).require_grad();
        let update = Tensor::<B, 3>::from_inner(update.clone()).require_grad();
        let weight = Tensor::<B, 1>::from_inner(weight.clone()).require_grad();
        let (sum, normed) = if fused {
            add_rms_norm(residual.clone(), update.clone(), weight.clone(), eps)
        } else {
            let sum = residual.clone() + update.clone();
            let rms = sum
                .clone()
                .powi_scalar(2)
                .mean_dim(2)
                .add_scalar(eps)
                .sqrt();
            (sum.clone(), sum / rms * weight.clone().unsqueeze::<3>())
        };
        // The stream's later use weighs each element differently from the norm's.
        let stream_use = (sum.clone() * weights.clone().flip([2]) * 0.5).sum();
        let grads = ((normed.clone() * weights.clone()).sum() + stream_use).backward();
        [
            sum.inner(),
            normed.inner(),
            residual.grad(&grads).expect("the residual's gradient"),
            update.grad(&grads).expect("the update's gradient"),
        ]
        .map(|tensor| tensor.reshape([-1]))
        .into_iter()
        .chain([weight.grad(&grads).expect("the weight's gradient")])
        .collect::<Vec<_>>()
    };
    let (fused, unfused) = (run(true), run(false));
    let gaps: Vec<_> = fused
        .into_iter()
        .zip(unfused)
        .map(|(fused, unfused)| largest_gap(fused, unfused))
        .collect();
    gaps.try_into().expect("five gaps")
}

/// Which keys each query sees in an attention check: query t of row b sees
/// `first_key[b] ..= query_offset + t`.
#[derive(Debug, Clone)]
pub struct KeySpans {
    pub first_key: Vec<usize>,
    pub query_offset: usize,
}

impl KeySpans {
    fn sees(&self, row: usize, query: usize, key: usize) -> bool {
        self.first_key[row] <= key && key <= self.query_offset + query
    }
}

/// [`Kernels::flash_attention`](crate::backend::Kernels::flash_attention) against burn's
/// matmul, masked softmax, matmul with the key/value heads repeated (and zeros for a query that
/// sees no key): [values, q's, k's and v's gradients]. q [B, H, T, hd], k and v [B, KV, S, hd].
pub fn attention_deviation<B: AutodiffBackend>(
    inputs: [Tensor<B::InnerBackend, 4>; 3],
    spans: &KeySpans,
) -> [Tensor<B::InnerBackend, 1>; 4] {
    let [a0, a1, a2, a3] = attention_run::<B>(&inputs, spans, AttentionPath::Kernel);
    let [b0, b1, b2, b3] = attention_run::<B>(&inputs, spans, AttentionPath::Unfused);
    [
        largest_gap(a0, b0),
        largest_gap(a1, b1),
        largest_gap(a2, b2),
        largest_gap(a3, b3),
    ]
}

/// Which side of an attention check runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionPath {
    Kernel,
    Unfused,
}

/// One side of [`attention_deviation`]: the output and the inputs' gradients of the loss
/// Σ output · ramp.
pub fn attention_run<B: AutodiffBackend>(
    [q, k, v]: &[Tensor<B::InnerBackend, 4>; 3],
    spans: &KeySpans,
    path: AttentionPath,
) -> [Tensor<B::InnerBackend, 4>; 4] {
    let device = q.device();
    let [batch, heads, queries, head_dim] = q.dims();
    let [_, kv_heads, keys, _] = k.dims();
    let weights = ramp::<B, 4>(q.dims(), &device);
    let [q, k, v] = [q, k, v].map(|x| Tensor::<B, 4>::from_inner(x.clone()).require_grad());
    let output = match path {
        AttentionPath::Kernel => {
            let first_key: Vec<i64> = spans.first_key.iter().map(|&first| first as i64).collect();
            let first_key =
                Tensor::<B, 1, Int>::from_data(TensorData::new(first_key, [batch]), &device);
            Tensor::from_primitive(TensorPrimitive::Float(B::flash_attention(AttentionInput {
                query: q.clone().into_primitive().tensor(),
                key: k.clone().into_primitive().tensor(),
                value: v.clone().into_primitive().tensor(),
                first_key: first_key.into_primitive(),
                query_offset: spans.query_offset,
            })))
        }
        AttentionPath::Unfused => {
            let sees = |b, t, s| spans.sees(b, t, s);
            let hidden: Vec<bool> = (0..batch)
                .flat_map(|b| {
                    (0..queries).flat_map(move |t| (0..keys).map(move |s| !sees(b, t, s)))
                })
                .collect();
            let hidden = Tensor::<B, 4, Bool>::from_data(
                TensorData::new(hidden, [batch, 1, queries, keys]),
                &device,
            )
            .expand([batch, heads, queries, keys]);
            let sees_a_key: Vec<f32> = (0..batch)
                .flat_map(|b| {
                    (0..queries).map(move |t| (0..keys).any(|s| sees(b, t, s)) as u8 as f32)
                })
                .collect();
            let sees_a_key = Tensor::<B, 4>::from_data(
                TensorData::new(sees_a_key, [batch, 1, queries, 1]),
                &device,
            );
            let repeat = |x: Tensor<B, 4>| {
                x.unsqueeze_dim::<5>(2)
                    .expand([batch, kv_heads, heads / kv_heads, keys, head_dim])
                    .reshape([batch, heads, keys, head_dim])
            };
            let scores = q.clone().matmul(repeat(k.clone()).swap_dims(2, 3));
            let scores = scores.div_scalar((head_dim as f64).sqrt());
            let attention = softmax(scores.mask_fill(hidden, -1.0e9), 3);
            // Masked before the product, not after: on wgpu (lavapipe) burn 0.21's fusion gave
            // wrong values for the product followed by this one (see `reference.rs`).
            (attention * sees_a_key).matmul(repeat(v.clone()))
        }
    };
    let grads = (output.clone() * weights).sum().backward();
    let grad = |x: &Tensor<B, 4>| x.grad(&grads).expect("an input's gradient");
    [output.inner(), grad(&q), grad(&k), grad(&v)]
}

/// The attention calls the model makes: causal over a whole sequence, with two query heads
/// per key/value head; and a cached decoding step, 3 new tokens over 70 slots of which 64
/// are filled, rows left-padded by 0 and 5, the first of the new tokens a pad's own
/// position in a row padded by 66 (it sees no key).
pub fn attention_cases<B: burn::tensor::backend::Backend>(
    device: &B::Device,
) -> Vec<([Tensor<B, 4>; 3], KeySpans)> {
    let random = |dims: [usize; 4]| Tensor::random(dims, Distribution::Normal(0.0, 1.0), device);
    let causal = (
        [
            random([2, 4, 40, 8]),
            random([2, 2, 40, 8]),
            random([2, 2, 40, 8]),
        ],
        KeySpans {
            first_key: vec![0, 0],
            query_offset: 0,
        },
    );
    let cached = (
        [
            random([3, 4, 3, 16]),
            random([3, 2, 70, 16]),
            random([3, 2, 70, 16]),
        ],
        KeySpans {
            first_key: vec![0, 5, 66],
            query_offset: 64,
        },
    );
    vec![causal, cached]
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

    /// RMSNorm's own backward pass against burn's autodiff through the composition, alone and
    /// after a residual add (its two graph nodes), on a width of 300 (more than a cube's 256
    /// units).
    #[test]
    fn the_rms_norm_kernels_equal_the_unfused_path_in_values_and_gradients() {
        fn deviation<B: AutodiffBackend>() -> Vec<f32> {
            let device = Default::default();
            let x = || Tensor::random([3, 7, 300], Distribution::Normal(0.5, 2.0), &device);
            let weight = Tensor::random([300], Distribution::Uniform(0.5, 1.5), &device);
            let alone = rms_norm_deviation::<B>(x(), weight.clone(), 1e-5);
            let after_add = add_rms_norm_deviation::<B>([x(), x()], weight, 1e-5);
            alone.into_iter().chain(after_add).map(read).collect()
        }
        for (backend, gaps) in [
            ("flex", deviation::<Autodiff<Flex>>()),
            ("ndarray", deviation::<Autodiff<NdArray>>()),
        ] {
            assert!(gaps.iter().all(|&gap| gap < 1e-4), "{backend}: {gaps:?}");
        }
    }

    /// On flex against its own unfused path. On ndarray against flex's: burn-autodiff
    /// differentiates a division through `float_recip`, which burn-ndarray computes with the
    /// CPU's approximate reciprocal (`rcpps`, 12 bits) for f32, so ndarray's own unfused path
    /// is off by ~2⁻¹² of each gradient (4e-4 here, on AMD EPYC) while its values are exact.
    #[test]
    fn the_attention_kernel_equals_the_unfused_path_in_values_and_gradients() {
        type Exact = Autodiff<Flex>;
        let device = Default::default();
        let mut gaps = Vec::new();
        for (inputs, spans) in attention_cases::<Flex>(&device) {
            gaps.extend(attention_deviation::<Exact>(inputs.clone(), &spans).map(read));
            let on_ndarray = inputs
                .clone()
                .map(|x| Tensor::<NdArray, 4>::from_data(x.into_data(), &Default::default()));
            let unfused = attention_run::<Exact>(&inputs, &spans, AttentionPath::Unfused);
            let kernel =
                attention_run::<Autodiff<NdArray>>(&on_ndarray, &spans, AttentionPath::Kernel);
            for (kernel, unfused) in kernel.into_iter().zip(unfused) {
                let (kernel, unfused) = (values(kernel), values(unfused));
                let gap = kernel
                    .iter()
                    .zip(&unfused)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0f32, f32::max);
                gaps.push(gap);
            }
        }
        assert!(
            gaps.iter().all(|&gap| gap < 1e-4),
            "flex, then ndarray: {gaps:?}"
        );
    }

    fn values<B: burn::tensor::backend::Backend>(x: Tensor<B, 4>) -> Vec<f32> {
        x.into_data().into_vec().expect("f32 values")
    }
}

//! `log_softmax(logits)[target]` and its gradient, one cube (workgroup) per row of logits.
//!
//! The row's log-sum-exp is an online softmax: each unit runs over every `units`-th logit keeping
//! a running maximum and the sum of `exp(x − max)`, rescaling the sum when the maximum grows
//! (Milakov & Gimelshein 2018, "Online normalizer calculation for softmax"); the cube then merges
//! the units' (max, sum) pairs in shared memory, pairwise. No subgroup (plane) operations: the
//! end-to-end test's WebGPU (SwiftShader) has none. Logits are read once in the forward pass and
//! twice in the backward pass; the [rows, V] log-probs and softmax are never written.

use burn::tensor::{Shape, TensorMetadata};
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::CubeRuntime;
use cubecl::prelude::*;

use super::rows::{cube_count, cube_row, rows_and_width, units_for};

/// Below any logit, and finite: WGSL has no −∞ literal.
const LOWEST: f32 = -3.0e38;

/// log Σ exp(logits[row_start..row_start + vocab]), known to every unit of the cube.
#[cube]
fn row_log_sum_exp<F: Float>(
    logits: &Tensor<F>,
    row_start: usize,
    vocab: usize,
    #[comptime] units: usize,
) -> F {
    let unit = UNIT_POS_X as usize;
    let mut max = F::new(LOWEST);
    let mut sum = F::new(0.0);
    let mut v = unit;
    while v < vocab {
        let x = logits[row_start + v];
        if x > max {
            sum *= (max - x).exp();
            max = x;
        }
        sum += (x - max).exp();
        v += units;
    }

    let mut maxes = SharedMemory::<F>::new(units);
    let mut sums = SharedMemory::<F>::new(units);
    maxes[unit] = max;
    sums[unit] = sum;
    sync_cube();
    let mut half = CUBE_DIM_X as usize / 2;
    while half > 0 {
        if unit < half {
            let (max_a, sum_a) = (maxes[unit], sums[unit]);
            let (max_b, sum_b) = (maxes[unit + half], sums[unit + half]);
            let mut merged = max_a;
            if max_b > max_a {
                merged = max_b;
            }
            sums[unit] = sum_a * (max_a - merged).exp() + sum_b * (max_b - merged).exp();
            maxes[unit] = merged;
        }
        sync_cube();
        half /= 2;
    }
    maxes[0] + sums[0].ln()
}

#[cube(launch)]
fn log_softmax_gather_kernel<F: Float, I: Numeric>(
    logits: &Tensor<F>,
    targets: &Tensor<I>,
    output: &mut Tensor<F>,
    rows: usize,
    #[comptime] units: usize,
    #[define(F, I)] _dtypes: [StorageType; 2],
) {
    let row = cube_row();
    if row >= rows {
        terminate!();
    }
    let vocab = logits.len() / rows;
    let log_sum_exp = row_log_sum_exp::<F>(logits, row * vocab, vocab, units);
    if UNIT_POS_X == 0 {
        let target = u32::cast_from(targets[row]) as usize;
        output[row] = logits[row * vocab + target] - log_sum_exp;
    }
}

#[cube(launch)]
fn log_softmax_gather_backward_kernel<F: Float, I: Numeric>(
    logits: &Tensor<F>,
    targets: &Tensor<I>,
    grad: &Tensor<F>,
    grad_logits: &mut Tensor<F>,
    rows: usize,
    #[comptime] units: usize,
    #[define(F, I)] _dtypes: [StorageType; 2],
) {
    let row = cube_row();
    if row >= rows {
        terminate!();
    }
    let vocab = logits.len() / rows;
    let row_start = row * vocab;
    let log_sum_exp = row_log_sum_exp::<F>(logits, row_start, vocab, units);
    let target = u32::cast_from(targets[row]) as usize;
    let g = grad[row];
    let mut v = UNIT_POS_X as usize;
    while v < vocab {
        let probability = (logits[row_start + v] - log_sum_exp).exp();
        let mut one_hot = F::new(0.0);
        if v == target {
            one_hot = F::new(1.0);
        }
        grad_logits[row_start + v] = g * (one_hot - probability);
        v += units;
    }
}

pub(super) fn forward<R: CubeRuntime>(
    logits: CubeTensor<R>,
    targets: CubeTensor<R>,
) -> CubeTensor<R> {
    let (logits, targets) = (into_contiguous(logits), into_contiguous(targets));
    let (rows, vocab) = rows_and_width(&logits);
    let output = empty_device_dtype::<R>(
        logits.client.clone(),
        logits.device.clone(),
        targets.shape(),
        logits.dtype,
    );
    let units = units_for(vocab);
    let dtypes = [logits.dtype.into(), targets.dtype.into()];
    log_softmax_gather_kernel::launch::<R>(
        &logits.client.clone(),
        cube_count(rows),
        CubeDim::new_1d(units as u32),
        logits.into_tensor_arg(),
        targets.into_tensor_arg(),
        output.clone().into_tensor_arg(),
        rows,
        units,
        dtypes,
    );
    output
}

pub(super) fn backward<R: CubeRuntime>(
    logits: CubeTensor<R>,
    targets: CubeTensor<R>,
    grad: CubeTensor<R>,
) -> CubeTensor<R> {
    let logits = into_contiguous(logits);
    let (targets, grad) = (into_contiguous(targets), into_contiguous(grad));
    let (rows, vocab) = rows_and_width(&logits);
    let shape: Shape = logits.shape();
    let grad_logits = empty_device_dtype::<R>(
        logits.client.clone(),
        logits.device.clone(),
        shape,
        logits.dtype,
    );
    let units = units_for(vocab);
    let dtypes = [logits.dtype.into(), targets.dtype.into()];
    log_softmax_gather_backward_kernel::launch::<R>(
        &logits.client.clone(),
        cube_count(rows),
        CubeDim::new_1d(units as u32),
        logits.into_tensor_arg(),
        targets.into_tensor_arg(),
        grad.into_tensor_arg(),
        grad_logits.clone().into_tensor_arg(),
        rows,
        units,
        dtypes,
    );
    grad_logits
}

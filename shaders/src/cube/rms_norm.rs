//! RMSNorm (Zhang & Sennrich 2019), alone or after a residual add, and its gradients, one cube
//! (workgroup) per row: the row's sum of squares (and in the backward pass its dot product with the scaled gradient) is summed
//! across the cube, then every unit writes its part of the row. The weight's gradient is summed
//! over rows by burn's reduction from a [rows, D] buffer of per-row terms.

use burn::tensor::ops::FloatTensorOps;
use burn::tensor::{Shape, TensorMetadata};
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::{BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement};
use cubecl::prelude::*;

use super::rows::{cube_count, cube_row, cube_sum, rows_and_width, units_for};

/// 1/√(Σx²/width + eps).
#[cube]
fn inverse_rms<F: Float>(sum_of_squares: F, width: usize, eps: f32) -> F {
    let mean = sum_of_squares / F::cast_from(width as u32);
    F::new(1.0) / (mean + F::cast_from(eps)).sqrt()
}

#[cube(launch)]
fn rms_norm_kernel<F: Float>(
    x: &Tensor<F>,
    weight: &Tensor<F>,
    output: &mut Tensor<F>,
    rows: usize,
    eps: f32,
    #[comptime] units: usize,
    #[define(F)] _dtype: StorageType,
) {
    let row = cube_row();
    if row >= rows {
        terminate!();
    }
    let width = x.len() / rows;
    let start = row * width;
    let mut squares = F::new(0.0);
    let mut i = UNIT_POS_X as usize;
    while i < width {
        let value = x[start + i];
        squares += value * value;
        i += units;
    }
    let inv_rms = inverse_rms::<F>(cube_sum::<F>(squares, units), width, eps);
    let mut i = UNIT_POS_X as usize;
    while i < width {
        output[start + i] = x[start + i] * inv_rms * weight[i];
        i += units;
    }
}

/// `sum = residual + update` and `output = rms_norm(sum)`: each unit writes its elements of the
/// sum in the first pass and reads them back (its own writes) in the second.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn add_rms_norm_kernel<F: Float>(
    residual: &Tensor<F>,
    update: &Tensor<F>,
    weight: &Tensor<F>,
    sum: &mut Tensor<F>,
    output: &mut Tensor<F>,
    rows: usize,
    eps: f32,
    #[comptime] units: usize,
    #[define(F)] _dtype: StorageType,
) {
    let row = cube_row();
    if row >= rows {
        terminate!();
    }
    let width = residual.len() / rows;
    let start = row * width;
    let mut squares = F::new(0.0);
    let mut i = UNIT_POS_X as usize;
    while i < width {
        let value = residual[start + i] + update[start + i];
        sum[start + i] = value;
        squares += value * value;
        i += units;
    }
    let inv_rms = inverse_rms::<F>(cube_sum::<F>(squares, units), width, eps);
    let mut i = UNIT_POS_X as usize;
    while i < width {
        output[start + i] = sum[start + i] * inv_rms * weight[i];
        i += units;
    }
}

#[cube(launch)]
fn rms_norm_backward_kernel<F: Float>(
    x: &Tensor<F>,
    weight: &Tensor<F>,
    grad: &Tensor<F>,
    grad_x: &mut Tensor<F>,
    weight_terms: &mut Tensor<F>,
    rows: usize,
    eps: f32,
    #[comptime] units: usize,
    #[define(F)] _dtype: StorageType,
) {
    let row = cube_row();
    if row >= rows {
        terminate!();
    }
    let width = x.len() / rows;
    let start = row * width;
    let mut squares = F::new(0.0);
    let mut dot = F::new(0.0);
    let mut i = UNIT_POS_X as usize;
    while i < width {
        let value = x[start + i];
        squares += value * value;
        dot += grad[start + i] * weight[i] * value;
        i += units;
    }
    let inv_rms = inverse_rms::<F>(cube_sum::<F>(squares, units), width, eps);
    // mean(g·n) with g = grad·weight and n = x·r.
    let mean_scaled_dot = cube_sum::<F>(dot, units) * inv_rms / F::cast_from(width as u32);
    let mut i = UNIT_POS_X as usize;
    while i < width {
        let normed = x[start + i] * inv_rms;
        let scaled = grad[start + i] * weight[i];
        grad_x[start + i] = inv_rms * (scaled - normed * mean_scaled_dot);
        weight_terms[start + i] = grad[start + i] * normed;
        i += units;
    }
}

pub(super) fn forward<R: CubeRuntime>(
    x: CubeTensor<R>,
    weight: CubeTensor<R>,
    eps: f64,
) -> CubeTensor<R> {
    let (x, weight) = (into_contiguous(x), into_contiguous(weight));
    let (rows, width) = rows_and_width(&x);
    let output = empty_device_dtype::<R>(x.client.clone(), x.device.clone(), x.shape(), x.dtype);
    let units = units_for(width);
    let dtype = x.dtype.into();
    rms_norm_kernel::launch::<R>(
        &x.client.clone(),
        cube_count(rows),
        CubeDim::new_1d(units as u32),
        x.into_tensor_arg(),
        weight.into_tensor_arg(),
        output.clone().into_tensor_arg(),
        rows,
        eps as f32,
        units,
        dtype,
    );
    output
}

pub(super) fn add_forward<R: CubeRuntime>(
    residual: CubeTensor<R>,
    update: CubeTensor<R>,
    weight: CubeTensor<R>,
    eps: f64,
) -> (CubeTensor<R>, CubeTensor<R>) {
    let (residual, update, weight) = (
        into_contiguous(residual),
        into_contiguous(update),
        into_contiguous(weight),
    );
    let (rows, width) = rows_and_width(&residual);
    let empty = || {
        empty_device_dtype::<R>(
            residual.client.clone(),
            residual.device.clone(),
            residual.shape(),
            residual.dtype,
        )
    };
    let (sum, output) = (empty(), empty());
    let units = units_for(width);
    let dtype = residual.dtype.into();
    add_rms_norm_kernel::launch::<R>(
        &residual.client.clone(),
        cube_count(rows),
        CubeDim::new_1d(units as u32),
        residual.into_tensor_arg(),
        update.into_tensor_arg(),
        weight.into_tensor_arg(),
        sum.clone().into_tensor_arg(),
        output.clone().into_tensor_arg(),
        rows,
        eps as f32,
        units,
        dtype,
    );
    (sum, output)
}

pub(super) fn backward<R, F, I, BT>(
    x: CubeTensor<R>,
    weight: CubeTensor<R>,
    grad: CubeTensor<R>,
    eps: f64,
) -> (CubeTensor<R>, CubeTensor<R>)
where
    R: CubeRuntime,
    F: FloatElement,
    I: IntElement,
    BT: BoolElement,
{
    let (x, weight, grad) = (
        into_contiguous(x),
        into_contiguous(weight),
        into_contiguous(grad),
    );
    let (rows, width) = rows_and_width(&x);
    let shape: Shape = x.shape();
    let empty =
        || empty_device_dtype::<R>(x.client.clone(), x.device.clone(), shape.clone(), x.dtype);
    let (grad_x, weight_terms) = (empty(), empty());
    let units = units_for(width);
    let dtype = x.dtype.into();
    rms_norm_backward_kernel::launch::<R>(
        &x.client.clone(),
        cube_count(rows),
        CubeDim::new_1d(units as u32),
        x.into_tensor_arg(),
        weight.into_tensor_arg(),
        grad.into_tensor_arg(),
        grad_x.clone().into_tensor_arg(),
        weight_terms.clone().into_tensor_arg(),
        rows,
        eps as f32,
        units,
        dtype,
    );
    let weight_terms =
        CubeBackend::<R, F, I, BT>::float_reshape(weight_terms, Shape::new([rows, width]));
    let grad_weight = CubeBackend::<R, F, I, BT>::float_sum_dim(weight_terms, 0);
    (
        grad_x,
        CubeBackend::<R, F, I, BT>::float_reshape(grad_weight, Shape::new([width])),
    )
}

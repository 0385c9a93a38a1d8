//! Attention with an online softmax, forward and backward, one unit per row (FlashAttention's
//! recurrence, Dao et al. 2022, without its tiling through shared memory):
//!
//! - forward, a unit per query: one pass over the keys it sees, keeping the running maximum of
//!   the scores, the rescaled sum of their exponentials and the rescaled weighted sum of values
//!   in registers; it writes the output and the log-sum-exp;
//! - backward (FlashAttention-2's, Dao 2023): a unit per query rebuilds each weight from the
//!   log-sum-exp and writes dq and δ = rowsum(grad ∘ output); then a unit per key runs over the
//!   queries that see it, in every query head that shares it, and writes dk and dv. Each
//!   gradient has one writer: no atomics, and the same sums in the same order on every run.
//!
//! The [T, S] scores and weights are never written. The head dimension is a compile-time
//! constant (a model has one), so each row's query, key and accumulators live in registers.

use burn::tensor::{Shape, TensorMetadata};
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::{BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement};
use cubecl::prelude::*;

use super::rows::{cube_count, cube_row};
use crate::{AttentionGrads, AttentionInput, AttentionOutput};

/// Units per cube; each works on its own row.
const UNITS: usize = 64;

/// Below any score, and finite: WGSL has no −∞ literal.
const LOWEST: f32 = -3.0e38;

/// This unit's row: cubes over two axes, [`UNITS`] rows each.
#[cube]
fn unit_row() -> usize {
    cube_row() * UNITS + UNIT_POS_X as usize
}

/// 1/√hd, which scales every score.
#[cube]
fn score_scale<F: Float>(#[comptime] head_dim: usize) -> F {
    F::new(1.0) / F::cast_from(head_dim as u32).sqrt()
}

/// Where the keys and values that query `row` ([B, H, T] flattened) reads start.
#[cube]
fn key_value_start(
    row: usize,
    heads: usize,
    kv_heads: usize,
    queries: usize,
    keys: usize,
    #[comptime] head_dim: usize,
) -> usize {
    let head = (row / queries) % heads;
    let batch = row / (queries * heads);
    (batch * kv_heads + head / (heads / kv_heads)) * keys * head_dim
}

/// The first key slot query `row` sees: its batch row's.
#[cube]
fn first_visible<I: Numeric>(
    first_key: &Tensor<I>,
    row: usize,
    heads: usize,
    queries: usize,
) -> usize {
    u32::cast_from(first_key[row / (queries * heads)]) as usize
}

/// One past the last key slot query `row` sees: its position plus the offset, within the keys.
#[cube]
fn end_of_visible(row: usize, queries: usize, query_offset: usize, keys: usize) -> usize {
    let mut end = row % queries + query_offset + 1;
    if end > keys {
        end = keys;
    }
    end
}

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn attention_kernel<F: Float, I: Numeric>(
    query: &Tensor<F>,
    key: &Tensor<F>,
    value: &Tensor<F>,
    first_key: &Tensor<I>,
    output: &mut Tensor<F>,
    log_sum_exp: &mut Tensor<F>,
    heads: usize,
    kv_heads: usize,
    queries: usize,
    keys: usize,
    query_offset: usize,
    #[comptime] head_dim: usize,
    #[define(F, I)] _dtypes: [StorageType; 2],
) {
    let row = unit_row();
    if row >= log_sum_exp.len() {
        terminate!();
    }
    let kv_start = key_value_start(row, heads, kv_heads, queries, keys, head_dim);
    let query_start = row * head_dim;

    let scale = score_scale::<F>(head_dim);
    let mut scaled_query = Array::<F>::new(head_dim);
    let mut weighted_values = Array::<F>::new(head_dim);
    for d in 0..head_dim {
        scaled_query[d] = query[query_start + d] * scale;
        weighted_values[d] = F::new(0.0);
    }
    let mut max = F::new(LOWEST);
    let mut sum = F::new(0.0);
    let mut slot = first_visible::<I>(first_key, row, heads, queries);
    let end = end_of_visible(row, queries, query_offset, keys);
    while slot < end {
        let key_start = kv_start + slot * head_dim;
        let mut score = F::new(0.0);
        for d in 0..head_dim {
            score += scaled_query[d] * key[key_start + d];
        }
        let mut new_max = max;
        if score > max {
            new_max = score;
        }
        let rescale = (max - new_max).exp();
        let weight = (score - new_max).exp();
        sum = sum * rescale + weight;
        for d in 0..head_dim {
            weighted_values[d] = weighted_values[d] * rescale + weight * value[key_start + d];
        }
        max = new_max;
        slot += 1;
    }

    // A query that sees no key (a pad's own slot) gets zeros and a log-sum-exp of 0.
    let mut inverse_sum = F::new(0.0);
    let mut row_log_sum_exp = F::new(0.0);
    if sum > F::new(0.0) {
        inverse_sum = F::new(1.0) / sum;
        row_log_sum_exp = max + sum.ln();
    }
    for d in 0..head_dim {
        output[query_start + d] = weighted_values[d] * inverse_sum;
    }
    log_sum_exp[row] = row_log_sum_exp;
}

/// dq and δ, a unit per query.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn attention_query_grad_kernel<F: Float, I: Numeric>(
    query: &Tensor<F>,
    key: &Tensor<F>,
    value: &Tensor<F>,
    first_key: &Tensor<I>,
    output: &Tensor<F>,
    log_sum_exp: &Tensor<F>,
    grad: &Tensor<F>,
    grad_query: &mut Tensor<F>,
    delta: &mut Tensor<F>,
    heads: usize,
    kv_heads: usize,
    queries: usize,
    keys: usize,
    query_offset: usize,
    #[comptime] head_dim: usize,
    #[define(F, I)] _dtypes: [StorageType; 2],
) {
    let row = unit_row();
    if row >= log_sum_exp.len() {
        terminate!();
    }
    let kv_start = key_value_start(row, heads, kv_heads, queries, keys, head_dim);
    let query_start = row * head_dim;

    let scale = score_scale::<F>(head_dim);
    let mut scaled_query = Array::<F>::new(head_dim);
    let mut row_grad = Array::<F>::new(head_dim);
    let mut grad_sum = Array::<F>::new(head_dim);
    let mut row_delta = F::new(0.0);
    for d in 0..head_dim {
        scaled_query[d] = query[query_start + d] * scale;
        row_grad[d] = grad[query_start + d];
        row_delta += row_grad[d] * output[query_start + d];
        grad_sum[d] = F::new(0.0);
    }
    let row_log_sum_exp = log_sum_exp[row];
    let mut slot = first_visible::<I>(first_key, row, heads, queries);
    let end = end_of_visible(row, queries, query_offset, keys);
    while slot < end {
        let key_start = kv_start + slot * head_dim;
        let mut score = F::new(0.0);
        let mut grad_weight = F::new(0.0);
        for d in 0..head_dim {
            score += scaled_query[d] * key[key_start + d];
            grad_weight += row_grad[d] * value[key_start + d];
        }
        let grad_score = (score - row_log_sum_exp).exp() * (grad_weight - row_delta);
        for d in 0..head_dim {
            grad_sum[d] += grad_score * key[key_start + d];
        }
        slot += 1;
    }
    for d in 0..head_dim {
        grad_query[query_start + d] = grad_sum[d] * scale;
    }
    delta[row] = row_delta;
}

/// dk and dv, a unit per key: over the queries that see it in every query head that reads it.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn attention_key_value_grad_kernel<F: Float, I: Numeric>(
    query: &Tensor<F>,
    key: &Tensor<F>,
    value: &Tensor<F>,
    first_key: &Tensor<I>,
    log_sum_exp: &Tensor<F>,
    grad: &Tensor<F>,
    delta: &Tensor<F>,
    grad_key: &mut Tensor<F>,
    grad_value: &mut Tensor<F>,
    heads: usize,
    kv_heads: usize,
    queries: usize,
    keys: usize,
    query_offset: usize,
    #[comptime] head_dim: usize,
    #[define(F, I)] _dtypes: [StorageType; 2],
) {
    let row = unit_row();
    if row * head_dim >= key.len() {
        terminate!();
    }
    let slot = row % keys;
    let kv_head = (row / keys) % kv_heads;
    let batch = row / (keys * kv_heads);
    let key_start = row * head_dim;
    let group = heads / kv_heads;

    let scale = score_scale::<F>(head_dim);
    let mut scaled_key = Array::<F>::new(head_dim);
    let mut row_value = Array::<F>::new(head_dim);
    let mut key_grad_sum = Array::<F>::new(head_dim);
    let mut value_grad_sum = Array::<F>::new(head_dim);
    for d in 0..head_dim {
        scaled_key[d] = key[key_start + d] * scale;
        row_value[d] = value[key_start + d];
        key_grad_sum[d] = F::new(0.0);
        value_grad_sum[d] = F::new(0.0);
    }
    // Query t sees this slot when first_key ≤ slot ≤ t + query_offset.
    let mut first_position = 0;
    if slot > query_offset {
        first_position = slot - query_offset;
    }
    if slot < u32::cast_from(first_key[batch]) as usize {
        first_position = queries;
    }
    for member in 0..group {
        let head = kv_head * group + member;
        let mut position = first_position;
        while position < queries {
            let query_row = (batch * heads + head) * queries + position;
            let query_start = query_row * head_dim;
            let mut score = F::new(0.0);
            let mut grad_weight = F::new(0.0);
            for d in 0..head_dim {
                score += query[query_start + d] * scaled_key[d];
                grad_weight += grad[query_start + d] * row_value[d];
            }
            let weight = (score - log_sum_exp[query_row]).exp();
            let grad_score = weight * (grad_weight - delta[query_row]);
            for d in 0..head_dim {
                value_grad_sum[d] += weight * grad[query_start + d];
                key_grad_sum[d] += grad_score * query[query_start + d];
            }
            position += 1;
        }
    }
    for d in 0..head_dim {
        grad_key[key_start + d] = key_grad_sum[d] * scale;
        grad_value[key_start + d] = value_grad_sum[d];
    }
}

/// The shapes of one call: [B, H, T, hd] queries over [B, KV, S, hd] keys.
struct Dims {
    batch: usize,
    heads: usize,
    kv_heads: usize,
    queries: usize,
    keys: usize,
    head_dim: usize,
}

impl Dims {
    fn of<R: CubeRuntime>(query: &CubeTensor<R>, key: &CubeTensor<R>) -> Self {
        let (query, key) = (query.shape(), key.shape());
        Self {
            batch: query[0],
            heads: query[1],
            kv_heads: key[1],
            queries: query[2],
            keys: key[2],
            head_dim: query[3],
        }
    }

    fn query_rows(&self) -> usize {
        self.batch * self.heads * self.queries
    }

    fn key_rows(&self) -> usize {
        self.batch * self.kv_heads * self.keys
    }
}

/// Cubes for a unit per row.
fn cubes_for(rows: usize) -> CubeCount {
    cube_count(rows.div_ceil(UNITS))
}

fn empty_like<R: CubeRuntime>(like: &CubeTensor<R>, shape: Shape) -> CubeTensor<R> {
    empty_device_dtype::<R>(like.client.clone(), like.device.clone(), shape, like.dtype)
}

/// Every input of a call, contiguous.
fn contiguous<R, F, I, BT>(input: Input<R, F, I, BT>) -> Input<R, F, I, BT>
where
    R: CubeRuntime,
    F: FloatElement,
    I: IntElement,
    BT: BoolElement,
{
    AttentionInput {
        query: into_contiguous(input.query),
        key: into_contiguous(input.key),
        value: into_contiguous(input.value),
        first_key: into_contiguous(input.first_key),
        query_offset: input.query_offset,
    }
}

type Input<R, F, I, BT> = AttentionInput<CubeBackend<R, F, I, BT>>;
type Saved<R, F, I, BT> = AttentionOutput<CubeBackend<R, F, I, BT>>;

pub(super) fn forward<R, F, I, BT>(input: Input<R, F, I, BT>) -> Saved<R, F, I, BT>
where
    R: CubeRuntime,
    F: FloatElement,
    I: IntElement,
    BT: BoolElement,
{
    let input = contiguous(input);
    let dims = Dims::of(&input.query, &input.key);
    let output = empty_like(&input.query, input.query.shape());
    let log_sum_exp = empty_like(
        &input.query,
        Shape::new([dims.batch, dims.heads, dims.queries]),
    );
    let dtypes = [input.query.dtype.into(), input.first_key.dtype.into()];
    attention_kernel::launch::<R>(
        &input.query.client.clone(),
        cubes_for(dims.query_rows()),
        CubeDim::new_1d(UNITS as u32),
        input.query.into_tensor_arg(),
        input.key.into_tensor_arg(),
        input.value.into_tensor_arg(),
        input.first_key.into_tensor_arg(),
        output.clone().into_tensor_arg(),
        log_sum_exp.clone().into_tensor_arg(),
        dims.heads,
        dims.kv_heads,
        dims.queries,
        dims.keys,
        input.query_offset,
        dims.head_dim,
        dtypes,
    );
    AttentionOutput {
        output,
        log_sum_exp,
    }
}

pub(super) fn backward<R, F, I, BT>(
    input: Input<R, F, I, BT>,
    saved: Saved<R, F, I, BT>,
    grad: CubeTensor<R>,
) -> AttentionGrads<CubeBackend<R, F, I, BT>>
where
    R: CubeRuntime,
    F: FloatElement,
    I: IntElement,
    BT: BoolElement,
{
    let input = contiguous(input);
    let (output, log_sum_exp, grad) = (
        into_contiguous(saved.output),
        into_contiguous(saved.log_sum_exp),
        into_contiguous(grad),
    );
    let dims = Dims::of(&input.query, &input.key);
    let grad_query = empty_like(&input.query, input.query.shape());
    let delta = empty_like(&input.query, log_sum_exp.shape());
    let grad_key = empty_like(&input.key, input.key.shape());
    let grad_value = empty_like(&input.value, input.value.shape());
    let client = input.query.client.clone();
    let dtypes = [input.query.dtype.into(), input.first_key.dtype.into()];
    attention_query_grad_kernel::launch::<R>(
        &client,
        cubes_for(dims.query_rows()),
        CubeDim::new_1d(UNITS as u32),
        input.query.clone().into_tensor_arg(),
        input.key.clone().into_tensor_arg(),
        input.value.clone().into_tensor_arg(),
        input.first_key.clone().into_tensor_arg(),
        output.into_tensor_arg(),
        log_sum_exp.clone().into_tensor_arg(),
        grad.clone().into_tensor_arg(),
        grad_query.clone().into_tensor_arg(),
        delta.clone().into_tensor_arg(),
        dims.heads,
        dims.kv_heads,
        dims.queries,
        dims.keys,
        input.query_offset,
        dims.head_dim,
        dtypes,
    );
    attention_key_value_grad_kernel::launch::<R>(
        &client,
        cubes_for(dims.key_rows()),
        CubeDim::new_1d(UNITS as u32),
        input.query.into_tensor_arg(),
        input.key.into_tensor_arg(),
        input.value.into_tensor_arg(),
        input.first_key.into_tensor_arg(),
        log_sum_exp.into_tensor_arg(),
        grad.into_tensor_arg(),
        delta.into_tensor_arg(),
        grad_key.clone().into_tensor_arg(),
        grad_value.clone().into_tensor_arg(),
        dims.heads,
        dims.kv_heads,
        dims.queries,
        dims.keys,
        input.query_offset,
        dims.head_dim,
        dtypes,
    );
    AttentionGrads {
        query: grad_query,
        key: grad_key,
        value: grad_value,
    }
}

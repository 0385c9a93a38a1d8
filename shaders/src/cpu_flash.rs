//! Attention with its backward pass on the host, for training on CPU backends: the same one
//! pass per query over the keys it sees as [`cpu_attention`](crate::cpu_attention), keeping
//! one log-sum-exp per query, and FlashAttention-2's backward (Dao 2023, Algorithm 2) from it,
//! so the [T, S] attention weights are never stored and the keys a query does not see are
//! never visited. burn's decomposition (matmul, softmax, matmul) under autodiff stores the
//! weights, computes the masked half of the square and runs a scalar `expf` over all of it.
//!
//! Tensors are head-major, as in [`Kernels`](crate::Kernels): q [B, H, T, hd], k and v
//! [B, KV, S, hd]; query head h reads key/value head h / (H / KV).

use crate::cpu_attention::{dot, exp, max_of, sum_of, Dims};

/// Which keys each query sees: query t of row b sees `first_key[b] ..= query_offset + t`.
#[derive(Debug, Clone, Copy)]
pub struct Spans<'a> {
    pub first_key: &'a [usize],
    pub query_offset: usize,
}

impl Spans<'_> {
    /// The keys query `t` of `row` sees, as a range (empty for a pad's own position).
    fn keys(&self, row: usize, t: usize, keys: usize) -> std::ops::Range<usize> {
        let end = (self.query_offset + t + 1).min(keys);
        self.first_key[row].min(end)..end
    }
}

/// The forward pass: the output [B, H, T, hd] and log Σ exp(score) of each query over the keys
/// it sees [B, H, T] (0 for a query that sees none, whose output is zeros).
pub struct Forward {
    pub output: Vec<f32>,
    pub log_sum_exp: Vec<f32>,
}

/// What the backward pass reads besides the inputs: the forward pass's results and the
/// gradient of the output [B, H, T, hd].
pub struct Saved<'a> {
    pub output: &'a [f32],
    pub log_sum_exp: &'a [f32],
    pub grad: &'a [f32],
}

/// The gradients with respect to q [B, H, T, hd], k and v [B, KV, S, hd].
pub struct Grads {
    pub query: Vec<f32>,
    pub key: Vec<f32>,
    pub value: Vec<f32>,
}

/// The inputs of one call, head-major.
#[derive(Clone, Copy)]
pub struct Inputs<'a> {
    pub dims: Dims,
    pub spans: Spans<'a>,
    pub query: &'a [f32],
    pub key: &'a [f32],
    pub value: &'a [f32],
}

impl<'a> Inputs<'a> {
    fn query_head(&self, row: usize, head: usize) -> &'a [f32] {
        let len = self.dims.queries * self.dims.head_dim;
        let start = (row * self.dims.heads + head) * len;
        &self.query[start..start + len]
    }

    /// A key/value head's keys and values, transposed to [hd, S]: a query's scores are then
    /// hd multiply-adds over contiguous keys, which vectorise.
    fn key_value_transposed(&self, row: usize, kv_head: usize) -> [Vec<f32>; 2] {
        let (keys, hd) = (self.dims.keys, self.dims.head_dim);
        let start = (row * self.dims.kv_heads + kv_head) * keys * hd;
        [self.key, self.value].map(|x| transpose(&x[start..start + keys * hd], keys, hd))
    }

    fn scale(&self) -> f32 {
        1.0 / (self.dims.head_dim as f32).sqrt()
    }

    /// q·k_j/√hd for the keys in `span` into `scores[span]`.
    #[inline(always)]
    fn scores(
        &self,
        query: &[f32],
        keys_t: &[f32],
        span: &std::ops::Range<usize>,
        scores: &mut [f32],
    ) {
        let keys = self.dims.keys;
        let scores = &mut scores[span.clone()];
        scores.fill(0.0);
        for (i, &qi) in query.iter().enumerate() {
            let qi = qi * self.scale();
            let row = &keys_t[i * keys + span.start..i * keys + span.end];
            for (s, &kx) in scores.iter_mut().zip(row) {
                *s += qi * kx;
            }
        }
    }
}

/// [rows, cols] → [cols, rows].
fn transpose(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0.0f32; x.len()];
    for (r, values) in x.chunks_exact(cols).enumerate() {
        for (c, &value) in values.iter().enumerate() {
            t[c * rows + r] = value;
        }
    }
    t
}

/// softmax(q·kᵀ/√hd over each query's keys)·v, and each query's log-sum-exp.
pub fn forward(inputs: Inputs) -> Forward {
    let d = inputs.dims;
    let per_head = map_units(d.batch * d.heads, |unit| forward_head(inputs, unit));
    let mut forward = Forward {
        output: Vec::with_capacity(d.batch * d.heads * d.queries * d.head_dim),
        log_sum_exp: Vec::with_capacity(d.batch * d.heads * d.queries),
    };
    for (output, log_sum_exp) in per_head {
        forward.output.extend_from_slice(&output);
        forward.log_sum_exp.extend_from_slice(&log_sum_exp);
    }
    forward
}

/// The gradients of [`forward`]: with P = exp(q·kᵀ/√hd − lse), dP = grad·vᵀ and
/// δ = rowsum(grad ∘ output), dS = P ∘ (dP − δ), dq = dS·k/√hd, dk = dSᵀ·q/√hd, dv = Pᵀ·grad,
/// dk and dv summed over the query heads that share a key/value head (one unit of work each,
/// so no two threads add to the same key).
pub fn backward(inputs: Inputs, saved: Saved) -> Grads {
    let d = inputs.dims;
    let per_group = map_units(d.batch * d.kv_heads, |unit| {
        backward_group(inputs, &saved, unit)
    });
    let query_len = d.batch * d.heads * d.queries * d.head_dim;
    let key_len = d.batch * d.kv_heads * d.keys * d.head_dim;
    let mut grads = Grads {
        query: Vec::with_capacity(query_len),
        key: Vec::with_capacity(key_len),
        value: Vec::with_capacity(key_len),
    };
    // A group's query heads are consecutive in [B, H, T, hd], so its dq is one contiguous run.
    for group in per_group {
        grads.query.extend_from_slice(&group.query);
        grads.key.extend_from_slice(&group.key);
        grads.value.extend_from_slice(&group.value);
    }
    grads
}

#[cfg(not(target_arch = "wasm32"))]
fn map_units<T: Send>(units: usize, f: impl Fn(usize) -> T + Sync + Send) -> Vec<T> {
    use rayon::prelude::*;
    (0..units).into_par_iter().map(f).collect()
}

/// The page's module has no threads.
#[cfg(target_arch = "wasm32")]
fn map_units<T>(units: usize, f: impl Fn(usize) -> T) -> Vec<T> {
    (0..units).map(f).collect()
}

/// One (row, head) of [`forward`]: its output [T, hd] and log-sum-exps [T]. Compiled for the
/// build's baseline and, where the CPU has it, for AVX2, as in `cpu_attention` (same bits).
fn forward_head(inputs: Inputs, unit: usize) -> (Vec<f32>, Vec<f32>) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { forward_head_avx2(inputs, unit) };
    }
    forward_head_body(inputs, unit)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn forward_head_avx2(inputs: Inputs, unit: usize) -> (Vec<f32>, Vec<f32>) {
    forward_head_body(inputs, unit)
}

#[inline(always)]
fn forward_head_body(inputs: Inputs, unit: usize) -> (Vec<f32>, Vec<f32>) {
    let d = inputs.dims;
    let hd = d.head_dim;
    let (row, head) = (unit / d.heads, unit % d.heads);
    let query = inputs.query_head(row, head);
    let [keys_t, values_t] = inputs.key_value_transposed(row, head / (d.heads / d.kv_heads));
    let mut output = vec![0.0f32; d.queries * hd];
    let mut log_sum_exp = vec![0.0f32; d.queries];
    let mut scores = vec![0.0f32; d.keys];
    for t in 0..d.queries {
        let span = inputs.spans.keys(row, t, d.keys);
        if span.is_empty() {
            continue; // a pad's own position: zeros, and a log-sum-exp of 0
        }
        inputs.scores(&query[t * hd..(t + 1) * hd], &keys_t, &span, &mut scores);
        let scores = &mut scores[span.clone()];
        let max = max_of(scores);
        scores.iter_mut().for_each(|s| *s = exp(*s - max));
        let sum = sum_of(scores);
        let inv = 1.0 / sum;
        for (i, o) in output[t * hd..(t + 1) * hd].iter_mut().enumerate() {
            let values = &values_t[i * d.keys + span.start..i * d.keys + span.end];
            *o = dot(scores, values) * inv;
        }
        log_sum_exp[t] = max + sum.ln();
    }
    (output, log_sum_exp)
}

/// One (row, key/value head) of [`backward`].
fn backward_group(inputs: Inputs, saved: &Saved, unit: usize) -> Grads {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { backward_group_avx2(inputs, saved, unit) };
    }
    backward_group_body(inputs, saved, unit)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn backward_group_avx2(inputs: Inputs, saved: &Saved, unit: usize) -> Grads {
    backward_group_body(inputs, saved, unit)
}

#[inline(always)]
fn backward_group_body(inputs: Inputs, saved: &Saved, unit: usize) -> Grads {
    let d = inputs.dims;
    let (hd, keys) = (d.head_dim, d.keys);
    let group = d.heads / d.kv_heads;
    let (row, kv_head) = (unit / d.kv_heads, unit % d.kv_heads);
    let scale = inputs.scale();
    let [keys_t, values_t] = inputs.key_value_transposed(row, kv_head);
    // dk and dv accumulate transposed, [hd, S], like the keys and values they pair with.
    let mut grad_key_t = vec![0.0f32; hd * keys];
    let mut grad_value_t = vec![0.0f32; hd * keys];
    let mut grad_query = vec![0.0f32; group * d.queries * hd];
    let mut weights = vec![0.0f32; keys];
    let mut grad_scores = vec![0.0f32; keys];
    for g in 0..group {
        let head = kv_head * group + g;
        let query = inputs.query_head(row, head);
        let first = (row * d.heads + head) * d.queries;
        for t in 0..d.queries {
            let span = inputs.spans.keys(row, t, keys);
            if span.is_empty() {
                continue;
            }
            let at = (first + t) * hd;
            let (output, grad) = (&saved.output[at..at + hd], &saved.grad[at..at + hd]);
            let q = &query[t * hd..(t + 1) * hd];
            inputs.scores(q, &keys_t, &span, &mut weights);
            let log_sum_exp = saved.log_sum_exp[first + t];
            let weights = &mut weights[span.clone()];
            weights.iter_mut().for_each(|s| *s = exp(*s - log_sum_exp));
            let delta: f32 = output.iter().zip(grad).map(|(o, g)| o * g).sum();
            // dP = grad·vᵀ over the span, then dS = P ∘ (dP − δ) in place.
            let grad_scores = &mut grad_scores[span.clone()];
            grad_scores.fill(0.0);
            for (i, &gi) in grad.iter().enumerate() {
                let values = &values_t[i * keys + span.start..i * keys + span.end];
                for (s, &v) in grad_scores.iter_mut().zip(values) {
                    *s += gi * v;
                }
                let grad_values = &mut grad_value_t[i * keys + span.start..i * keys + span.end];
                for (dv, &p) in grad_values.iter_mut().zip(weights.iter()) {
                    *dv += p * gi;
                }
            }
            for (s, &p) in grad_scores.iter_mut().zip(weights.iter()) {
                *s = p * (*s - delta);
            }
            let grad_q = &mut grad_query[(g * d.queries + t) * hd..(g * d.queries + t + 1) * hd];
            for (i, (dq, &qi)) in grad_q.iter_mut().zip(q).enumerate() {
                let row_keys = &keys_t[i * keys + span.start..i * keys + span.end];
                *dq = dot(grad_scores, row_keys) * scale;
                let grad_keys = &mut grad_key_t[i * keys + span.start..i * keys + span.end];
                let qi = qi * scale;
                for (dk, &s) in grad_keys.iter_mut().zip(grad_scores.iter()) {
                    *dk += s * qi;
                }
            }
        }
    }
    Grads {
        query: grad_query,
        key: transpose(&grad_key_t, hd, keys),
        value: transpose(&grad_value_t, hd, keys),
    }
}

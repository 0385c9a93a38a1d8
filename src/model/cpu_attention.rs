//! Attention for inference on CPU backends: one pass per (row, head) over the keys a query may
//! see, the heads spread over the CPU's threads, with a vectorisable exp. burn-flex's attention
//! op computes the whole square of scores for each head in turn on one thread with a scalar
//! exp and masks half of it afterwards; in scoring 32 × 256 tokens of stories260K it took 55% of
//! the time (its loop and its expf), and it left the second core idle.
//!
//! Forward only: the tensors go to the host and back (a copy on a CPU backend), so nothing is
//! recorded for autodiff; training differentiates through burn's decomposed attention.

use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Tensor, TensorData};

/// Which keys each query sees, on the host.
pub(super) enum HostMask {
    /// Query t sees keys 0..=t + (S − T).
    Causal,
    /// `true` = hidden, [B, T, S] (the model's [B, 1, T, S] mask without its head axis).
    Explicit(Vec<bool>),
}

/// Shapes of one attention call.
#[derive(Debug, Clone, Copy)]
pub(super) struct Dims {
    pub batch: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub queries: usize,
    pub keys: usize,
    pub head_dim: usize,
}

/// q [B, H, T, hd], k and v [B, KV, S, hd] → [B, H, T, hd], computed on the host.
pub(super) fn attention<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    mask: Option<Tensor<B, 4, Bool>>,
) -> Tensor<B, 4> {
    let [batch, heads, queries, head_dim] = q.dims();
    let [_, kv_heads, keys, _] = k.dims();
    let dims = Dims {
        batch,
        heads,
        kv_heads,
        queries,
        keys,
        head_dim,
    };
    let device = q.device();
    let host = |t: Tensor<B, 4>| -> Vec<f32> {
        t.into_data()
            .convert::<f32>()
            .into_vec()
            .expect("a CPU tensor reads back")
    };
    let mask = match mask {
        None => HostMask::Causal,
        Some(hidden) => HostMask::Explicit(
            hidden
                .into_data()
                .into_vec::<bool>()
                .expect("a CPU mask reads back"),
        ),
    };
    let out = attend(dims, &host(q), &host(k), &host(v), &mask);
    Tensor::from_data(
        TensorData::new(out, [batch, heads, queries, head_dim]),
        &device,
    )
}

/// The host computation of [`attention`]: `q` [B, H, T, hd], `k` and `v` [B, KV, S, hd].
pub(super) fn attend(d: Dims, q: &[f32], k: &[f32], v: &[f32], mask: &HostMask) -> Vec<f32> {
    let head_len = d.queries * d.head_dim;
    let mut out = vec![0.0f32; d.batch * d.heads * head_len];
    let one_head = |index: usize, out: &mut [f32]| {
        let (row, head) = (index / d.heads, index % d.heads);
        let kv = row * d.kv_heads + head / (d.heads / d.kv_heads);
        let kv_range = kv * d.keys * d.head_dim..(kv + 1) * d.keys * d.head_dim;
        let q = &q[index * head_len..(index + 1) * head_len];
        head_attention(d, row, q, &k[kv_range.clone()], &v[kv_range], mask, out);
    };
    for_each_head(&mut out, head_len, one_head);
    out
}

#[cfg(not(target_arch = "wasm32"))]
fn for_each_head(out: &mut [f32], head_len: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    use rayon::prelude::*;
    out.par_chunks_mut(head_len)
        .enumerate()
        .for_each(|(index, out)| f(index, out));
}

/// The page's module has no threads.
#[cfg(target_arch = "wasm32")]
fn for_each_head(out: &mut [f32], head_len: usize, f: impl Fn(usize, &mut [f32])) {
    for (index, out) in out.chunks_mut(head_len).enumerate() {
        f(index, out);
    }
}

/// One head of one row: `q` [T, hd], `k` and `v` [S, hd], into `out` [T, hd].
fn head_attention(
    d: Dims,
    row: usize,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mask: &HostMask,
    out: &mut [f32],
) {
    let hd = d.head_dim;
    let scale = 1.0 / (hd as f32).sqrt();
    // Keys and values transposed to [hd, S]: a query's scores are then hd passes of a
    // multiply-add over contiguous keys, and each output element one dot product over
    // contiguous values, both of which vectorise.
    let transposed = |x: &[f32]| {
        let mut t = vec![0.0f32; hd * d.keys];
        for (j, row) in x.chunks_exact(hd).enumerate() {
            for (i, &x) in row.iter().enumerate() {
                t[i * d.keys + j] = x;
            }
        }
        t
    };
    let (keys_t, values_t) = (transposed(k), transposed(v));
    let mut scores = vec![0.0f32; d.keys];
    for t in 0..d.queries {
        let seen = match mask {
            HostMask::Causal => t + 1 + d.keys - d.queries,
            HostMask::Explicit(_) => d.keys,
        };
        let scores = &mut scores[..seen];
        scores.fill(0.0);
        for (i, &qi) in q[t * hd..(t + 1) * hd].iter().enumerate() {
            let qi = qi * scale;
            for (s, &kx) in scores
                .iter_mut()
                .zip(&keys_t[i * d.keys..i * d.keys + seen])
            {
                *s += qi * kx;
            }
        }
        if let HostMask::Explicit(hidden) = mask {
            let base = (row * d.queries + t) * d.keys;
            for (s, &h) in scores.iter_mut().zip(&hidden[base..base + seen]) {
                if h {
                    *s = f32::NEG_INFINITY;
                }
            }
        }
        // Plain comparisons (not `f32::max`, which orders NaN) so that the loops vectorise.
        let max = scores
            .iter()
            .fold(f32::NEG_INFINITY, |m, &s| if s > m { s } else { m });
        let out = &mut out[t * hd..(t + 1) * hd];
        out.fill(0.0);
        if max == f32::NEG_INFINITY {
            continue; // every key hidden (a left pad's own query): its output is never read
        }
        scores.iter_mut().for_each(|s| *s = exp(*s - max));
        let sum: f32 = scores.iter().sum();
        let inv = 1.0 / sum;
        for (i, o) in out.iter_mut().enumerate() {
            *o = dot(scores, &values_t[i * d.keys..i * d.keys + seen]) * inv;
        }
    }
}

/// Σ a·b in eight independent running sums, which the compiler keeps in vector registers (one
/// running sum would be a chain of dependent additions).
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a8
        .remainder()
        .iter()
        .zip(b8.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a8.zip(b8) {
        for lane in 0..8 {
            lanes[lane] += x[lane] * y[lane];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// e^x for x ≤ 0 to within 2 ulp, in operations the compiler vectorises (libm's `expf` is a
/// call per element): x = n·ln 2 + r with |r| ≤ ln 2 / 2, e^r by its degree-7 Taylor
/// polynomial, 2^n put into the exponent bits. Below −87 (and at −∞) it is 0.
#[inline(always)]
fn exp(x: f32) -> f32 {
    // Adding and subtracting 1.5·2²³ rounds to the nearest integer (|x·log₂e| < 2²²) without
    // `round`, which is a libm call on x86-64's baseline.
    // The rounded sum's low mantissa bits are then n itself, read without a float-to-int
    // conversion (Rust's `as` saturates, and its checks stop vectorisation).
    const ROUND: f32 = 12_582_912.0;
    let x = if x > -87.0 { x } else { -87.0 };
    let shifted = x * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    let n_bits = shifted.to_bits().wrapping_sub(ROUND.to_bits());
    // ln 2 in two parts (Cody–Waite) so that n·ln 2 is subtracted without rounding error.
    let r = x - n * 0.693_145_75 - n * 1.428_606_8e-6;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0
                        + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    let two_n = f32::from_bits(n_bits.wrapping_add(127) << 23);
    let e = p * two_n;
    if x <= -87.0 {
        0.0
    } else {
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_two_ulp_of_libm_down_to_minus_86() {
        let mut worst = 0.0f64;
        for i in 0..=860_000 {
            let x = -(i as f32) * 1e-4;
            let (ours, libm) = (exp(x) as f64, (x as f64).exp());
            worst = worst.max(((ours - libm) / libm).abs());
        }
        assert!(worst < 2.5e-7, "relative error {worst}");
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(-1000.0), 0.0);
        assert_eq!(exp(0.0), 1.0);
    }

    /// softmax(q·kᵀ/√d + mask)·v by its definition, in f64.
    fn reference(d: Dims, q: &[f32], k: &[f32], v: &[f32], mask: &HostMask) -> Vec<f64> {
        let hd = d.head_dim;
        let mut out = vec![0.0; d.batch * d.heads * d.queries * hd];
        for b in 0..d.batch {
            for h in 0..d.heads {
                let kv = b * d.kv_heads + h / (d.heads / d.kv_heads);
                for t in 0..d.queries {
                    let visible = |j: usize| match mask {
                        HostMask::Causal => j <= t + d.keys - d.queries,
                        HostMask::Explicit(m) => !m[(b * d.queries + t) * d.keys + j],
                    };
                    let qrow = &q[((b * d.heads + h) * d.queries + t) * hd..][..hd];
                    let scores: Vec<f64> = (0..d.keys)
                        .map(|j| {
                            let krow = &k[(kv * d.keys + j) * hd..][..hd];
                            let dot: f64 = qrow.iter().zip(krow).map(|(a, b)| (a * b) as f64).sum();
                            if visible(j) {
                                dot / (hd as f64).sqrt()
                            } else {
                                f64::NEG_INFINITY
                            }
                        })
                        .collect();
                    let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                    let sum: f64 = weights.iter().sum();
                    for (j, w) in weights.iter().enumerate() {
                        for i in 0..hd {
                            out[((b * d.heads + h) * d.queries + t) * hd + i] +=
                                w / sum * v[(kv * d.keys + j) * hd + i] as f64;
                        }
                    }
                }
            }
        }
        out
    }

    fn values(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| {
                ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) % 1000) as f32 / 250.0
                    - 2.0
            })
            .collect()
    }

    #[test]
    fn equals_the_definition_causal_and_masked_with_grouped_heads() {
        let d = Dims {
            batch: 2,
            heads: 4,
            kv_heads: 2,
            queries: 5,
            keys: 7,
            head_dim: 8,
        };
        let q = values(d.batch * d.heads * d.queries * d.head_dim, 1);
        let k = values(d.batch * d.kv_heads * d.keys * d.head_dim, 2);
        let v = values(d.batch * d.kv_heads * d.keys * d.head_dim, 3);
        // Row 0 hides its first two keys (left padding), row 1 every key after its query's slot.
        let hidden: Vec<bool> = (0..d.batch * d.queries * d.keys)
            .map(|i| {
                let (b, t, j) = (i / (d.queries * d.keys), i / d.keys % d.queries, i % d.keys);
                if b == 0 {
                    j < 2
                } else {
                    j > t + 2
                }
            })
            .collect();
        for mask in [HostMask::Causal, HostMask::Explicit(hidden)] {
            let ours = attend(d, &q, &k, &v, &mask);
            let exact = reference(d, &q, &k, &v, &mask);
            for (i, (a, b)) in ours.iter().zip(&exact).enumerate() {
                assert!((*a as f64 - b).abs() < 1e-5, "element {i}: {a} against {b}");
            }
        }
    }
}

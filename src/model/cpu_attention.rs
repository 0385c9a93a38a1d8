//! The bridge from a CPU backend's tensors to `alignlab_shaders::cpu_attention` (host memory:
//! a copy each way on a CPU backend, and nothing recorded for autodiff, so inference only).

use crate::backend::Backend;
use alignlab_shaders::cpu_attention::{attend, Dims, HostMask, Layout, Layouts};
use burn::tensor::{Bool, Tensor, TensorData};

/// q [B, H, T, hd], k and v [B, KV, S, hd] → [B, H, T, hd], computed on the host.
///
/// The projections write [B, T, heads, hd]; the model's [B, heads, T, hd] are views of that order
/// with two axes swapped, which a CPU backend would copy element by element to read back. So
/// the views are swapped back and read in the projections' order: the queries always, the keys
/// and values when they come straight from the projections (`mask` is `None`, causal attention
/// over the whole sequence; a KV cache's are [B, KV, S, hd]). The output is written in that
/// order too, so the caller's swap back to [B, T, heads·hd] is free.
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
    let token_major = |t: Tensor<B, 4>| host(t.swap_dims(1, 2));
    let (key_value, k, v, mask) = match mask {
        None => (
            Layout::TokenMajor,
            token_major(k),
            token_major(v),
            HostMask::Causal,
        ),
        Some(hidden) => {
            let hidden = hidden
                .into_data()
                .into_vec::<bool>()
                .expect("a CPU mask reads back");
            (
                Layout::HeadMajor,
                host(k),
                host(v),
                HostMask::Explicit(hidden),
            )
        }
    };
    let layouts = Layouts {
        query: Layout::TokenMajor,
        key_value,
        output: Layout::TokenMajor,
    };
    let out = attend(dims, layouts, &token_major(q), &k, &v, &mask);
    Tensor::<B, 4>::from_data(
        TensorData::new(out, [batch, queries, heads, head_dim]),
        &device,
    )
    .swap_dims(1, 2)
}

// The kernel's tests live here: `cargo test` runs the root package's tests only.
#[cfg(test)]
mod tests {
    use super::*;
    use alignlab_shaders::cpu_attention::exp;

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

    /// [B, heads, positions, hd] → [B, positions, heads, hd], written out by index.
    fn swap(x: &[f32], heads: usize, positions: usize, hd: usize) -> Vec<f32> {
        let mut out = vec![0.0; x.len()];
        for (index, &value) in x.iter().enumerate() {
            let (i, rest) = (index % hd, index / hd);
            let (p, rest) = (rest % positions, rest / positions);
            let (h, b) = (rest % heads, rest / heads);
            out[((b * positions + p) * heads + h) * hd + i] = value;
        }
        out
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
        let head_major = Layouts {
            query: Layout::HeadMajor,
            key_value: Layout::HeadMajor,
            output: Layout::HeadMajor,
        };
        let token_major = Layouts {
            query: Layout::TokenMajor,
            key_value: Layout::TokenMajor,
            output: Layout::TokenMajor,
        };
        for mask in [HostMask::Causal, HostMask::Explicit(hidden)] {
            let exact = reference(d, &q, &k, &v, &mask);
            let ours = attend(d, head_major, &q, &k, &v, &mask);
            for (i, (a, b)) in ours.iter().zip(&exact).enumerate() {
                assert!((*a as f64 - b).abs() < 1e-5, "element {i}: {a} against {b}");
            }
            // The same numbers from the token-major order, in and out.
            let (q, k, v) = (
                swap(&q, d.heads, d.queries, d.head_dim),
                swap(&k, d.kv_heads, d.keys, d.head_dim),
                swap(&v, d.kv_heads, d.keys, d.head_dim),
            );
            let swapped = attend(d, token_major, &q, &k, &v, &mask);
            assert_eq!(swapped, swap(&ours, d.heads, d.queries, d.head_dim));
        }
    }
}

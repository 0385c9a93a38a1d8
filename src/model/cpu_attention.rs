//! The bridge from a CPU backend's tensors to `alignlab_shaders::cpu_attention` (host memory:
//! a copy each way on a CPU backend, and nothing recorded for autodiff, so inference only).

use crate::backend::Backend;
use alignlab_shaders::cpu_attention::{attend, Dims, HostMask};
use burn::tensor::{Bool, Tensor, TensorData};

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

//! Estimators of KL(π‖π_ref) from samples of π, per token (Schulman 2020, "Approximating KL
//! Divergence"). With log r = log π_ref(x) − log π(x) for x ~ π:
//!
//! - k1 = −log r: unbiased, high variance, can be negative per sample;
//! - k2 = ½(log r)²: biased (exact to second order), low variance, ≥ 0;
//! - k3 = (r − 1) − log r: unbiased and ≥ 0 for every sample (GRPO's KL term).

use crate::backend::Backend;
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KlEstimator {
    K1,
    K2,
    K3,
}

/// Per-token estimates, any shape: `logps` under π (the sampler), `ref_logps` under π_ref.
pub fn kl_estimate<B: Backend, const D: usize>(
    logps: Tensor<B, D>,
    ref_logps: Tensor<B, D>,
    estimator: KlEstimator,
) -> Tensor<B, D> {
    let log_ratio = ref_logps - logps; // log r
    match estimator {
        KlEstimator::K1 => -log_ratio,
        KlEstimator::K2 => log_ratio.powi_scalar(2).mul_scalar(0.5),
        KlEstimator::K3 => log_ratio.clone().exp().sub_scalar(1.0) - log_ratio,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use rand::SeedableRng;
    use rand_distr::{Distribution, Normal};

    type B = NdArray;

    /// Samples of π = N(0, 1) with log-densities under π and π_ref = N(μ, 1), whose
    /// KL(π‖π_ref) = μ²/2.
    fn gaussian_samples(mu: f64, n: usize, seed: u64) -> (Tensor<B, 1>, Tensor<B, 1>) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let normal = Normal::new(0.0, 1.0).unwrap();
        let xs: Vec<f64> = (0..n).map(|_| normal.sample(&mut rng)).collect();
        let log_density =
            |x: f64, m: f64| -0.5 * (x - m).powi(2) - 0.5 * (2.0 * std::f64::consts::PI).ln();
        let logp: Vec<f32> = xs.iter().map(|&x| log_density(x, 0.0) as f32).collect();
        let logq: Vec<f32> = xs.iter().map(|&x| log_density(x, mu) as f32).collect();
        let device = Default::default();
        (
            Tensor::from_floats(logp.as_slice(), &device),
            Tensor::from_floats(logq.as_slice(), &device),
        )
    }

    fn mean_and_se(values: Vec<f32>) -> (f64, f64) {
        let n = values.len() as f64;
        let mean = values.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = values
            .iter()
            .map(|&v| (v as f64 - mean).powi(2))
            .sum::<f64>()
            / (n - 1.0);
        (mean, (var / n).sqrt())
    }

    #[test]
    fn k1_and_k3_are_unbiased_k3_is_never_negative_k2_is_biased_by_higher_orders() {
        for mu in [0.1, 0.5, 1.0] {
            let truth = mu * mu / 2.0;
            let (logp, logq) = gaussian_samples(mu, 200_000, 1);
            let estimate = |e| {
                kl_estimate(logp.clone(), logq.clone(), e)
                    .into_data()
                    .to_vec::<f32>()
                    .unwrap()
            };
            for e in [KlEstimator::K1, KlEstimator::K3] {
                let (mean, se) = mean_and_se(estimate(e));
                assert!(
                    (mean - truth).abs() < 4.0 * se + 1e-4,
                    "{e:?} μ={mu}: {mean} ± {se} vs {truth}"
                );
            }
            let k3 = estimate(KlEstimator::K3);
            assert!(k3.iter().all(|&v| v >= 0.0), "k3 < 0 at μ={mu}");
            let k1 = estimate(KlEstimator::K1);
            if mu >= 0.5 {
                assert!(
                    k1.iter().any(|&v| v < 0.0),
                    "k1 should go negative per sample"
                );
            }
            // Here log r = μ²/2 − μx, so E[k2] = ½(μ⁴/4 + μ²) = KL + μ⁴/8: close for small μ.
            let (k2_mean, k2_se) = mean_and_se(estimate(KlEstimator::K2));
            let k2_truth = truth + mu.powi(4) / 8.0;
            assert!(
                (k2_mean - k2_truth).abs() < 4.0 * k2_se + 1e-4,
                "k2 μ={mu}: {k2_mean} vs {k2_truth}"
            );
            // k3 has lower variance than k1 when the distributions are close.
            if mu <= 0.5 {
                assert!(mean_and_se(k3).1 < mean_and_se(k1).1, "μ={mu}");
            }
        }
    }

    #[test]
    fn categorical_kl_is_recovered_exactly_in_expectation() {
        // Exact expectation over a 3-way categorical: Σ π(x)·k(x) equals KL for k1 and k3.
        let p = [0.5f64, 0.3, 0.2];
        let q = [0.2f64, 0.5, 0.3];
        let truth: f64 = p.iter().zip(&q).map(|(a, b)| a * (a / b).ln()).sum();
        let device = Default::default();
        let logp = Tensor::<B, 1>::from_floats(p.map(|v| v.ln() as f32), &device);
        let logq = Tensor::<B, 1>::from_floats(q.map(|v| v.ln() as f32), &device);
        for e in [KlEstimator::K1, KlEstimator::K3] {
            let k: Vec<f32> = kl_estimate(logp.clone(), logq.clone(), e)
                .into_data()
                .to_vec()
                .unwrap();
            let expectation: f64 = k.iter().zip(&p).map(|(&v, &w)| v as f64 * w).sum();
            assert!(
                (expectation - truth).abs() < 1e-6,
                "{e:?}: {expectation} vs {truth}"
            );
        }
    }
}

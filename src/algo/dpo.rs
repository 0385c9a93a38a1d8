//! Direct preference optimisation and its pairwise variants, as pure functions of sequence
//! log-probs. With h = (log π(y_c) − log π_ref(y_c)) − (log π(y_r) − log π_ref(y_r)):
//!
//! - DPO, Rafailov et al. 2023, Eq. 7:            −log σ(β·h)
//! - conservative DPO (label smoothing ε), Mitchell 2023: −(1−ε)·log σ(β·h) − ε·log σ(−β·h)
//! - robust DPO, Chowdhury et al. 2024, Eq. 8:     [−(1−ε)·log σ(β·h) + ε·log σ(−β·h)] / (1 − 2ε)
//! - IPO, Azar et al. 2023, Eq. 17:                (h − 1/(2β))²
//! - hinge (SLiC-HF), Zhao et al. 2023, Eq. 3:     max(0, 1 − β·h)
//!
//! As in TRL, IPO is meant for length-averaged log-probs (the caller passes those), the others
//! for summed log-probs. The implicit rewards β·(log π − log π_ref) are returned detached for
//! logging under TRL's names.

use burn::tensor::activation::{log_sigmoid, relu};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DpoVariant {
    /// DPO's sigmoid loss; `label_smoothing` > 0 makes it conservative DPO.
    Sigmoid {
        label_smoothing: f64,
    },
    /// Robust DPO: unbiased under preference labels flipped with probability `label_smoothing`.
    Robust {
        label_smoothing: f64,
    },
    Ipo,
    Hinge,
}

/// Per-pair losses and the implicit rewards, each [batch].
#[derive(Debug, Clone)]
pub struct DpoOutput<B: Backend> {
    pub losses: Tensor<B, 1>,
    /// β·(log π(y_c) − log π_ref(y_c)), detached.
    pub chosen_rewards: Tensor<B, 1>,
    /// β·(log π(y_r) − log π_ref(y_r)), detached.
    pub rejected_rewards: Tensor<B, 1>,
}

/// The loss of each pair. All inputs are [batch] sequence log-probs.
pub fn dpo_loss<B: Backend>(
    policy_chosen_logps: Tensor<B, 1>,
    policy_rejected_logps: Tensor<B, 1>,
    ref_chosen_logps: Tensor<B, 1>,
    ref_rejected_logps: Tensor<B, 1>,
    beta: f64,
    variant: DpoVariant,
) -> DpoOutput<B> {
    let chosen_logratios = policy_chosen_logps - ref_chosen_logps;
    let rejected_logratios = policy_rejected_logps - ref_rejected_logps;
    let h = chosen_logratios.clone() - rejected_logratios.clone();
    let losses = match variant {
        DpoVariant::Sigmoid {
            label_smoothing: eps,
        } => {
            log_sigmoid(h.clone().mul_scalar(beta)).mul_scalar(-(1.0 - eps))
                - log_sigmoid(h.mul_scalar(-beta)).mul_scalar(eps)
        }
        DpoVariant::Robust {
            label_smoothing: eps,
        } => (log_sigmoid(h.clone().mul_scalar(beta)).mul_scalar(-(1.0 - eps))
            + log_sigmoid(h.mul_scalar(-beta)).mul_scalar(eps))
        .div_scalar(1.0 - 2.0 * eps),
        DpoVariant::Ipo => h.sub_scalar(1.0 / (2.0 * beta)).powi_scalar(2),
        DpoVariant::Hinge => relu(h.mul_scalar(-beta).add_scalar(1.0)),
    };
    DpoOutput {
        losses,
        chosen_rewards: chosen_logratios.detach().mul_scalar(beta),
        rejected_rewards: rejected_logratios.detach().mul_scalar(beta),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, NdArray};

    type B = NdArray;

    fn t(values: &[f32]) -> Tensor<B, 1> {
        Tensor::from_floats(values, &Default::default())
    }

    fn losses(variant: DpoVariant, beta: f64, pc: f32, pr: f32, rc: f32, rr: f32) -> f32 {
        dpo_loss(t(&[pc]), t(&[pr]), t(&[rc]), t(&[rr]), beta, variant)
            .losses
            .into_scalar()
    }

    const SIGMOID: DpoVariant = DpoVariant::Sigmoid {
        label_smoothing: 0.0,
    };

    #[test]
    fn dpo_at_initialisation_is_ln2_with_zero_margin() {
        let out = dpo_loss(
            t(&[-3.0, -7.5]),
            t(&[-4.0, -2.0]),
            t(&[-3.0, -7.5]),
            t(&[-4.0, -2.0]),
            0.1,
            SIGMOID,
        );
        for loss in out.losses.into_data().to_vec::<f32>().unwrap() {
            assert!((loss - std::f32::consts::LN_2).abs() < 1e-6, "{loss}");
        }
        let margin = (out.chosen_rewards - out.rejected_rewards)
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        assert_eq!(margin, vec![0.0, 0.0]);
    }

    #[test]
    fn ipo_at_initialisation_is_one_over_four_beta_squared() {
        for beta in [0.1, 0.5, 2.0] {
            let loss = losses(DpoVariant::Ipo, beta, -5.0, -6.0, -5.0, -6.0);
            let expected = 1.0 / (4.0 * beta * beta);
            assert!(
                ((loss as f64) - expected).abs() < 1e-4 * expected,
                "β={beta}: {loss}"
            );
        }
    }

    #[test]
    fn hand_computed_values() {
        // h = (−1 − −2) − (−3 − −2) = 2, β = 0.5, βh = 1.
        let (pc, pr, rc, rr) = (-1.0, -3.0, -2.0, -2.0);
        let softplus = |x: f64| (1.0 + x.exp()).ln(); // −log σ(x) = softplus(−x)
        let close = |a: f32, b: f64| assert!(((a as f64) - b).abs() < 1e-5, "{a} vs {b}");
        let at_half_beta = |variant| losses(variant, 0.5, pc, pr, rc, rr);
        close(at_half_beta(SIGMOID), softplus(-1.0));
        let eps = 0.1;
        close(
            at_half_beta(DpoVariant::Sigmoid {
                label_smoothing: eps,
            }),
            (1.0 - eps) * softplus(-1.0) + eps * softplus(1.0),
        );
        close(
            at_half_beta(DpoVariant::Robust {
                label_smoothing: eps,
            }),
            ((1.0 - eps) * softplus(-1.0) - eps * softplus(1.0)) / (1.0 - 2.0 * eps),
        );
        close(at_half_beta(DpoVariant::Ipo), (2.0f64 - 1.0).powi(2));
        close(at_half_beta(DpoVariant::Hinge), 0.0);
        close(losses(DpoVariant::Hinge, 0.25, pc, pr, rc, rr), 0.5);
    }

    #[test]
    fn gradients_match_finite_differences() {
        type A = Autodiff<NdArray>;
        let device = Default::default();
        let inputs = [-1.3f32, -2.1, -1.7, -1.9];
        let variants = [
            SIGMOID,
            DpoVariant::Sigmoid {
                label_smoothing: 0.2,
            },
            DpoVariant::Robust {
                label_smoothing: 0.2,
            },
            DpoVariant::Ipo,
            DpoVariant::Hinge,
        ];
        let eval = |variant, x: [f32; 4]| -> f32 {
            let v = |i: usize| Tensor::<NdArray, 1>::from_floats([x[i]], &device);
            dpo_loss(v(0), v(1), v(2), v(3), 0.7, variant)
                .losses
                .into_scalar()
        };
        for variant in variants {
            let params: Vec<Tensor<A, 1>> = inputs
                .iter()
                .map(|&x| Tensor::<A, 1>::from_floats([x], &device).require_grad())
                .collect();
            let out = dpo_loss(
                params[0].clone(),
                params[1].clone(),
                params[2].clone(),
                params[3].clone(),
                0.7,
                variant,
            );
            let grads = out.losses.sum().backward();
            for i in 0..2 {
                let analytic = params[i].grad(&grads).unwrap().into_scalar();
                // Central differences in f32: a step of 1e-2 keeps rounding error far below 1e-4.
                let step = 1e-2;
                let (mut up, mut down) = (inputs, inputs);
                up[i] += step;
                down[i] -= step;
                let numeric = (eval(variant, up) - eval(variant, down)) / (2.0 * step);
                assert!(
                    (analytic - numeric).abs() < 1e-4,
                    "{variant:?} input {i}: {analytic} vs {numeric}"
                );
            }
        }
    }
}

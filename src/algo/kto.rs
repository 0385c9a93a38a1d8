//! KTO, Ethayarajh et al. 2024 ("KTO: Model Alignment as Prospect Theoretic Optimization"),
//! Eq. 8: with r = log π(y|x) − log π_ref(y|x) and the reference point z₀ = KL(π‖π_ref)
//! (estimated on mismatched prompt–completion pairs, detached, clamped at 0),
//! desirable completions lose λ_D·(1 − σ(β(r − z₀))) and undesirable ones λ_U·(1 − σ(β(z₀ − r))).

use super::preference_method::{UnpairedInputs, UnpairedMethod};
use super::spec::{
    DataShape, MethodKind, MethodSpec, Setting, Settings, BETA, PREFERENCE_TRAINING,
};
use crate::backend::Backend;
use burn::tensor::activation::sigmoid;
use burn::tensor::Tensor;

/// Per-completion losses: `logratios` [n], `desirable` [n] of 1.0 / 0.0, `kl_reference` [1].
pub fn kto_loss<B: Backend>(
    logratios: Tensor<B, 1>,
    desirable: Tensor<B, 1>,
    kl_reference: Tensor<B, 1>,
    beta: f64,
    desirable_weight: f64,
    undesirable_weight: f64,
) -> Tensor<B, 1> {
    let z0 = kl_reference.detach().clamp_min(0.0);
    let centred = logratios - z0; // r − z₀, broadcast over the batch
    let desirable_losses = sigmoid(centred.clone().mul_scalar(beta))
        .neg()
        .add_scalar(1.0)
        .mul_scalar(desirable_weight);
    let undesirable_losses = sigmoid(centred.mul_scalar(-beta))
        .neg()
        .add_scalar(1.0)
        .mul_scalar(undesirable_weight);
    desirable_losses * desirable.clone() + undesirable_losses * desirable.neg().add_scalar(1.0)
}

/// KTO, Ethayarajh et al. 2024.
pub const KTO: MethodSpec = MethodSpec {
    name: "kto",
    summary: "KTO (Ethayarajh et al. 2024): prospect-theory loss on unpaired desirable/undesirable completions",
    kind: MethodKind::Preference(DataShape::Unpaired),
    training: PREFERENCE_TRAINING,
    settings: &[
        BETA,
        Setting {
            name: "desirable_weight",
            default: 1.0,
            help: "weight of desirable examples",
        },
        Setting {
            name: "undesirable_weight",
            default: 1.0,
            help: "weight of undesirable examples",
        },
    ],
};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Kto {
    pub desirable_weight: f64,
    pub undesirable_weight: f64,
}

impl UnpairedMethod for Kto {
    const NEEDS_KL_REFERENCE: bool = true;

    fn from_settings(spec: &MethodSpec, settings: &Settings) -> Self {
        Self {
            desirable_weight: settings.value(spec, "desirable_weight"),
            undesirable_weight: settings.value(spec, "undesirable_weight"),
        }
    }

    fn losses<B: Backend>(&self, x: UnpairedInputs<B>) -> Tensor<B, 1> {
        let kl = x
            .kl_reference
            .expect("the trainer computes the KL reference for methods that need it");
        kto_loss(
            x.logratios,
            x.desirable,
            kl,
            x.beta,
            self.desirable_weight,
            self.undesirable_weight,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algo::testing::{assert_gradients_match, t, value};

    #[test]
    fn hand_values_and_gradient() {
        let sigma = |x: f64| 1.0 / (1.0 + (-x).exp());
        // β = 0.5, r = 2, z₀ = 1: β(r − z₀) = 0.5.
        value(
            kto_loss(t(&[2.0]), t(&[1.0]), t(&[1.0]), 0.5, 1.0, 1.33),
            1.0 - sigma(0.5),
        );
        value(
            kto_loss(t(&[2.0]), t(&[0.0]), t(&[1.0]), 0.5, 1.0, 1.33),
            1.33 * (1.0 - sigma(-0.5)),
        );
        // A negative KL estimate counts as zero.
        value(
            kto_loss(t(&[2.0]), t(&[1.0]), t(&[-3.0]), 0.5, 1.0, 1.0),
            1.0 - sigma(1.0),
        );
        assert_gradients_match(&[0.4, -0.3], |x| {
            kto_loss(x[0].clone(), t(&[1.0]), t(&[0.1]), 0.7, 1.0, 1.0)
                + kto_loss(x[1].clone(), t(&[0.0]), t(&[0.1]), 0.7, 1.0, 1.5)
        });
    }
}

//! Reward transforms and combinations.
//!
//! - Log-sigmoid centring, Wang et al. 2024 ("Transforming and Combining Rewards for Aligning
//!   Large Language Models"), Eq. 3.4: u(x, y) = log σ(r(x, y) − r_ref(x)), where r_ref(x) is a
//!   reference reward for the prompt (e.g. the reward of a reference-policy sample). Gains above
//!   "good enough" saturate, so optimising it stops paying for reward hacking.
//! - Their combination (Eq. 3.5, "logical AND"): Σ_i w_i · log σ(r_i − r_ref,i).
//! - Directional Preference Alignment, Wang et al. 2024 ("Arithmetic Control of LLMs for Diverse
//!   User Preferences"), Eq. 2: r = ⟨v, r(x, y)⟩ over attribute rewards, with ‖v‖ = 1.

use crate::backend::Backend;
use burn::tensor::activation::log_sigmoid;
use burn::tensor::{Tensor, TensorData};

use crate::error::{Error, Result};

/// log σ(r − r_ref): [batch], [batch] → [batch].
pub fn log_sigmoid_centred<B: Backend>(
    rewards: Tensor<B, 1>,
    reference_rewards: Tensor<B, 1>,
) -> Tensor<B, 1> {
    log_sigmoid(rewards - reference_rewards)
}

/// Σ_i w_i·log σ(r_i − r_ref,i): rewards and references [batch, objectives] → [batch]; no
/// weights means all ones.
pub fn sum_of_centred<B: Backend>(
    rewards: Tensor<B, 2>,
    reference_rewards: Tensor<B, 2>,
    weights: Option<&[f32]>,
) -> Result<Tensor<B, 1>> {
    let [batch, objectives] = rewards.dims();
    let transformed = log_sigmoid(rewards - reference_rewards);
    let weighted = match weights {
        Some(w) => {
            if w.len() != objectives {
                return Err(Error::Input(format!(
                    "{} weights for {objectives} objectives",
                    w.len()
                )));
            }
            let w = Tensor::<B, 1>::from_data(
                TensorData::new(w.to_vec(), [objectives]),
                &transformed.device(),
            );
            transformed * w.unsqueeze()
        }
        None => transformed,
    };
    Ok(weighted.sum_dim(1).reshape([batch]))
}

/// The unit vector along `direction`; an error if it has the wrong length or is zero.
pub fn unit_direction(direction: &[f32], attributes: &[String]) -> Result<Vec<f32>> {
    if direction.len() != attributes.len() {
        return Err(Error::Input(format!(
            "the direction has {} components; the reward model rates {} attributes {attributes:?}",
            direction.len(),
            attributes.len()
        )));
    }
    let norm = direction.iter().map(|v| v * v).sum::<f32>().sqrt();
    if !(norm > 0.0 && norm.is_finite()) {
        return Err(Error::Input(
            "the direction vector must be non-zero and finite".into(),
        ));
    }
    Ok(direction.iter().map(|v| v / norm).collect())
}

/// ⟨v, r⟩ with v already a unit vector: [batch, attributes] → [batch].
pub fn directional_reward<B: Backend>(
    attribute_rewards: Tensor<B, 2>,
    unit: &[f32],
) -> Tensor<B, 1> {
    let [batch, attributes] = attribute_rewards.dims();
    let v = Tensor::<B, 2>::from_data(
        TensorData::new(unit.to_vec(), [attributes, 1]),
        &attribute_rewards.device(),
    );
    attribute_rewards.matmul(v).reshape([batch])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    type B = NdArray;

    #[test]
    fn centring_by_hand_and_saturating() {
        let r = Tensor::<B, 1>::from_floats([0.0, 2.0, 50.0], &Default::default());
        let reference = Tensor::<B, 1>::from_floats([0.0, 1.0, 0.0], &Default::default());
        let u: Vec<f32> = log_sigmoid_centred(r, reference)
            .into_data()
            .to_vec()
            .unwrap();
        assert!((u[0] + std::f32::consts::LN_2).abs() < 1e-6);
        assert!((u[1] + (1.0f32 + (-1.0f32).exp()).ln()).abs() < 1e-6);
        // Far above the reference the transformed reward is ~0: no further gain to chase.
        assert!(u[2] <= 0.0 && u[2] > -1e-6);
    }

    #[test]
    fn combination_is_the_weighted_sum_of_transforms() {
        let r = Tensor::<B, 2>::from_floats([[1.0, -1.0]], &Default::default());
        let reference = Tensor::<B, 2>::zeros([1, 2], &Default::default());
        let s = |x: f32| -(1.0 + (-x).exp()).ln();
        let got = sum_of_centred(r.clone(), reference.clone(), Some(&[2.0, 0.5]))
            .unwrap()
            .into_scalar();
        assert!((got - (2.0 * s(1.0) + 0.5 * s(-1.0))).abs() < 1e-6);
        assert!(sum_of_centred(r, reference, Some(&[1.0])).is_err());
    }

    #[test]
    fn direction_is_normalised_and_projects() {
        let names = vec!["a".to_string(), "b".to_string()];
        let unit = unit_direction(&[3.0, 4.0], &names).unwrap();
        assert_eq!(unit, vec![0.6, 0.8]);
        let r = Tensor::<B, 2>::from_floats([[1.0, 2.0], [-1.0, 0.0]], &Default::default());
        let got: Vec<f32> = directional_reward(r, &unit).into_data().to_vec().unwrap();
        assert!(
            (got[0] - 2.2).abs() < 1e-6 && (got[1] + 0.6).abs() < 1e-6,
            "{got:?}"
        );
        assert!(unit_direction(&[0.0, 0.0], &names).is_err());
        assert!(unit_direction(&[1.0], &names).is_err());
    }
}

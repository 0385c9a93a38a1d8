//! Combining the members of a reward ensemble into one reward, and measuring how much they
//! disagree. Mean − λ·std is the uncertainty-penalised reward of Coste et al. 2024 ("Reward Model
//! Ensembles Help Mitigate Overoptimization", UWO with the variance's square root) and of
//! Reward-Robust RLHF's BRME (Yan et al. 2024); min is their worst-case optimisation (WCO).

use crate::backend::Backend;
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Aggregation {
    Mean,
    Min,
    /// mean − λ·std over members (population std).
    MeanMinusStd {
        lambda: f64,
    },
}

impl std::fmt::Display for Aggregation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Mean => write!(f, "mean"),
            Self::Min => write!(f, "min"),
            Self::MeanMinusStd { lambda } => write!(f, "mean − {lambda}·std"),
        }
    }
}

/// Per-sequence standard deviation across members: [batch, members] → [batch].
pub fn member_std<B: Backend>(member_rewards: Tensor<B, 2>) -> Tensor<B, 1> {
    let [batch, _] = member_rewards.dims();
    let mean = member_rewards.clone().mean_dim(1);
    (member_rewards - mean)
        .powi_scalar(2)
        .mean_dim(1)
        .sqrt()
        .reshape([batch])
}

/// One reward per sequence: [batch, members] → [batch].
pub fn aggregate<B: Backend>(
    member_rewards: Tensor<B, 2>,
    aggregation: Aggregation,
) -> Tensor<B, 1> {
    let [batch, _] = member_rewards.dims();
    match aggregation {
        Aggregation::Mean => member_rewards.mean_dim(1).reshape([batch]),
        Aggregation::Min => member_rewards.min_dim(1).reshape([batch]),
        Aggregation::MeanMinusStd { lambda } => {
            member_rewards.clone().mean_dim(1).reshape([batch])
                - member_std(member_rewards).mul_scalar(lambda)
        }
    }
}

/// The fraction of pairs on which the members do not all prefer the same completion:
/// chosen and rejected member rewards [batch, members] → [1].
pub fn disagreement<B: Backend>(
    chosen_member_rewards: Tensor<B, 2>,
    rejected_member_rewards: Tensor<B, 2>,
) -> Tensor<B, 1> {
    let votes = chosen_member_rewards
        .greater(rejected_member_rewards)
        .float()
        .mean_dim(1); // [batch, 1]: share of members preferring the chosen completion
    let split = votes.clone().greater_elem(0.0).float() * votes.lower_elem(1.0).float();
    split.mean()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    fn rewards(rows: [[f32; 3]; 2]) -> Tensor<NdArray, 2> {
        Tensor::from_floats(rows, &Default::default())
    }

    fn values(t: Tensor<NdArray, 1>) -> Vec<f32> {
        t.into_data().to_vec().unwrap()
    }

    #[test]
    fn aggregations_by_hand() {
        let r = || rewards([[1.0, 2.0, 3.0], [0.0, 0.0, -3.0]]);
        assert_eq!(values(aggregate(r(), Aggregation::Mean)), vec![2.0, -1.0]);
        assert_eq!(values(aggregate(r(), Aggregation::Min)), vec![1.0, -3.0]);
        let std0 = (2.0f32 / 3.0).sqrt();
        let std1 = (6.0f32 / 3.0).sqrt();
        let got = values(aggregate(r(), Aggregation::MeanMinusStd { lambda: 0.5 }));
        assert!((got[0] - (2.0 - 0.5 * std0)).abs() < 1e-6, "{got:?}");
        assert!((got[1] - (-1.0 - 0.5 * std1)).abs() < 1e-6, "{got:?}");
    }

    #[test]
    fn disagreement_counts_split_votes() {
        let chosen = rewards([[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]);
        let rejected = rewards([[0.0, 0.0, 0.0], [0.0, 2.0, 0.0]]);
        assert_eq!(disagreement(chosen, rejected).into_scalar(), 0.5);
    }
}

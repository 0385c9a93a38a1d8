//! Metric names (TRL's where they exist) and the JSON-lines writer for `--metrics FILE`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde::Serialize;

use crate::error::{Error, Result};

pub const TRAIN_LOSS: &str = "train/loss";
pub const TRAIN_LR: &str = "train/learning_rate";
pub const TRAIN_GRAD_NORM: &str = "train/grad_norm";
/// 1 when the batch's loss was not finite and the update was skipped.
pub const TRAIN_SKIPPED: &str = "train/skipped_nonfinite";
pub const EVAL_LOSS: &str = "eval/loss";
// Preference metrics, with TRL's names.
pub const REWARDS_CHOSEN: &str = "rewards/chosen";
pub const REWARDS_REJECTED: &str = "rewards/rejected";
pub const REWARDS_MARGINS: &str = "rewards/margins";
pub const REWARDS_ACCURACIES: &str = "rewards/accuracies";
pub const LOGPS_CHOSEN: &str = "logps/chosen";
pub const LOGPS_REJECTED: &str = "logps/rejected";
/// KTO's and BCO's reference point (TRL: `kl`) and BCO's running reward shift δ.
pub const KL: &str = "kl";
pub const BCO_DELTA: &str = "delta";
/// SparsePO: share of completion tokens whose reward mask is exactly 0.
pub const MASK_SPARSITY: &str = "mask/sparsity";
/// SparsePO: mean reward-mask value over completion tokens.
pub const MASK_MEAN: &str = "mask/mean";
/// AlignDistil: mean per-sequence KL(π* ‖ π) to the teacher.
pub const DISTIL_TEACHER_KL: &str = "distil/teacher_kl";
/// AlignDistil: mean extrapolation α_t over completion tokens.
pub const DISTIL_ALPHA: &str = "distil/alpha";
// Online methods, with TRL's / OpenRLHF's names.
pub const OBJECTIVE_SCORES: &str = "objective/scores";
/// Mean per-sequence k1 estimate of KL(π‖π_ref) on the rollout.
pub const OBJECTIVE_KL: &str = "objective/kl";
pub const OBJECTIVE_SQRT_KL: &str = "objective/sqrt_kl";
pub const OBJECTIVE_RLHF_REWARD: &str = "objective/rlhf_reward";
/// Monte-Carlo entropy per sequence: −Σ log π of the sampled tokens.
pub const OBJECTIVE_ENTROPY: &str = "objective/entropy";
/// The rollout scored by a second reward (the gold one, when a proxy is optimised).
pub const OBJECTIVE_MONITOR_SCORES: &str = "objective/monitor_scores";
pub const RESPONSE_LENGTH: &str = "response_length";
pub const KL_COEF: &str = "kl_coef";
/// Share of pairs on which ensemble members do not all prefer the same completion.
pub const ENSEMBLE_DISAGREEMENT: &str = "ensemble/disagreement";
/// Mean standard deviation of the members' rewards.
pub const ENSEMBLE_STD: &str = "ensemble/std";
pub const TOKENS_PER_SECOND: &str = "perf/tokens_per_second";
/// Reward models: share of (better, worse) pairs of the batch ordered right.
pub const TRAIN_ACCURACY: &str = "train/accuracy";
// The clipped policy-gradient update (TRL's PPO/GRPO names).
pub const LOSS_POLICY: &str = "loss/policy";
pub const POLICY_APPROXKL: &str = "policy/approxkl";
pub const POLICY_CLIPFRAC: &str = "policy/clipfrac";
/// Mean k3 estimate of KL(π‖π_ref) over the minibatches' tokens (GRPO's loss term).
pub const POLICY_KL_K3: &str = "policy/kl_k3";
/// 1 when an update went too far from the rollout policy and was undone.
pub const POLICY_ROLLED_BACK: &str = "policy/rolled_back";
pub const POLICY_ROLLED_BACK_AT: &str = "policy/rolled_back_at_minibatch";
// PPO's critic.
pub const LOSS_VALUE: &str = "loss/value";
pub const VAL_EXPLAINED_VARIANCE: &str = "val/explained_variance";
/// RAFT: the mean reward of the samples kept for fine-tuning.
pub const RAFT_KEPT_SCORES: &str = "raft/kept_scores";

/// Every metric name with what it means: the page and `alignlab methods` list these.
pub const ALL: &[(&str, &str)] = &[
    (TRAIN_LOSS, "the loss the update minimised"),
    (TRAIN_LR, "learning rate of the step"),
    (TRAIN_GRAD_NORM, "global gradient L2 norm before clipping"),
    (
        TRAIN_SKIPPED,
        "1 when the loss was not finite and the update was skipped",
    ),
    (
        TRAIN_ACCURACY,
        "reward model: share of batch pairs ordered right",
    ),
    (EVAL_LOSS, "loss on held-out rows"),
    (
        REWARDS_CHOSEN,
        "implicit or learned reward of the chosen completions",
    ),
    (
        REWARDS_REJECTED,
        "implicit or learned reward of the rejected completions",
    ),
    (REWARDS_MARGINS, "chosen minus rejected reward"),
    (
        REWARDS_ACCURACIES,
        "share of pairs whose chosen reward is higher",
    ),
    (
        LOGPS_CHOSEN,
        "summed policy log-probs of the chosen completions",
    ),
    (
        LOGPS_REJECTED,
        "summed policy log-probs of the rejected completions",
    ),
    (KL, "KTO's reference point: KL estimate on mismatched pairs"),
    (BCO_DELTA, "BCO's running reward shift δ"),
    (
        MASK_SPARSITY,
        "SparsePO: share of completion tokens whose reward mask is 0",
    ),
    (
        MASK_MEAN,
        "SparsePO: mean reward mask over completion tokens",
    ),
    (
        DISTIL_TEACHER_KL,
        "AlignDistil: per-sequence KL from the teacher to the policy",
    ),
    (DISTIL_ALPHA, "AlignDistil: mean token extrapolation α_t"),
    (OBJECTIVE_SCORES, "mean reward of the rollout"),
    (
        OBJECTIVE_KL,
        "mean per-sequence KL(π‖π_ref) of the rollout (k1)",
    ),
    (OBJECTIVE_SQRT_KL, "its square root"),
    (OBJECTIVE_RLHF_REWARD, "reward − β·KL"),
    (OBJECTIVE_ENTROPY, "Monte-Carlo entropy per sequence"),
    (
        OBJECTIVE_MONITOR_SCORES,
        "the rollout scored by the monitor reward",
    ),
    (RESPONSE_LENGTH, "mean completion length in tokens"),
    (KL_COEF, "the KL coefficient β in use"),
    (LOSS_POLICY, "clipped surrogate loss"),
    (POLICY_APPROXKL, "approximate KL to the rollout policy"),
    (POLICY_CLIPFRAC, "share of tokens whose ratio was clipped"),
    (
        POLICY_KL_K3,
        "k3 KL estimate to the reference (GRPO's loss term)",
    ),
    (POLICY_ROLLED_BACK, "1 when the update was undone"),
    (POLICY_ROLLED_BACK_AT, "minibatch at which it was undone"),
    (LOSS_VALUE, "PPO's clipped value loss"),
    (
        VAL_EXPLAINED_VARIANCE,
        "explained variance of the value head",
    ),
    (RAFT_KEPT_SCORES, "RAFT: mean reward of the kept samples"),
    (
        ENSEMBLE_DISAGREEMENT,
        "share of pairs the members disagree on",
    ),
    (ENSEMBLE_STD, "mean std of the members' rewards"),
    (TOKENS_PER_SECOND, "generation or scoring speed"),
];

/// One step's named values.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Metrics {
    pub step: usize,
    #[serde(flatten)]
    pub values: BTreeMap<String, f64>,
}

impl Metrics {
    pub fn new(step: usize) -> Self {
        Self {
            step,
            values: BTreeMap::new(),
        }
    }

    pub fn insert(&mut self, name: &str, value: f64) {
        self.values.insert(name.to_string(), value);
    }

    pub fn get(&self, name: &str) -> Option<f64> {
        self.values.get(name).copied()
    }
}

/// Appends one JSON object per line; each line is flushed so a crash loses nothing written.
pub struct JsonlWriter {
    file: std::fs::File,
    path: String,
}

impl JsonlWriter {
    pub fn create(path: &Path) -> Result<Self> {
        let file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
        Ok(Self {
            file,
            path: path.display().to_string(),
        })
    }

    /// Opens `path` to add lines after what it holds (a resumed run).
    pub fn append(path: &Path) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        Ok(Self {
            file,
            path: path.display().to_string(),
        })
    }

    pub fn write<T: Serialize>(&mut self, record: &T) -> Result<()> {
        let line = serde_json::to_string(record).expect("metrics serialise");
        writeln!(self.file, "{line}")
            .and_then(|_| self.file.flush())
            .map_err(|e| Error::Io {
                path: self.path.clone(),
                source: e,
            })
    }
}

/// Mean with a normal-approximation 95% confidence half-width (1.96·s/√n).
#[derive(Debug, Clone, Copy, Serialize, serde::Deserialize, PartialEq)]
pub struct MeanCi {
    pub mean: f64,
    pub ci95: f64,
    pub n: usize,
}

impl MeanCi {
    pub fn of(values: &[f64]) -> Self {
        let n = values.len();
        if n == 0 {
            return Self {
                mean: f64::NAN,
                ci95: f64::NAN,
                n,
            };
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        let var = if n > 1 {
            values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64
        } else {
            0.0
        };
        Self {
            mean,
            ci95: 1.96 * (var / n as f64).sqrt(),
            n,
        }
    }
}

impl std::fmt::Display for MeanCi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.3} ± {:.3} (95% CI, n={})",
            self.mean, self.ci95, self.n
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_ci_matches_hand_computation() {
        let ci = MeanCi::of(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(ci.mean, 2.5);
        // s² = 5/3, s/√n = √(5/12)
        assert!((ci.ci95 - 1.96 * (5.0f64 / 12.0).sqrt()).abs() < 1e-12);
    }
}

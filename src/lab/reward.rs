//! Training the reward model on the labels, a step at a time; when it ends it becomes the proxy
//! that best-of-n and the online methods optimise.

use crate::backend::AutodiffBackend;
use burn::module::AutodiffModule;
use serde::{Deserialize, Serialize};

use super::{hold_out_by_label, Lab, PROXY};
use crate::algo::reward_model::REWARD_MODEL;
use crate::algo::spec::TrainingOverrides;
use crate::dataset::RankedSequences;
use crate::error::{Error, Result};
use crate::metrics;
use crate::model::{Llama, RewardEnsemble, RewardModel};
use crate::reward::objective::{evaluate_rankings, RewardData};
use crate::reward::source::RewardSource;
use crate::reward::{Aggregation, LearnedReward, RewardHeads};
use crate::run::reward_model::{RewardModelRun, RewardTrainConfig};
use crate::throughput::{StepSpeed, Stopwatch};

/// A reward model to train on the labels; what the page leaves out comes from the registry's
/// `rm` entry (the CLI's and the sweep's defaults too).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewardSettings {
    /// Absent: [`REWARD_EPOCHS`] passes over the training pairs (the page's default, so 40
    /// labels are not fitted 27 times over).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<usize>,
    /// Independent members (aggregated by mean − std when more than one) [default 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<usize>,
}

/// Passes over the training pairs when no step count is given: enough for the loss to fall
/// well below ln 2, few enough that a few dozen labels are not memorised (measured on the
/// built-in world, three seeds: 60 steps on 40 labels ended at loss ≤ 0.001; `tests/native/lab.rs`).
pub const REWARD_EPOCHS: usize = 4;

impl RewardSettings {
    fn training(&self, training_pairs: usize) -> TrainingOverrides {
        let mut overrides = TrainingOverrides {
            lr: self.lr,
            steps: self.steps,
            batch_size: self.batch_size,
            warmup: None,
        };
        if self.steps.is_none() {
            let batch = overrides.batch_size(&REWARD_MODEL).max(1);
            overrides.steps = Some((REWARD_EPOCHS * training_pairs).div_ceil(batch).max(1));
        }
        overrides
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RewardProgress {
    pub step: usize,
    pub total_steps: usize,
    pub loss: f64,
    /// On the training batch.
    pub accuracy: f64,
    /// On the held-out pairs, once training ends (none when too few pairs to hold any out).
    pub held_out_accuracy: Option<f64>,
    /// Its 95% interval (Wilson): how little 10 pairs can tell.
    pub held_out_interval: Option<(f64, f64)>,
    pub held_out_pairs: usize,
    pub training_pairs: usize,
    pub done: bool,
    /// What the update cost on the backend in use (not the held-out measurement that ends
    /// training); an experiment's log leaves it out (it does not reproduce).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speed: Option<StepSpeed>,
}

pub(super) struct RewardTraining<B: AutodiffBackend> {
    /// Out of its slot only during a step: a failed step leaves it empty.
    reward: Option<LearnedReward<B>>,
    run: RewardModelRun<B>,
    held_out: Vec<RankedSequences>,
}

impl<B: AutodiffBackend> Lab<B>
where
    Llama<B>: AutodiffModule<B, InnerModule = Llama<B::InnerBackend>>,
    RewardModel<B>: AutodiffModule<B, InnerModule = RewardModel<B::InnerBackend>>,
    RewardEnsemble<B>: AutodiffModule<B, InnerModule = RewardEnsemble<B::InnerBackend>>,
{
    /// Starts training a fresh reward model (Bradley–Terry; an ensemble of independent
    /// members aggregated by mean − std when `members` > 1) on the labels, holding out a
    /// tenth when there are at least 20 pairs (a ranking's pairs held out together: they share
    /// completions).
    pub fn reward_start(&mut self, settings: &RewardSettings) -> Result<()> {
        let total = self.pair_count();
        if total < 2 {
            return Err(Error::LabState(format!(
                "training a reward model needs at least 2 labelled pairs (left or right, or a ranking); there are {total}"
            )));
        }
        let members = settings.members.unwrap_or(1);
        let (training_pairs, held_out_pairs) =
            hold_out_by_label(&self.pair_groups, self.config.seed + 5);
        let training = settings.training(training_pairs.len());
        if settings.steps == Some(0) || training.batch_size(&REWARD_MODEL) == 0 || members == 0 {
            return Err(Error::Input(
                "reward model: steps, batch_size and members must be at least 1".into(),
            ));
        }
        let held_out = self.tokenized(held_out_pairs)?;
        let mut rows = self.tokenized(training_pairs)?;
        for (i, row) in rows.iter_mut().enumerate() {
            row.index = i;
        }
        let heads = RewardHeads::Ensemble {
            members,
            shared_trunk: false,
            aggregation: if members > 1 {
                Aggregation::MeanMinusStd { lambda: 1.0 }
            } else {
                Aggregation::Mean
            },
            member_scale: Vec::new(),
        };
        let config = RewardTrainConfig {
            optim: training.optim(&REWARD_MODEL),
            batch_size: training.batch_size(&REWARD_MODEL),
            seed: self.config.seed,
            margin_from_scores: false,
        };
        let mut reward =
            LearnedReward::from_policy(self.base.clone(), heads, self.config.seed + 17)?;
        let run = RewardModelRun::new(&mut reward, RewardData::Ranked(rows), config)?;
        self.reward_training = Some(RewardTraining {
            reward: Some(reward),
            run,
            held_out,
        });
        Ok(())
    }

    /// One reward-model update; the last one also measures held-out accuracy and makes the
    /// model the proxy that best-of-n and the online methods optimise.
    pub async fn reward_step(&mut self) -> Result<RewardProgress> {
        let training = self
            .reward_training
            .as_mut()
            .ok_or_else(|| Error::LabState("start reward-model training first".into()))?;
        let reward = training.reward.take().ok_or_else(|| {
            Error::LabState("this reward model failed a step: start again".into())
        })?;
        let watch = Stopwatch::start();
        let (reward, metrics) = training.run.step(reward).await?;
        let speed = watch.read();
        let (step, total_steps) = (training.run.steps_done(), training.run.total_steps());
        let mut progress = RewardProgress {
            step,
            total_steps,
            loss: metrics.get(metrics::TRAIN_LOSS).unwrap_or(f64::NAN),
            accuracy: metrics.get(metrics::TRAIN_ACCURACY).unwrap_or(f64::NAN),
            held_out_accuracy: None,
            held_out_interval: None,
            held_out_pairs: training.held_out.len(),
            training_pairs: training.run.data().len(),
            done: step >= total_steps,
            speed: Some(speed),
        };
        if !progress.done {
            training.reward = Some(reward);
            return Ok(progress);
        }
        let training = self.reward_training.take().expect("checked above");
        let trained = training.run.finish(reward).await?;
        let trained = LearnedReward {
            ensemble: trained.ensemble.valid(),
            heads: trained.heads,
        };
        if !training.held_out.is_empty() {
            let eval = evaluate_rankings(&trained, &training.held_out, 32).await?;
            progress.held_out_accuracy = Some(eval.accuracy);
            progress.held_out_interval =
                Some(wilson_interval(eval.accuracy, training.held_out.len()));
        }
        self.proxy = vec![(PROXY.into(), RewardSource::Learned(Box::new(trained)))];
        Ok(progress)
    }
}

/// The 95% Wilson score interval of a proportion `p` measured on `n` trials.
fn wilson_interval(p: f64, n: usize) -> (f64, f64) {
    let (z, n) = (1.96_f64, n as f64);
    let centre = (p + z * z / (2.0 * n)) / (1.0 + z * z / n);
    let half = z / (1.0 + z * z / n) * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt();
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_interval_is_wide_on_ten_pairs_and_narrow_on_a_thousand() {
        // Hand values: 7 of 10 → (0.397, 0.892); 700 of 1000 → (0.671, 0.728).
        let (lo, hi) = wilson_interval(0.7, 10);
        assert!(
            (lo - 0.3968).abs() < 1e-3 && (hi - 0.8922).abs() < 1e-3,
            "{lo} {hi}"
        );
        let (lo, hi) = wilson_interval(0.7, 1000);
        assert!(
            (lo - 0.6707).abs() < 1e-3 && (hi - 0.7276).abs() < 1e-3,
            "{lo} {hi}"
        );
        assert_eq!(wilson_interval(1.0, 10).1, 1.0);
    }
}

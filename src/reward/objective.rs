//! What a learned reward is trained on and judged by: its data, the batch loss — Bradley–Terry
//! on pairs, Plackett–Luce on rankings (both from `algo::reward_model`), squared error on
//! attribute ratings; ensembles train every member at once, each on its own bootstrap resample —
//! and held-out evaluation. The loop that trains it is `run::reward_model`.

use crate::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Poisson};
use serde::{Deserialize, Serialize};

use super::{combine, LearnedReward, RewardHeads};
use crate::algo::reward_model::{bradley_terry_loss, plackett_luce_loss};
use crate::dataset::{RankedSequences, RatedSequence, Sequence};
use crate::error::{Error, Result};
use crate::host::read_vec;
use crate::logprobs::SequenceBatch;
use crate::metrics::{self, Metrics};
use crate::model::RewardEnsemble;

/// What a learned reward is trained on.
#[derive(Debug, Clone)]
pub enum RewardData {
    /// Pairs and rankings, all with the same number of completions.
    Ranked(Vec<RankedSequences>),
    /// Completions rated on the attributes of [`RewardHeads::Attributes`].
    Rated(Vec<RatedSequence>),
}

impl RewardData {
    pub fn len(&self) -> usize {
        match self {
            Self::Ranked(r) => r.len(),
            Self::Rated(r) => r.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks the data against the heads: rankings for ensembles (one k throughout), ratings
    /// with one target per attribute.
    pub fn check(&self, heads: &RewardHeads) -> Result<()> {
        match (self, heads) {
            (Self::Ranked(rows), RewardHeads::Ensemble { .. }) => {
                let k = rows.first().map(|r| r.completions.len()).unwrap_or(0);
                if let Some(r) = rows.iter().find(|r| r.completions.len() != k) {
                    return Err(Error::Input(format!(
                        "record {} ranks {} completions but the first ranks {k}: split the data by size",
                        r.index,
                        r.completions.len()
                    )));
                }
                Ok(())
            }
            (Self::Rated(rows), RewardHeads::Attributes { names, .. }) => {
                if let Some(r) = rows.iter().find(|r| r.targets.len() != names.len()) {
                    return Err(Error::Input(format!(
                        "record {} rates {} attributes; the model has {names:?}",
                        r.index,
                        r.targets.len()
                    )));
                }
                Ok(())
            }
            (Self::Ranked(_), RewardHeads::Attributes { .. }) => Err(Error::Input(
                "a multi-attribute reward model trains on rated completions, not pairs".into(),
            )),
            (Self::Rated(_), RewardHeads::Ensemble { .. }) => Err(Error::Input(
                "rated completions train a multi-attribute reward model (give attribute heads)"
                    .into(),
            )),
        }
    }
}

/// How many times row `index` appears in member `member`'s bootstrap resample: Poisson(1), the
/// limit of resampling n rows with replacement (Oza & Russell's online bagging). Fixed for the
/// row and member, so every epoch sees the same resample.
pub fn bootstrap_weight(seed: u64, index: usize, member: usize) -> f32 {
    let key = seed
        ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (member as u64 + 1).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    let mut rng = ChaCha8Rng::seed_from_u64(key);
    Poisson::new(1.0f64).expect("valid rate").sample(&mut rng) as f32
}

/// [rows, members] weights: all ones for a single model, bootstrap counts for an ensemble.
fn member_weights<B: Backend>(
    indices: &[usize],
    members: usize,
    seed: u64,
    device: &B::Device,
) -> Tensor<B, 2> {
    let data: Vec<f32> = indices
        .iter()
        .flat_map(|&i| {
            (0..members).map(move |m| {
                if members == 1 {
                    1.0
                } else {
                    bootstrap_weight(seed, i, m)
                }
            })
        })
        .collect();
    Tensor::from_data(TensorData::new(data, [indices.len(), members]), device)
}

/// The ranking loss of each row and member: member rewards [rows·k, members] (rows' completions
/// consecutive, best first) → [rows, members].
fn ranking_losses<B: Backend>(
    member_rewards: Tensor<B, 2>,
    rows: usize,
    k: usize,
    margins: Option<Tensor<B, 1>>,
) -> Tensor<B, 2> {
    let members = member_rewards.dims()[1];
    let per_row = member_rewards.reshape([rows, k, members]);
    let columns: Vec<Tensor<B, 2>> = (0..members)
        .map(|m| {
            let ranked: Tensor<B, 2> = per_row.clone().narrow(2, m, 1).reshape([rows, k]);
            let loss = if k == 2 {
                let chosen = ranked.clone().narrow(1, 0, 1).reshape([rows]);
                let rejected = ranked.narrow(1, 1, 1).reshape([rows]);
                bradley_terry_loss(chosen, rejected, margins.clone())
            } else {
                plackett_luce_loss(ranked)
            };
            loss.reshape([rows, 1])
        })
        .collect();
    Tensor::cat(columns, 1)
}

/// Mean over members of each member's weighted mean loss.
fn weighted_loss<B: Backend>(losses: Tensor<B, 2>, weights: Tensor<B, 2>) -> Tensor<B, 1> {
    let per_member = (losses * weights.clone()).sum_dim(0) / weights.sum_dim(0).clamp_min(1e-6);
    per_member.mean()
}

fn sequence_batch<B: Backend>(
    sequences: &[Sequence],
    model: &RewardEnsemble<B>,
) -> Result<SequenceBatch<B>> {
    let member = &model.members[0].trunk;
    SequenceBatch::new(sequences, member.config().max_seq_len, &member.device())
}

/// Ranking metrics from every output of every completion of `rankings` (host side).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RankingEval {
    pub rankings: usize,
    /// Share of ordered completion pairs (better, worse) the combined reward orders strictly right.
    pub accuracy: f64,
    /// Mean combined reward of the best completion (`chosen`) and of the others (`rejected`).
    pub chosen_reward: f64,
    pub rejected_reward: f64,
    pub margin: f64,
    /// Per member: its own accuracy.
    pub member_accuracy: Vec<f64>,
    /// Share of (best, other) pairs on which the members do not all agree.
    pub disagreement: f64,
    /// Mean over completions of the members' standard deviation.
    pub member_std: f64,
}

impl RankingEval {
    /// `member_rewards[i]` holds ranking i's completions' outputs, best first, each `outputs` long;
    /// `combined[i]` the combined rewards.
    pub fn from_rewards(member_rewards: &[Vec<Vec<f32>>], combined: &[Vec<f32>]) -> Self {
        let outputs = member_rewards
            .first()
            .and_then(|r| r.first())
            .map_or(0, Vec::len);
        let (mut ordered, mut right) = (0usize, 0usize);
        let mut member_right = vec![0usize; outputs];
        let (mut chosen, mut rejected, mut rejected_n) = (0.0f64, 0.0f64, 0usize);
        let (mut split, mut contests) = (0usize, 0usize);
        let (mut std_sum, mut std_n) = (0.0f64, 0usize);
        for (members, total) in member_rewards.iter().zip(combined) {
            chosen += total[0] as f64;
            for j in 1..total.len() {
                rejected += total[j] as f64;
                rejected_n += 1;
                let votes = (0..outputs)
                    .filter(|&m| members[0][m] > members[j][m])
                    .count();
                contests += 1;
                if votes != 0 && votes != outputs {
                    split += 1;
                }
            }
            for i in 0..total.len() {
                for j in i + 1..total.len() {
                    ordered += 1;
                    right += usize::from(total[i] > total[j]);
                    for (m, r) in member_right.iter_mut().enumerate() {
                        *r += usize::from(members[i][m] > members[j][m]);
                    }
                }
                let values = &members[i];
                let mean = values.iter().map(|&v| v as f64).sum::<f64>() / outputs.max(1) as f64;
                let var = values
                    .iter()
                    .map(|&v| (v as f64 - mean).powi(2))
                    .sum::<f64>()
                    / outputs.max(1) as f64;
                std_sum += var.sqrt();
                std_n += 1;
            }
        }
        let n = member_rewards.len();
        let chosen_reward = chosen / n.max(1) as f64;
        let rejected_reward = rejected / rejected_n.max(1) as f64;
        Self {
            rankings: n,
            accuracy: right as f64 / ordered.max(1) as f64,
            chosen_reward,
            rejected_reward,
            margin: chosen_reward - rejected_reward,
            member_accuracy: member_right
                .iter()
                .map(|&r| r as f64 / ordered.max(1) as f64)
                .collect(),
            disagreement: split as f64 / contests.max(1) as f64,
            member_std: std_sum / std_n.max(1) as f64,
        }
    }

    pub fn insert_into(&self, m: &mut Metrics) {
        m.insert(metrics::TRAIN_ACCURACY, self.accuracy);
        m.insert(metrics::REWARDS_CHOSEN, self.chosen_reward);
        m.insert(metrics::REWARDS_REJECTED, self.rejected_reward);
        m.insert(metrics::REWARDS_MARGINS, self.margin);
        if self.member_accuracy.len() > 1 {
            m.insert(metrics::ENSEMBLE_DISAGREEMENT, self.disagreement);
            m.insert(metrics::ENSEMBLE_STD, self.member_std);
        }
    }
}

/// Splits read-back outputs [rows·k × outputs] into per-ranking, per-completion vectors.
fn split_rewards(values: &[f32], rows: usize, k: usize, outputs: usize) -> Vec<Vec<Vec<f32>>> {
    (0..rows)
        .map(|r| {
            (0..k)
                .map(|c| values[(r * k + c) * outputs..(r * k + c + 1) * outputs].to_vec())
                .collect()
        })
        .collect()
}

/// Every output and the combined reward of each sequence, read to the host.
pub async fn score_sequences<B: Backend>(
    reward: &LearnedReward<B>,
    sequences: &[Sequence],
    batch_size: usize,
) -> Result<(Vec<Vec<f32>>, Vec<f32>)> {
    let outputs = reward.heads.outputs();
    let (mut members, mut combined) = (Vec::new(), Vec::new());
    for chunk in sequences.chunks(batch_size.max(1)) {
        let batch = sequence_batch(chunk, &reward.ensemble)?;
        let member_rewards = reward.member_rewards(batch.tokens, batch.last_index);
        let total = combine(member_rewards.clone(), &reward.heads);
        let values = read_vec(member_rewards).await?;
        members.extend(values.chunks(outputs).map(<[f32]>::to_vec));
        combined.extend(read_vec(total).await?);
    }
    Ok((members, combined))
}

/// Accuracy and reward statistics of a learned reward on held-out rankings.
pub async fn evaluate_rankings<B: Backend>(
    reward: &LearnedReward<B>,
    rankings: &[RankedSequences],
    batch_size: usize,
) -> Result<RankingEval> {
    let sequences: Vec<Sequence> = rankings.iter().flat_map(|r| r.sequences()).collect();
    let (members, combined) = score_sequences(reward, &sequences, batch_size).await?;
    let (mut member_rows, mut combined_rows) = (Vec::new(), Vec::new());
    let mut at = 0;
    for r in rankings {
        let k = r.completions.len();
        member_rows.push(members[at..at + k].to_vec());
        combined_rows.push(combined[at..at + k].to_vec());
        at += k;
    }
    Ok(RankingEval::from_rewards(&member_rows, &combined_rows))
}

/// Per-attribute root mean squared error and pairwise ordering accuracy on rated completions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RatingEval {
    pub names: Vec<String>,
    pub rmse: Vec<f64>,
    /// For each attribute: share of pairs of completions with different ratings that its
    /// output orders the same way.
    pub pairwise_accuracy: Vec<f64>,
}

pub async fn evaluate_ratings<B: Backend>(
    reward: &LearnedReward<B>,
    rated: &[RatedSequence],
    batch_size: usize,
) -> Result<RatingEval> {
    let RewardHeads::Attributes { names, .. } = &reward.heads else {
        return Err(Error::Input(
            "rated completions evaluate a multi-attribute reward model".into(),
        ));
    };
    let scale = rating_scale(&reward.heads, names.len())?;
    let sequences: Vec<Sequence> = rated.iter().map(|r| r.sequence.clone()).collect();
    let (outputs, _) = score_sequences(reward, &sequences, batch_size).await?;
    let mut rmse = Vec::new();
    let mut accuracy = Vec::new();
    for a in 0..names.len() {
        let mse = rated
            .iter()
            .zip(&outputs)
            .map(|(r, o)| ((o[a] * scale[a][1] + scale[a][0] - r.targets[a]) as f64).powi(2))
            .sum::<f64>()
            / rated.len() as f64;
        rmse.push(mse.sqrt());
        let (mut pairs, mut right) = (0usize, 0usize);
        for i in 0..rated.len() {
            for j in i + 1..rated.len().min(i + 50) {
                let (ti, tj) = (rated[i].targets[a], rated[j].targets[a]);
                if ti != tj {
                    pairs += 1;
                    right += usize::from((ti > tj) == (outputs[i][a] > outputs[j][a]));
                }
            }
        }
        accuracy.push(right as f64 / pairs.max(1) as f64);
    }
    Ok(RatingEval {
        names: names.clone(),
        rmse,
        pairwise_accuracy: accuracy,
    })
}

/// (mean, std) of each attribute over `rows`; a constant attribute gets std 1.
pub fn rating_scale_of(rows: &[RatedSequence]) -> Vec<[f32; 2]> {
    let attributes = rows.first().map_or(0, |r| r.targets.len());
    let n = rows.len().max(1) as f64;
    (0..attributes)
        .map(|a| {
            let mean = rows.iter().map(|r| r.targets[a] as f64).sum::<f64>() / n;
            let var = rows
                .iter()
                .map(|r| (r.targets[a] as f64 - mean).powi(2))
                .sum::<f64>()
                / n;
            let std = if var > 1e-12 { var.sqrt() } else { 1.0 };
            [mean as f32, std as f32]
        })
        .collect()
}

/// (mean, std) per attribute of a multi-attribute head, or an error for other heads.
fn rating_scale(heads: &RewardHeads, attributes: usize) -> Result<Vec<[f32; 2]>> {
    match heads {
        RewardHeads::Attributes { rating_scale, .. } if rating_scale.len() == attributes => {
            Ok(rating_scale.clone())
        }
        RewardHeads::Attributes { .. } => Ok(vec![[0.0, 1.0]; attributes]),
        _ => Err(Error::Input(
            "rated completions need a multi-attribute reward model".into(),
        )),
    }
}

/// What a batch's loss depends on besides the model and its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LossOptions {
    /// For pairs with scores: Bradley–Terry with margin m = s_chosen − s_rejected (Llama 2).
    pub margin_from_scores: bool,
    /// Fixes each ensemble member's bootstrap resample.
    pub seed: u64,
}

/// The training loss of rows `batch` of `data`: the ranking loss (Bradley–Terry for pairs,
/// Plackett–Luce for rankings), weighted per member by its bootstrap resample, or the squared
/// error of standardised ratings. Ranking metrics of the batch go into `metrics`.
pub async fn batch_loss<B: Backend>(
    ensemble: &RewardEnsemble<B>,
    heads: &RewardHeads,
    data: &RewardData,
    batch: &[usize],
    options: &LossOptions,
    metrics: &mut Metrics,
) -> Result<Tensor<B, 1>> {
    let outputs = heads.outputs();
    let device = ensemble.members[0].trunk.device();
    let loss = match data {
        RewardData::Ranked(rows) => {
            let rows: Vec<&RankedSequences> = batch.iter().map(|&i| &rows[i]).collect();
            let k = rows[0].completions.len();
            let sequences: Vec<Sequence> = rows.iter().flat_map(|r| r.sequences()).collect();
            let seq = sequence_batch(&sequences, ensemble)?;
            let member_rewards = ensemble.member_rewards(seq.tokens, seq.last_index);
            let margins = if options.margin_from_scores && k == 2 {
                rows.iter()
                    .map(|r| r.scores.as_ref().map(|s| (s[0] - s[1]) as f32))
                    .collect::<Option<Vec<f32>>>()
                    .map(|v| Tensor::from_data(TensorData::new(v, [rows.len()]), &device))
            } else {
                None
            };
            let losses = ranking_losses(member_rewards.clone(), rows.len(), k, margins);
            let indices: Vec<usize> = rows.iter().map(|r| r.index).collect();
            let weights = member_weights(&indices, outputs, options.seed, &device);
            let combined = combine(member_rewards.clone().detach(), heads);
            let member_values = read_vec(member_rewards.detach()).await?;
            let combined_values = read_vec(combined).await?;
            RankingEval::from_rewards(
                &split_rewards(&member_values, rows.len(), k, outputs),
                &split_rewards(&combined_values, rows.len(), k, 1)
                    .into_iter()
                    .map(|r| r.into_iter().map(|v| v[0]).collect())
                    .collect::<Vec<_>>(),
            )
            .insert_into(metrics);
            weighted_loss(losses, weights)
        }
        RewardData::Rated(rows) => {
            let rows: Vec<&RatedSequence> = batch.iter().map(|&i| &rows[i]).collect();
            let sequences: Vec<Sequence> = rows.iter().map(|r| r.sequence.clone()).collect();
            let seq = sequence_batch(&sequences, ensemble)?;
            let predicted = ensemble.member_rewards(seq.tokens, seq.last_index);
            let scale = rating_scale(heads, outputs)?;
            let targets: Vec<f32> = rows
                .iter()
                .flat_map(|r| {
                    r.targets
                        .iter()
                        .zip(&scale)
                        .map(|(t, [mean, std])| (t - mean) / std)
                })
                .collect();
            let targets =
                Tensor::from_data(TensorData::new(targets, [rows.len(), outputs]), &device);
            (predicted - targets).powi_scalar(2).mean()
        }
    };
    Ok(loss)
}

/// (mean, std) of each member's reward over (up to 512 rows of) the training completions.
pub async fn member_scale<B: Backend>(
    reward: &LearnedReward<B>,
    rows: &[RankedSequences],
) -> Result<Vec<[f32; 2]>> {
    let sequences: Vec<Sequence> = rows.iter().take(512).flat_map(|r| r.sequences()).collect();
    let (members, _) = score_sequences(reward, &sequences, 32).await?;
    let outputs = reward.heads.outputs();
    Ok((0..outputs)
        .map(|j| {
            let values: Vec<f64> = members.iter().map(|m| m[j] as f64).collect();
            let n = values.len().max(1) as f64;
            let mean = values.iter().sum::<f64>() / n;
            let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
            [mean as f32, var.sqrt().max(1e-6) as f32]
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_weights_are_poisson_one_and_fixed() {
        let weights: Vec<f32> = (0..20_000).map(|i| bootstrap_weight(3, i, 1)).collect();
        let mean = weights.iter().sum::<f32>() / weights.len() as f32;
        let zeros = weights.iter().filter(|&&w| w == 0.0).count() as f32 / weights.len() as f32;
        assert!((mean - 1.0).abs() < 0.03, "{mean}");
        // P(0) = e^{-1}: the share of rows a resample leaves out.
        assert!((zeros - (-1.0f32).exp()).abs() < 0.02, "{zeros}");
        assert_eq!(bootstrap_weight(3, 17, 1), bootstrap_weight(3, 17, 1));
        let other: Vec<f32> = (0..100).map(|i| bootstrap_weight(3, i, 2)).collect();
        assert_ne!(&weights[..100], &other[..]);
    }

    #[test]
    fn ranking_eval_by_hand() {
        // Two members; ranking 0: both right; ranking 1: member 1 wrong.
        let members = vec![
            vec![vec![2.0, 1.0], vec![0.0, 0.0]],
            vec![vec![1.0, -1.0], vec![0.0, 0.0]],
        ];
        let combined = vec![vec![1.5, 0.0], vec![0.0, 0.0]];
        let eval = RankingEval::from_rewards(&members, &combined);
        assert_eq!(eval.accuracy, 0.5); // the tie is not strictly right
        assert_eq!(eval.member_accuracy, vec![1.0, 0.5]);
        assert_eq!(eval.disagreement, 0.5);
        assert_eq!(eval.chosen_reward, 0.75);
        assert_eq!(eval.margin, 0.75);
    }
}

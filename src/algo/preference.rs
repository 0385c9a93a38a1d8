//! The one trainer around the offline preference losses: it batches pairs, rankings or unpaired
//! labels, gathers the policy's sequence log-probs, takes the reference's from a table computed
//! once before training, calls the chosen method's loss, and logs TRL's metric names.

use crate::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use super::bco::RunningMean;
use super::preference_method::{RankedInputs, UnpairedInputs};
use crate::dataset::{LabelledSequence, RankedSequences, Sequence};
use crate::distributed::Replica;
use crate::error::{Error, Result};
use crate::host::{read_scalar, read_vec};
use crate::logprobs::{completion_logprobs, sum_per_sequence, SequenceBatch};
use crate::metrics::{self, Metrics};
use crate::model::Llama;
use crate::train::OptimConfig;

pub use super::preference_loss::PreferenceLoss;
pub use super::spec::DataShape;

#[derive(Debug, Clone, PartialEq)]
pub struct PreferenceConfig {
    pub loss: PreferenceLoss,
    /// Strength of the tie to the reference (the inverse temperature of the implicit reward).
    pub beta: f64,
    pub optim: OptimConfig,
    /// Pairs, rankings or labelled completions per batch.
    pub batch_size: usize,
    pub seed: u64,
}

#[derive(Debug, Clone)]
pub enum PreferenceData {
    Ranked(Vec<RankedSequences>),
    Unpaired(Vec<LabelledSequence>),
}

impl PreferenceData {
    pub fn len(&self) -> usize {
        match self {
            Self::Ranked(r) => r.len(),
            Self::Unpaired(u) => u.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every preference turned around: rankings worst first, labels flipped. Trained on this,
    /// DPO makes the reverse DPO model of AlignDistil's contrastive reward.
    pub fn reversed(self) -> Self {
        match self {
            Self::Ranked(rows) => Self::Ranked(
                rows.into_iter()
                    .map(|mut r| {
                        r.completions.reverse();
                        if let Some(scores) = &mut r.scores {
                            scores.reverse();
                        }
                        r
                    })
                    .collect(),
            ),
            Self::Unpaired(rows) => Self::Unpaired(
                rows.into_iter()
                    .map(|mut r| {
                        r.desirable = !r.desirable;
                        r
                    })
                    .collect(),
            ),
        }
    }

    /// Checks that `loss` can train on this data.
    pub fn check(&self, loss: &PreferenceLoss) -> Result<()> {
        match (self, loss.data_shape()) {
            (Self::Ranked(rows), DataShape::Pairs) => {
                if let Some(r) = rows.iter().find(|r| r.completions.len() != 2) {
                    return Err(Error::Input(format!(
                        "{loss} trains on pairs; record {} ranks {} completions (use pro or lipo)",
                        r.index,
                        r.completions.len()
                    )));
                }
                Ok(())
            }
            (Self::Ranked(rows), DataShape::Rankings) => {
                let k = rows.first().map_or(0, |r| r.completions.len());
                match rows.iter().find(|r| r.completions.len() != k) {
                    Some(r) => Err(Error::Input(format!(
                        "record {} ranks {} completions but the first ranks {k}: one size per file",
                        r.index,
                        r.completions.len()
                    ))),
                    None => Ok(()),
                }
            }
            (Self::Unpaired(rows), DataShape::Unpaired) => {
                if rows.len() < 2 {
                    return Err(Error::Input(
                        "unpaired methods need at least 2 examples (the KL reference pairs them up)"
                            .into(),
                    ));
                }
                Ok(())
            }
            (Self::Unpaired(_), _) => Err(not_unpaired(loss)),
            (Self::Ranked(_), DataShape::Unpaired) => Err(only_unpaired(loss)),
        }
    }

    /// Every sequence the reference must score, in table order: each ranking's completions; or
    /// each unpaired example, then its mismatched pair (prompt i, completion i+1) for the KL
    /// reference point.
    fn reference_sequences(&self) -> Vec<Sequence> {
        match self {
            Self::Ranked(rows) => rows.iter().flat_map(|r| r.sequences()).collect(),
            Self::Unpaired(rows) => {
                let mut out: Vec<Sequence> = rows.iter().map(|r| r.sequence.clone()).collect();
                out.extend((0..rows.len()).map(|i| mismatched(rows, i)));
                out
            }
        }
    }
}

fn not_unpaired(loss: &PreferenceLoss) -> Error {
    Error::Input(format!(
        "{loss} trains on pairs or rankings, not unpaired labels"
    ))
}

fn only_unpaired(loss: &PreferenceLoss) -> Error {
    Error::Input(format!(
        "{loss} trains on unpaired labels: unpair the pairs first"
    ))
}

/// Example i's prompt with the next example's completion: a sample from π_ref(y|x') for an
/// unrelated x', as KTO's KL estimate needs (TRL shifts completions the same way).
fn mismatched(rows: &[LabelledSequence], i: usize) -> Sequence {
    let next = &rows[(i + 1) % rows.len()];
    (rows[i].sequence.0.clone(), next.sequence.1.clone())
}

/// Summed reference log-probs of every sequence, computed once before training, in the layout
/// of the data they belong to.
#[derive(Debug, Clone, PartialEq)]
pub enum ReferenceLogps {
    /// Per ranking, per completion (best first).
    Ranked(Vec<Vec<f32>>),
    /// Per unpaired example: its own sequence and the mismatched one KTO's KL estimate uses.
    Unpaired(Vec<UnpairedReference>),
}

/// The reference's log-probs of one unpaired example.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UnpairedReference {
    pub own: f32,
    /// Its prompt with the next example's completion.
    pub mismatched: f32,
}

impl ReferenceLogps {
    fn ranked(&self, row: usize) -> Result<&[f32]> {
        match self {
            Self::Ranked(rows) => rows
                .get(row)
                .map(Vec::as_slice)
                .ok_or_else(|| mismatch(row)),
            Self::Unpaired(_) => Err(mismatch(row)),
        }
    }

    fn unpaired(&self, row: usize) -> Result<UnpairedReference> {
        match self {
            Self::Unpaired(rows) => rows.get(row).copied().ok_or_else(|| mismatch(row)),
            Self::Ranked(_) => Err(mismatch(row)),
        }
    }
}

fn mismatch(row: usize) -> Error {
    Error::Input(format!(
        "the reference log-probs were computed for other data (no entry for row {row} of this kind)"
    ))
}

/// Scores every sequence of `data` under the frozen `reference`.
pub async fn reference_logps<B: Backend>(
    reference: &Llama<B>,
    data: &PreferenceData,
    batch_size: usize,
) -> Result<ReferenceLogps> {
    reference_logps_sharded(reference, data, batch_size, &Replica::SINGLE).await
}

/// [`reference_logps`] with the work shared: each replica scores its share of the sequences and
/// every replica gets them all.
pub async fn reference_logps_sharded<B: Backend>(
    reference: &Llama<B>,
    data: &PreferenceData,
    batch_size: usize,
    replica: &Replica,
) -> Result<ReferenceLogps> {
    let sequences = data.reference_sequences();
    let mine = &sequences[replica.shard_range(sequences.len())];
    let mut flat = Vec::with_capacity(mine.len());
    for chunk in mine.chunks(batch_size.max(1)) {
        let batch =
            SequenceBatch::<B>::new(chunk, reference.config().max_seq_len, &reference.device())?;
        flat.extend(read_vec(sum_per_sequence(completion_logprobs(reference, &batch))).await?);
    }
    let flat = replica.gather_rows(vec![flat])?.concat();
    Ok(match data {
        PreferenceData::Ranked(rows) => {
            let mut at = 0;
            ReferenceLogps::Ranked(
                rows.iter()
                    .map(|r| {
                        let k = r.completions.len();
                        at += k;
                        flat[at - k..at].to_vec()
                    })
                    .collect(),
            )
        }
        PreferenceData::Unpaired(rows) => {
            let n = rows.len();
            ReferenceLogps::Unpaired(
                (0..n)
                    .map(|i| UnpairedReference {
                        own: flat[i],
                        mismatched: flat[n + i],
                    })
                    .collect(),
            )
        }
    })
}

/// A [rows, k] tensor from host rows.
fn matrix<B: Backend>(rows: &[Vec<f32>], device: &B::Device) -> Tensor<B, 2> {
    let k = rows[0].len();
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    Tensor::from_data(TensorData::new(flat, [rows.len(), k]), device)
}

/// Policy log-probs of sequences: (summed [n], completion lengths [n]).
fn policy_logps<B: Backend>(
    policy: &Llama<B>,
    sequences: &[Sequence],
) -> Result<(Tensor<B, 1>, Tensor<B, 1>)> {
    let batch = SequenceBatch::<B>::new(sequences, policy.config().max_seq_len, &policy.device())?;
    let lengths = sum_per_sequence(batch.completion_mask.clone());
    Ok((
        sum_per_sequence(completion_logprobs(policy, &batch)),
        lengths,
    ))
}

/// The loss of a batch of rankings, with the implicit rewards for logging.
struct RankedOutput<B: Backend> {
    losses: Tensor<B, 1>,
    /// β·ρ of every completion [rows, k], detached.
    rewards: Tensor<B, 2>,
    /// Summed policy log-probs [rows, k], detached.
    logps: Tensor<B, 2>,
}

fn ranked_losses<B: Backend>(
    config: &PreferenceConfig,
    logps: Tensor<B, 2>,
    lengths: Tensor<B, 2>,
    reference: Tensor<B, 2>,
    scores: Option<Tensor<B, 2>>,
) -> Result<RankedOutput<B>> {
    let loss = config.loss;
    let reference = if loss.uses_reference() {
        reference
    } else {
        reference.zeros_like()
    };
    // ρ: on summed log-probs, or length-averaged ones where the method says so.
    let logratios = if loss.length_averaged() {
        (logps.clone() - reference) / lengths.clone().clamp_min(1.0)
    } else {
        logps.clone() - reference
    };
    let inputs = RankedInputs {
        logratios: logratios.clone(),
        logps: logps.clone(),
        lengths,
        scores,
        beta: config.beta,
    };
    let losses = loss
        .ranked_losses(inputs)
        .ok_or_else(|| only_unpaired(&loss))?;
    Ok(RankedOutput {
        losses,
        rewards: logratios.detach().mul_scalar(config.beta),
        logps: logps.detach(),
    })
}

/// A method's loss over batches, with the state it carries across steps (BCO's δ); the loop
/// that steps an optimiser on it is `run::preference`.
pub struct PreferenceObjective {
    pub config: PreferenceConfig,
    pub bco_delta: RunningMean,
    /// In a data-parallel run, the batch statistics some losses share (KTO's KL reference,
    /// BCO's reward shift) are taken over the global batch, not this replica's share of it.
    pub replica: Replica,
}

impl PreferenceObjective {
    pub fn new(config: PreferenceConfig) -> Self {
        Self {
            config,
            bco_delta: RunningMean::default(),
            replica: Replica::SINGLE,
        }
    }

    /// The mean loss of the rows `batch` of `data` under `policy`; the batch's implicit rewards
    /// and log-probs (TRL's names) go into `m`.
    pub async fn batch_loss<B: Backend>(
        &mut self,
        policy: &Llama<B>,
        data: &PreferenceData,
        reference: &ReferenceLogps,
        batch: &[usize],
        m: &mut Metrics,
    ) -> Result<Tensor<B, 1>> {
        let device = policy.device();
        let loss = match data {
            PreferenceData::Ranked(rows) => {
                let rows: Vec<&RankedSequences> = batch.iter().map(|&i| &rows[i]).collect();
                let k = rows[0].completions.len();
                let sequences: Vec<Sequence> = rows.iter().flat_map(|r| r.sequences()).collect();
                let (logps, lengths) = policy_logps(policy, &sequences)?;
                let shape = [rows.len(), k];
                let reference_rows: Vec<Vec<f32>> = batch
                    .iter()
                    .map(|&i| reference.ranked(i).map(<[f32]>::to_vec))
                    .collect::<Result<_>>()?;
                let scores = rows
                    .iter()
                    .map(|r| {
                        r.scores
                            .as_ref()
                            .map(|s| s.iter().map(|&v| v as f32).collect())
                    })
                    .collect::<Option<Vec<Vec<f32>>>>()
                    .map(|s| matrix(&s, &device));
                let out = ranked_losses(
                    &self.config,
                    logps.reshape(shape),
                    lengths.reshape(shape),
                    matrix(&reference_rows, &device),
                    scores,
                )?;
                log_ranked(m, out.rewards, out.logps).await?;
                out.losses.mean()
            }
            PreferenceData::Unpaired(rows) => {
                let picked: Vec<&LabelledSequence> = batch.iter().map(|&i| &rows[i]).collect();
                let sequences: Vec<Sequence> = picked.iter().map(|r| r.sequence.clone()).collect();
                let (logps, _) = policy_logps(policy, &sequences)?;
                let reference_logps: Vec<f32> = batch
                    .iter()
                    .map(|&i| reference.unpaired(i).map(|r| r.own))
                    .collect::<Result<_>>()?;
                let n = batch.len();
                let logratios = logps.clone()
                    - Tensor::from_data(TensorData::new(reference_logps, [n]), &device);
                let desirable: Vec<f32> = picked
                    .iter()
                    .map(|r| f32::from(u8::from(r.desirable)))
                    .collect();
                let desirable = Tensor::<B, 1>::from_data(TensorData::new(desirable, [n]), &device);
                let beta = self.config.beta;
                let loss = self.config.loss;
                let kl_reference = if loss.needs_kl_reference() {
                    let mismatched: Vec<Sequence> =
                        batch.iter().map(|&i| mismatched(rows, i)).collect();
                    let (kl_logps, _) = policy_logps(policy, &mismatched)?;
                    let kl_reference: Vec<f32> = batch
                        .iter()
                        .map(|&i| reference.unpaired(i).map(|r| r.mismatched))
                        .collect::<Result<_>>()?;
                    let mut kl = (kl_logps.detach()
                        - Tensor::from_data(TensorData::new(kl_reference, [n]), &device))
                    .mean();
                    if !self.replica.is_single() {
                        let share = self.replica.share(n as f64)?;
                        let local = read_scalar(kl).await? as f64;
                        let global = self.replica.sum_values(&[(local * share) as f32])?;
                        kl = Tensor::from_data(TensorData::new(global, [1]), &device);
                    }
                    m.insert(metrics::KL, read_scalar(kl.clone()).await?.max(0.0) as f64);
                    Some(kl)
                } else {
                    None
                };
                if loss.needs_reward_shift() {
                    let rewards = read_vec(logratios.clone().detach().mul_scalar(beta)).await?;
                    let rewards: Vec<f32> = self.replica.gather_rows(vec![rewards])?.concat();
                    self.bco_delta.update(&rewards);
                    m.insert(metrics::BCO_DELTA, self.bco_delta.mean);
                }
                let inputs = UnpairedInputs {
                    logratios: logratios.clone(),
                    desirable,
                    beta,
                    kl_reference,
                    reward_shift: self.bco_delta.mean,
                };
                let losses = loss
                    .unpaired_losses(inputs)
                    .ok_or_else(|| not_unpaired(&loss))?;
                log_unpaired(
                    m,
                    logratios.detach().mul_scalar(beta),
                    logps.detach(),
                    &picked,
                    &self.replica,
                )
                .await?;
                losses.mean()
            }
        };
        Ok(loss)
    }
}

async fn log_ranked<B: Backend>(
    m: &mut Metrics,
    rewards: Tensor<B, 2>,
    logps: Tensor<B, 2>,
) -> Result<()> {
    let k = rewards.dims()[1];
    let rewards = read_vec(rewards).await?;
    let logps = read_vec(logps).await?;
    let (mut chosen, mut rejected, mut right) = (0.0, 0.0, 0.0);
    let (mut logps_chosen, mut logps_rejected) = (0.0, 0.0);
    let rows = rewards.len() / k;
    for row in 0..rows {
        let r = &rewards[row * k..(row + 1) * k];
        let l = &logps[row * k..(row + 1) * k];
        chosen += r[0] as f64;
        logps_chosen += l[0] as f64;
        let rest = (k - 1) as f64;
        rejected += r[1..].iter().map(|&v| v as f64).sum::<f64>() / rest;
        logps_rejected += l[1..].iter().map(|&v| v as f64).sum::<f64>() / rest;
        right += r[1..].iter().filter(|&&v| r[0] > v).count() as f64 / rest;
    }
    let n = rows as f64;
    m.insert(metrics::REWARDS_CHOSEN, chosen / n);
    m.insert(metrics::REWARDS_REJECTED, rejected / n);
    m.insert(metrics::REWARDS_MARGINS, (chosen - rejected) / n);
    m.insert(metrics::REWARDS_ACCURACIES, right / n);
    m.insert(metrics::LOGPS_CHOSEN, logps_chosen / n);
    m.insert(metrics::LOGPS_REJECTED, logps_rejected / n);
    Ok(())
}

/// The batch's means over its desirable and its undesirable rows — over the global batch in a
/// data-parallel run (a replica's share may hold only one kind).
async fn log_unpaired<B: Backend>(
    m: &mut Metrics,
    rewards: Tensor<B, 1>,
    logps: Tensor<B, 1>,
    rows: &[&LabelledSequence],
    replica: &Replica,
) -> Result<()> {
    let desirable: Vec<f32> = rows
        .iter()
        .map(|r| f32::from(u8::from(r.desirable)))
        .collect();
    let gathered = replica.gather_rows(vec![
        read_vec(rewards).await?,
        read_vec(logps).await?,
        desirable,
    ])?;
    let column = |i: usize| -> Vec<f32> {
        gathered
            .iter()
            .skip(i)
            .step_by(3)
            .flatten()
            .copied()
            .collect()
    };
    let (rewards, logps, desirable) = (column(0), column(1), column(2));
    let mean_where = |values: &[f32], wanted: bool| -> Option<f64> {
        let picked: Vec<f64> = values
            .iter()
            .zip(&desirable)
            .filter(|(_, &d)| (d == 1.0) == wanted)
            .map(|(&v, _)| v as f64)
            .collect();
        (!picked.is_empty()).then(|| picked.iter().sum::<f64>() / picked.len() as f64)
    };
    if let Some(v) = mean_where(&rewards, true) {
        m.insert(metrics::REWARDS_CHOSEN, v);
    }
    if let Some(v) = mean_where(&rewards, false) {
        m.insert(metrics::REWARDS_REJECTED, v);
    }
    if let (Some(c), Some(r)) = (mean_where(&rewards, true), mean_where(&rewards, false)) {
        m.insert(metrics::REWARDS_MARGINS, c - r);
    }
    if let Some(v) = mean_where(&logps, true) {
        m.insert(metrics::LOGPS_CHOSEN, v);
    }
    if let Some(v) = mean_where(&logps, false) {
        m.insert(metrics::LOGPS_REJECTED, v);
    }
    Ok(())
}

/// Implicit-reward accuracy of a policy on held-out rankings: the share of (better, worse)
/// completion pairs whose log-ratio against the reference is strictly larger for the better.
pub async fn implicit_reward_accuracy<B: Backend>(
    policy: &Llama<B>,
    reference: &ReferenceLogps,
    rows: &[RankedSequences],
    batch_size: usize,
) -> Result<f64> {
    let (mut pairs, mut right) = (0usize, 0usize);
    for (chunk_index, chunk) in rows.chunks(batch_size.max(1)).enumerate() {
        let sequences: Vec<Sequence> = chunk.iter().flat_map(|r| r.sequences()).collect();
        let (logps, _) = policy_logps(policy, &sequences)?;
        let logps = read_vec(logps).await?;
        let mut at = 0;
        for (offset, row) in chunk.iter().enumerate() {
            let k = row.completions.len();
            let reference_row = reference.ranked(chunk_index * batch_size.max(1) + offset)?;
            let ratios: Vec<f32> = (0..k).map(|j| logps[at + j] - reference_row[j]).collect();
            at += k;
            for i in 0..k {
                for j in i + 1..k {
                    pairs += 1;
                    right += usize::from(ratios[i] > ratios[j]);
                }
            }
        }
    }
    Ok(right as f64 / pairs.max(1) as f64)
}

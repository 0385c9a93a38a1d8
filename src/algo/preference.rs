//! The one trainer around the offline preference losses: it batches pairs, rankings or unpaired
//! labels, gathers the policy's sequence log-probs, takes the reference's from a table computed
//! once before training, calls the chosen method's loss, and logs TRL's metric names.

use burn::module::AutodiffModule;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::bco::{bco_loss, RunningMean};
use super::dpo::{dpo_loss, robust_dpo_loss};
use super::ipo::ipo_loss;
use super::kto::kto_loss;
use super::lipo::lipo_lambda_loss;
use super::orpo::orpo_loss;
use super::pro::pro_loss;
use super::rpo::rpo_loss;
use super::sft::Batches;
use super::simpo::simpo_loss;
use super::slic::hinge_loss;
use crate::dataset::{LabelledSequence, RankedSequences, Sequence};
use crate::error::{Error, Result};
use crate::host::{read_scalar, read_vec};
use crate::logprobs::{completion_logprobs, sum_per_sequence, SequenceBatch};
use crate::metrics::{self, Metrics};
use crate::model::Llama;
use crate::train::{OptimConfig, Trainer};

/// The offline method and its own hyper-parameters (β is shared, in [`PreferenceConfig`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum PreferenceLoss {
    /// DPO; `label_smoothing` > 0 is conservative DPO (cDPO).
    Dpo {
        label_smoothing: f64,
    },
    RobustDpo {
        label_smoothing: f64,
    },
    Ipo,
    /// SLiC-HF's hinge.
    Hinge,
    Rpo {
        alpha: f64,
    },
    Simpo {
        gamma: f64,
    },
    Orpo {
        lambda: f64,
    },
    Bco,
    Kto {
        desirable_weight: f64,
        undesirable_weight: f64,
    },
    Pro {
        sft_weight: f64,
    },
    Lipo,
}

/// The shape of data a method trains on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataShape {
    Pairs,
    /// Rankings of any k ≥ 2 (pairs included).
    Rankings,
    /// Unpaired desirable/undesirable labels (pairs are unpaired first).
    Unpaired,
}

impl PreferenceLoss {
    pub fn uses_reference(&self) -> bool {
        !matches!(
            self,
            Self::Simpo { .. } | Self::Orpo { .. } | Self::Pro { .. }
        )
    }

    pub fn data_shape(&self) -> DataShape {
        match self {
            Self::Pro { .. } | Self::Lipo => DataShape::Rankings,
            Self::Kto { .. } | Self::Bco => DataShape::Unpaired,
            _ => DataShape::Pairs,
        }
    }

    /// Every method by the name the CLI and the page use, with the CLI's default settings.
    pub const NAMES: [&'static str; 12] = [
        "dpo",
        "cdpo",
        "robust-dpo",
        "ipo",
        "hinge",
        "rpo",
        "simpo",
        "orpo",
        "bco",
        "kto",
        "pro",
        "lipo",
    ];

    pub fn with_defaults(name: &str) -> Option<Self> {
        Some(match name {
            "dpo" => Self::Dpo {
                label_smoothing: 0.0,
            },
            "cdpo" => Self::Dpo {
                label_smoothing: 0.1,
            },
            "robust-dpo" => Self::RobustDpo {
                label_smoothing: 0.1,
            },
            "ipo" => Self::Ipo,
            "hinge" => Self::Hinge,
            "rpo" => Self::Rpo { alpha: 1.0 },
            "simpo" => Self::Simpo { gamma: 0.5 },
            "orpo" => Self::Orpo { lambda: 0.1 },
            "bco" => Self::Bco,
            "kto" => Self::Kto {
                desirable_weight: 1.0,
                undesirable_weight: 1.0,
            },
            "pro" => Self::Pro { sft_weight: 0.05 },
            "lipo" => Self::Lipo,
            _ => return None,
        })
    }

    /// Methods defined on length-averaged log-probs (TRL's IPO, SimPO, ORPO, PRO).
    fn length_averaged(&self) -> bool {
        matches!(
            self,
            Self::Ipo | Self::Simpo { .. } | Self::Orpo { .. } | Self::Pro { .. }
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreferenceConfig {
    pub loss: PreferenceLoss,
    /// Strength of the tie to the reference (the inverse temperature of the implicit reward).
    pub beta: f64,
    pub optim: OptimConfig,
    /// Pairs, rankings or labelled completions per batch.
    pub batch_size: usize,
    pub seed: u64,
}

impl Default for PreferenceConfig {
    fn default() -> Self {
        Self {
            loss: PreferenceLoss::Dpo {
                label_smoothing: 0.0,
            },
            beta: 0.1,
            optim: OptimConfig {
                lr: 5e-4,
                warmup_steps: 5,
                total_steps: 100,
                ..Default::default()
            },
            batch_size: 16,
            seed: 0,
        }
    }
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

    /// Checks that `loss` can train on this data.
    pub fn check(&self, loss: &PreferenceLoss) -> Result<()> {
        match (self, loss.data_shape()) {
            (Self::Ranked(rows), DataShape::Pairs) => {
                if let Some(r) = rows.iter().find(|r| r.completions.len() != 2) {
                    return Err(Error::Input(format!(
                        "{loss:?} trains on pairs; record {} ranks {} completions (use pro or lipo)",
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
            (Self::Unpaired(_), _) => Err(Error::Input(format!(
                "{loss:?} trains on pairs or rankings, not unpaired labels"
            ))),
            (Self::Ranked(_), DataShape::Unpaired) => Err(Error::Input(format!(
                "{loss:?} trains on unpaired labels: unpair the pairs first"
            ))),
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

/// Example i's prompt with the next example's completion: a sample from π_ref(y|x') for an
/// unrelated x', as KTO's KL estimate needs (TRL shifts completions the same way).
fn mismatched(rows: &[LabelledSequence], i: usize) -> Sequence {
    let next = &rows[(i + 1) % rows.len()];
    (rows[i].sequence.0.clone(), next.sequence.1.clone())
}

/// Summed reference log-probs of every sequence, computed once before training.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceLogps {
    /// Ranked: per ranking, per completion. Unpaired: per example, [own, mismatched].
    pub values: Vec<Vec<f32>>,
}

/// Scores every sequence of `data` under the frozen `reference`.
pub async fn reference_logps<B: Backend>(
    reference: &Llama<B>,
    data: &PreferenceData,
    batch_size: usize,
) -> Result<ReferenceLogps> {
    let sequences = data.reference_sequences();
    let mut flat = Vec::with_capacity(sequences.len());
    for chunk in sequences.chunks(batch_size.max(1)) {
        let batch =
            SequenceBatch::<B>::new(chunk, reference.config().max_seq_len, &reference.device())?;
        flat.extend(read_vec(sum_per_sequence(completion_logprobs(reference, &batch))).await?);
    }
    let values = match data {
        PreferenceData::Ranked(rows) => {
            let mut at = 0;
            rows.iter()
                .map(|r| {
                    let k = r.completions.len();
                    at += k;
                    flat[at - k..at].to_vec()
                })
                .collect()
        }
        PreferenceData::Unpaired(rows) => {
            let n = rows.len();
            (0..n).map(|i| vec![flat[i], flat[n + i]]).collect()
        }
    };
    Ok(ReferenceLogps { values })
}

/// A [rows, k] tensor from host rows.
fn matrix<B: Backend>(rows: &[Vec<f32>], device: &B::Device) -> Tensor<B, 2> {
    let k = rows[0].len();
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    Tensor::from_data(TensorData::new(flat, [rows.len(), k]), device)
}

fn column<B: Backend>(m: &Tensor<B, 2>, j: usize) -> Tensor<B, 1> {
    let rows = m.dims()[0];
    m.clone().narrow(1, j, 1).reshape([rows])
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
) -> RankedOutput<B> {
    let beta = config.beta;
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
    let [rows, k] = logps.dims();
    let (c, r) = (column(&logratios, 0), column(&logratios, 1.min(k - 1)));
    let losses = match loss {
        PreferenceLoss::Dpo { label_smoothing } => dpo_loss(c, r, beta, label_smoothing),
        PreferenceLoss::RobustDpo { label_smoothing } => {
            robust_dpo_loss(c, r, beta, label_smoothing)
        }
        PreferenceLoss::Ipo => ipo_loss(c, r, beta),
        PreferenceLoss::Hinge => hinge_loss(c, r, beta),
        PreferenceLoss::Rpo { alpha } => {
            rpo_loss(c, r, column(&logps, 0), column(&lengths, 0), beta, alpha)
        }
        PreferenceLoss::Simpo { gamma } => simpo_loss(c, r, beta, gamma),
        PreferenceLoss::Orpo { lambda } => orpo_loss(c, r, lambda),
        PreferenceLoss::Pro { sft_weight } => pro_loss(logratios.clone(), scores, sft_weight),
        PreferenceLoss::Lipo => {
            // Labels ψ: the scores when given, else k−1 for the best down to 0.
            let labels = scores.unwrap_or_else(|| {
                let ranks: Vec<f32> = (0..rows)
                    .flat_map(|_| (0..k).map(|j| (k - 1 - j) as f32))
                    .collect();
                Tensor::from_data(TensorData::new(ranks, [rows, k]), &logps.device())
            });
            lipo_lambda_loss(logratios.clone(), labels, beta)
        }
        PreferenceLoss::Bco | PreferenceLoss::Kto { .. } => {
            unreachable!("checked: unpaired methods do not get rankings")
        }
    };
    RankedOutput {
        losses,
        rewards: logratios.detach().mul_scalar(beta),
        logps: logps.detach(),
    }
}

/// The optimiser and the state a method carries across steps (BCO's δ).
pub struct PreferenceTrainer<B: AutodiffBackend> {
    pub trainer: Trainer<B, Llama<B>>,
    pub config: PreferenceConfig,
    pub bco_delta: RunningMean,
}

impl<B: AutodiffBackend> PreferenceTrainer<B>
where
    Llama<B>: AutodiffModule<B>,
{
    pub fn new(config: PreferenceConfig) -> Self {
        Self {
            trainer: Trainer::new(config.optim.clone()),
            config,
            bco_delta: RunningMean::default(),
        }
    }

    /// One update on the rows `batch` of `data`.
    pub async fn step(
        &mut self,
        policy: Llama<B>,
        data: &PreferenceData,
        reference: &ReferenceLogps,
        batch: &[usize],
    ) -> Result<(Llama<B>, Metrics)> {
        let device = policy.device();
        let mut m = Metrics::new(self.trainer.step);
        let loss = match data {
            PreferenceData::Ranked(rows) => {
                let rows: Vec<&RankedSequences> = batch.iter().map(|&i| &rows[i]).collect();
                let k = rows[0].completions.len();
                let sequences: Vec<Sequence> = rows.iter().flat_map(|r| r.sequences()).collect();
                let (logps, lengths) = policy_logps(&policy, &sequences)?;
                let shape = [rows.len(), k];
                let reference_rows: Vec<Vec<f32>> =
                    batch.iter().map(|&i| reference.values[i].clone()).collect();
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
                );
                self.log_ranked(&mut m, out.rewards, out.logps).await?;
                out.losses.mean()
            }
            PreferenceData::Unpaired(rows) => {
                let picked: Vec<&LabelledSequence> = batch.iter().map(|&i| &rows[i]).collect();
                let sequences: Vec<Sequence> = picked.iter().map(|r| r.sequence.clone()).collect();
                let (logps, _) = policy_logps(&policy, &sequences)?;
                let reference_logps: Vec<f32> =
                    batch.iter().map(|&i| reference.values[i][0]).collect();
                let n = batch.len();
                let logratios = logps.clone()
                    - Tensor::from_data(TensorData::new(reference_logps, [n]), &device);
                let desirable: Vec<f32> = picked
                    .iter()
                    .map(|r| f32::from(u8::from(r.desirable)))
                    .collect();
                let desirable = Tensor::<B, 1>::from_data(TensorData::new(desirable, [n]), &device);
                let beta = self.config.beta;
                let losses = match self.config.loss {
                    PreferenceLoss::Kto {
                        desirable_weight,
                        undesirable_weight,
                    } => {
                        let mismatched: Vec<Sequence> =
                            batch.iter().map(|&i| mismatched(rows, i)).collect();
                        let (kl_logps, _) = policy_logps(&policy, &mismatched)?;
                        let kl_reference: Vec<f32> =
                            batch.iter().map(|&i| reference.values[i][1]).collect();
                        let kl = (kl_logps.detach()
                            - Tensor::from_data(TensorData::new(kl_reference, [n]), &device))
                        .mean();
                        m.insert(metrics::KL, read_scalar(kl.clone()).await?.max(0.0) as f64);
                        kto_loss(
                            logratios.clone(),
                            desirable.clone(),
                            kl,
                            beta,
                            desirable_weight,
                            undesirable_weight,
                        )
                    }
                    PreferenceLoss::Bco => {
                        let rewards = read_vec(logratios.clone().detach().mul_scalar(beta)).await?;
                        self.bco_delta.update(&rewards);
                        m.insert(metrics::BCO_DELTA, self.bco_delta.mean);
                        bco_loss(
                            logratios.clone(),
                            desirable.clone(),
                            beta,
                            self.bco_delta.mean,
                        )
                    }
                    other => unreachable!("checked: {other:?} does not train on unpaired labels"),
                };
                self.log_unpaired(
                    &mut m,
                    logratios.detach().mul_scalar(beta),
                    logps.detach(),
                    &picked,
                )
                .await?;
                losses.mean()
            }
        };
        let policy = self.trainer.step_logged(policy, loss, &mut m).await?;
        Ok((policy, m))
    }

    async fn log_ranked(
        &self,
        m: &mut Metrics,
        rewards: Tensor<B, 2>,
        logps: Tensor<B, 2>,
    ) -> Result<()> {
        let k = rewards.dims()[1];
        let rewards = read_vec(rewards).await?;
        let logps = read_vec(logps).await?;
        let (mut chosen, mut rejected, mut right, mut lc, mut lr) = (0.0, 0.0, 0.0, 0.0, 0.0);
        let rows = rewards.len() / k;
        for row in 0..rows {
            let r = &rewards[row * k..(row + 1) * k];
            let l = &logps[row * k..(row + 1) * k];
            chosen += r[0] as f64;
            lc += l[0] as f64;
            let rest = (k - 1) as f64;
            rejected += r[1..].iter().map(|&v| v as f64).sum::<f64>() / rest;
            lr += l[1..].iter().map(|&v| v as f64).sum::<f64>() / rest;
            right += r[1..].iter().filter(|&&v| r[0] > v).count() as f64 / rest;
        }
        let n = rows as f64;
        m.insert(metrics::REWARDS_CHOSEN, chosen / n);
        m.insert(metrics::REWARDS_REJECTED, rejected / n);
        m.insert(metrics::REWARDS_MARGINS, (chosen - rejected) / n);
        m.insert(metrics::REWARDS_ACCURACIES, right / n);
        m.insert(metrics::LOGPS_CHOSEN, lc / n);
        m.insert(metrics::LOGPS_REJECTED, lr / n);
        Ok(())
    }

    async fn log_unpaired(
        &self,
        m: &mut Metrics,
        rewards: Tensor<B, 1>,
        logps: Tensor<B, 1>,
        rows: &[&LabelledSequence],
    ) -> Result<()> {
        let rewards = read_vec(rewards).await?;
        let logps = read_vec(logps).await?;
        let mean_where = |values: &[f32], desirable: bool| -> Option<f64> {
            let picked: Vec<f64> = values
                .iter()
                .zip(rows)
                .filter(|(_, r)| r.desirable == desirable)
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
}

/// Trains `policy` for `config.optim.total_steps` batches against reference log-probs computed
/// once from `reference` (the policy before training, usually).
pub async fn train<B: AutodiffBackend>(
    mut policy: Llama<B>,
    reference: &Llama<B::InnerBackend>,
    data: &PreferenceData,
    config: &PreferenceConfig,
    mut on_step: impl FnMut(&Metrics),
) -> Result<Llama<B>>
where
    Llama<B>: AutodiffModule<B>,
{
    if data.is_empty() {
        return Err(Error::Input("no preference data".into()));
    }
    data.check(&config.loss)?;
    let reference = reference_logps(reference, data, config.batch_size * 2).await?;
    let mut trainer = PreferenceTrainer::new(config.clone());
    let positions: Vec<usize> = (0..data.len()).collect();
    let mut batches = Batches::new(&positions, config.seed);
    for _ in 0..config.optim.total_steps {
        let batch: Vec<usize> = batches
            .next_batch(config.batch_size)
            .into_iter()
            .copied()
            .collect();
        let (next, metrics) = trainer.step(policy, data, &reference, &batch).await?;
        policy = next;
        on_step(&metrics);
    }
    Ok(policy)
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
            let reference_row = &reference.values[chunk_index * batch_size.max(1) + offset];
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

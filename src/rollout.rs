//! Rollouts: `group_size` sampled completions for each prompt from the policy (with the KV
//! cache), their per-token log-probs under the sampling policy and the frozen reference, and
//! their rewards from any [`RewardSource`]. PPO, GRPO, RLOO, RAFT and best-of-n all start here.

use crate::backend::Backend;

use crate::dataset::Sequence;
use crate::distributed::Replica;
use crate::error::{Error, Result};
use crate::host::read_vec;
use crate::io::Tokenizer;
use crate::logprobs::{completion_logprobs, SequenceBatch};
use crate::metrics::{self, Metrics};
use crate::model::Llama;
use crate::reward::source::{RewardSource, Scored};
use crate::sample::{generate_rows, SamplingConfig};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rollout {
    /// Prompt text of each sample (samples of one prompt are consecutive).
    pub prompts: Vec<String>,
    /// Index of each sample's prompt in the prompt list.
    pub group: Vec<usize>,
    pub group_size: usize,
    /// (prompt ids, completion ids), the completion ending in EOS when the sample stopped.
    pub sequences: Vec<Sequence>,
    pub completions: Vec<String>,
    /// Per completion token: log π_old (the sampler) and log π_ref.
    pub logps: Vec<Vec<f32>>,
    pub ref_logps: Vec<Vec<f32>>,
    pub rewards: Vec<f32>,
}

impl Rollout {
    pub fn len(&self) -> usize {
        self.sequences.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sequences.is_empty()
    }

    /// Mean completion length in tokens.
    pub fn mean_length(&self) -> f64 {
        self.sequences.iter().map(|s| s.1.len()).sum::<usize>() as f64 / self.len().max(1) as f64
    }
}

impl Rollout {
    /// One row of numbers per sample, for gathering over replicas: its prompt's index (offset
    /// by `first_prompt`), the lengths, the token ids, the log-probs, the reward and the
    /// completion's UTF-8 bytes (token ids and bytes are exact in f32).
    pub fn to_rows(&self, first_prompt: usize) -> Vec<Vec<f32>> {
        (0..self.len())
            .map(|i| {
                let (prompt, completion) = &self.sequences[i];
                let text = self.completions[i].as_bytes();
                let mut row = vec![
                    (first_prompt + self.group[i]) as f32,
                    prompt.len() as f32,
                    completion.len() as f32,
                    text.len() as f32,
                    self.rewards[i],
                ];
                row.extend(prompt.iter().chain(completion).map(|&t| t as f32));
                row.extend(&self.logps[i]);
                row.extend(&self.ref_logps[i]);
                row.extend(text.iter().map(|&b| b as f32));
                row
            })
            .collect()
    }

    /// The rollout [`Self::to_rows`] wrote, its prompt indices into `prompts`.
    pub fn from_rows(rows: &[Vec<f32>], prompts: &[String], group_size: usize) -> Result<Self> {
        let mut out = Rollout {
            prompts: Vec::with_capacity(rows.len()),
            group: Vec::with_capacity(rows.len()),
            group_size,
            sequences: Vec::with_capacity(rows.len()),
            completions: Vec::with_capacity(rows.len()),
            logps: Vec::with_capacity(rows.len()),
            ref_logps: Vec::with_capacity(rows.len()),
            rewards: Vec::with_capacity(rows.len()),
        };
        for row in rows {
            let bad = || Error::Distributed("a gathered rollout row is malformed".into());
            let [group, prompt_len, completion_len, text_len, reward] = row
                .get(..5)
                .and_then(|h| <[f32; 5]>::try_from(h).ok())
                .ok_or_else(bad)?;
            let (group, p, c, t) = (
                group as usize,
                prompt_len as usize,
                completion_len as usize,
                text_len as usize,
            );
            if row.len() != 5 + p + 3 * c + t || group >= prompts.len() {
                return Err(bad());
            }
            let ids =
                |range: std::ops::Range<usize>| row[range].iter().map(|&v| v as u32).collect();
            let mut at = 5;
            let prompt = ids(at..at + p);
            at += p;
            let completion = ids(at..at + c);
            at += c;
            out.logps.push(row[at..at + c].to_vec());
            at += c;
            out.ref_logps.push(row[at..at + c].to_vec());
            at += c;
            let text: Vec<u8> = row[at..at + t].iter().map(|&b| b as u8).collect();
            out.completions
                .push(String::from_utf8(text).map_err(|_| bad())?);
            out.sequences.push((prompt, completion));
            out.group.push(group);
            out.prompts.push(prompts[group].clone());
            out.rewards.push(reward);
        }
        Ok(out)
    }
}

/// Each sequence's completion-token values out of a row-major [rows, width] read-back laid out
/// like the batch's targets (position t predicts token t + 1).
pub fn completion_rows(values: &[f32], sequences: &[Sequence], width: usize) -> Vec<Vec<f32>> {
    sequences
        .iter()
        .enumerate()
        .map(|(row, (prompt, completion))| {
            let start = row * width + prompt.len() - 1;
            values[start..start + completion.len()].to_vec()
        })
        .collect()
}

/// Per-token log-probs of each sequence's completion tokens under `model`.
pub async fn sequence_token_logps<B: Backend>(
    model: &Llama<B>,
    sequences: &[Sequence],
    batch_size: usize,
) -> Result<Vec<Vec<f32>>> {
    let mut out = Vec::with_capacity(sequences.len());
    for chunk in sequences.chunks(batch_size.max(1)) {
        let batch = SequenceBatch::<B>::new(chunk, model.config().max_seq_len, &model.device())?;
        let width = batch.tokens.dims()[1] - 1;
        let values = read_vec(completion_logprobs(model, &batch)).await?;
        out.extend(completion_rows(&values, chunk, width));
    }
    Ok(out)
}

impl Rollout {
    /// The rollout's completions scored by another source (e.g. the gold reward, to watch a
    /// proxy being over-optimised).
    pub async fn score_with<B: Backend>(&self, source: &RewardSource<B>) -> Result<Vec<f32>> {
        source.score(&self.scored()).await
    }

    /// Each sample as a reward source reads it.
    pub fn scored(&self) -> Vec<Scored<'_>> {
        self.prompts
            .iter()
            .zip(&self.completions)
            .zip(&self.sequences)
            .map(|((prompt, completion), sequence)| Scored {
                prompt,
                completion,
                sequence,
            })
            .collect()
    }
}

/// Samples `group_size` completions per prompt and scores them.
pub async fn collect<B: Backend>(
    policy: &Llama<B>,
    reference: &Llama<B>,
    tokenizer: &Tokenizer,
    prompts: &[String],
    group_size: usize,
    sampling: &SamplingConfig,
    reward: &RewardSource<B>,
) -> Result<Rollout> {
    let context = RolloutContext {
        reference,
        tokenizer,
        prompts,
        reward,
        monitor: None,
        sampling: sampling.clone(),
        replica: Replica::SINGLE,
    };
    context.collect_share(policy, group_size, 0).await
}

impl<B: Backend> RolloutContext<'_, B> {
    /// `group_size` samples of every prompt from `policy`, scored. In a data-parallel run each
    /// replica samples and scores its share of the prompts (whole groups), drawing the random
    /// numbers the whole batch would, and every replica gets the whole rollout.
    pub async fn collect(&self, policy: &Llama<B>, group_size: usize) -> Result<Rollout> {
        if self.replica.is_single() {
            return self.collect_share(policy, group_size, 0).await;
        }
        // Whole groups per replica; every replica needs at least one prompt.
        let prompts = self.replica.shard(self.prompts)?;
        let first_prompt = self.replica.shard_range(self.prompts.len()).start;
        let context = RolloutContext {
            prompts,
            sampling: self.sampling.clone(),
            replica: Replica::SINGLE,
            ..*self
        };
        let local = context
            .collect_share(policy, group_size, first_prompt * group_size)
            .await?;
        let rows = self.replica.gather_rows(local.to_rows(first_prompt))?;
        Rollout::from_rows(&rows, self.prompts, group_size)
    }

    pub fn seed(&self) -> u64 {
        self.sampling.seed
    }

    /// The rollout of this context's prompts, as rows `first_row..` of a larger batch.
    async fn collect_share(
        &self,
        policy: &Llama<B>,
        group_size: usize,
        first_row: usize,
    ) -> Result<Rollout> {
        let (tokenizer, prompts, sampling) = (self.tokenizer, self.prompts, &self.sampling);
        let mut encoded = Vec::with_capacity(prompts.len() * group_size);
        let mut group = Vec::with_capacity(prompts.len() * group_size);
        for (i, prompt) in prompts.iter().enumerate() {
            let ids = tokenizer.encode_with_bos(prompt)?;
            for _ in 0..group_size {
                encoded.push(ids.clone());
                group.push(i);
            }
        }
        let generated =
            generate_rows(policy, &encoded, tokenizer.eos_id(), sampling, first_row).await?;
        let mut sequences = Vec::with_capacity(generated.len());
        let mut completions = Vec::with_capacity(generated.len());
        for (prompt_ids, tokens) in encoded.into_iter().zip(generated) {
            completions.push(tokenizer.decode(&tokens));
            let mut completion = tokens;
            // A sample that stopped early stopped at EOS: keep it, so stopping is learned too.
            if completion.len() < sampling.max_new_tokens || completion.is_empty() {
                completion.extend(tokenizer.eos_id());
            }
            sequences.push((prompt_ids, completion));
        }
        let logps = sequence_token_logps(policy, &sequences, 64).await?;
        let ref_logps = sequence_token_logps(self.reference, &sequences, 64).await?;
        let sample_prompts: Vec<String> = group.iter().map(|&g| prompts[g].clone()).collect();
        let scored: Vec<Scored> = sample_prompts
            .iter()
            .zip(&completions)
            .zip(&sequences)
            .map(|((prompt, completion), sequence)| Scored {
                prompt,
                completion,
                sequence,
            })
            .collect();
        let rewards = self.reward.score(&scored).await?;
        Ok(Rollout {
            prompts: sample_prompts,
            group,
            group_size,
            sequences,
            completions,
            logps,
            ref_logps,
            rewards,
        })
    }
}

/// What one step of an online method samples and scores: the frozen reference, the step's
/// prompts, the reward (and a monitor reward, logged only), the sampling settings whose seed
/// also orders the update's minibatches, and which replica of a data-parallel run this is.
pub struct RolloutContext<'a, B: Backend> {
    pub reference: &'a Llama<B>,
    pub tokenizer: &'a Tokenizer,
    pub prompts: &'a [String],
    pub reward: &'a RewardSource<B>,
    pub monitor: Option<&'a RewardSource<B>>,
    pub sampling: SamplingConfig,
    pub replica: Replica,
}

/// Mean over samples of Σ_t (log π_old − log π_ref): the k1 estimate of KL(π‖π_ref) per sequence.
pub fn sequence_kl(rollout: &Rollout) -> Vec<f64> {
    rollout
        .logps
        .iter()
        .zip(&rollout.ref_logps)
        .map(|(lp, rp)| lp.iter().zip(rp).map(|(a, b)| (a - b) as f64).sum())
        .collect()
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    sum / n.max(1) as f64
}

/// Adds the rollout's objective metrics (scores, KL and its root, the KL-penalised reward at
/// `kl_coef`, entropy, length, and the monitor's scores when given); returns the mean KL.
pub async fn insert_rollout_metrics<B: Backend>(
    m: &mut Metrics,
    rollout: &Rollout,
    kl_coef: f64,
    monitor: Option<&RewardSource<B>>,
) -> Result<f64> {
    let scores = mean(rollout.rewards.iter().map(|&r| r as f64));
    let mean_kl = mean(sequence_kl(rollout).into_iter());
    m.insert(metrics::OBJECTIVE_SCORES, scores);
    m.insert(metrics::OBJECTIVE_KL, mean_kl);
    m.insert(metrics::OBJECTIVE_SQRT_KL, mean_kl.max(0.0).sqrt());
    m.insert(metrics::OBJECTIVE_RLHF_REWARD, scores - kl_coef * mean_kl);
    m.insert(
        metrics::OBJECTIVE_ENTROPY,
        mean(
            rollout
                .logps
                .iter()
                .map(|lp| -lp.iter().map(|&v| v as f64).sum::<f64>()),
        ),
    );
    m.insert(metrics::RESPONSE_LENGTH, rollout.mean_length());
    if let Some(monitor) = monitor {
        let values = rollout.score_with(monitor).await?;
        m.insert(
            metrics::OBJECTIVE_MONITOR_SCORES,
            mean(values.iter().map(|&v| v as f64)),
        );
    }
    m.insert(metrics::KL_COEF, kl_coef);
    Ok(mean_kl)
}

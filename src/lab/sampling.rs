//! What the lab samples: pairs and rankings for a person to label (fixed by their index), a few
//! samples of the current policy, and gold labels standing in for a person.

use crate::backend::AutodiffBackend;
use serde::Serialize;

use super::{Choice, Lab, Label, Labeller, PairLabel, RankingLabel};
use crate::error::{Error, Result};
use crate::rollout::collect;
use crate::sample::generate;

/// Two completions of one prompt from the current policy, for a person to compare.
#[derive(Debug, Clone, Serialize)]
pub struct PairToLabel {
    pub index: u64,
    pub prompt: String,
    pub left: String,
    pub right: String,
}

/// k distinct completions of one prompt from the current policy, for a person to rank.
#[derive(Debug, Clone, Serialize)]
pub struct RankingToLabel {
    pub index: u64,
    pub prompt: String,
    /// Fewer than asked for only when the policy keeps writing the same text.
    pub completions: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub prompt: String,
    pub completion: String,
    pub gold: f32,
    /// The reward model's score, once one is trained.
    pub proxy: Option<f32>,
}

impl<B: AutodiffBackend> Lab<B> {
    async fn complete(&self, prompt: &str, count: usize, seed: u64) -> Result<Vec<String>> {
        let ids = self.tokenizer.encode_with_bos(prompt)?;
        let completions = generate(
            &self.policy,
            &vec![ids; count],
            self.tokenizer.eos_id(),
            &self.sampling(seed),
        )
        .await?;
        Ok(completions
            .iter()
            .map(|c| self.tokenizer.decode(c))
            .collect())
    }

    /// Up to `k` distinct completions of `prompt` for label number `index`, fixed by the index:
    /// up to four rounds of `k` samples, keeping the texts not seen yet.
    async fn distinct_completions(
        &self,
        prompt: &str,
        index: u64,
        k: usize,
    ) -> Result<Vec<String>> {
        let mut distinct: Vec<String> = Vec::with_capacity(k);
        for attempt in 0..4u64 {
            let seed = self
                .config
                .seed
                .wrapping_mul(1_000_003)
                .wrapping_add(index * 4 + attempt)
                .wrapping_add((k as u64 - 2) << 40);
            for text in self.complete(prompt, k, seed).await? {
                if distinct.len() < k && !distinct.contains(&text) {
                    distinct.push(text);
                }
            }
            if distinct.len() == k {
                break;
            }
        }
        Ok(distinct)
    }

    fn prompt_for(&self, index: u64) -> &str {
        &self.prompts.prompts[index as usize % self.prompts.prompts.len()]
    }

    /// Pair number `index`: its prompt cycles through the prompts; the two completions differ
    /// whenever four tries can make them.
    pub async fn pair(&self, index: u64) -> Result<PairToLabel> {
        let prompt = self.prompt_for(index);
        let completions = self.distinct_completions(prompt, index, 2).await?;
        Ok(PairToLabel {
            index,
            prompt: prompt.to_string(),
            left: completions[0].clone(),
            right: completions.last().expect("one sample at least").clone(),
        })
    }

    /// `k` completions of prompt number `index` to rank (k from 2 to 8).
    pub async fn ranking(&self, index: u64, k: usize) -> Result<RankingToLabel> {
        if !(2..=8).contains(&k) {
            return Err(Error::Input(format!(
                "a ranking has 2 to 8 completions, not {k}"
            )));
        }
        let prompt = self.prompt_for(index);
        Ok(RankingToLabel {
            index,
            prompt: prompt.to_string(),
            completions: self.distinct_completions(prompt, index, k).await?,
        })
    }

    /// `count` samples from the current policy for `prompt` (or the first held-out prompts).
    pub async fn samples(
        &self,
        prompt: Option<&str>,
        count: usize,
        seed: u64,
    ) -> Result<Vec<Sample>> {
        let prompts: Vec<String> = (0..count)
            .map(|i| match prompt {
                Some(p) => p.to_string(),
                None => self.eval_prompts[i % self.eval_prompts.len()].clone(),
            })
            .collect();
        let rollout = collect(
            &self.policy,
            &self.reference,
            &self.tokenizer,
            &prompts,
            1,
            &self.sampling(seed),
            &self.gold,
        )
        .await?;
        let proxy = match self.proxy.first() {
            Some((_, p)) => Some(rollout.score_with(p).await?),
            None => None,
        };
        Ok((0..rollout.len())
            .map(|i| Sample {
                prompt: rollout.prompts[i].clone(),
                completion: rollout.completions[i].clone(),
                gold: rollout.rewards[i],
                proxy: proxy.as_ref().map(|p| p[i]),
            })
            .collect())
    }

    /// Pairs `start..start + count` labelled by the gold reward, standing in for a person (ties
    /// when it scores both alike): enough labels for a lesson without a hundred clicks.
    pub async fn gold_labels(&self, start: u64, count: usize) -> Result<Vec<Label>> {
        let mut out = Vec::with_capacity(count);
        for index in start..start + count as u64 {
            let pair = self.pair(index).await?;
            let (left, right) = (
                crate::world::gold_reward(&pair.left),
                crate::world::gold_reward(&pair.right),
            );
            let choice = if left > right {
                Choice::Left
            } else if right > left {
                Choice::Right
            } else {
                Choice::Tie
            };
            out.push(Label::Pair(PairLabel {
                prompt: pair.prompt,
                left: pair.left,
                right: pair.right,
                choice,
                labeller: Labeller::Gold,
            }));
        }
        Ok(out)
    }

    /// Rankings `start..start + count` of `k` completions, ordered by the gold reward with its
    /// scores kept (equal scores are ties).
    pub async fn gold_rankings(&self, start: u64, count: usize, k: usize) -> Result<Vec<Label>> {
        let mut out = Vec::with_capacity(count);
        for index in start..start + count as u64 {
            let to_rank = self.ranking(index, k).await?;
            let mut scored: Vec<(f64, String)> = to_rank
                .completions
                .into_iter()
                .map(|c| (crate::world::gold_reward(&c) as f64, c))
                .collect();
            scored.sort_by(|a, b| b.0.total_cmp(&a.0));
            out.push(Label::Ranking(RankingLabel {
                prompt: to_rank.prompt,
                scores: Some(scored.iter().map(|(s, _)| *s).collect()),
                ranked: scored.into_iter().map(|(_, c)| c).collect(),
                labeller: Labeller::Gold,
            }));
        }
        Ok(out)
    }
}

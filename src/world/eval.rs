//! Sampling continuations of world prompts and scoring them with the exact gold reward.

use crate::backend::Backend;

use super::{gold_reward, World};
use crate::error::Result;
use crate::io::Tokenizer;
use crate::metrics::MeanCi;
use crate::model::Llama;
use crate::sample::{generate, SamplingConfig};

/// One sampled continuation per prompt, with its gold reward.
pub async fn sample_and_score<B: Backend>(
    model: &Llama<B>,
    tokenizer: &Tokenizer,
    prompts: &[String],
    sampling: &SamplingConfig,
) -> Result<Vec<(String, f32)>> {
    let encoded = prompts
        .iter()
        .map(|p| tokenizer.encode_with_bos(p))
        .collect::<Result<Vec<_>>>()?;
    let completions = generate(model, &encoded, tokenizer.eos_id(), sampling).await?;
    Ok(completions
        .iter()
        .map(|tokens| {
            let text = tokenizer.decode(tokens);
            let reward = gold_reward(&text);
            (text, reward)
        })
        .collect())
}

/// Gold reward of a policy's continuations of held-out world prompts.
#[derive(Debug, Clone)]
pub struct GoldReport {
    pub reward: MeanCi,
    /// (prompt, continuation, gold reward) for each prompt.
    pub samples: Vec<(String, String, f32)>,
}

/// Seed of the held-out prompts: no training set drawn by the lab uses it.
pub const HELD_OUT_SEED: u64 = 999_999;

/// Samples one continuation for each of `n_prompts` held-out prompts and scores them.
pub async fn held_out_gold_reward<B: Backend>(
    model: &Llama<B>,
    tokenizer: &Tokenizer,
    n_prompts: usize,
    sampling: &SamplingConfig,
) -> Result<GoldReport> {
    let mut world = World::new(HELD_OUT_SEED);
    let prompts: Vec<String> = (0..n_prompts).map(|_| world.prompt().prompt).collect();
    let scored = sample_and_score(model, tokenizer, &prompts, sampling).await?;
    let rewards: Vec<f64> = scored.iter().map(|(_, r)| *r as f64).collect();
    Ok(GoldReport {
        reward: MeanCi::of(&rewards),
        samples: prompts
            .into_iter()
            .zip(scored)
            .map(|(p, (c, r))| (p, c, r))
            .collect(),
    })
}

/// Greedy exact-answer accuracy on `n` held-out sum questions ("… Now Tom has" → " five").
pub async fn held_out_sum_accuracy<B: Backend>(
    model: &Llama<B>,
    tokenizer: &Tokenizer,
    n: usize,
) -> Result<f64> {
    let tasks = sum_tasks(HELD_OUT_SEED, n);
    let prompts = tasks
        .iter()
        .map(|t| tokenizer.encode_with_bos(&t.question))
        .collect::<Result<Vec<_>>>()?;
    let greedy = SamplingConfig {
        max_new_tokens: 2,
        temperature: 0.0,
        ..Default::default()
    };
    let completions = generate(model, &prompts, tokenizer.eos_id(), &greedy).await?;
    let right = tasks
        .iter()
        .zip(&completions)
        .filter(|(t, c)| first_word(&tokenizer.decode(c)) == t.answer)
        .count();
    Ok(right as f64 / n.max(1) as f64)
}

/// The answer a completion gives: its first word of `text`, lowercased, without punctuation.
pub fn first_word(text: &str) -> String {
    text.split_whitespace()
        .next()
        .unwrap_or("")
        .trim_matches(|c: char| !c.is_alphanumeric())
        .to_lowercase()
}

/// `n` sum questions from the world seeded by `seed`.
pub fn sum_tasks(seed: u64, n: usize) -> Vec<super::story::SumTask> {
    let mut world = World::new(seed);
    (0..n).map(|_| world.sum_task()).collect()
}

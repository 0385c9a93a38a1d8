//! Preference data for the built-in world, labelled by the exact gold reward: continuations
//! sampled from a policy (on-policy, as RLHF data collection does), then paired, ranked,
//! labelled desirable/undesirable, or rated on attributes.

use std::collections::BTreeMap;

use crate::backend::Backend;

use super::{gold_reward, World};
use crate::error::Result;
use crate::io::prefs::{PreferencePair, Ranking, RatedCompletion, UnpairedExample};
use crate::io::Tokenizer;
use crate::model::Llama;
use crate::sample::{generate, SamplingConfig};

/// `k` sampled continuations of each of `n_prompts` world prompts (seeded by `seed`), with
/// their gold rewards.
pub async fn sample_scored<B: Backend>(
    model: &Llama<B>,
    tokenizer: &Tokenizer,
    n_prompts: usize,
    k: usize,
    seed: u64,
    max_new_tokens: usize,
) -> Result<Vec<(String, Vec<(String, f32)>)>> {
    let mut world = World::new(seed);
    let prompts: Vec<String> = (0..n_prompts).map(|_| world.prompt().prompt).collect();
    let mut out = Vec::with_capacity(n_prompts);
    // Batches of whole prompts keep memory flat for large n.
    for (chunk_index, chunk) in prompts.chunks(64).enumerate() {
        let mut encoded = Vec::with_capacity(chunk.len() * k);
        for prompt in chunk {
            let ids = tokenizer.encode_with_bos(prompt)?;
            encoded.extend(std::iter::repeat_n(ids, k));
        }
        let sampling = SamplingConfig {
            max_new_tokens,
            seed: seed
                .wrapping_mul(1_000_003)
                .wrapping_add(chunk_index as u64),
            ..Default::default()
        };
        let completions = generate(model, &encoded, tokenizer.eos_id(), &sampling).await?;
        for (i, prompt) in chunk.iter().enumerate() {
            let scored = completions[i * k..(i + 1) * k]
                .iter()
                .map(|tokens| {
                    let text = tokenizer.decode(tokens);
                    let reward = gold_reward(&text);
                    (text, reward)
                })
                .collect();
            out.push((prompt.clone(), scored));
        }
    }
    Ok(out)
}

/// Drops empty and repeated completions of one prompt.
fn distinct(scored: &[(String, f32)]) -> Vec<(String, f32)> {
    let mut out: Vec<(String, f32)> = Vec::new();
    for (text, reward) in scored {
        if !text.trim().is_empty() && !out.iter().any(|(t, _)| t == text) {
            out.push((text.clone(), *reward));
        }
    }
    out
}

/// Pairs of two samples per prompt, the higher gold reward chosen; ties and repeats dropped.
pub fn pairs(scored: &[(String, Vec<(String, f32)>)]) -> Vec<PreferencePair> {
    scored
        .iter()
        .filter_map(|(prompt, samples)| {
            let samples = distinct(samples);
            let (a, b) = (samples.first()?, samples.get(1)?);
            if a.1 == b.1 {
                return None;
            }
            let (chosen, rejected) = if a.1 > b.1 { (a, b) } else { (b, a) };
            Some(PreferencePair {
                prompt: prompt.clone(),
                chosen: chosen.0.clone(),
                rejected: rejected.0.clone(),
            })
        })
        .collect()
}

/// Rankings of exactly `k` distinct samples per prompt, with the gold rewards as scores;
/// prompts with fewer distinct samples or all-equal rewards are dropped.
pub fn rankings(scored: &[(String, Vec<(String, f32)>)], k: usize) -> Vec<Ranking> {
    scored
        .iter()
        .filter_map(|(prompt, samples)| {
            let mut samples = distinct(samples);
            if samples.len() < k {
                return None;
            }
            samples.truncate(k);
            samples.sort_by(|a, b| b.1.total_cmp(&a.1));
            if samples[0].1 == samples[k - 1].1 {
                return None;
            }
            Some(Ranking {
                prompt: prompt.clone(),
                completions: samples.iter().map(|s| s.0.clone()).collect(),
                scores: Some(samples.iter().map(|s| s.1 as f64).collect()),
            })
        })
        .collect()
}

/// Every sample, desirable when its gold reward is above zero (KTO's and BCO's binary signal).
pub fn unpaired(scored: &[(String, Vec<(String, f32)>)]) -> Vec<UnpairedExample> {
    scored
        .iter()
        .flat_map(|(prompt, samples)| {
            distinct(samples)
                .into_iter()
                .map(move |(completion, reward)| UnpairedExample {
                    prompt: prompt.clone(),
                    completion,
                    label: reward > 0.0,
                })
        })
        .collect()
}

/// Attribute names of [`ratings`].
pub const ATTRIBUTES: [&str; 2] = ["brevity", "positivity"];

/// Every sample rated on two attributes that pull apart: `positivity` (the gold reward) and
/// `brevity` (minus the number of words over ten) — the helpfulness/verbosity trade-off of
/// Directional Preference Alignment in miniature.
pub fn ratings(scored: &[(String, Vec<(String, f32)>)]) -> Vec<RatedCompletion> {
    scored
        .iter()
        .flat_map(|(prompt, samples)| {
            distinct(samples)
                .into_iter()
                .map(move |(completion, reward)| {
                    let words = completion.split_whitespace().count() as f64;
                    RatedCompletion {
                        prompt: prompt.clone(),
                        completion,
                        scores: BTreeMap::from([
                            (ATTRIBUTES[0].to_string(), -words / 10.0),
                            (ATTRIBUTES[1].to_string(), reward as f64),
                        ]),
                    }
                })
        })
        .collect()
}

//! Sampling continuations of world prompts and scoring them with the exact gold reward.

use burn::tensor::backend::Backend;

use super::gold_reward;
use crate::error::Result;
use crate::io::Tokenizer;
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

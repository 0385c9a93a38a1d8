//! `alignlab generate --guide …`: decoding-time alignment, the reference steered by a reward
//! as it decodes (no weights change).

use std::collections::HashMap;
use std::time::Instant;

use alignlab::decoding::args::{self, ArgsConfig};
use alignlab::io::Tokenizer;
use alignlab::model::Llama;
use alignlab::sample::SamplingConfig;
use alignlab::{Error, Result};
use burn::tensor::backend::Backend;
use clap::{Args, ValueEnum};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Guide {
    /// ARGS (Khanov et al. 2024): the top-k next tokens rescored by log π + w·reward(prefix).
    Args,
}

#[derive(Args, Clone)]
pub struct GuideArgs {
    /// Steer decoding with a reward instead of sampling plainly.
    #[arg(long, value_enum)]
    pub guide: Option<Guide>,
    /// The reward that steers: `gold`, `lexicon:PATH`, `rm:PATH`, or a weighted sum.
    #[arg(long, default_value = "gold")]
    pub guide_reward: String,
    /// ARGS's w: the reward's weight against the model's log-probability.
    #[arg(long, default_value_t = 1.0)]
    pub guide_weight: f32,
    /// ARGS's k: how many of the model's most likely next tokens are rescored.
    #[arg(long, default_value_t = 10)]
    pub guide_candidates: usize,
}

/// Guided completions of `prompts` (texts, through any chat template already); prints on
/// stderr their KL to the unguided model and the decoding speed, the two costs of steering.
pub fn generate<B: Backend>(
    model: &Llama<B>,
    tokenizer: &Tokenizer,
    prompts: &[String],
    guide: &GuideArgs,
    sampling: &SamplingConfig,
) -> Result<Vec<Vec<u32>>> {
    if sampling.top_k != 0 || sampling.top_p < 1.0 {
        return Err(Error::Input(
            "--top-k and --top-p do not apply with --guide: it chooses among the \
             --guide-candidates most likely tokens"
                .into(),
        ));
    }
    let reward =
        alignlab::reward::spec::parse::<B>(&guide.guide_reward, &HashMap::new(), &model.device())?;
    let config = ArgsConfig {
        weight: guide.guide_weight,
        candidates: guide.guide_candidates,
        sampling: sampling.clone(),
    };
    let started = Instant::now();
    let samples = pollster::block_on(args::generate(model, tokenizer, &reward, prompts, &config))?;
    let seconds = started.elapsed().as_secs_f64();
    let tokens: usize = samples.iter().map(|s| s.tokens.len()).sum();
    let kl = samples.iter().map(|s| s.log_ratio).sum::<f64>() / samples.len().max(1) as f64;
    eprintln!(
        "ARGS (w = {}, k = {}, reward {}): KL to the model {kl:.3} nats per sample (mean of {}), \
         {:.1} tokens/s",
        config.weight,
        config.candidates,
        guide.guide_reward,
        samples.len(),
        tokens as f64 / seconds.max(1e-9)
    );
    Ok(samples.into_iter().map(|s| s.tokens).collect())
}

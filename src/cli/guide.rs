//! `alignlab generate --guide …`: decoding-time alignment, the reference steered by a reward
//! as it decodes (no weights change). The methods and their settings are the core's
//! (`crate::decoding`); this reads the flags into them.

use std::collections::HashMap;
use std::time::Instant;

use crate::algo::spec::Settings;
use crate::backend::Backend;
use crate::decoding::{self, Guide, GuideInputs};
use crate::io::Tokenizer;
use crate::model::Llama;
use crate::sample::SamplingConfig;
use crate::{policy, Error, Result};
use clap::Args;

#[derive(Args, Clone)]
pub struct GuideArgs {
    /// Steer decoding instead of sampling plainly: args, cd, transfer-q, deal or genarm
    /// (`alignlab methods` describes each).
    #[arg(long)]
    pub guide: Option<String>,
    /// The reward that steers args, cd, transfer-q and deal: `gold`, `lexicon:PATH`,
    /// `rm:PATH`, or a weighted sum.
    #[arg(long, default_value = "gold")]
    pub guide_reward: String,
    /// Transfer Q*'s aligned baseline, or GenARM's autoregressive reward model (twice to mix
    /// two).
    #[arg(long)]
    pub guide_model: Vec<String>,
    /// w: the reward's weight against the model's log-probability (1/β) [default: 1].
    #[arg(long)]
    pub guide_weight: Option<f64>,
    /// k: how many of the model's most likely next tokens are rescored [default: the method's].
    #[arg(long)]
    pub guide_candidates: Option<usize>,
    /// cd, transfer-q: continuations per candidate [default: 4].
    #[arg(long)]
    pub guide_rollouts: Option<usize>,
    /// cd, transfer-q, deal: tokens each continuation looks ahead [default: the method's].
    #[arg(long)]
    pub guide_horizon: Option<usize>,
    /// genarm: α, the first reward model's share when two mix [default: 1].
    #[arg(long)]
    pub guide_mix: Option<f64>,
}

impl GuideArgs {
    /// The method's settings as the flags give them (a flag it has no setting for is refused
    /// by name).
    fn settings(&self) -> Settings {
        let mut settings = Settings::new();
        let given = [
            ("weight", self.guide_weight),
            ("candidates", self.guide_candidates.map(|k| k as f64)),
            ("rollouts", self.guide_rollouts.map(|r| r as f64)),
            ("horizon", self.guide_horizon.map(|h| h as f64)),
            ("mix", self.guide_mix),
        ];
        for (name, value) in given {
            if let Some(value) = value {
                settings.insert(name, value);
            }
        }
        settings
    }
}

/// Guided completions of `prompts` (texts, through any chat template already); prints on
/// stderr their KL to the unguided model and the decoding speed, the two costs of steering.
pub fn generate<B: Backend>(
    model: &Llama<B>,
    tokenizer: &Tokenizer,
    prompts: &[String],
    args: &GuideArgs,
    sampling: &SamplingConfig,
) -> Result<Vec<Vec<u32>>> {
    let name = args.guide.as_deref().unwrap_or_default();
    let spec = decoding::find(name)?;
    if sampling.top_k != 0 || sampling.top_p < 1.0 {
        return Err(Error::Input(format!(
            "--top-k and --top-p do not apply with --guide {name}: it chooses among the \
             candidates it rescores (--guide-candidates)"
        )));
    }
    let guide = Guide::new(spec, &args.settings())?;
    let device = model.device();
    let reward = crate::reward::spec::parse::<B>(&args.guide_reward, &HashMap::new(), &device)?;
    let models = args
        .guide_model
        .iter()
        .map(|path| policy::load::<B>(path, None, &device).map(|(m, _)| m))
        .collect::<Result<Vec<_>>>()?;
    let inputs = GuideInputs {
        reference: model,
        tokenizer,
        reward: &reward,
        models: &models,
    };
    let started = Instant::now();
    let samples = pollster::block_on(decoding::generate(spec, &guide, &inputs, prompts, sampling))?;
    let seconds = started.elapsed().as_secs_f64();
    let tokens: usize = samples.iter().map(|s| s.tokens.len()).sum();
    let kl = samples.iter().map(|s| s.log_ratio).sum::<f64>() / samples.len().max(1) as f64;
    let steered_by = match spec.models {
        decoding::ExtraModels::RewardModels => args.guide_model.join(" + "),
        _ => args.guide_reward.clone(),
    };
    eprintln!(
        "{name} ({guide:?}, reward {steered_by}): KL to the model {kl:.3} nats per sample \
         (mean of {}), {:.1} tokens/s",
        samples.len(),
        tokens as f64 / seconds.max(1e-9)
    );
    Ok(samples.into_iter().map(|s| s.tokens).collect())
}

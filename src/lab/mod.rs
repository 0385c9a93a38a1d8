//! The interactive lab the page drives, one short call at a time (so the page can draw, pause
//! and resume between calls): sample pairs for a person to label, train a reward model on the
//! labels step by step, then optimise the policy against it — an online method (PPO, GRPO, …)
//! or a DPO-family loss on the labels — measuring every policy as the frontier sweep does
//! (KL to the base on held-out prompts, proxy and gold reward), and best-of-n at any n.
//! Generic over the backend: the page runs it on WebGPU or the wasm CPU backend, tests on flex.

pub mod experiment;
pub mod labels;
mod reward;
mod runs;
mod sampling;

use crate::backend::AutodiffBackend;
use burn::module::AutodiffModule;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::frontier::measure::{Evaluation, FrontierPoint};
use crate::io::prefs::PreferencePair;
use crate::io::{Checkpoint, Tokenizer};
use crate::memory::{BatchShape, MemoryPlan};
use crate::model::{Llama, LlamaConfig, RewardEnsemble, RewardModel};
use crate::prompts::{self, PromptSet};
use crate::reward::source::RewardSource;
use crate::sample::SamplingConfig;
use labels::hold_out_by_label;
pub use labels::{Choice, Label, Labeller, PairLabel, RankingLabel};
use reward::RewardTraining;
pub use reward::{RewardProgress, RewardSettings};
use runs::Run;
pub use runs::{RunProgress, RunSettings};
pub use sampling::{PairToLabel, RankingToLabel, Sample};

/// The proxy's name in measured points.
pub const PROXY: &str = "rm";

/// Tokens a lab prompt may take (the world's story openings are a few dozen): with the
/// completion, the length the lab's batches are sized for.
const PROMPT_TOKENS: usize = 64;

/// What a lab on `model` holds at most, checked against a GPU's limits before the model is
/// loaded: the policy under training and a trained value or reward model (each with its
/// gradients and AdamW's moments), the base, the reference, the current policy and the reward
/// model frozen, on the lab's largest batch (32 sequences: 8 prompts × 4 samples, or 16 pairs).
pub fn memory_plan(model: &LlamaConfig, config: &LabConfig) -> MemoryPlan {
    let batch = BatchShape {
        sequences: 32,
        tokens: (PROMPT_TOKENS + config.max_new_tokens).min(model.max_seq_len),
    };
    MemoryPlan::training(model, 2, 4, batch)
}

/// What the lab samples and measures with (an experiment file's `[lab]` table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LabConfig {
    pub seed: u64,
    /// Held-out prompts every policy is measured on, and samples per prompt.
    pub eval_prompts: usize,
    pub samples_per_prompt: usize,
    /// Longest completion sampled for labelling, training and measuring.
    pub max_new_tokens: usize,
}

impl Default for LabConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            eval_prompts: 16,
            samples_per_prompt: 2,
            max_new_tokens: 24,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct LabInfo {
    pub parameters: usize,
    pub layers: usize,
    pub dim: usize,
    pub vocab_size: usize,
    pub context: usize,
    pub prompts: usize,
    /// Pairs the labels given state (a ranking of k states k·(k−1)/2).
    pub pairs: usize,
    pub reward_model: bool,
    pub run: Option<String>,
}

pub struct Lab<B: AutodiffBackend> {
    config: LabConfig,
    base: Llama<B>,
    reference: Llama<B::InnerBackend>,
    /// What pairs and samples come from: the base, then the latest run's policy.
    policy: Llama<B::InnerBackend>,
    tokenizer: Tokenizer,
    prompts: PromptSet,
    eval_prompts: Vec<String>,
    gold: RewardSource<B::InnerBackend>,
    /// The labels' pairs, grouped by label.
    pair_groups: Vec<Vec<PreferencePair>>,
    reward_training: Option<RewardTraining<B>>,
    proxy: Vec<(String, RewardSource<B::InnerBackend>)>,
    run: Option<Run<B>>,
}

impl<B: AutodiffBackend> Lab<B>
where
    Llama<B>: AutodiffModule<B, InnerModule = Llama<B::InnerBackend>>,
    RewardModel<B>: AutodiffModule<B, InnerModule = RewardModel<B::InnerBackend>>,
    RewardEnsemble<B>: AutodiffModule<B, InnerModule = RewardEnsemble<B::InnerBackend>>,
{
    /// A lab on `checkpoint`'s policy, with the built-in world's story openings as prompts
    /// and its lexicon score as the gold reward.
    pub fn new(checkpoint: Checkpoint, device: &B::Device, config: LabConfig) -> Result<Self> {
        let (base, tokenizer) = checkpoint.into_model::<B>(device)?;
        let reference = base.valid();
        let all = prompts::load("world", config.eval_prompts + 2_000, config.seed)?;
        let eval_prompts = all.prompts[..config.eval_prompts].to_vec();
        let prompts = PromptSet {
            prompts: all.prompts[config.eval_prompts..].to_vec(),
            answers: all.answers,
        };
        Ok(Self {
            config,
            policy: reference.clone(),
            reference,
            base,
            tokenizer,
            prompts,
            eval_prompts,
            gold: RewardSource::Gold,
            pair_groups: Vec::new(),
            reward_training: None,
            proxy: Vec::new(),
            run: None,
        })
    }

    pub fn config(&self) -> &LabConfig {
        &self.config
    }

    pub fn info(&self) -> LabInfo {
        let c = self.base.config();
        LabInfo {
            parameters: c.num_params(),
            layers: c.n_layers,
            dim: c.dim,
            vocab_size: c.vocab_size,
            context: c.max_seq_len,
            prompts: self.prompts.prompts.len(),
            pairs: self.pair_count(),
            reward_model: !self.proxy.is_empty(),
            run: self.run.as_ref().map(|r| r.name.clone()),
        }
    }

    fn sampling(&self, seed: u64) -> SamplingConfig {
        SamplingConfig {
            max_new_tokens: self.config.max_new_tokens,
            seed,
            ..Default::default()
        }
    }

    fn evaluation(&self) -> Evaluation<'_, B::InnerBackend> {
        Evaluation {
            base: &self.reference,
            tokenizer: &self.tokenizer,
            eval_prompts: &self.eval_prompts,
            eval_sampling: self.sampling(self.config.seed.wrapping_add(90_001)),
            samples_per_prompt: self.config.samples_per_prompt,
            proxies: &self.proxy,
            gold: &self.gold,
        }
    }

    /// Measures the current policy: KL to the base, proxy and gold reward, a few samples.
    pub async fn measure(&self) -> Result<FrontierPoint> {
        let step = self.run.as_ref().map_or(0, |r| r.step);
        self.evaluation().measure(&self.policy, step).await
    }
}

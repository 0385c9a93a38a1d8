//! One online run — GRPO, Dr. GRPO, RLOO, REINFORCE++, PPO or RAFT — driven a step at a time,
//! with everything it carries between steps (policy, optimisers, PPO's value model and β), so
//! the CLI, the frontier sweep and the page run the same loop, and a checkpoint can resume it.

pub mod checkpoint;

use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use crate::algo::kl_controller::KlController;
use crate::algo::policy_gradient::{LossAggregation, PolicyGradientConfig};
use crate::algo::ppo::{ppo_step, PpoConfig, PpoState};
use crate::algo::raft::raft_round;
use crate::error::{Error, Result};
use crate::io::Tokenizer;
use crate::metrics::Metrics;
use crate::model::{Llama, RewardModel};
use crate::online::{online_step, OnlineConfig, OnlineMethod};
use crate::prompts::PromptSet;
use crate::reward::source::RewardSource;
use crate::sample::SamplingConfig;
use crate::train::{OptimConfig, Trainer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnlineAlgorithm {
    Grpo,
    DrGrpo,
    Rloo,
    ReinforcePp,
    Ppo,
    Raft,
}

impl OnlineAlgorithm {
    pub const ALL: [Self; 6] = [
        Self::Grpo,
        Self::DrGrpo,
        Self::Rloo,
        Self::ReinforcePp,
        Self::Ppo,
        Self::Raft,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Grpo => "grpo",
            Self::DrGrpo => "dr-grpo",
            Self::Rloo => "rloo",
            Self::ReinforcePp => "reinforce-pp",
            Self::Ppo => "ppo",
            Self::Raft => "raft",
        }
    }

    pub fn parse(name: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|a| a.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|a| a.name()).collect();
                Error::Input(format!(
                    "unknown online method `{name}`: expected one of {}",
                    names.join(", ")
                ))
            })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OnlineRunConfig {
    pub algorithm: OnlineAlgorithm,
    /// β: the k3 loss weight (GRPO), the per-token k1 penalty in the reward (RLOO, REINFORCE++,
    /// PPO's starting value); RAFT has none.
    pub kl_coef: f64,
    /// PPO only: adapt β towards this KL per sequence (Ziegler et al.).
    pub target_kl: Option<f64>,
    /// Samples per prompt (GRPO's G, RLOO's k, RAFT's k; PPO takes one).
    pub group_size: usize,
    pub prompts_per_step: usize,
    pub sampling: SamplingConfig,
    /// Epochs, minibatch size, clipping and the roll-back threshold; the aggregation and the KL
    /// loss weight are set from the algorithm.
    pub policy_gradient: PolicyGradientConfig,
    pub optim: OptimConfig,
    pub seed: u64,
}

impl OnlineRunConfig {
    fn step_seed(&self, step: usize) -> u64 {
        self.seed.wrapping_mul(1_000_003).wrapping_add(step as u64)
    }

    fn policy_gradient(&self) -> PolicyGradientConfig {
        let mut pg = self.policy_gradient.clone();
        pg.aggregation = match self.algorithm {
            OnlineAlgorithm::DrGrpo => LossAggregation::Constant,
            OnlineAlgorithm::Ppo | OnlineAlgorithm::ReinforcePp => LossAggregation::TokenMean,
            _ => LossAggregation::SequenceMean,
        };
        pg.kl_loss_coef = match self.algorithm {
            OnlineAlgorithm::Grpo | OnlineAlgorithm::DrGrpo => self.kl_coef,
            _ => 0.0,
        };
        pg.max_completion_length = self.sampling.max_new_tokens + 1;
        pg
    }

    fn kl_controller(&self) -> KlController {
        match self.target_kl {
            Some(target) => KlController::Adaptive {
                kl_coef: self.kl_coef,
                target,
                horizon: 10_000.0,
            },
            None => KlController::Fixed {
                kl_coef: self.kl_coef,
            },
        }
    }
}

/// PPO's critic and its optimiser.
pub(crate) struct Critic<B: AutodiffBackend> {
    pub value_model: RewardModel<B>,
    pub trainer: Trainer<B, RewardModel<B>>,
}

pub struct OnlineRun<B: AutodiffBackend> {
    pub config: OnlineRunConfig,
    /// Steps completed.
    pub step: usize,
    policy: Option<Llama<B>>,
    trainer: Trainer<B, Llama<B>>,
    critic: Option<Critic<B>>,
    kl: KlController,
}

impl<B: AutodiffBackend> OnlineRun<B>
where
    Llama<B>: AutodiffModule<B, InnerModule = Llama<B::InnerBackend>>,
    RewardModel<B>: AutodiffModule<B, InnerModule = RewardModel<B::InnerBackend>>,
{
    /// A run from `policy`; PPO's value model starts as a copy of it with a fresh head.
    pub fn new(policy: Llama<B>, config: OnlineRunConfig) -> Self {
        let critic = (config.algorithm == OnlineAlgorithm::Ppo).then(|| Critic {
            value_model: RewardModel::from_policy(policy.clone(), 1, config.seed + 1),
            trainer: Trainer::new(config.optim.clone()),
        });
        Self {
            step: 0,
            policy: Some(policy),
            trainer: Trainer::new(config.optim.clone()),
            critic,
            kl: config.kl_controller(),
            config,
        }
    }

    pub fn policy(&self) -> &Llama<B> {
        self.policy
            .as_ref()
            .expect("a failed step leaves the run unusable")
    }

    pub fn into_policy(self) -> Llama<B> {
        self.policy.expect("a failed step leaves the run unusable")
    }

    /// The current KL coefficient (PPO's adaptive β moves).
    pub fn kl_coef(&self) -> f64 {
        self.kl.value()
    }

    /// One rollout and update on the next `prompts_per_step` prompts of `prompts`. After an
    /// error the run cannot continue.
    pub async fn step(
        &mut self,
        reference: &Llama<B::InnerBackend>,
        tokenizer: &Tokenizer,
        prompts: &PromptSet,
        reward: &RewardSource<B::InnerBackend>,
        monitor: Option<&RewardSource<B::InnerBackend>>,
    ) -> Result<Metrics> {
        if prompts.prompts.is_empty() {
            return Err(Error::Input("no prompts".into()));
        }
        let config = &self.config;
        let batch = prompts.batch(self.step, config.prompts_per_step);
        let seed = config.step_seed(self.step);
        let policy = self
            .policy
            .take()
            .expect("a failed step leaves the run unusable");
        let (policy, metrics) = match config.algorithm {
            OnlineAlgorithm::Ppo => {
                let critic = self.critic.take().expect("PPO runs have a critic");
                let mut state = PpoState {
                    policy_trainer: std::mem::replace(
                        &mut self.trainer,
                        Trainer::new(config.optim.clone()),
                    ),
                    value_trainer: critic.trainer,
                    kl: self.kl,
                };
                let ppo = PpoConfig {
                    samples_per_prompt: 1,
                    sampling: config.sampling.clone(),
                    policy_gradient: config.policy_gradient(),
                    ..Default::default()
                };
                let (policy, value_model, m) = ppo_step(
                    policy,
                    critic.value_model,
                    &mut state,
                    reference,
                    tokenizer,
                    &batch,
                    reward,
                    monitor,
                    &ppo,
                    seed,
                )
                .await?;
                self.trainer = state.policy_trainer;
                self.kl = state.kl;
                self.critic = Some(Critic {
                    value_model,
                    trainer: state.value_trainer,
                });
                (policy, m)
            }
            OnlineAlgorithm::Raft => {
                let sampling = SamplingConfig {
                    seed,
                    ..config.sampling.clone()
                };
                raft_round(
                    policy,
                    &mut self.trainer,
                    reference,
                    tokenizer,
                    &batch,
                    reward,
                    config.group_size,
                    &sampling,
                    config.policy_gradient.minibatch_size,
                )
                .await?
            }
            algorithm => {
                let online = OnlineConfig {
                    method: match algorithm {
                        OnlineAlgorithm::Rloo => OnlineMethod::Rloo,
                        OnlineAlgorithm::ReinforcePp => OnlineMethod::ReinforcePlusPlus,
                        OnlineAlgorithm::DrGrpo => OnlineMethod::Grpo {
                            scale_by_std: false,
                        },
                        _ => OnlineMethod::Grpo { scale_by_std: true },
                    },
                    group_size: config.group_size,
                    prompts_per_step: config.prompts_per_step,
                    sampling: config.sampling.clone(),
                    policy_gradient: config.policy_gradient(),
                    kl_coef: match algorithm {
                        OnlineAlgorithm::Rloo | OnlineAlgorithm::ReinforcePp => config.kl_coef,
                        _ => 0.0,
                    },
                };
                online_step(
                    policy,
                    reference,
                    &mut self.trainer,
                    tokenizer,
                    &batch,
                    reward,
                    monitor,
                    &online,
                    seed,
                )
                .await?
            }
        };
        self.policy = Some(policy);
        self.step += 1;
        let mut metrics = metrics;
        metrics.step = self.step - 1;
        Ok(metrics)
    }
}

//! One online run — GRPO, Dr. GRPO, RLOO, REINFORCE++, PPO or RAFT — driven a step at a time,
//! with everything it carries between steps (policy, optimisers, PPO's value model and β), so
//! the CLI, the frontier sweep and the page run the same loop, and a checkpoint can resume it.

pub mod best_of_n;
pub mod checkpoint;
pub mod group;
pub mod policy_update;
pub mod ppo;
pub mod preference;
pub mod raft;
pub mod reward_model;
pub mod sft;
pub mod token_level;

use crate::backend::AutodiffBackend;
use burn::module::AutodiffModule;
use serde::{Deserialize, Serialize};

use crate::algo::kl_controller::KlController;
use crate::algo::online_method::OnlineUpdate;
use crate::algo::policy_gradient::PolicyGradientConfig;
use crate::algo::ppo::PpoConfig;
use crate::algo::spec::{
    Setting, Settings, TrainingOverrides, BETA, EPOCHS, GROUP_SIZE, PROMPTS_PER_STEP,
};
use crate::distributed::Replica;
use crate::error::{Error, Result};
use crate::io::Tokenizer;
use crate::metrics::Metrics;
use crate::model::{Llama, RewardModel};
use crate::prompts::PromptSet;
use crate::reward::source::RewardSource;
use crate::rollout::RolloutContext;
use crate::sample::SamplingConfig;
use crate::train::{OptimConfig, Trainer};
use group::{online_step, OnlineConfig};
use ppo::{ppo_step, PpoLearner};
use raft::raft_round;

pub use crate::methods::OnlineAlgorithm;

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
    /// `algorithm`'s run: its spec's defaults, overridden by `settings` (β, group_size,
    /// prompts_per_step, epochs — those it has) and `training` (lr, steps, minibatch size,
    /// warmup). The CLI, the sweep and the page all build their runs here.
    pub fn new(
        algorithm: OnlineAlgorithm,
        settings: &Settings,
        training: &TrainingOverrides,
        sampling: SamplingConfig,
        seed: u64,
    ) -> Result<Self> {
        let spec = algorithm.spec();
        settings.check(spec)?;
        let value = |setting: &Setting| {
            spec.setting(setting.name)
                .map(|_| settings.value(spec, setting.name))
                .unwrap_or(setting.default)
        };
        let count = |setting: &Setting| -> Result<usize> {
            let v = value(setting);
            if v >= 1.0 && v.fract() == 0.0 {
                Ok(v as usize)
            } else {
                Err(Error::Input(format!(
                    "{}: {} must be a whole number ≥ 1, got {v}",
                    spec.name, setting.name
                )))
            }
        };
        let kl_coef = if spec.setting(BETA.name).is_some() {
            value(&BETA)
        } else {
            0.0
        };
        if kl_coef.is_nan() || kl_coef < 0.0 {
            return Err(Error::Input(format!(
                "{}: beta must be ≥ 0, got {kl_coef}",
                spec.name
            )));
        }
        Ok(Self {
            algorithm,
            kl_coef,
            target_kl: None,
            group_size: count(&GROUP_SIZE)?,
            prompts_per_step: count(&PROMPTS_PER_STEP)?,
            sampling,
            policy_gradient: PolicyGradientConfig {
                epochs: count(&EPOCHS)?,
                minibatch_size: training.batch_size(spec),
                ..Default::default()
            },
            optim: training.optim(spec),
            seed,
        })
    }

    fn step_seed(&self, step: usize) -> u64 {
        self.seed.wrapping_mul(1_000_003).wrapping_add(step as u64)
    }

    fn policy_gradient(&self) -> PolicyGradientConfig {
        let method = self.algorithm.method();
        let mut pg = self.policy_gradient.clone();
        pg.aggregation = method.aggregation;
        pg.kl_loss_coef = method.kl_weights(self.kl_coef).0;
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
        let critic =
            matches!(config.algorithm.method().update, OnlineUpdate::Ppo { .. }).then(|| Critic {
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

    /// This run as one replica of a data-parallel run: each step's prompts are shared out, the
    /// rollout gathered, every update's minibatch shared out and its gradients summed.
    pub fn with_replica(mut self, replica: Replica) -> Self {
        self.trainer = self.trainer.with_replica(replica.clone());
        if let Some(critic) = self.critic.take() {
            self.critic = Some(Critic {
                value_model: critic.value_model,
                trainer: critic.trainer.with_replica(replica),
            });
        }
        self
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
        let context = RolloutContext {
            reference,
            tokenizer,
            prompts: &batch,
            reward,
            monitor,
            sampling: SamplingConfig {
                seed,
                ..config.sampling.clone()
            },
            replica: self.trainer.replica().clone(),
        };
        let trainer = &mut self.trainer;
        let (policy, metrics) = match config.algorithm.method().update {
            OnlineUpdate::Ppo { token_rewards } => {
                let Critic {
                    value_model,
                    trainer: mut value_trainer,
                } = self.critic.take().expect("PPO runs have a critic");
                let learner = PpoLearner {
                    policy_trainer: trainer,
                    value_trainer: &mut value_trainer,
                    kl: &mut self.kl,
                };
                let ppo = PpoConfig {
                    samples_per_prompt: 1,
                    token_rewards,
                    normalize_scores: !token_rewards,
                    policy_gradient: config.policy_gradient(),
                    ..Default::default()
                };
                let (policy, value_model, m) =
                    ppo_step(policy, value_model, learner, &context, &ppo).await?;
                self.critic = Some(Critic {
                    value_model,
                    trainer: value_trainer,
                });
                (policy, m)
            }
            OnlineUpdate::Raft => {
                let minibatch = config.policy_gradient.minibatch_size;
                raft_round(policy, trainer, &context, config.group_size, minibatch).await?
            }
            OnlineUpdate::Group(_) => {
                let group = OnlineConfig {
                    algorithm: config.algorithm,
                    group_size: config.group_size,
                    policy_gradient: config.policy_gradient(),
                    kl_coef: config.algorithm.method().kl_weights(config.kl_coef).1,
                };
                online_step(policy, trainer, &context, &group).await?
            }
        };
        self.policy = Some(policy);
        self.step += 1;
        let mut metrics = metrics;
        metrics.step = self.step - 1;
        Ok(metrics)
    }
}

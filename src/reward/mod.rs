//! Learned rewards: a reward model or an ensemble of them, what their outputs mean, how the
//! outputs become one reward, and their checkpoints.

pub mod ensemble;
pub mod lexicon;
pub mod objective;
pub mod source;
pub mod spec;
pub mod transform;

use std::path::Path;

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::io::{checkpoint, Tokenizer};
use crate::model::NamedWeights;
use crate::model::{Llama, LlamaConfig, RewardEnsemble, RewardModel, ScalarHead};
pub use ensemble::Aggregation;

/// What a learned reward's outputs are, and how they combine into one reward.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RewardHeads {
    /// `members` reward estimates (1 is a plain reward model): heads on one shared trunk, or
    /// independent models trained on bootstrap resamples.
    Ensemble {
        members: usize,
        shared_trunk: bool,
        aggregation: Aggregation,
        /// (mean, std) of each member's reward over its training completions, set after
        /// training when there are several: a Bradley–Terry reward is defined only up to a
        /// shift (and, in practice, scale), so members are standardised before they are
        /// aggregated — otherwise mean − λ·std measures the members' offsets, not their doubt.
        #[serde(default)]
        member_scale: Vec<[f32; 2]>,
    },
    /// One output per named attribute, combined along a direction (DPA). Outputs are in
    /// standard units of the training ratings (z-scores), so attributes rated on different
    /// scales weigh alike.
    Attributes {
        names: Vec<String>,
        direction: Vec<f32>,
        /// (mean, std) of each attribute's training ratings; set when training starts.
        #[serde(default)]
        rating_scale: Vec<[f32; 2]>,
    },
}

/// How a user reads a reward model's shape: "one reward", "an ensemble of 4 independent models
/// (mean − 1·std)", "attributes brevity, positivity along (0.71, 0.71)".
impl std::fmt::Display for RewardHeads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ensemble { members: 1, .. } => write!(f, "one reward"),
            Self::Ensemble {
                members,
                shared_trunk,
                aggregation,
                ..
            } => {
                let kind = if *shared_trunk {
                    "heads on a shared trunk"
                } else {
                    "independent models"
                };
                write!(f, "an ensemble of {members} {kind} ({aggregation})")
            }
            Self::Attributes {
                names, direction, ..
            } => {
                let direction: Vec<String> = direction.iter().map(|d| format!("{d:.2}")).collect();
                write!(
                    f,
                    "attributes {} along ({})",
                    names.join(", "),
                    direction.join(", ")
                )
            }
        }
    }
}

impl RewardHeads {
    pub fn single() -> Self {
        Self::Ensemble {
            members: 1,
            shared_trunk: true,
            aggregation: Aggregation::Mean,
            member_scale: Vec::new(),
        }
    }

    /// Outputs in total, across members.
    pub fn outputs(&self) -> usize {
        match self {
            Self::Ensemble { members, .. } => *members,
            Self::Attributes { names, .. } => names.len(),
        }
    }

    /// (models, heads per model).
    fn layout(&self) -> (usize, usize) {
        match self {
            Self::Ensemble {
                members,
                shared_trunk: false,
                ..
            } => (*members, 1),
            other => (1, other.outputs()),
        }
    }
}

/// A reward ensemble and the meaning of its outputs.
#[derive(Debug, Clone)]
pub struct LearnedReward<B: Backend> {
    pub ensemble: RewardEnsemble<B>,
    pub heads: RewardHeads,
}

impl<B: Backend> LearnedReward<B> {
    /// Fresh heads on copies of a policy's trunk (each independent member gets its own copy
    /// and its own head seed).
    pub fn from_policy(policy: Llama<B>, heads: RewardHeads, seed: u64) -> Result<Self> {
        if heads.outputs() == 0 {
            return Err(Error::Input(
                "a reward model needs at least one output".into(),
            ));
        }
        let (models, per_model) = heads.layout();
        let members = (0..models)
            .map(|i| RewardModel::from_policy(policy.clone(), per_model, seed + i as u64))
            .collect();
        Ok(Self {
            ensemble: RewardEnsemble { members },
            heads,
        })
    }

    /// Every output: [batch, outputs].
    pub fn member_rewards(
        &self,
        tokens: Tensor<B, 2, Int>,
        last_index: Tensor<B, 1, Int>,
    ) -> Tensor<B, 2> {
        self.ensemble.member_rewards(tokens, last_index)
    }

    /// One reward per sequence: [batch].
    pub fn rewards(
        &self,
        tokens: Tensor<B, 2, Int>,
        last_index: Tensor<B, 1, Int>,
    ) -> Tensor<B, 1> {
        combine(self.member_rewards(tokens, last_index), &self.heads)
    }

    pub fn config(&self) -> &LlamaConfig {
        self.ensemble.members[0].trunk.config()
    }

    /// Writes an alignlab checkpoint: member i's trunk under `members.{i}.` and its head as
    /// `members.{i}.score`, with the heads' description in the metadata.
    pub async fn save(&self, tokenizer: &Tokenizer, path: &Path) -> Result<()> {
        let mut weights = NamedWeights::new("reward model");
        for (i, member) in self.ensemble.members.iter().enumerate() {
            let prefix = format!("members.{i}.");
            let trunk = member.trunk.to_weights().await?.prefixed(&prefix);
            weights.tensors.extend(trunk.tensors);
            member
                .head
                .write_weights(&format!("{prefix}score"), &mut weights)
                .await?;
        }
        let spec = serde_json::to_string(&self.heads).expect("heads serialise");
        let bytes = checkpoint::to_bytes_with_metadata(
            self.config(),
            &weights,
            tokenizer,
            &[(REWARD_KEY, spec)],
        );
        let partial = path.with_extension("partial");
        std::fs::write(&partial, bytes).map_err(|e| Error::io(&partial, e))?;
        std::fs::rename(&partial, path).map_err(|e| Error::io(path, e))
    }

    /// Reads a checkpoint written by [`Self::save`].
    pub fn load(path: &Path, device: &B::Device) -> Result<(Self, Tokenizer)> {
        let bytes = crate::error::read_file(path)?;
        Self::from_bytes(&bytes, &path.display().to_string(), device)
    }

    pub fn from_bytes(
        bytes: &[u8],
        source_name: &str,
        device: &B::Device,
    ) -> Result<(Self, Tokenizer)> {
        let spec = checkpoint::metadata_entry(bytes, REWARD_KEY).ok_or_else(|| {
            Error::format(
                source_name,
                "not a reward model (no `reward` entry in its metadata): train one with `alignlab train --method rm`",
            )
        })?;
        let heads: RewardHeads = serde_json::from_str(&spec)
            .map_err(|e| Error::format(source_name, format!("metadata field `reward`: {e}")))?;
        let (config, mut weights, tokenizer) = checkpoint::from_bytes(bytes, source_name)?;
        let (models, per_model) = heads.layout();
        let mut members = Vec::with_capacity(models);
        for i in 0..models {
            let prefix = format!("members.{i}.");
            let mut own = weights.take_prefixed(&prefix);
            let head = ScalarHead::from_weights("score", config.dim, per_model, &mut own, device)?;
            let trunk = Llama::from_weights(&config, own, device)?;
            members.push(RewardModel { trunk, head });
        }
        if let Some(name) = weights.tensors.keys().next() {
            return Err(Error::format(
                source_name,
                format!("unexpected tensor `{name}` for a reward model of {models} member(s)"),
            ));
        }
        Ok((
            Self {
                ensemble: RewardEnsemble { members },
                heads,
            },
            tokenizer,
        ))
    }
}

const REWARD_KEY: &str = "reward";

/// One reward per sequence from every output [batch, outputs], as `heads` says.
pub fn combine<B: Backend>(member_rewards: Tensor<B, 2>, heads: &RewardHeads) -> Tensor<B, 1> {
    match heads {
        RewardHeads::Ensemble {
            aggregation,
            member_scale,
            ..
        } => {
            let [_, members] = member_rewards.dims();
            let member_rewards = if member_scale.len() == members {
                let device = member_rewards.device();
                let row = |f: fn(&[f32; 2]) -> f32| {
                    Tensor::<B, 1>::from_floats(
                        member_scale.iter().map(f).collect::<Vec<f32>>().as_slice(),
                        &device,
                    )
                    .reshape([1, members])
                };
                (member_rewards - row(|s| s[0])) / row(|s| s[1])
            } else {
                member_rewards
            };
            ensemble::aggregate(member_rewards, *aggregation)
        }
        RewardHeads::Attributes { direction, .. } => {
            transform::directional_reward(member_rewards, direction)
        }
    }
}

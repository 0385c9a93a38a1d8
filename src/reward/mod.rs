//! Learned rewards: a reward model or an ensemble of them, what their outputs mean, how the
//! outputs become one reward, and their checkpoints.

pub mod calibrated;
pub mod ensemble;
pub mod implicit;
pub mod lexicon;
pub mod objective;
pub mod source;
pub mod spec;
pub mod transform;

use std::path::Path;

use crate::backend::Backend;
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
        #[cfg(not(target_arch = "wasm32"))]
        if crate::policy::is_folder(path) {
            // The bias left out shifts every reward alike (see `export_hf`).
            return self
                .export_hf(tokenizer, path, Default::default())
                .await
                .map(|_bias| ());
        }
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

    /// Reads a checkpoint written by [`Self::save`], or a Hugging Face
    /// `*ForSequenceClassification` folder (one output).
    pub fn load(path: &Path, device: &B::Device) -> Result<(Self, Tokenizer)> {
        #[cfg(not(target_arch = "wasm32"))]
        if crate::io::hf::is_model_folder(path) {
            return Self::from_hf_folder(path, device);
        }
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

#[cfg(not(target_arch = "wasm32"))]
impl<B: Backend> LearnedReward<B> {
    fn from_hf_folder(dir: &Path, device: &B::Device) -> Result<(Self, Tokenizer)> {
        use crate::io::hf;
        let mut model = hf::load(dir, None)?;
        if model.head != hf::Head::SequenceScore {
            return Err(Error::format(
                dir.display().to_string(),
                "a causal language model, not a reward model: a reward model folder holds a \
                 *ForSequenceClassification checkpoint with one label",
            ));
        }
        let dim = model.config.dim;
        let mut head = NamedWeights::new(dir.display().to_string());
        head.insert("score.weight", model.take_score()?);
        // transformers' score head has no bias.
        head.insert(
            "score.bias",
            crate::model::HostTensor::new(vec![1], vec![0.0]),
        );
        let head = ScalarHead::from_weights("score", dim, 1, &mut head, device)?;
        let trunk = Llama::from_weights(&model.config, model.weights, device)?;
        let reward = Self {
            ensemble: RewardEnsemble {
                members: vec![RewardModel { trunk, head }],
            },
            heads: RewardHeads::single(),
        };
        Ok((reward, model.tokenizer))
    }

    /// The trunk and `score.weight` of a one-output reward model, for a Hugging Face
    /// sequence-classification folder, and the head's bias, which that format has no place for
    /// (a constant shift: Bradley–Terry preferences do not change).
    pub async fn to_hf_weights(&self) -> Result<(NamedWeights, f32)> {
        let [member] = &self.ensemble.members[..] else {
            return Err(Error::Input(format!(
                "only a single reward model exports as a sequence-classification folder; this is an ensemble of {}",
                self.ensemble.members.len()
            )));
        };
        if member.head.outputs() != 1 {
            return Err(Error::Input(format!(
                "a reward model with {} outputs does not export as a one-label classifier",
                member.head.outputs()
            )));
        }
        let mut weights = member.trunk.to_weights().await?;
        // A classifier has no language-model head (transformers would report it unexpected).
        weights
            .tensors
            .remove(crate::model::weights::names::LM_HEAD);
        let mut head = NamedWeights::new("head");
        member.head.write_weights("score", &mut head).await?;
        let bias = head.take("score.bias", &[1])?.data[0];
        weights.insert(
            "score.weight",
            head.take("score.weight", &[1, self.config().dim])?,
        );
        Ok((weights, bias))
    }

    /// Writes a Hugging Face sequence-classification folder (TRL's reward models' form).
    /// Returns the head's bias, which is left out (transformers' score head has none): the
    /// exported rewards are shifted by it, preferences between completions are not.
    pub async fn export_hf(
        &self,
        tokenizer: &Tokenizer,
        dir: &Path,
        dtype: crate::io::hf::export::StoreAs,
    ) -> Result<f32> {
        use crate::io::hf::{export, Head};
        let (weights, bias) = self.to_hf_weights().await?;
        let export = export::Export {
            config: self.config(),
            weights,
            tokenizer,
            head: Head::SequenceScore,
            dtype,
        };
        export::write(export, dir)?;
        Ok(bias)
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

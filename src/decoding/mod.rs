//! Alignment at decoding time: samplers that steer the reference model with a reward as they
//! decode, no weights changed. Each knows the per-token distribution it samples from, so the
//! KL of its samples to the reference is measured exactly, as for a trained policy.
//!
//! The methods are listed once, in [`DECODING_METHODS`] (name, summary, settings with their
//! defaults); `alignlab generate --guide`, `alignlab methods` and the frontier's TOML read it.

pub mod genarm;
pub mod lookahead;
mod steer;

use crate::backend::Backend;
use serde::Serialize;

pub use genarm::GenArmConfig;
pub use lookahead::LookaheadConfig;
pub use steer::GuidedSample;

use crate::algo::spec::{DeclaresSettings, Setting, Settings};
use crate::error::{Error, Result};
use crate::io::Tokenizer;
use crate::model::Llama;
use crate::reward::source::RewardSource;
use crate::sample::SamplingConfig;

/// What else a decoding method decodes with, besides the reference and the reward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExtraModels {
    None,
    /// One aligned policy the continuations come from (Transfer Q*).
    Baseline,
    /// One or two autoregressive reward models (GenARM).
    RewardModels,
}

/// A decoding-time method's entry: its name, what it does, its settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DecodingSpec {
    pub name: &'static str,
    pub summary: &'static str,
    pub models: ExtraModels,
    pub settings: &'static [Setting],
}

impl DeclaresSettings for DecodingSpec {
    fn name(&self) -> &str {
        self.name
    }

    fn settings(&self) -> &[Setting] {
        self.settings
    }
}

const WEIGHT: Setting = Setting {
    name: "weight",
    default: 1.0,
    help: "w, the reward's weight against log π_ref (1/β of the KL-regularised optimum)",
};

const CANDIDATES: Setting = Setting {
    name: "candidates",
    default: 10.0,
    help: "k: the reference's most likely next tokens that are rescored",
};

const ROLLOUTS: Setting = Setting {
    name: "rollouts",
    default: 4.0,
    help: "continuations per candidate whose rewards average into Q",
};

const HORIZON: Setting = Setting {
    name: "horizon",
    default: 8.0,
    help: "tokens per continuation at most",
};

pub const ARGS: DecodingSpec = DecodingSpec {
    name: "args",
    summary:
        "ARGS (Khanov et al. 2024): the top-k next tokens rescored by log π + w·reward(prefix)",
    models: ExtraModels::None,
    settings: &[WEIGHT, CANDIDATES],
};

pub const CONTROLLED: DecodingSpec = DecodingSpec {
    name: "cd",
    summary: "controlled decoding (Mudgal et al. 2024): π_ref·exp(Q/β) over the top k, Q from \
              sampled continuations of the reference",
    models: ExtraModels::None,
    settings: &[WEIGHT, CANDIDATES, ROLLOUTS, HORIZON],
};

pub const TRANSFER_Q: DecodingSpec = DecodingSpec {
    name: "transfer-q",
    summary: "Transfer Q* (Chakraborty et al. 2024): controlled decoding with Q from an aligned \
              baseline's continuations (--guide-model)",
    models: ExtraModels::Baseline,
    settings: &[WEIGHT, CANDIDATES, ROLLOUTS, HORIZON],
};

pub const DEAL: DecodingSpec = DecodingSpec {
    name: "deal",
    summary: "DeAL (Huang et al. 2024): search over the top k, each expanded greedily and the \
              partial completion scored",
    models: ExtraModels::None,
    settings: &[
        WEIGHT,
        CANDIDATES,
        Setting {
            name: "horizon",
            default: 4.0,
            help: "lookahead: tokens each candidate is expanded greedily",
        },
    ],
};

pub const GENARM: DecodingSpec = DecodingSpec {
    name: "genarm",
    summary: "GenARM (Xu et al. 2025): π_ref·π_r^(1/β) per token, π_r an autoregressive reward \
              model (train --method arm; --guide-model, one or two)",
    models: ExtraModels::RewardModels,
    settings: &[
        WEIGHT,
        Setting {
            name: "candidates",
            default: 0.0,
            help: "the reference's top k considered (0: the whole vocabulary)",
        },
        Setting {
            name: "mix",
            default: 1.0,
            help: "α, the first reward model's share when two mix",
        },
    ],
};

/// Every decoding-time method.
pub const DECODING_METHODS: &[DecodingSpec] = &[ARGS, CONTROLLED, TRANSFER_Q, DEAL, GENARM];

/// The decoding method called `name`; the error lists every name.
pub fn find(name: &str) -> Result<&'static DecodingSpec> {
    DECODING_METHODS
        .iter()
        .find(|m| m.name == name)
        .ok_or_else(|| {
            let names: Vec<&str> = DECODING_METHODS.iter().map(|m| m.name).collect();
            Error::Input(format!(
                "unknown decoding method `{name}`: expected one of {}",
                names.join(", ")
            ))
        })
}

/// A decoding method with its settings read.
#[derive(Debug, Clone, PartialEq)]
pub enum Guide {
    Lookahead(LookaheadConfig),
    GenArm(GenArmConfig),
}

impl Guide {
    /// The method `spec` with `settings` over its defaults (unknown or out-of-range settings
    /// refused by name).
    pub fn new(spec: &DecodingSpec, settings: &Settings) -> Result<Self> {
        settings.check(spec)?;
        let value = |name: &str| settings.value(spec, name);
        let count = |name: &str| {
            let v = value(name);
            match v >= 0.0 && v.fract() == 0.0 {
                true => Ok(v as usize),
                false => Err(Error::Input(format!(
                    "{}: setting `{name}` must be a whole number ≥ 0, got {v}",
                    spec.name
                ))),
            }
        };
        let weight = value("weight") as f32;
        let guide = match spec.name {
            "genarm" => Self::GenArm(GenArmConfig {
                weight,
                candidates: count("candidates")?,
                mix: value("mix") as f32,
            }),
            name => {
                let (rollouts, horizon, rollout_temperature) = match name {
                    "args" => (0, 0, 1.0),
                    "deal" => (1, count("horizon")?, 0.0),
                    _ => (count("rollouts")?, count("horizon")?, 1.0),
                };
                let candidates = count("candidates")?;
                if candidates == 0 {
                    return Err(Error::Input(format!(
                        "{name}: setting `candidates` must be at least 1"
                    )));
                }
                Self::Lookahead(LookaheadConfig {
                    weight,
                    candidates,
                    rollouts,
                    horizon,
                    rollout_temperature,
                })
            }
        };
        Ok(guide)
    }
}

/// What a decoding method steers with.
pub struct GuideInputs<'a, B: Backend> {
    pub reference: &'a Llama<B>,
    pub tokenizer: &'a Tokenizer,
    /// The reward the lookahead methods score with (GenARM's reward is its models').
    pub reward: &'a RewardSource<B>,
    /// Transfer Q*'s baseline, or GenARM's reward models.
    pub models: &'a [Llama<B>],
}

/// Completions of `prompts` (texts) decoded by `spec` with `guide`'s settings.
pub async fn generate<B: Backend>(
    spec: &DecodingSpec,
    guide: &Guide,
    inputs: &GuideInputs<'_, B>,
    prompts: &[String],
    sampling: &SamplingConfig,
) -> Result<Vec<GuidedSample>> {
    let wanted = match spec.models {
        ExtraModels::None => 0..=0,
        ExtraModels::Baseline => 1..=1,
        ExtraModels::RewardModels => 1..=2,
    };
    if !wanted.contains(&inputs.models.len()) {
        return Err(Error::Input(format!(
            "{} decodes with {} model(s) besides the reference (--guide-model), got {}",
            spec.name,
            match spec.models {
                ExtraModels::None => "no",
                ExtraModels::Baseline => "one aligned",
                ExtraModels::RewardModels => "one or two reward",
            },
            inputs.models.len()
        )));
    }
    let encoded = prompts
        .iter()
        .map(|p| inputs.tokenizer.encode_with_bos(p))
        .collect::<Result<Vec<_>>>()?;
    let (reference, tokenizer) = (inputs.reference, inputs.tokenizer);
    match guide {
        Guide::Lookahead(config) => {
            let baseline = inputs.models.first().unwrap_or(reference);
            if baseline.config().vocab_size != reference.config().vocab_size {
                return Err(Error::Input(format!(
                    "{}: the baseline's vocabulary has {} tokens, the model's {}: they must \
                     share a tokenizer",
                    spec.name,
                    baseline.config().vocab_size,
                    reference.config().vocab_size
                )));
            }
            let mut steering = lookahead::Lookahead {
                config,
                baseline,
                reward: inputs.reward,
                tokenizer,
                prompts,
                seed: sampling.seed.wrapping_add(1),
            };
            steer::steer(reference, tokenizer, &encoded, sampling, &mut steering).await
        }
        Guide::GenArm(config) => {
            let mut steering = genarm::GenArm::new(
                config,
                reference,
                inputs.models,
                &encoded,
                tokenizer.eos_id(),
                sampling,
            )?;
            steer::steer(reference, tokenizer, &encoded, sampling, &mut steering).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_is_found_by_name_and_reads_its_defaults() {
        for spec in DECODING_METHODS {
            assert_eq!(find(spec.name).unwrap().name, spec.name);
            Guide::new(spec, &Settings::new()).unwrap();
        }
        let error = find("argz").unwrap_err().to_string();
        assert!(error.starts_with("unknown decoding method `argz`: expected one of args, cd"));
        let error = Guide::new(&ARGS, &Settings::new().with("horizon", 4.0)).unwrap_err();
        assert!(error.to_string().contains("args has no setting `horizon`"));
        let error = Guide::new(&CONTROLLED, &Settings::new().with("rollouts", 1.5)).unwrap_err();
        assert!(error
            .to_string()
            .contains("`rollouts` must be a whole number"));
        let Guide::Lookahead(deal) = Guide::new(&DEAL, &Settings::new()).unwrap() else {
            panic!("DeAL looks ahead");
        };
        assert_eq!(
            (deal.rollouts, deal.horizon, deal.rollout_temperature),
            (1, 4, 0.0)
        );
    }
}

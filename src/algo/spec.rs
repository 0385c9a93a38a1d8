//! How a method describes itself to the registry (`crate::methods`): its name, what it trains on,
//! the training defaults it starts from, and its own settings with their defaults and help text.
//! Every front end — the CLI's flags, the sweep's TOML keys, the page's controls — only overrides
//! these, under the same names.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::train::OptimConfig;

/// The shape of data an offline preference method trains on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DataShape {
    Pairs,
    /// Rankings of any k ≥ 2 (pairs included).
    Rankings,
    /// Unpaired desirable/undesirable labels (pairs are unpaired first).
    Unpaired,
}

/// What a method trains, and from what.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "data", rename_all = "snake_case")]
pub enum MethodKind {
    /// The policy, on completions (the negative log-likelihood of their tokens).
    Supervised,
    /// A reward model, on pairs, rankings or ratings.
    RewardModel,
    /// The policy, with an offline loss on preference data of this shape.
    Preference(DataShape),
    /// The policy, on its own samples scored by a reward.
    Online,
}

/// One named setting of a method, with its default and what it does.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Setting {
    /// The same name everywhere: `--label-smoothing` on the command line (dashes for
    /// underscores), `label_smoothing` in TOML and in the page.
    pub name: &'static str,
    pub default: f64,
    pub help: &'static str,
}

/// Where a method's optimiser starts unless told otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TrainingDefaults {
    pub lr: f64,
    pub steps: usize,
    /// Rows per update (online methods: samples per minibatch).
    pub batch_size: usize,
    /// Warmup steps as a share of `steps` (TRL's `warmup_ratio`), rounded, at least 1.
    pub warmup_ratio: f64,
}

impl TrainingDefaults {
    /// The warmup for a run of `steps`: `warmup_ratio · steps`, rounded, from 1 to 20.
    pub fn warmup(&self, steps: usize) -> usize {
        ((self.warmup_ratio * steps as f64).round() as usize).clamp(1, 20)
    }
}

/// A method as the registry lists it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MethodSpec {
    /// The name `--method`, the sweep and the page use.
    pub name: &'static str,
    /// One line: what it is, with its paper.
    pub summary: &'static str,
    pub kind: MethodKind,
    pub training: TrainingDefaults,
    /// Its own settings (β among them where it has one).
    pub settings: &'static [Setting],
}

impl MethodSpec {
    pub fn setting(&self, name: &str) -> Option<&Setting> {
        self.settings.iter().find(|s| s.name == name)
    }
}

/// β, the strength of the tie to the reference, that most methods share.
pub const BETA: Setting = Setting {
    name: "beta",
    default: 0.1,
    help: "strength of the tie to the reference (the KL coefficient; the DPO family's inverse temperature)",
};

/// Samples per prompt (GRPO's G, RLOO's k, RAFT's k).
pub const GROUP_SIZE: Setting = Setting {
    name: "group_size",
    default: 8.0,
    help: "samples per prompt: the group whose rewards make each sample's baseline",
};

/// Prompts per rollout.
pub const PROMPTS_PER_STEP: Setting = Setting {
    name: "prompts_per_step",
    default: 16.0,
    help: "prompts sampled for each update",
};

/// Passes over each rollout.
pub const EPOCHS: Setting = Setting {
    name: "epochs",
    default: 1.0,
    help: "passes of the update over each rollout",
};

/// Where supervised fine-tuning starts.
pub const SUPERVISED_TRAINING: TrainingDefaults = TrainingDefaults {
    lr: 5e-4,
    steps: 100,
    batch_size: 16,
    warmup_ratio: 0.1,
};

/// Where reward models start.
pub const REWARD_MODEL_TRAINING: TrainingDefaults = TrainingDefaults {
    lr: 3e-3,
    steps: 100,
    batch_size: 16,
    warmup_ratio: 0.1,
};

/// Where the preference losses start (tuned on the built-in world; TRL's are for 7B models).
pub const PREFERENCE_TRAINING: TrainingDefaults = TrainingDefaults {
    lr: 1e-3,
    steps: 100,
    batch_size: 16,
    warmup_ratio: 0.1,
};

/// Where the online methods start.
pub const ONLINE_TRAINING: TrainingDefaults = TrainingDefaults {
    lr: 1e-3,
    steps: 100,
    batch_size: 64,
    warmup_ratio: 0.1,
};

/// The optimiser settings a front end gives (a CLI flag, a TOML key, a page control); what it
/// leaves out comes from the method's [`TrainingDefaults`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingOverrides {
    pub lr: Option<f64>,
    pub steps: Option<usize>,
    pub batch_size: Option<usize>,
    pub warmup: Option<usize>,
}

impl TrainingOverrides {
    pub fn steps(&self, spec: &MethodSpec) -> usize {
        self.steps.unwrap_or(spec.training.steps)
    }

    pub fn batch_size(&self, spec: &MethodSpec) -> usize {
        self.batch_size.unwrap_or(spec.training.batch_size)
    }

    /// AdamW with warmup and cosine decay over `steps(spec)` updates.
    pub fn optim(&self, spec: &MethodSpec) -> OptimConfig {
        let steps = self.steps(spec);
        OptimConfig {
            lr: self.lr.unwrap_or(spec.training.lr),
            warmup_steps: self.warmup.unwrap_or_else(|| spec.training.warmup(steps)),
            total_steps: steps,
            ..Default::default()
        }
    }
}

/// A method's settings as given: values by name that override its spec's defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Settings(BTreeMap<String, f64>);

impl Settings {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `name` to `value` (a later value replaces an earlier one).
    pub fn with(mut self, name: &str, value: f64) -> Self {
        self.0.insert(name.to_string(), value);
        self
    }

    pub fn insert(&mut self, name: &str, value: f64) {
        self.0.insert(name.to_string(), value);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every name given is one of `spec`'s settings and its value is finite.
    pub fn check(&self, spec: &impl DeclaresSettings) -> Result<()> {
        for (name, value) in &self.0 {
            if spec.declared(name).is_none() {
                let names: Vec<&str> = spec.settings().iter().map(|s| s.name).collect();
                let names = match names.is_empty() {
                    true => "none".to_string(),
                    false => names.join(", "),
                };
                return Err(Error::Input(format!(
                    "{} has no setting `{name}`; its settings: {names}",
                    spec.name(),
                )));
            }
            if !value.is_finite() {
                return Err(Error::Input(format!(
                    "{}: setting `{name}` must be a finite number, got {value}",
                    spec.name()
                )));
            }
        }
        Ok(())
    }

    /// The value of setting `name` of `spec`: given, or its default.
    ///
    /// # Panics
    /// When `spec` has no such setting: a method reads only the settings it declares.
    pub fn value(&self, spec: &impl DeclaresSettings, name: &str) -> f64 {
        let default = spec
            .declared(name)
            .unwrap_or_else(|| panic!("{} declares no setting `{name}`", spec.name()))
            .default;
        self.0.get(name).copied().unwrap_or(default)
    }
}

/// What has named settings with defaults: a training method, or a decoding-time one.
pub trait DeclaresSettings {
    fn name(&self) -> &str;
    fn settings(&self) -> &[Setting];

    fn declared(&self, name: &str) -> Option<&Setting> {
        self.settings().iter().find(|s| s.name == name)
    }
}

impl DeclaresSettings for MethodSpec {
    fn name(&self) -> &str {
        self.name
    }

    fn settings(&self) -> &[Setting] {
        self.settings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: MethodSpec = MethodSpec {
        name: "toy",
        summary: "a toy",
        kind: MethodKind::Preference(DataShape::Pairs),
        training: PREFERENCE_TRAINING,
        settings: &[
            BETA,
            Setting {
                name: "gamma",
                default: 0.5,
                help: "margin",
            },
        ],
    };

    #[test]
    fn given_values_override_defaults_and_unknown_names_are_refused() {
        let given = Settings::new().with("gamma", 2.0);
        given.check(&SPEC).unwrap();
        assert_eq!(given.value(&SPEC, "gamma"), 2.0);
        assert_eq!(given.value(&SPEC, "beta"), 0.1);
        let error = Settings::new().with("alpha", 1.0).check(&SPEC).unwrap_err();
        assert_eq!(
            error.to_string(),
            "toy has no setting `alpha`; its settings: beta, gamma"
        );
        assert!(Settings::new().with("beta", f64::NAN).check(&SPEC).is_err());
    }

    #[test]
    fn warmup_is_a_tenth_of_the_run_within_bounds() {
        assert_eq!(PREFERENCE_TRAINING.warmup(100), 10);
        assert_eq!(PREFERENCE_TRAINING.warmup(20), 2);
        assert_eq!(PREFERENCE_TRAINING.warmup(3), 1);
        assert_eq!(PREFERENCE_TRAINING.warmup(1000), 20);
    }
}

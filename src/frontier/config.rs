//! The sweep a frontier report runs, read from TOML. Every section is optional; unknown keys are
//! errors naming the key, line and column.

use serde::{Deserialize, Serialize};

use crate::algo::preference::PreferenceLoss;
use crate::algo::spec::{DataShape, DeclaresSettings, Settings, TrainingOverrides, BETA};
use crate::decoding::{self, DecodingSpec, ExtraModels, Guide};
use crate::error::{Error, Result};
use crate::reward::calibrated::Transform;
use crate::reward::Aggregation;

/// The built-in demo: a proxy reward model and an ensemble trained on 1,000 gold-labelled pairs,
/// best-of-n, PPO and GRPO at several KL coefficients, DPO at several β.
pub const DEMO: &str = include_str!("../../configs/frontier-demo.toml");

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrontierConfig {
    /// The base policy and reference: `builtin` or a model file.
    #[serde(default = "builtin")]
    pub model: String,
    #[serde(default)]
    pub seed: u64,
    /// Training and evaluation prompts: `world`, `sums` or a JSONL file of {"prompt"}.
    #[serde(default = "world")]
    pub prompts: String,
    /// The true reward (a reward spec: `gold`, `lexicon:PATH`, …).
    #[serde(default = "gold")]
    pub gold: String,
    #[serde(default)]
    pub eval: EvalSettings,
    #[serde(default)]
    pub preferences: PreferenceSettings,
    /// Proxy rewards, each trained on the preference pairs or read from a file.
    #[serde(default, rename = "proxy")]
    pub proxies: Vec<ProxySettings>,
    pub best_of_n: Option<BestOfNSettings>,
    pub ppo: Option<RlSettings>,
    pub grpo: Option<RlSettings>,
    /// GRPO-S: GRPO with advantages scaled by each prompt's difficulty (the `sums` prompts
    /// carry theirs).
    pub grpo_s: Option<RlSettings>,
    pub dpo: Option<DpoSettings>,
    /// RTO: PPO on the first DPO policy's token rewards plus the proxy's score.
    pub rto: Option<RlSettings>,
    pub decoding: Option<DecodingSettings>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalSettings {
    /// Held-out prompts each policy is measured on.
    pub prompts: usize,
    pub samples_per_prompt: usize,
    pub max_new_tokens: usize,
}

impl Default for EvalSettings {
    fn default() -> Self {
        Self {
            prompts: 64,
            samples_per_prompt: 2,
            max_new_tokens: 32,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PreferenceSettings {
    /// Prompts whose two samples from the base policy the gold reward labels (ties dropped).
    pub prompts: usize,
    pub max_new_tokens: usize,
}

impl Default for PreferenceSettings {
    fn default() -> Self {
        Self {
            prompts: 1000,
            max_new_tokens: 32,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AggregationName {
    Mean,
    Min,
    MeanMinusStd,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxySettings {
    pub name: String,
    /// An existing reward model file; without it the proxy is trained here.
    pub path: Option<String>,
    #[serde(default = "one")]
    pub members: usize,
    #[serde(default = "yes")]
    pub shared_trunk: bool,
    #[serde(default = "mean")]
    pub aggregation: AggregationName,
    /// λ of mean − λ·std.
    #[serde(default = "one_f")]
    pub lambda: f64,
    /// Use only the first `pairs` labelled pairs (a weaker proxy over-optimises sooner).
    pub pairs: Option<usize>,
    /// Overrides of the registry's `rm` defaults (steps, lr, batch size, warmup).
    pub steps: Option<usize>,
    pub lr: Option<f64>,
    pub batch_size: Option<usize>,
    pub warmup: Option<usize>,
}

impl ProxySettings {
    pub fn aggregation(&self) -> Aggregation {
        match self.aggregation {
            AggregationName::Mean => Aggregation::Mean,
            AggregationName::Min => Aggregation::Min,
            AggregationName::MeanMinusStd => Aggregation::MeanMinusStd {
                lambda: self.lambda,
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BestOfNSettings {
    #[serde(default = "bon_ns")]
    pub ns: Vec<usize>,
    /// The selecting proxy's name (default: the first). Best-of-n is measured on the
    /// evaluation prompts, like every other policy.
    pub proxy: Option<String>,
    /// Samples per prompt giving the reward's CDF under π_ref (for the measured KL).
    #[serde(default = "bon_pool")]
    pub pool: usize,
    /// Best-of-n draws per prompt and n.
    #[serde(default = "bon_groups")]
    pub groups: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RlSettings {
    /// One run per KL coefficient and proxy.
    pub kl_coefs: Vec<f64>,
    /// The proxies optimised (default: the first).
    #[serde(default)]
    pub proxies: Vec<String>,
    /// Measure KL, proxy and gold on the evaluation prompts every this many steps.
    #[serde(default = "rl_eval_every")]
    pub eval_every: usize,
    /// The method's own settings over its registry defaults: prompts_per_step, group_size
    /// (GRPO's G; PPO takes one sample per prompt and has none), epochs.
    pub prompts_per_step: Option<usize>,
    pub group_size: Option<usize>,
    pub epochs: Option<usize>,
    /// PPO: adapt β towards this KL.
    pub target_kl: Option<f64>,
    /// InfAlign: beside the runs on the proxy itself, runs on the proxy calibrated under the
    /// base's samples and transformed, one per entry (`calibrate`, `bon:T`, `won:T`), with
    /// `calibration_samples` base samples per prompt (default 16).
    #[serde(default)]
    pub infalign: Vec<String>,
    pub calibration_samples: Option<usize>,
    /// Overrides of the registry's defaults (steps, lr, samples per minibatch, warmup).
    pub steps: Option<usize>,
    pub lr: Option<f64>,
    pub batch_size: Option<usize>,
    pub warmup: Option<usize>,
}

impl RlSettings {
    /// The settings given, by their registry names (β is each run's own).
    pub fn settings(&self, kl_coef: f64) -> Settings {
        let mut settings = Settings::new().with(BETA.name, kl_coef);
        for (name, value) in [
            ("prompts_per_step", self.prompts_per_step),
            ("group_size", self.group_size),
            ("epochs", self.epochs),
        ] {
            if let Some(value) = value {
                settings.insert(name, value as f64);
            }
        }
        settings
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpoSettings {
    pub betas: Vec<f64>,
    /// Offline methods on pairs, one run per β each (default: dpo alone). `dpo` comes first:
    /// the first DPO policy is AlignDistil's teacher (at its β), RTO's reward and Transfer Q*'s
    /// baseline.
    #[serde(default = "dpo_methods")]
    pub methods: Vec<String>,
    /// The proxy the trained policies are measured with (default: the first).
    pub proxy: Option<String>,
    /// Measure KL, proxy and gold on the evaluation prompts every this many steps.
    #[serde(default = "dpo_eval_every")]
    pub eval_every: usize,
    /// Overrides of the registry's `dpo` defaults (steps, lr, batch size, warmup).
    pub steps: Option<usize>,
    pub lr: Option<f64>,
    pub batch_size: Option<usize>,
    pub warmup: Option<usize>,
}

/// Decoding-time methods on the same frontier: the base steered as it decodes, no training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecodingSettings {
    /// Methods by their registry names (`alignlab methods`): one run each through the weights.
    pub methods: Vec<String>,
    /// The reward weights w = 1/β each method decodes at, a point each.
    pub weights: Vec<f64>,
    /// The proxy that steers (default: the first). GenARM steers with its own reward model,
    /// trained here on the same pairs; Transfer Q* rolls out the first DPO policy.
    pub proxy: Option<String>,
    /// Over each method's registry defaults, where the method has the setting.
    pub candidates: Option<usize>,
    pub rollouts: Option<usize>,
    pub horizon: Option<usize>,
    /// GenARM's reward model: steps of `arm` on the training pairs (default: the registry's).
    pub arm_steps: Option<usize>,
}

impl DecodingSettings {
    /// The settings of `spec` at `weight`: those given that it declares.
    pub fn settings(&self, spec: &DecodingSpec, weight: f64) -> Settings {
        let mut settings = Settings::new().with("weight", weight);
        for (name, value) in [
            ("candidates", self.candidates),
            ("rollouts", self.rollouts),
            ("horizon", self.horizon),
        ] {
            if let (Some(value), Some(_)) = (value, spec.declared(name)) {
                settings.insert(name, value as f64);
            }
        }
        settings
    }
}

fn builtin() -> String {
    crate::policy::BUILTIN.into()
}
fn world() -> String {
    "world".into()
}
fn gold() -> String {
    "gold".into()
}
fn one() -> usize {
    1
}
fn one_f() -> f64 {
    1.0
}
fn yes() -> bool {
    true
}
fn mean() -> AggregationName {
    AggregationName::Mean
}
fn bon_ns() -> Vec<usize> {
    vec![1, 2, 4, 8, 16, 32, 64]
}
fn bon_pool() -> usize {
    256
}
fn bon_groups() -> usize {
    8
}
fn dpo_methods() -> Vec<String> {
    vec!["dpo".into()]
}
fn rl_eval_every() -> usize {
    5
}
fn dpo_eval_every() -> usize {
    10
}

/// The four training keys every section shares, as overrides of the registry's defaults.
macro_rules! training_overrides {
    ($($section:ty),*) => {$(
        impl $section {
            pub fn training(&self) -> TrainingOverrides {
                TrainingOverrides {
                    lr: self.lr,
                    steps: self.steps,
                    batch_size: self.batch_size,
                    warmup: self.warmup,
                }
            }
        }
    )*};
}

training_overrides!(ProxySettings, RlSettings, DpoSettings);

impl FrontierConfig {
    /// Parses TOML; `source` names the file in errors (which carry line and column).
    pub fn parse(text: &str, source: &str) -> Result<Self> {
        let config: Self =
            toml::from_str(text).map_err(|e| Error::Input(format!("{source}: {e}")))?;
        config.check(source)?;
        Ok(config)
    }

    fn check(&self, source: &str) -> Result<()> {
        let names: Vec<&str> = self.proxies.iter().map(|p| p.name.as_str()).collect();
        let known = |name: &str, field: &str| -> Result<()> {
            if names.contains(&name) {
                Ok(())
            } else {
                Err(Error::Input(format!(
                    "{source}: {field} names proxy `{name}`, but the [[proxy]] entries are {names:?}"
                )))
            }
        };
        let wants_proxy = self.best_of_n.is_some()
            || self.ppo.is_some()
            || self.grpo.is_some()
            || self.grpo_s.is_some()
            || self.dpo.is_some()
            || self.rto.is_some()
            || self.decoding.is_some();
        if wants_proxy && names.is_empty() {
            return Err(Error::Input(format!(
                "{source}: the sweep needs at least one [[proxy]]"
            )));
        }
        for (i, name) in names.iter().enumerate() {
            if names[..i].contains(name) {
                return Err(Error::Input(format!(
                    "{source}: two proxies are named `{name}`"
                )));
            }
        }
        if let Some(bon) = &self.best_of_n {
            if let Some(p) = &bon.proxy {
                known(p, "best_of_n.proxy")?;
            }
            if bon.ns.is_empty() || bon.ns.contains(&0) {
                return Err(Error::Input(format!(
                    "{source}: best_of_n.ns must be positive numbers"
                )));
            }
        }
        if self.rto.is_some() && self.dpo.is_none() {
            return Err(Error::Input(format!(
                "{source}: [rto] rewards tokens with the first DPO policy's implicit reward; \
                 add a [dpo] section"
            )));
        }
        for (section, rl) in [
            ("ppo", &self.ppo),
            ("grpo", &self.grpo),
            ("grpo_s", &self.grpo_s),
            ("rto", &self.rto),
        ] {
            if let Some(rl) = rl {
                for p in &rl.proxies {
                    known(p, &format!("{section}.proxies"))?;
                }
                if rl.kl_coefs.is_empty() || rl.kl_coefs.iter().any(|k| k.is_nan() || *k < 0.0) {
                    return Err(Error::Input(format!(
                        "{source}: {section}.kl_coefs must be a non-empty list of numbers ≥ 0"
                    )));
                }
                for transform in &rl.infalign {
                    Transform::parse(transform)
                        .map_err(|e| Error::Input(format!("{source}: {section}.infalign: {e}")))?;
                }
                if rl.eval_every == 0 || rl.steps == Some(0) {
                    return Err(Error::Input(format!(
                        "{source}: {section}.steps and {section}.eval_every must be positive"
                    )));
                }
            }
        }
        if let Some(steer) = &self.decoding {
            self.check_decoding(steer, source, &known)?;
        }
        if let Some(dpo) = &self.dpo {
            if let Some(p) = &dpo.proxy {
                known(p, "dpo.proxy")?;
            }
            if dpo.betas.is_empty() || dpo.betas.iter().any(|b| b.is_nan() || *b <= 0.0) {
                return Err(Error::Input(format!(
                    "{source}: dpo.betas must be a non-empty list of numbers > 0"
                )));
            }
            if dpo.methods.first().map(String::as_str) != Some("dpo") {
                return Err(Error::Input(format!(
                    "{source}: dpo.methods must start with \"dpo\" (the first DPO policy is \
                     AlignDistil's teacher, RTO's reward and Transfer Q*'s baseline), got {:?}",
                    dpo.methods
                )));
            }
            for name in &dpo.methods {
                let pairs = crate::methods::find(name)
                    .ok()
                    .and_then(|spec| PreferenceLoss::from_spec(spec, &Settings::new()))
                    .and_then(Result::ok)
                    .is_some_and(|loss| loss.data_shape() == DataShape::Pairs);
                if !pairs {
                    return Err(Error::Input(format!(
                        "{source}: dpo.methods: `{name}` is no offline method on pairs \
                         (`alignlab methods` lists them)"
                    )));
                }
            }
            if dpo.eval_every == 0 || dpo.steps == Some(0) {
                return Err(Error::Input(format!(
                    "{source}: dpo.steps and dpo.eval_every must be positive"
                )));
            }
        }
        Ok(())
    }

    fn check_decoding(
        &self,
        steer: &DecodingSettings,
        source: &str,
        known: &dyn Fn(&str, &str) -> Result<()>,
    ) -> Result<()> {
        if let Some(p) = &steer.proxy {
            known(p, "decoding.proxy")?;
        }
        if steer.methods.is_empty() || steer.weights.is_empty() {
            return Err(Error::Input(format!(
                "{source}: decoding.methods and decoding.weights must be non-empty lists"
            )));
        }
        if let Some(w) = steer.weights.iter().find(|w| !w.is_finite() || **w < 0.0) {
            return Err(Error::Input(format!(
                "{source}: decoding.weights must be finite numbers ≥ 0, got {w}"
            )));
        }
        for name in &steer.methods {
            let spec = decoding::find(name)
                .map_err(|e| Error::Input(format!("{source}: decoding.methods: {e}")))?;
            if spec.models == ExtraModels::Baseline && self.dpo.is_none() {
                return Err(Error::Input(format!(
                    "{source}: decoding.methods: {name} rolls out the sweep's first DPO policy; \
                     add a [dpo] section"
                )));
            }
            for &weight in &steer.weights {
                Guide::new(spec, &steer.settings(spec, weight))
                    .map_err(|e| Error::Input(format!("{source}: decoding: {e}")))?;
            }
        }
        Ok(())
    }

    pub fn proxy(&self, name: Option<&str>) -> &ProxySettings {
        name.and_then(|n| self.proxies.iter().find(|p| p.name == n))
            .unwrap_or(&self.proxies[0])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_config_parses() {
        let c = FrontierConfig::parse(DEMO, "demo").unwrap();
        assert!(!c.proxies.is_empty());
        assert!(c.best_of_n.is_some());
    }

    #[test]
    fn mistakes_name_the_field_and_place() {
        let e = FrontierConfig::parse("seed = 1\nbogus = 2\n", "f.toml").unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("f.toml") && text.contains("bogus") && text.contains("line 2"),
            "{text}"
        );
        let e = FrontierConfig::parse(
            "[[proxy]]\nname = \"a\"\n[ppo]\nkl_coefs = [0.1]\nproxies = [\"b\"]\n",
            "f.toml",
        )
        .unwrap_err();
        assert!(e.to_string().contains("ppo.proxies names proxy `b`"), "{e}");
        let e = FrontierConfig::parse("[dpo]\nbetas = [0.1]\n", "f.toml").unwrap_err();
        assert!(e.to_string().contains("at least one [[proxy]]"), "{e}");
        let proxy = "[[proxy]]\nname = \"a\"\n[dpo]\nbetas = [0.1]\n";
        let e = FrontierConfig::parse(&format!("{proxy}methods = [\"sparsepo\"]\n"), "f.toml")
            .unwrap_err();
        assert!(e.to_string().contains("must start with \"dpo\""), "{e}");
        for wrong in ["kto", "ppo", "dpoo"] {
            let e = FrontierConfig::parse(
                &format!("{proxy}methods = [\"dpo\", \"{wrong}\"]\n"),
                "f.toml",
            )
            .unwrap_err();
            assert!(
                e.to_string()
                    .contains(&format!("`{wrong}` is no offline method on pairs")),
                "{e}"
            );
        }
    }

    #[test]
    fn the_decoding_config_parses_and_its_mistakes_are_named() {
        let text = include_str!("../../configs/frontier-decoding.toml");
        let c = FrontierConfig::parse(text, "decoding").unwrap();
        let steer = c.decoding.as_ref().unwrap();
        // Each method gets the settings it declares: ARGS has no horizon.
        let args = steer.settings(&decoding::ARGS, 2.0);
        assert_eq!(
            args,
            Settings::new().with("weight", 2.0).with("candidates", 4.0)
        );
        let proxy = "[[proxy]]\nname = \"rm\"\n";
        for (section, why) in [
            (
                "[decoding]\nmethods = [\"argz\"]\nweights = [1]\n",
                "f.toml: decoding.methods: unknown decoding method `argz`",
            ),
            (
                "[decoding]\nmethods = [\"transfer-q\"]\nweights = [1]\n",
                "transfer-q rolls out the sweep's first DPO policy; add a [dpo] section",
            ),
            (
                "[decoding]\nmethods = [\"cd\"]\nweights = [-1]\n",
                "decoding.weights must be finite numbers ≥ 0, got -1",
            ),
            (
                "[decoding]\nmethods = [\"args\"]\nweights = [1]\ncandidates = 0\n",
                "args: setting `candidates` must be at least 1",
            ),
        ] {
            let e = FrontierConfig::parse(&format!("{proxy}{section}"), "f.toml").unwrap_err();
            assert!(e.to_string().contains(why), "{e}");
        }
    }
}

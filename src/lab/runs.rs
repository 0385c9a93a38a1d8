//! Runs on the policy from the base: an online method optimising the reward model, or a
//! DPO-family loss on the labels, measured every few steps; best-of-n from the base; and the
//! base steered at decoding time.

use crate::backend::AutodiffBackend;
use burn::module::AutodiffModule;
use serde::{Deserialize, Serialize};

use super::Lab;
use crate::algo::best_of_n::BestOfNPoint;
use crate::algo::preference::{DataShape, PreferenceConfig, PreferenceData, PreferenceLoss};
use crate::algo::spec::{DeclaresSettings, MethodKind, Settings, TrainingOverrides, BETA};
use crate::dataset::tokenize_unpaired;
use crate::decoding::{self, ExtraModels, Guide};
use crate::error::{Error, Result};
use crate::frontier::measure::FrontierPoint;
use crate::io::prefs::{PreferencePair, UnpairedExample};
use crate::methods;
use crate::metrics::Metrics;
use crate::model::{Llama, RewardEnsemble, RewardModel};
use crate::run::best_of_n::{self, BestOfNPlan};
use crate::run::preference::PreferenceRun;
use crate::run::{OnlineAlgorithm, OnlineRun, OnlineRunConfig};
use crate::throughput::{StepSpeed, Stopwatch};

/// The DPO family's learning rate in the lab when a run names none. The registry's 1e-3 is tuned
/// for the CLI's thousands of pairs; on the few dozen labels of a class, at β = 0.1, it reached
/// KL 9–17 nats within ten steps (27 in six on the page). At 5e-4 KL grows steadily over the
/// page's 20 steps (40 gold labels, three seeds: 1–5 nats after 6 steps, 3–10 after 20), as
/// DPO is known to behave; `tests/native/lab.rs` checks it.
pub const LAB_PREFERENCE_LR: f64 = 5e-4;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSettings {
    /// An online method (`ppo`, `grpo`, `dr-grpo`, `rloo`, `reinforce-pp`, `raft`) optimising
    /// the reward model, or a DPO-family loss (`dpo`, `ipo`, `kto`, …) on the labels.
    pub method: String,
    /// β: the KL coefficient of online methods, the DPO family's β (methods without one, RAFT,
    /// ignore it).
    pub kl_coef: f64,
    pub steps: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
    /// Measure KL, proxy and gold every this many steps.
    #[serde(default = "default_eval_every")]
    pub eval_every: usize,
    /// The method's own settings by their registry names (e.g. `group_size`), over its defaults
    /// (last: a TOML table follows the plain keys).
    #[serde(default)]
    pub settings: Settings,
}

fn default_eval_every() -> usize {
    2
}

#[derive(Debug, Clone, Serialize)]
pub struct RunProgress {
    pub name: String,
    pub step: usize,
    pub total_steps: usize,
    pub metrics: Metrics,
    /// Measured this step (every `eval_every` steps and at the last).
    pub point: Option<FrontierPoint>,
    pub done: bool,
    /// What the update cost on the backend in use (not the measurement); an experiment's log
    /// leaves it out (it does not reproduce).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speed: Option<StepSpeed>,
}

pub(super) struct Preference<B: AutodiffBackend> {
    policy: Option<Llama<B>>,
    run: PreferenceRun<B>,
}

pub(super) enum Method<B: AutodiffBackend> {
    Online(Box<OnlineRun<B>>),
    Preference(Box<Preference<B>>),
}

pub(super) struct Run<B: AutodiffBackend> {
    pub(super) name: String,
    method: Method<B>,
    pub(super) step: usize,
    total_steps: usize,
    eval_every: usize,
}

impl<B: AutodiffBackend> Lab<B>
where
    Llama<B>: AutodiffModule<B, InnerModule = Llama<B::InnerBackend>>,
    RewardModel<B>: AutodiffModule<B, InnerModule = RewardModel<B::InnerBackend>>,
    RewardEnsemble<B>: AutodiffModule<B, InnerModule = RewardEnsemble<B::InnerBackend>>,
{
    /// Starts a run from the base policy; returns the base policy's point (step 0).
    pub async fn run_start(&mut self, settings: &RunSettings) -> Result<FrontierPoint> {
        if settings.steps == 0 || settings.eval_every == 0 {
            return Err(Error::Input(
                "run: steps and eval_every must be at least 1".into(),
            ));
        }
        if !(settings.kl_coef.is_finite() && settings.kl_coef >= 0.0) {
            return Err(Error::Input(format!(
                "run: the KL coefficient must be finite and ≥ 0, got {}",
                settings.kl_coef
            )));
        }
        let spec = methods::find(&settings.method)?;
        let mut method_settings = settings.settings.clone();
        if spec.setting(BETA.name).is_some() {
            method_settings.insert(BETA.name, settings.kl_coef);
        }
        let lab_lr = match spec.kind {
            MethodKind::Preference(_) => Some(LAB_PREFERENCE_LR),
            _ => None,
        };
        let training = TrainingOverrides {
            lr: settings.lr.or(lab_lr),
            steps: Some(settings.steps),
            batch_size: None,
            warmup: None,
        };
        let method = match spec.kind {
            MethodKind::Preference(_) => {
                let loss = PreferenceLoss::from_spec(spec, &method_settings)
                    .expect("the registry's preference methods are the loss list's")?;
                Method::Preference(Box::new(
                    self.preference_run(loss, &method_settings, &training)
                        .await?,
                ))
            }
            MethodKind::Online => {
                let algorithm = OnlineAlgorithm::parse(spec.name)?;
                if self.proxy.is_empty() {
                    return Err(Error::LabState(format!(
                        "{} optimises the reward model: train one on your labels first",
                        algorithm.name()
                    )));
                }
                let config = OnlineRunConfig::new(
                    algorithm,
                    &method_settings,
                    &training,
                    self.sampling(0),
                    self.config.seed,
                )?;
                Method::Online(Box::new(OnlineRun::new(self.base.clone(), config)))
            }
            MethodKind::Supervised | MethodKind::RewardModel => {
                return Err(Error::Input(format!(
                    "{} is not a run on the policy: the page trains reward models with \"Train reward model\"",
                    spec.name
                )))
            }
        };
        self.run = Some(Run {
            name: format!("{} β={}", settings.method, settings.kl_coef),
            method,
            step: 0,
            total_steps: settings.steps,
            eval_every: settings.eval_every,
        });
        self.policy = self.reference.clone();
        self.measure().await
    }

    async fn preference_run(
        &self,
        loss: PreferenceLoss,
        settings: &Settings,
        training: &TrainingOverrides,
    ) -> Result<Preference<B>> {
        if loss.name() == "aligndistil" {
            return Err(Error::LabState(
                "aligndistil distils from a DPO model the page has no way to name: run it with \
                 `alignlab train --method aligndistil --teacher DPO_MODEL`"
                    .into(),
            ));
        }
        let pairs: Vec<&PreferencePair> = self.pair_groups.iter().flatten().collect();
        if pairs.is_empty() {
            return Err(Error::LabState(format!(
                "{loss} learns from your labels: label some pairs (left or right) or rank some completions first"
            )));
        }
        let data = match loss.data_shape() {
            DataShape::Pairs | DataShape::Rankings => {
                PreferenceData::Ranked(self.tokenized(pairs.iter().copied())?)
            }
            DataShape::Unpaired => {
                let examples: Vec<UnpairedExample> = pairs
                    .iter()
                    .flat_map(|p| UnpairedExample::from_pair(p))
                    .collect();
                PreferenceData::Unpaired(
                    tokenize_unpaired(
                        &self.tokenizer,
                        &examples,
                        &self.length_limit(),
                        "labels",
                        true,
                    )?
                    .rows,
                )
            }
        };
        let spec = loss.spec();
        let config = PreferenceConfig {
            loss,
            beta: settings.value(spec, BETA.name),
            optim: training.optim(spec),
            batch_size: training.batch_size(spec),
            seed: self.config.seed,
        };
        Ok(Preference {
            policy: Some(self.base.clone()),
            run: PreferenceRun::new(&self.reference, data, config).await?,
        })
    }

    /// One update of the run; measures every `eval_every` steps and at the end.
    pub async fn run_step(&mut self) -> Result<RunProgress> {
        let run = self
            .run
            .as_mut()
            .ok_or_else(|| Error::LabState("start a run first".into()))?;
        if run.step >= run.total_steps {
            return Err(Error::LabState(format!(
                "run `{}` has finished its {} steps: start another",
                run.name, run.total_steps
            )));
        }
        let watch = Stopwatch::start();
        let metrics = match &mut run.method {
            Method::Online(online) => {
                online
                    .step(
                        &self.reference,
                        &self.tokenizer,
                        &self.prompts,
                        &self.proxy[0].1,
                        Some(&self.gold),
                    )
                    .await?
            }
            Method::Preference(p) => {
                let policy = p.policy.take().ok_or_else(|| {
                    Error::LabState("this run failed a step: start another".into())
                })?;
                let (policy, metrics) = p.run.step(policy).await?;
                p.policy = Some(policy);
                metrics
            }
        };
        let speed = watch.read();
        run.step += 1;
        self.policy = match &run.method {
            Method::Online(online) => online.policy().valid(),
            Method::Preference(p) => p.policy.as_ref().expect("set above").valid(),
        };
        let (name, step, total_steps) = (run.name.clone(), run.step, run.total_steps);
        let done = step >= total_steps;
        let point = if step % run.eval_every == 0 || done {
            Some(self.measure().await?)
        } else {
            None
        };
        Ok(RunProgress {
            name,
            step,
            total_steps,
            metrics,
            point,
            done,
            speed: Some(speed),
        })
    }

    /// Best-of-n from the base policy, selected by the reward model (or by the gold reward
    /// when none is trained), at every n of `ns`: analytic and measured KL, both rewards.
    pub async fn best_of_n(&self, ns: &[usize], prompts: usize) -> Result<Vec<BestOfNPoint>> {
        if ns.is_empty() || ns.contains(&0) || ns.len() > 12 || ns.iter().any(|&n| n > 256) {
            return Err(Error::Input(
                "best-of-n: give 1 to 12 values of n, each from 1 to 256".into(),
            ));
        }
        let selector = self.proxy.first().map_or(&self.gold, |(_, p)| p);
        let prompts = &self.eval_prompts[..prompts.clamp(1, self.eval_prompts.len())];
        let max_n = *ns.iter().max().expect("non-empty");
        let plan = BestOfNPlan {
            ns: ns.to_vec(),
            pool: (4 * max_n).max(32),
            groups: 2,
            sampling: self.sampling(self.config.seed.wrapping_add(50_000)),
        };
        best_of_n::measure(
            &self.reference,
            &self.tokenizer,
            prompts,
            selector,
            Some(&self.gold),
            &plan,
        )
        .await
    }

    /// The base steered as it decodes by `method` (a decoding-time method needing no model of
    /// its own: args, cd, deal) at reward weight `weight` = 1/β, with the reward model (the gold
    /// reward before one is trained); measured like a run's policy, with the tokens/s it costs.
    pub async fn steer(&self, method: &str, weight: f64) -> Result<FrontierPoint> {
        let spec = decoding::find(method)?;
        if spec.models != ExtraModels::None {
            return Err(Error::Input(format!(
                "{method} decodes with a model of its own; the page steers with args, cd or deal"
            )));
        }
        // Continuations cost a batch of generations per token: the page looks one short
        // continuation ahead of 4 candidates (the CLI's defaults: 4 of 8 tokens for each of 10).
        let mut settings = Settings::new().with("weight", weight);
        let looks_ahead = spec.declared("horizon").is_some();
        for (name, value) in [("candidates", 4.0), ("rollouts", 1.0), ("horizon", 3.0)] {
            if looks_ahead && spec.declared(name).is_some() {
                settings.insert(name, value);
            }
        }
        let guide = Guide::new(spec, &settings)?;
        let steer_by = self.proxy.first().map_or(&self.gold, |(_, p)| p);
        let evaluation = self.evaluation();
        let mut point = evaluation
            .measure_guided(spec, &guide, steer_by, &[])
            .await?;
        point.weight = Some(weight);
        Ok(point)
    }
}

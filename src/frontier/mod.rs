//! The KL–reward frontier: a sweep of best-of-n, PPO and GRPO at several KL coefficients and
//! DPO at several β from one base policy, each policy measured on the same held-out prompts —
//! KL(π‖π_ref) with a confidence interval, every proxy reward, and the gold reward — with Gao et
//! al.'s functional forms fitted to the gold reward. `report` renders it as JSON, CSV and HTML.

pub mod config;
pub mod fit;
#[cfg(not(target_arch = "wasm32"))]
pub mod report;

use std::collections::BTreeMap;

use burn::module::AutodiffModule;
use burn::tensor::backend::{AutodiffBackend, Backend};
use serde::{Deserialize, Serialize};

pub use config::FrontierConfig;
use fit::{Fit, FitForm};

use crate::algo::best_of_n::{self, BestOfNPoint};
use crate::algo::policy_gradient::PolicyGradientConfig;
use crate::algo::preference::{self, PreferenceConfig, PreferenceData, PreferenceLoss};
use crate::dataset::RankedSequences;
use crate::error::{Error, Result};
use crate::io::Tokenizer;
use crate::metrics::MeanCi;
use crate::model::{Llama, RewardEnsemble, RewardModel};
use crate::online::sequence_kl;
use crate::policy;
use crate::prompts::{self, PromptSet};
use crate::reward::source::RewardSource;
use crate::reward::train::{self as reward_train, RewardData, RewardTrainConfig};
use crate::reward::{spec, LearnedReward, RewardHeads};
use crate::rollout::collect;
use crate::run::{OnlineAlgorithm, OnlineRun, OnlineRunConfig};
use crate::sample::SamplingConfig;
use crate::train::OptimConfig;

/// One policy measured on the evaluation prompts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FrontierPoint {
    /// Training step (RL), or 0.
    pub step: usize,
    /// Σ_t log π/π_ref over sampled completions: the k1 estimate of the sequence KL.
    pub kl: MeanCi,
    pub sqrt_kl: f64,
    /// Every proxy's reward of the same samples, by name.
    pub proxies: BTreeMap<String, MeanCi>,
    pub gold: MeanCi,
    /// The first few samples, to read what the rewards reward.
    #[serde(default)]
    pub examples: Vec<Example>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Example {
    pub prompt: String,
    pub completion: String,
    pub gold: f32,
}

/// Samples kept per measured policy.
const EXAMPLES: usize = 3;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProxySummary {
    pub name: String,
    pub members: usize,
    pub aggregation: String,
    /// Pairs it was trained on (0 for a file).
    pub training_pairs: usize,
    /// Accuracy on held-out gold-labelled pairs (none without pairs).
    pub held_out_accuracy: Option<f64>,
    /// Each member's own held-out accuracy (ensembles).
    #[serde(default)]
    pub member_accuracy: Vec<f64>,
    pub held_out_pairs: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BestOfNResult {
    pub proxy: String,
    pub points: Vec<BestOfNPoint>,
    /// d(α − βd) fitted to the gold (and proxy) reward against d = √(analytic KL).
    pub gold_fit: Option<Fit>,
    pub proxy_fit: Option<Fit>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FrontierRun {
    /// e.g. `ppo β=0.01 rm`.
    pub name: String,
    pub method: String,
    /// The KL coefficient (PPO, GRPO); none for DPO, whose β vary along the curve.
    pub coef: Option<f64>,
    /// The proxy optimised (RL) or used to measure (DPO).
    pub proxy: String,
    /// From the base policy (step 0) on.
    pub points: Vec<FrontierPoint>,
    /// d(α − β ln d) fitted to the gold and proxy rewards against d = √KL.
    pub gold_fit: Option<Fit>,
    pub proxy_fit: Option<Fit>,
}

impl FrontierRun {
    /// The highest mean gold reward along the run and the last: their difference is the drop
    /// over-optimisation causes.
    pub fn gold_peak_and_final(&self) -> (f64, f64) {
        let peak = self
            .points
            .iter()
            .map(|p| p.gold.mean)
            .fold(f64::NEG_INFINITY, f64::max);
        (
            peak,
            self.points.last().map(|p| p.gold.mean).unwrap_or(f64::NAN),
        )
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FrontierReport {
    pub config: FrontierConfig,
    pub preference_pairs: usize,
    pub proxies: Vec<ProxySummary>,
    pub base: FrontierPoint,
    pub best_of_n: Option<BestOfNResult>,
    /// PPO and GRPO runs (one per KL coefficient and proxy), then DPO (one per β, together
    /// under one name).
    pub runs: Vec<FrontierRun>,
}

impl FrontierReport {
    /// The base policy, then each run's last policy, by name.
    pub fn final_points(&self) -> impl Iterator<Item = (&str, &FrontierPoint)> {
        std::iter::once(("base", &self.base)).chain(
            self.runs
                .iter()
                .map(|r| (r.name.as_str(), r.points.last().expect("runs have points"))),
        )
    }
}

/// What the sweep reports as it goes.
pub trait Log {
    fn line(&mut self, text: &str);
}

impl<F: FnMut(&str)> Log for F {
    fn line(&mut self, text: &str) {
        self(text)
    }
}

/// How every policy of a sweep (or of the page's runs) is measured: samples on the same held-out
/// prompts, their KL to the base, every proxy's reward and the gold reward.
pub struct Evaluation<'a, B: Backend> {
    pub base: &'a Llama<B>,
    pub tokenizer: &'a Tokenizer,
    pub eval_prompts: &'a [String],
    pub eval_sampling: SamplingConfig,
    pub samples_per_prompt: usize,
    pub proxies: &'a [(String, RewardSource<B>)],
    pub gold: &'a RewardSource<B>,
}

impl<B: Backend> Evaluation<'_, B> {
    pub async fn measure(&self, policy: &Llama<B>, step: usize) -> Result<FrontierPoint> {
        let rollout = collect(
            policy,
            self.base,
            self.tokenizer,
            self.eval_prompts,
            self.samples_per_prompt,
            &self.eval_sampling,
            self.gold,
        )
        .await?;
        let kl = MeanCi::of(&sequence_kl(&rollout));
        let mut proxies = BTreeMap::new();
        for (name, proxy) in self.proxies {
            let values: Vec<f64> = rollout
                .score_with(proxy)
                .await?
                .into_iter()
                .map(f64::from)
                .collect();
            proxies.insert(name.clone(), MeanCi::of(&values));
        }
        let gold: Vec<f64> = rollout.rewards.iter().map(|&r| r as f64).collect();
        // One sample from each of the first prompts.
        let examples = (0..rollout.len())
            .step_by(self.samples_per_prompt.max(1))
            .take(EXAMPLES)
            .map(|i| Example {
                prompt: rollout.prompts[i].clone(),
                completion: rollout.completions[i].clone(),
                gold: rollout.rewards[i],
            })
            .collect();
        Ok(FrontierPoint {
            step,
            kl,
            sqrt_kl: kl.mean.max(0.0).sqrt(),
            proxies,
            gold: MeanCi::of(&gold),
            examples,
        })
    }

    fn proxy(&self, name: &str) -> &RewardSource<B> {
        &self
            .proxies
            .iter()
            .find(|(n, _)| n == name)
            .expect("checked names")
            .1
    }
}

/// Two samples per prompt from the base policy, ordered by the gold reward (ties dropped).
async fn labelled_pairs<B: Backend>(
    base: &Llama<B>,
    tokenizer: &Tokenizer,
    prompts: &[String],
    max_new_tokens: usize,
    gold: &RewardSource<B>,
    seed: u64,
) -> Result<Vec<RankedSequences>> {
    let mut pairs = Vec::new();
    for (chunk_index, chunk) in prompts.chunks(64).enumerate() {
        let sampling = SamplingConfig {
            max_new_tokens,
            seed: seed.wrapping_mul(7_919).wrapping_add(chunk_index as u64),
            ..Default::default()
        };
        let rollout = collect(base, base, tokenizer, chunk, 2, &sampling, gold).await?;
        for i in (0..rollout.len()).step_by(2) {
            let (a, b) = (&rollout.sequences[i], &rollout.sequences[i + 1]);
            let (ra, rb) = (rollout.rewards[i], rollout.rewards[i + 1]);
            if ra == rb || a.1 == b.1 {
                continue;
            }
            let (better, worse, scores) = if ra > rb {
                (a, b, [ra, rb])
            } else {
                (b, a, [rb, ra])
            };
            pairs.push(RankedSequences {
                index: pairs.len(),
                prompt: better.0.clone(),
                completions: vec![better.1.clone(), worse.1.clone()],
                scores: Some(scores.iter().map(|&s| s as f64).collect()),
            });
        }
    }
    Ok(pairs)
}

/// The held-out prompts come first, then the training prompts.
fn split_prompts(config: &FrontierConfig) -> Result<(PromptSet, Vec<String>, Vec<String>)> {
    let eval = config.eval.prompts;
    let train = config.preferences.prompts.max(2_000);
    let set = prompts::load(&config.prompts, eval + train, config.seed)?;
    if set.prompts.len() <= eval {
        return Err(Error::Input(format!(
            "prompts `{}`: {} prompts, but eval.prompts takes {eval} and training needs more",
            config.prompts,
            set.prompts.len()
        )));
    }
    let eval_prompts = set.prompts[..eval].to_vec();
    let train_prompts = set.prompts[eval..].to_vec();
    Ok((set, eval_prompts, train_prompts))
}

/// Runs the whole sweep of `config`.
pub async fn run<B: AutodiffBackend>(
    config: &FrontierConfig,
    device: &B::Device,
    log: &mut dyn Log,
) -> Result<FrontierReport>
where
    Llama<B>: AutodiffModule<B, InnerModule = Llama<B::InnerBackend>>,
    RewardModel<B>: AutodiffModule<B, InnerModule = RewardModel<B::InnerBackend>>,
    RewardEnsemble<B>: AutodiffModule<B, InnerModule = RewardEnsemble<B::InnerBackend>>,
{
    let (base, tokenizer) = policy::load::<B>(&config.model, None, device)?;
    let reference = base.valid();
    let (set, eval_prompts, train_prompts) = split_prompts(config)?;
    let train_set = PromptSet {
        prompts: train_prompts.clone(),
        answers: set.answers.clone(),
    };
    let gold = spec::parse::<B::InnerBackend>(&config.gold, &set.answers, device)?;

    // Preference pairs: the proxies and DPO learn from them; a tenth is held out.
    let pref_prompts = &train_prompts[..config.preferences.prompts.min(train_prompts.len())];
    let mut pairs = Vec::new();
    let needs_pairs = config.dpo.is_some() || config.proxies.iter().any(|p| p.path.is_none());
    if needs_pairs {
        log.line(&format!(
            "labelling two samples of {} prompts with the gold reward",
            pref_prompts.len()
        ));
        pairs = labelled_pairs(
            &reference,
            &tokenizer,
            pref_prompts,
            config.preferences.max_new_tokens,
            &gold,
            config.seed,
        )
        .await?;
        if pairs.len() < 10 {
            return Err(Error::Input(format!(
                "only {} labelled pairs (the gold reward tied the rest): raise preferences.prompts",
                pairs.len()
            )));
        }
    }
    let held_out_count = pairs.len() / 10;
    let (held_out, train_pairs) = pairs.split_at(held_out_count);

    let mut proxies: Vec<(String, RewardSource<B::InnerBackend>)> = Vec::new();
    let mut summaries = Vec::new();
    for p in &config.proxies {
        let (reward, training_pairs) = match &p.path {
            Some(path) => (
                LearnedReward::<B::InnerBackend>::load(std::path::Path::new(path), device)?.0,
                0,
            ),
            None => {
                let used = &train_pairs[..p.pairs.unwrap_or(usize::MAX).min(train_pairs.len())];
                log.line(&format!(
                    "training proxy `{}` ({} member(s), {:?}) on {} pairs, {} steps",
                    p.name,
                    p.members,
                    p.aggregation,
                    used.len(),
                    p.steps
                ));
                let heads = RewardHeads::Ensemble {
                    members: p.members.max(1),
                    shared_trunk: p.shared_trunk,
                    aggregation: p.aggregation(),
                    member_scale: Vec::new(),
                };
                let fresh = LearnedReward::from_policy(base.clone(), heads, config.seed + 17)?;
                let rm_config = RewardTrainConfig {
                    optim: OptimConfig {
                        lr: p.lr,
                        warmup_steps: p.warmup,
                        total_steps: p.steps,
                        ..Default::default()
                    },
                    batch_size: p.batch_size,
                    seed: config.seed,
                    margin_from_scores: false,
                };
                let data = RewardData::Ranked(used.to_vec());
                let trained = reward_train::train(fresh, &data, &rm_config, |_| {}).await?;
                (
                    LearnedReward {
                        ensemble: trained.ensemble.valid(),
                        heads: trained.heads,
                    },
                    used.len(),
                )
            }
        };
        let eval = if held_out.is_empty() {
            None
        } else {
            Some(reward_train::evaluate_rankings(&reward, held_out, 32).await?)
        };
        let summary = ProxySummary {
            name: p.name.clone(),
            members: reward.heads.outputs(),
            aggregation: format!("{:?}", p.aggregation()),
            training_pairs,
            held_out_accuracy: eval.as_ref().map(|e| e.accuracy),
            member_accuracy: eval
                .as_ref()
                .map(|e| e.member_accuracy.clone())
                .unwrap_or_default(),
            held_out_pairs: held_out.len(),
        };
        if let Some(accuracy) = summary.held_out_accuracy {
            log.line(&format!(
                "proxy `{}`: held-out accuracy {accuracy:.3} on {} pairs (members {:.3?})",
                summary.name, summary.held_out_pairs, summary.member_accuracy
            ));
        }
        summaries.push(summary);
        proxies.push((p.name.clone(), RewardSource::Learned(Box::new(reward))));
    }

    let setup = Evaluation {
        base: &reference,
        tokenizer: &tokenizer,
        eval_prompts: &eval_prompts,
        eval_sampling: SamplingConfig {
            max_new_tokens: config.eval.max_new_tokens,
            seed: config.seed.wrapping_add(90_001),
            ..Default::default()
        },
        samples_per_prompt: config.eval.samples_per_prompt,
        proxies: &proxies,
        gold: &gold,
    };
    let base_point = setup.measure(&reference, 0).await?;
    log.line(&format!(
        "base policy: gold {}, KL {:.4}",
        base_point.gold, base_point.kl.mean
    ));

    let best_of_n = match &config.best_of_n {
        None => None,
        Some(bon) => {
            let proxy_name = config.proxy(bon.proxy.as_deref()).name.clone();
            log.line(&format!(
                "best-of-n for n in {:?} selecting by `{proxy_name}`",
                bon.ns
            ));
            let prompts = &eval_prompts[..bon.prompts.min(eval_prompts.len())];
            let points = best_of_n::measure(
                &reference,
                &tokenizer,
                prompts,
                setup.proxy(&proxy_name),
                Some(&gold),
                &bon.ns,
                bon.pool,
                bon.groups,
                &SamplingConfig {
                    max_new_tokens: config.eval.max_new_tokens,
                    seed: config.seed.wrapping_add(50_000),
                    ..Default::default()
                },
            )
            .await?;
            let base_of = |f: &dyn Fn(&BestOfNPoint) -> f64| {
                points.iter().find(|p| p.n == 1).map(f).unwrap_or(0.0)
            };
            let gold_of = |p: &BestOfNPoint| p.monitor_reward.map(|m| m.mean).unwrap_or(f64::NAN);
            let proxy_of = |p: &BestOfNPoint| p.reward.mean;
            let curve = |f: &dyn Fn(&BestOfNPoint) -> f64| -> Vec<(f64, f64)> {
                points
                    .iter()
                    .map(|p| (p.analytic_kl.sqrt(), f(p)))
                    .collect()
            };
            for p in &points {
                log.line(&format!(
                    "  n={:<3} KL analytic {:.3} measured {} proxy {:.3} gold {:.3}",
                    p.n,
                    p.analytic_kl,
                    p.estimated_kl,
                    p.reward.mean,
                    gold_of(p)
                ));
            }
            Some(BestOfNResult {
                proxy: proxy_name,
                gold_fit: Fit::of(FitForm::BestOfN, base_of(&gold_of), &curve(&gold_of)),
                proxy_fit: Fit::of(FitForm::BestOfN, base_of(&proxy_of), &curve(&proxy_of)),
                points,
            })
        }
    };

    let mut runs = Vec::new();
    for (algorithm, settings) in [
        (OnlineAlgorithm::Ppo, &config.ppo),
        (OnlineAlgorithm::Grpo, &config.grpo),
    ] {
        let Some(rl) = settings else { continue };
        let proxy_names: Vec<String> = if rl.proxies.is_empty() {
            vec![config.proxies[0].name.clone()]
        } else {
            rl.proxies.clone()
        };
        for proxy_name in &proxy_names {
            for &kl_coef in &rl.kl_coefs {
                let name = format!("{} β={kl_coef} {proxy_name}", algorithm.name());
                log.line(&format!("{name}: {} steps", rl.steps));
                let run_config = OnlineRunConfig {
                    algorithm,
                    kl_coef,
                    target_kl: rl.target_kl,
                    group_size: rl.group_size,
                    prompts_per_step: rl.prompts_per_step,
                    sampling: SamplingConfig {
                        max_new_tokens: config.eval.max_new_tokens,
                        ..Default::default()
                    },
                    policy_gradient: PolicyGradientConfig {
                        epochs: rl.epochs,
                        minibatch_size: rl.batch_size,
                        ..Default::default()
                    },
                    optim: OptimConfig {
                        lr: rl.lr,
                        warmup_steps: 2,
                        total_steps: rl.steps,
                        ..Default::default()
                    },
                    seed: config.seed,
                };
                let mut online = OnlineRun::new(base.clone(), run_config);
                let mut points = vec![base_point.clone()];
                while online.step < rl.steps {
                    online
                        .step(
                            &reference,
                            &tokenizer,
                            &train_set,
                            setup.proxy(proxy_name),
                            None,
                        )
                        .await?;
                    if online.step % rl.eval_every == 0 || online.step == rl.steps {
                        let point = setup.measure(&online.policy().valid(), online.step).await?;
                        log.line(&format!(
                            "  step {:>3}: KL {:.3} proxy {:.3} gold {:.3}",
                            point.step,
                            point.kl.mean,
                            point.proxies[proxy_name].mean,
                            point.gold.mean
                        ));
                        points.push(point);
                    }
                }
                runs.push(fitted_run(
                    name,
                    algorithm.name(),
                    Some(kl_coef),
                    proxy_name,
                    points,
                ));
            }
        }
    }

    if let Some(dpo) = &config.dpo {
        let proxy_name = config.proxy(dpo.proxy.as_deref()).name.clone();
        let data = PreferenceData::Ranked(train_pairs.to_vec());
        let mut points = vec![base_point.clone()];
        for &beta in &dpo.betas {
            log.line(&format!(
                "dpo β={beta}: {} steps on {} pairs",
                dpo.steps,
                train_pairs.len()
            ));
            let preference_config = PreferenceConfig {
                loss: PreferenceLoss::Dpo {
                    label_smoothing: 0.0,
                },
                beta,
                optim: OptimConfig {
                    lr: dpo.lr,
                    warmup_steps: 5,
                    total_steps: dpo.steps,
                    ..Default::default()
                },
                batch_size: dpo.batch_size,
                seed: config.seed,
            };
            let trained =
                preference::train(base.clone(), &reference, &data, &preference_config, |_| {})
                    .await?;
            let mut point = setup.measure(&trained.valid(), dpo.steps).await?;
            log.line(&format!(
                "  KL {:.3} proxy {:.3} gold {:.3}",
                point.kl.mean, point.proxies[&proxy_name].mean, point.gold.mean
            ));
            point.step = dpo.steps;
            points.push(point);
        }
        // One curve across β (largest β, least KL, first after the base).
        points[1..].sort_by(|a, b| a.kl.mean.total_cmp(&b.kl.mean));
        let betas: Vec<String> = dpo.betas.iter().map(|b| b.to_string()).collect();
        runs.push(fitted_run(
            format!("dpo β∈{{{}}}", betas.join(", ")),
            "dpo",
            None,
            &proxy_name,
            points,
        ));
    }

    Ok(FrontierReport {
        config: config.clone(),
        preference_pairs: pairs.len(),
        proxies: summaries,
        base: base_point,
        best_of_n,
        runs,
    })
}

fn fitted_run(
    name: String,
    method: &str,
    coef: Option<f64>,
    proxy: &str,
    points: Vec<FrontierPoint>,
) -> FrontierRun {
    let curve = |f: &dyn Fn(&FrontierPoint) -> f64| -> Vec<(f64, f64)> {
        points.iter().map(|p| (p.sqrt_kl, f(p))).collect()
    };
    let gold = |p: &FrontierPoint| p.gold.mean;
    let proxy_of = |p: &FrontierPoint| p.proxies.get(proxy).map(|m| m.mean).unwrap_or(f64::NAN);
    FrontierRun {
        gold_fit: Fit::of(FitForm::Rl, points[0].gold.mean, &curve(&gold)),
        proxy_fit: Fit::of(FitForm::Rl, proxy_of(&points[0]), &curve(&proxy_of)),
        name,
        method: method.into(),
        coef,
        proxy: proxy.into(),
        points,
    }
}

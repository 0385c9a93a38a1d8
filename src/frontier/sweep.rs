//! The sweep, stage by stage: load the base policy and the prompts; label pairs of base samples
//! with the gold reward; train (or load) the proxies; measure the base; best-of-n; the RL runs;
//! the DPO runs; the decoding-time methods. Every policy (and every steered decoding of the
//! base) is measured by one [`Evaluation`].

use crate::backend::{AutodiffBackend, Backend};
use burn::module::AutodiffModule;

use super::config::RlSettings;
use super::measure::{Evaluation, FrontierPoint};
use super::{BestOfNResult, FrontierConfig, FrontierReport, FrontierRun, Log, ProxySummary};
use crate::algo::best_of_n::BestOfNPoint;
use crate::algo::preference::{PreferenceConfig, PreferenceData, PreferenceLoss};
use crate::algo::reward_model::REWARD_MODEL;
use crate::algo::spec::{Settings, TrainingOverrides, BETA};
use crate::dataset::RankedSequences;
use crate::decoding::{self, ExtraModels, Guide};
use crate::error::{Error, Result};
use crate::io::Tokenizer;
use crate::metrics;
use crate::model::{Llama, RewardEnsemble, RewardModel};
use crate::policy;
use crate::prompts::{self, PromptSet};
use crate::reward::calibrated::{Calibrated, Transform};
use crate::reward::implicit::ImplicitReward;
use crate::reward::objective::{evaluate_rankings, RewardData};
use crate::reward::source::RewardSource;
use crate::reward::{spec, LearnedReward, RewardHeads};
use crate::rollout::collect;
use crate::run::best_of_n::{self, BestOfNPlan};
use crate::run::preference::PreferenceRun;
use crate::run::reward_model::{self, RewardTrainConfig};
use crate::run::{OnlineAlgorithm, OnlineRun, OnlineRunConfig};
use crate::sample::SamplingConfig;

/// One online run of a sweep: the method, its section, β, what it optimises and the proxy it is
/// reported against.
struct RlPlan<'a, B: Backend> {
    name: String,
    algorithm: OnlineAlgorithm,
    rl: &'a RlSettings,
    kl_coef: f64,
    reward: &'a RewardSource<B>,
    proxy: &'a str,
}

/// Named proxy rewards, in the config's order.
type Proxies<B> = Vec<(String, RewardSource<B>)>;

/// What every stage of a sweep shares: the config, the base policy (trainable) and its frozen
/// copy (the reference), the tokenizer, the held-out and training prompts, the gold reward.
struct Sweep<'a, B: AutodiffBackend> {
    config: &'a FrontierConfig,
    base: Llama<B>,
    reference: Llama<B::InnerBackend>,
    tokenizer: Tokenizer,
    eval_prompts: Vec<String>,
    train_set: PromptSet,
    gold: RewardSource<B::InnerBackend>,
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
    let sweep = Sweep::<B>::load(config, device)?;
    let pairs = sweep.labelled_pairs(log).await?;
    // A tenth of the pairs is held out to measure the proxies.
    let (held_out, train_pairs) = pairs.split_at(pairs.len() / 10);
    let (proxies, summaries) = sweep.proxies(train_pairs, held_out, device, log).await?;
    let evaluation = sweep.evaluation(&proxies);
    let base = evaluation.measure(&sweep.reference, 0).await?;
    log.line(&format!(
        "base policy: gold {}, KL {:.4}",
        base.gold, base.kl.mean
    ));
    let best_of_n = sweep.best_of_n(&evaluation, log).await?;
    let trained = [
        (OnlineAlgorithm::Ppo, &config.ppo),
        (OnlineAlgorithm::Grpo, &config.grpo),
        (OnlineAlgorithm::GrpoS, &config.grpo_s),
    ];
    let mut runs = sweep
        .rl_runs(&evaluation, &base, &trained, None, log)
        .await?;
    let (dpo_runs, dpo_policies) = sweep.dpo_runs(&evaluation, &base, train_pairs, log).await?;
    runs.extend(dpo_runs);
    if let (Some(policy), Some(dpo)) = (dpo_policies.first(), &config.dpo) {
        // RTO's token rewards: the first DPO policy's implicit reward, with its β.
        let implicit = RewardSource::Implicit(Box::new(ImplicitReward {
            policy: policy.clone(),
            reference: sweep.reference.clone(),
            beta: dpo.betas[0] as f32,
        }));
        let rto = [(OnlineAlgorithm::Rto, &config.rto)];
        runs.extend(
            sweep
                .rl_runs(&evaluation, &base, &rto, Some(&implicit), log)
                .await?,
        );
    }
    let decoding = sweep.decoding_runs(&evaluation, train_pairs, &dpo_policies, log);
    runs.extend(decoding.await?);
    Ok(FrontierReport {
        config: config.clone(),
        preference_pairs: pairs.len(),
        proxies: summaries,
        base,
        best_of_n,
        runs,
    })
}

impl<'a, B: AutodiffBackend> Sweep<'a, B>
where
    Llama<B>: AutodiffModule<B, InnerModule = Llama<B::InnerBackend>>,
    RewardModel<B>: AutodiffModule<B, InnerModule = RewardModel<B::InnerBackend>>,
    RewardEnsemble<B>: AutodiffModule<B, InnerModule = RewardEnsemble<B::InnerBackend>>,
{
    fn load(config: &'a FrontierConfig, device: &B::Device) -> Result<Self> {
        let (base, tokenizer) = policy::load::<B>(&config.model, None, device)?;
        let (set, eval_prompts, train_prompts) = split_prompts(config)?;
        let gold = spec::parse::<B::InnerBackend>(&config.gold, &set.answers, device)?;
        Ok(Self {
            config,
            reference: base.valid(),
            base,
            tokenizer,
            eval_prompts,
            train_set: PromptSet {
                prompts: train_prompts,
                answers: set.answers,
            },
            gold,
        })
    }

    /// Preference pairs of base samples, labelled by the gold reward: the proxies and DPO learn
    /// from them (none when nothing needs them).
    async fn labelled_pairs(&self, log: &mut dyn Log) -> Result<Vec<RankedSequences>> {
        let config = self.config;
        let needs_pairs = config.dpo.is_some() || config.proxies.iter().any(|p| p.path.is_none());
        if !needs_pairs {
            return Ok(Vec::new());
        }
        let train_prompts = &self.train_set.prompts;
        let prompts = &train_prompts[..config.preferences.prompts.min(train_prompts.len())];
        log.line(&format!(
            "labelling two samples of {} prompts with the gold reward",
            prompts.len()
        ));
        let pairs = labelled_pairs(
            &self.reference,
            &self.tokenizer,
            prompts,
            config.preferences.max_new_tokens,
            &self.gold,
            config.seed,
        )
        .await?;
        if pairs.len() < 10 {
            return Err(Error::Input(format!(
                "only {} labelled pairs (the gold reward tied the rest): raise preferences.prompts",
                pairs.len()
            )));
        }
        Ok(pairs)
    }

    /// Every proxy of the config, trained on `train_pairs` (or read from its file), measured on
    /// `held_out`.
    async fn proxies(
        &self,
        train_pairs: &[RankedSequences],
        held_out: &[RankedSequences],
        device: &B::Device,
        log: &mut dyn Log,
    ) -> Result<(Proxies<B::InnerBackend>, Vec<ProxySummary>)> {
        let mut proxies = Vec::new();
        let mut summaries = Vec::new();
        for p in &self.config.proxies {
            let (reward, training_pairs) = match &p.path {
                Some(path) => (
                    LearnedReward::<B::InnerBackend>::load(std::path::Path::new(path), device)?.0,
                    0,
                ),
                None => {
                    let used = &train_pairs[..p.pairs.unwrap_or(usize::MAX).min(train_pairs.len())];
                    (self.train_proxy(p, used, log).await?, used.len())
                }
            };
            let eval = if held_out.is_empty() {
                None
            } else {
                Some(evaluate_rankings(&reward, held_out, 32).await?)
            };
            let summary = ProxySummary {
                name: p.name.clone(),
                members: reward.heads.outputs(),
                aggregation: p.aggregation().to_string(),
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
        Ok((proxies, summaries))
    }

    async fn train_proxy(
        &self,
        p: &super::config::ProxySettings,
        pairs: &[RankedSequences],
        log: &mut dyn Log,
    ) -> Result<LearnedReward<B::InnerBackend>> {
        let training = p.training();
        log.line(&format!(
            "training proxy `{}` ({} member(s), {}) on {} pairs, {} steps",
            p.name,
            p.members,
            p.aggregation(),
            pairs.len(),
            training.steps(&REWARD_MODEL)
        ));
        let heads = RewardHeads::Ensemble {
            members: p.members.max(1),
            shared_trunk: p.shared_trunk,
            aggregation: p.aggregation(),
            member_scale: Vec::new(),
        };
        let fresh = LearnedReward::from_policy(self.base.clone(), heads, self.config.seed + 17)?;
        let rm_config = RewardTrainConfig {
            optim: training.optim(&REWARD_MODEL),
            batch_size: training.batch_size(&REWARD_MODEL),
            seed: self.config.seed,
            margin_from_scores: false,
        };
        let data = RewardData::Ranked(pairs.to_vec());
        let trained = reward_model::train(fresh, data, &rm_config, |_| {}).await?;
        Ok(LearnedReward {
            ensemble: trained.ensemble.valid(),
            heads: trained.heads,
        })
    }

    /// How every policy of the sweep is measured.
    fn evaluation<'e>(
        &'e self,
        proxies: &'e Proxies<B::InnerBackend>,
    ) -> Evaluation<'e, B::InnerBackend> {
        let config = self.config;
        Evaluation {
            base: &self.reference,
            tokenizer: &self.tokenizer,
            eval_prompts: &self.eval_prompts,
            eval_sampling: SamplingConfig {
                max_new_tokens: config.eval.max_new_tokens,
                seed: config.seed.wrapping_add(90_001),
                ..Default::default()
            },
            samples_per_prompt: config.eval.samples_per_prompt,
            proxies,
            gold: &self.gold,
        }
    }

    /// Best-of-n from the reference, on the same held-out prompts as every other policy (so
    /// n = 1 is the base policy's point measured again).
    async fn best_of_n(
        &self,
        evaluation: &Evaluation<'_, B::InnerBackend>,
        log: &mut dyn Log,
    ) -> Result<Option<BestOfNResult>> {
        let config = self.config;
        let Some(bon) = &config.best_of_n else {
            return Ok(None);
        };
        let proxy_name = config.proxy(bon.proxy.as_deref()).name.clone();
        log.line(&format!(
            "best-of-n for n in {:?} selecting by `{proxy_name}`",
            bon.ns
        ));
        let plan = BestOfNPlan {
            ns: bon.ns.clone(),
            pool: bon.pool,
            groups: bon.groups,
            sampling: SamplingConfig {
                max_new_tokens: config.eval.max_new_tokens,
                seed: config.seed.wrapping_add(50_000),
                ..Default::default()
            },
        };
        let points = best_of_n::measure(
            &self.reference,
            &self.tokenizer,
            &self.eval_prompts,
            evaluation.proxy(&proxy_name),
            Some(&self.gold),
            &plan,
        )
        .await?;
        let gold_of = |p: &BestOfNPoint| p.monitor_reward.map(|m| m.mean).unwrap_or(f64::NAN);
        for p in &points {
            log.line(&format!(
                "  n={:<3} KL measured {} (analytic bound {:.3}) proxy {:.3} gold {:.3}",
                p.n,
                p.kl,
                p.analytic_kl,
                p.reward.mean,
                gold_of(p)
            ));
        }
        let mut result = BestOfNResult {
            proxy: proxy_name,
            gold_fit: None,
            proxy_fit: None,
            points,
        };
        result.refit();
        Ok(Some(result))
    }

    /// PPO, GRPO or RTO: one run per KL coefficient and proxy (and per InfAlign transform of
    /// it), measured every `eval_every` steps. RTO's reward is `token_reward` (the DPO policy's,
    /// per token) plus the proxy's.
    async fn rl_runs(
        &self,
        evaluation: &Evaluation<'_, B::InnerBackend>,
        base: &FrontierPoint,
        sections: &[(OnlineAlgorithm, &Option<RlSettings>)],
        token_reward: Option<&RewardSource<B::InnerBackend>>,
        log: &mut dyn Log,
    ) -> Result<Vec<FrontierRun>> {
        let mut runs = Vec::new();
        for &(algorithm, settings) in sections {
            let Some(rl) = settings else { continue };
            let proxy_names: Vec<String> = if rl.proxies.is_empty() {
                vec![self.config.proxies[0].name.clone()]
            } else {
                rl.proxies.clone()
            };
            for proxy in &proxy_names {
                for (reward, label) in
                    self.rl_rewards(evaluation.proxy(proxy), proxy, rl, token_reward)?
                {
                    for &kl_coef in &rl.kl_coefs {
                        let plan = RlPlan {
                            name: format!("{} β={kl_coef} {label}", algorithm.name()),
                            algorithm,
                            rl,
                            kl_coef,
                            reward: &reward,
                            proxy,
                        };
                        runs.push(self.rl_run(evaluation, base, &plan, log).await?);
                    }
                }
            }
        }
        Ok(runs)
    }

    /// What a section's runs optimise, with its label: the proxy (plus RTO's token reward), then
    /// each InfAlign transform of it.
    fn rl_rewards(
        &self,
        proxy: &RewardSource<B::InnerBackend>,
        proxy_name: &str,
        rl: &RlSettings,
        token_reward: Option<&RewardSource<B::InnerBackend>>,
    ) -> Result<Vec<(RewardSource<B::InnerBackend>, String)>> {
        let reward = match token_reward {
            Some(tokens) => {
                RewardSource::Weighted(vec![(1.0, tokens.clone()), (1.0, proxy.clone())])
            }
            None => proxy.clone(),
        };
        let mut rewards = vec![(reward.clone(), proxy_name.to_string())];
        for transform in &rl.infalign {
            let calibrated = self.calibrated(reward.clone(), transform, rl.calibration_samples)?;
            rewards.push((calibrated, format!("{proxy_name} infalign {transform}")));
        }
        Ok(rewards)
    }

    /// One online run from the base, measured from step 0.
    async fn rl_run(
        &self,
        evaluation: &Evaluation<'_, B::InnerBackend>,
        base: &FrontierPoint,
        plan: &RlPlan<'_, B::InnerBackend>,
        log: &mut dyn Log,
    ) -> Result<FrontierRun> {
        let (algorithm, rl) = (plan.algorithm, plan.rl);
        let steps = rl.training().steps(algorithm.spec());
        log.line(&format!("{}: {steps} steps", plan.name));
        let sampling = SamplingConfig {
            max_new_tokens: self.config.eval.max_new_tokens,
            ..Default::default()
        };
        let mut run_config = OnlineRunConfig::new(
            algorithm,
            &rl.settings(plan.kl_coef),
            &rl.training(),
            sampling,
            self.config.seed,
        )
        .map_err(|e| Error::Input(format!("[{}] {e}", algorithm.name())))?;
        run_config.target_kl = rl.target_kl;
        let mut online = OnlineRun::new(self.base.clone(), run_config);
        let mut points = vec![base.clone()];
        while online.step < steps {
            let (reference, tokenizer) = (&self.reference, &self.tokenizer);
            online
                .step(reference, tokenizer, &self.train_set, plan.reward, None)
                .await?;
            if online.step % rl.eval_every == 0 || online.step == steps {
                let point = evaluation
                    .measure(&online.policy().valid(), online.step)
                    .await?;
                log_point(log, &point, plan.proxy);
                points.push(point);
            }
        }
        let (name, method) = (plan.name.clone(), algorithm.name());
        Ok(fitted_run(
            name,
            method,
            Some(plan.kl_coef),
            plan.proxy,
            points,
        ))
    }

    /// The offline methods on the training pairs (DPO first): one run per method and β,
    /// measured along the way like the RL runs; and the DPO runs' last policies.
    async fn dpo_runs(
        &self,
        evaluation: &Evaluation<'_, B::InnerBackend>,
        base: &FrontierPoint,
        train_pairs: &[RankedSequences],
        log: &mut dyn Log,
    ) -> Result<(Vec<FrontierRun>, Vec<Llama<B::InnerBackend>>)> {
        let config = self.config;
        let Some(dpo) = &config.dpo else {
            return Ok((Vec::new(), Vec::new()));
        };
        let proxy_name = config.proxy(dpo.proxy.as_deref()).name.clone();
        let data = PreferenceData::Ranked(train_pairs.to_vec());
        let (mut runs, mut policies) = (Vec::new(), Vec::new());
        for method in &dpo.methods {
            for &beta in &dpo.betas {
                let mut settings = Settings::new().with(BETA.name, beta);
                if method == "aligndistil" {
                    settings.insert("teacher_beta", dpo.betas[0]);
                }
                let spec = crate::methods::find(method)?;
                let loss = PreferenceLoss::from_spec(spec, &settings)
                    .expect("the config check found an offline method")?;
                let (training, steps) = (dpo.training(), dpo.training().steps(spec));
                let name = format!("{method} β={beta} {proxy_name}");
                log.line(&format!(
                    "{name}: {steps} steps on {} pairs",
                    train_pairs.len()
                ));
                let preference_config = PreferenceConfig {
                    loss,
                    beta,
                    optim: training.optim(spec),
                    batch_size: training.batch_size(spec),
                    seed: config.seed,
                };
                let mut run =
                    PreferenceRun::<B>::new(&self.reference, data.clone(), preference_config)
                        .await?;
                if method == "aligndistil" {
                    run = run.with_teachers(policies[..1].to_vec())?;
                }
                let mut policy = self.base.clone();
                let mut points = vec![base.clone()];
                while run.steps_done() < steps {
                    let (next, metrics) = run.step(policy).await?;
                    policy = next;
                    let step = run.steps_done();
                    if step % dpo.eval_every == 0 || step == steps {
                        let point = evaluation.measure(&policy.valid(), step).await?;
                        log_point(log, &point, &proxy_name);
                        if let Some(sparsity) = metrics.get(metrics::MASK_SPARSITY) {
                            log.line(&format!("    mask sparsity {sparsity:.3}"));
                        }
                        points.push(point);
                    }
                }
                runs.push(fitted_run(name, method, Some(beta), &proxy_name, points));
                if method == "dpo" {
                    policies.push(policy.valid());
                }
            }
        }
        Ok((runs, policies))
    }

    /// Each decoding-time method steering the base, one run through the weights (a point per
    /// weight, with its tokens/s). Transfer Q* rolls out the first DPO policy; GenARM's reward
    /// model is trained here on the same pairs.
    async fn decoding_runs(
        &self,
        evaluation: &Evaluation<'_, B::InnerBackend>,
        train_pairs: &[RankedSequences],
        dpo_policies: &[Llama<B::InnerBackend>],
        log: &mut dyn Log,
    ) -> Result<Vec<FrontierRun>> {
        let config = self.config;
        let Some(steer) = &config.decoding else {
            return Ok(Vec::new());
        };
        let proxy_name = config.proxy(steer.proxy.as_deref()).name.clone();
        let mut runs = Vec::new();
        for name in &steer.methods {
            let spec = decoding::find(name)?;
            let (models, steered_by) = match spec.models {
                ExtraModels::None => (Vec::new(), proxy_name.clone()),
                ExtraModels::Baseline => (dpo_policies[..1].to_vec(), proxy_name.clone()),
                ExtraModels::RewardModels => {
                    let arm = self.train_arm(train_pairs, steer.arm_steps, log).await?;
                    (vec![arm], "arm".to_string())
                }
            };
            let mut points = Vec::new();
            for &weight in &steer.weights {
                let guide = Guide::new(spec, &steer.settings(spec, weight))?;
                let proxy = evaluation.proxy(&proxy_name);
                let mut point = evaluation
                    .measure_guided(spec, &guide, proxy, &models)
                    .await?;
                point.weight = Some(weight);
                log.line(&format!(
                    "  {name} w={weight}: KL {:.3} proxy {:.3} gold {:.3}, {:.0} tokens/s",
                    point.kl.mean,
                    point.proxies.get(&proxy_name).map_or(f64::NAN, |m| m.mean),
                    point.gold.mean,
                    point.tokens_per_second.unwrap_or(f64::NAN)
                ));
                points.push(point);
            }
            let run_name = format!("{name} {steered_by}");
            runs.push(fitted_run(run_name, name, None, &proxy_name, points));
        }
        Ok(runs)
    }

    /// InfAlign's calibrated and transformed `reward`, against the base's samples.
    fn calibrated(
        &self,
        reward: RewardSource<B::InnerBackend>,
        transform: &str,
        samples: Option<usize>,
    ) -> Result<RewardSource<B::InnerBackend>> {
        let calibrated = Calibrated::new(
            reward,
            self.reference.clone(),
            self.tokenizer.clone(),
            samples.unwrap_or(16),
            SamplingConfig {
                max_new_tokens: self.config.eval.max_new_tokens,
                seed: self.config.seed.wrapping_add(7_919),
                ..Default::default()
            },
            Transform::parse(transform)?,
        )?;
        Ok(RewardSource::Calibrated(Box::new(calibrated)))
    }

    /// GenARM's autoregressive reward model: `arm` on the training pairs from the base.
    async fn train_arm(
        &self,
        train_pairs: &[RankedSequences],
        steps: Option<usize>,
        log: &mut dyn Log,
    ) -> Result<Llama<B::InnerBackend>> {
        let loss = PreferenceLoss::named("arm").expect("arm is listed");
        let training = TrainingOverrides {
            steps,
            ..Default::default()
        };
        let steps = training.steps(loss.spec());
        log.line(&format!(
            "genarm: its reward model, {steps} steps of arm on {} pairs",
            train_pairs.len()
        ));
        let preference_config = PreferenceConfig {
            loss,
            beta: Settings::new().value(loss.spec(), BETA.name),
            optim: training.optim(loss.spec()),
            batch_size: training.batch_size(loss.spec()),
            seed: self.config.seed,
        };
        let data = PreferenceData::Ranked(train_pairs.to_vec());
        let mut run = PreferenceRun::<B>::new(&self.reference, data, preference_config).await?;
        let mut model = self.base.clone();
        while run.steps_done() < steps {
            model = run.step(model).await?.0;
        }
        Ok(model.valid())
    }
}

fn log_point(log: &mut dyn Log, point: &FrontierPoint, proxy: &str) {
    log.line(&format!(
        "  step {:>3}: KL {:.3} proxy {:.3} gold {:.3}",
        point.step, point.kl.mean, point.proxies[proxy].mean, point.gold.mean
    ));
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

fn fitted_run(
    name: String,
    method: &str,
    coef: Option<f64>,
    proxy: &str,
    points: Vec<FrontierPoint>,
) -> FrontierRun {
    let mut run = FrontierRun {
        gold_fit: None,
        proxy_fit: None,
        name,
        method: method.into(),
        coef,
        proxy: proxy.into(),
        points,
    };
    run.refit();
    run
}

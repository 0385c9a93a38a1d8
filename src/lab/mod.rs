//! The interactive lab the page drives, one short call at a time (so the page can draw, pause
//! and resume between calls): sample pairs for a person to label, train a reward model on the
//! labels step by step, then optimise the policy against it — an online method (PPO, GRPO, …)
//! or a DPO-family loss on the labels — measuring every policy as the frontier sweep does
//! (KL to the base on held-out prompts, proxy and gold reward), and best-of-n at any n.
//! Generic over the backend: the page runs it on WebGPU or the wasm CPU backend, tests on flex.

pub mod labels;

use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::algo::best_of_n::BestOfNPoint;
use crate::algo::preference::{DataShape, PreferenceConfig, PreferenceData, PreferenceLoss};
use crate::algo::reward_model::REWARD_MODEL;
use crate::algo::spec::{MethodKind, Settings, TrainingOverrides, BETA};
use crate::dataset::{tokenize_rankings, tokenize_unpaired, LengthLimit, RankedSequences};
use crate::error::{Error, Result};
use crate::frontier::measure::{Evaluation, FrontierPoint};
use crate::io::prefs::{PreferencePair, Ranking, UnpairedExample};
use crate::io::{Checkpoint, Tokenizer};
use crate::methods;
use crate::metrics::Metrics;
use crate::model::{Llama, RewardEnsemble, RewardModel};
use crate::prompts::{self, PromptSet};
use crate::reward::source::RewardSource;
use crate::reward::train::{self as reward_train, RewardData, RewardTrainConfig};
use crate::reward::{Aggregation, LearnedReward, RewardHeads};
use crate::rollout::collect;
use crate::run::best_of_n::{self, BestOfNPlan};
use crate::run::preference::PreferenceRun;
use crate::run::{OnlineAlgorithm, OnlineRun, OnlineRunConfig};
use crate::sample::{generate, SamplingConfig};
use crate::train::Trainer;
pub use labels::{Choice, Label, Labeller, PairLabel, RankingLabel};

/// The proxy's name in measured points.
pub const PROXY: &str = "rm";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabConfig {
    pub seed: u64,
    /// Held-out prompts every policy is measured on, and samples per prompt.
    pub eval_prompts: usize,
    pub samples_per_prompt: usize,
    /// Longest completion sampled for labelling, training and measuring.
    pub max_new_tokens: usize,
}

impl Default for LabConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            eval_prompts: 16,
            samples_per_prompt: 2,
            max_new_tokens: 24,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct LabInfo {
    pub parameters: usize,
    pub layers: usize,
    pub dim: usize,
    pub vocab_size: usize,
    pub context: usize,
    pub prompts: usize,
    /// Pairs the labels given state (a ranking of k states k·(k−1)/2).
    pub pairs: usize,
    pub reward_model: bool,
    pub run: Option<String>,
}

/// Two completions of one prompt from the current policy, for a person to compare.
#[derive(Debug, Clone, Serialize)]
pub struct PairToLabel {
    pub index: u64,
    pub prompt: String,
    pub left: String,
    pub right: String,
}

/// k distinct completions of one prompt from the current policy, for a person to rank.
#[derive(Debug, Clone, Serialize)]
pub struct RankingToLabel {
    pub index: u64,
    pub prompt: String,
    /// Fewer than asked for only when the policy keeps writing the same text.
    pub completions: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub prompt: String,
    pub completion: String,
    pub gold: f32,
    /// The reward model's score, once one is trained.
    pub proxy: Option<f32>,
}

/// A reward model to train on the labels; what the page leaves out comes from the registry's
/// `rm` entry (the CLI's and the sweep's defaults too).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewardSettings {
    pub steps: usize,
    /// Independent members (aggregated by mean − std when more than one) [default 1].
    #[serde(default)]
    pub members: Option<usize>,
    #[serde(default)]
    pub lr: Option<f64>,
    #[serde(default)]
    pub batch_size: Option<usize>,
}

impl RewardSettings {
    fn training(&self) -> TrainingOverrides {
        TrainingOverrides {
            lr: self.lr,
            steps: Some(self.steps),
            batch_size: self.batch_size,
            warmup: None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RewardProgress {
    pub step: usize,
    pub total_steps: usize,
    pub loss: f64,
    /// On the training batch.
    pub accuracy: f64,
    /// On the held-out pairs, once training ends (none when too few pairs to hold any out).
    pub held_out_accuracy: Option<f64>,
    pub held_out_pairs: usize,
    pub training_pairs: usize,
    pub done: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSettings {
    /// An online method (`ppo`, `grpo`, `dr-grpo`, `rloo`, `reinforce-pp`, `raft`) optimising
    /// the reward model, or a DPO-family loss (`dpo`, `ipo`, `kto`, …) on the labels.
    pub method: String,
    /// β: the KL coefficient of online methods, the DPO family's β (methods without one, RAFT,
    /// ignore it).
    pub kl_coef: f64,
    pub steps: usize,
    #[serde(default)]
    pub lr: Option<f64>,
    /// The method's own settings by their registry names (e.g. `group_size`), over its defaults.
    #[serde(default)]
    pub settings: Settings,
    /// Measure KL, proxy and gold every this many steps.
    #[serde(default = "default_eval_every")]
    pub eval_every: usize,
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
}

struct RewardTraining<B: AutodiffBackend> {
    reward: Option<LearnedReward<B>>,
    trainer: Trainer<B, RewardEnsemble<B>>,
    data: RewardData,
    held_out: Vec<RankedSequences>,
    order: Vec<usize>,
    config: RewardTrainConfig,
}

struct Preference<B: AutodiffBackend> {
    policy: Option<Llama<B>>,
    run: PreferenceRun<B>,
}

enum Method<B: AutodiffBackend> {
    Online(Box<OnlineRun<B>>),
    Preference(Box<Preference<B>>),
}

struct Run<B: AutodiffBackend> {
    name: String,
    method: Method<B>,
    step: usize,
    total_steps: usize,
    eval_every: usize,
}

pub struct Lab<B: AutodiffBackend> {
    config: LabConfig,
    base: Llama<B>,
    reference: Llama<B::InnerBackend>,
    /// What pairs and samples come from: the base, then the latest run's policy.
    policy: Llama<B::InnerBackend>,
    tokenizer: Tokenizer,
    prompts: PromptSet,
    eval_prompts: Vec<String>,
    gold: RewardSource<B::InnerBackend>,
    /// The labels' pairs, grouped by label.
    pair_groups: Vec<Vec<PreferencePair>>,
    reward_training: Option<RewardTraining<B>>,
    proxy: Vec<(String, RewardSource<B::InnerBackend>)>,
    run: Option<Run<B>>,
}

impl<B: AutodiffBackend> Lab<B>
where
    Llama<B>: AutodiffModule<B, InnerModule = Llama<B::InnerBackend>>,
    RewardModel<B>: AutodiffModule<B, InnerModule = RewardModel<B::InnerBackend>>,
    RewardEnsemble<B>: AutodiffModule<B, InnerModule = RewardEnsemble<B::InnerBackend>>,
{
    /// A lab on `checkpoint`'s policy, with the built-in world's story openings as prompts
    /// and its lexicon score as the gold reward.
    pub fn new(checkpoint: Checkpoint, device: &B::Device, config: LabConfig) -> Result<Self> {
        let (base, tokenizer) = checkpoint.into_model::<B>(device)?;
        let reference = base.valid();
        let all = prompts::load("world", config.eval_prompts + 2_000, config.seed)?;
        let eval_prompts = all.prompts[..config.eval_prompts].to_vec();
        let prompts = PromptSet {
            prompts: all.prompts[config.eval_prompts..].to_vec(),
            answers: all.answers,
        };
        Ok(Self {
            config,
            policy: reference.clone(),
            reference,
            base,
            tokenizer,
            prompts,
            eval_prompts,
            gold: RewardSource::Gold,
            pair_groups: Vec::new(),
            reward_training: None,
            proxy: Vec::new(),
            run: None,
        })
    }

    pub fn info(&self) -> LabInfo {
        let c = self.base.config();
        LabInfo {
            parameters: c.num_params(),
            layers: c.n_layers,
            dim: c.dim,
            vocab_size: c.vocab_size,
            context: c.max_seq_len,
            prompts: self.prompts.prompts.len(),
            pairs: self.pair_count(),
            reward_model: !self.proxy.is_empty(),
            run: self.run.as_ref().map(|r| r.name.clone()),
        }
    }

    fn sampling(&self, seed: u64) -> SamplingConfig {
        SamplingConfig {
            max_new_tokens: self.config.max_new_tokens,
            seed,
            ..Default::default()
        }
    }

    async fn complete(&self, prompt: &str, count: usize, seed: u64) -> Result<Vec<String>> {
        let ids = self.tokenizer.encode_with_bos(prompt)?;
        let completions = generate(
            &self.policy,
            &vec![ids; count],
            self.tokenizer.eos_id(),
            &self.sampling(seed),
        )
        .await?;
        Ok(completions
            .iter()
            .map(|c| self.tokenizer.decode(c))
            .collect())
    }

    /// Up to `k` distinct completions of `prompt` for label number `index`, fixed by the index:
    /// up to four rounds of `k` samples, keeping the texts not seen yet.
    async fn distinct_completions(
        &self,
        prompt: &str,
        index: u64,
        k: usize,
    ) -> Result<Vec<String>> {
        let mut distinct: Vec<String> = Vec::with_capacity(k);
        for attempt in 0..4u64 {
            let seed = self
                .config
                .seed
                .wrapping_mul(1_000_003)
                .wrapping_add(index * 4 + attempt)
                .wrapping_add((k as u64 - 2) << 40);
            for text in self.complete(prompt, k, seed).await? {
                if distinct.len() < k && !distinct.contains(&text) {
                    distinct.push(text);
                }
            }
            if distinct.len() == k {
                break;
            }
        }
        Ok(distinct)
    }

    fn prompt_for(&self, index: u64) -> &str {
        &self.prompts.prompts[index as usize % self.prompts.prompts.len()]
    }

    /// Pair number `index`: its prompt cycles through the prompts; the two completions differ
    /// whenever four tries can make them.
    pub async fn pair(&self, index: u64) -> Result<PairToLabel> {
        let prompt = self.prompt_for(index);
        let completions = self.distinct_completions(prompt, index, 2).await?;
        Ok(PairToLabel {
            index,
            prompt: prompt.to_string(),
            left: completions[0].clone(),
            right: completions.last().expect("one sample at least").clone(),
        })
    }

    /// `k` completions of prompt number `index` to rank (k from 2 to 8).
    pub async fn ranking(&self, index: u64, k: usize) -> Result<RankingToLabel> {
        if !(2..=8).contains(&k) {
            return Err(Error::Input(format!(
                "a ranking has 2 to 8 completions, not {k}"
            )));
        }
        let prompt = self.prompt_for(index);
        Ok(RankingToLabel {
            index,
            prompt: prompt.to_string(),
            completions: self.distinct_completions(prompt, index, k).await?,
        })
    }

    /// `count` samples from the current policy for `prompt` (or the first held-out prompts).
    pub async fn samples(
        &self,
        prompt: Option<&str>,
        count: usize,
        seed: u64,
    ) -> Result<Vec<Sample>> {
        let prompts: Vec<String> = (0..count)
            .map(|i| match prompt {
                Some(p) => p.to_string(),
                None => self.eval_prompts[i % self.eval_prompts.len()].clone(),
            })
            .collect();
        let rollout = collect(
            &self.policy,
            &self.reference,
            &self.tokenizer,
            &prompts,
            1,
            &self.sampling(seed),
            &self.gold,
        )
        .await?;
        let proxy = match self.proxy.first() {
            Some((_, p)) => Some(rollout.score_with(p).await?),
            None => None,
        };
        Ok((0..rollout.len())
            .map(|i| Sample {
                prompt: rollout.prompts[i].clone(),
                completion: rollout.completions[i].clone(),
                gold: rollout.rewards[i],
                proxy: proxy.as_ref().map(|p| p[i]),
            })
            .collect())
    }

    /// Pairs `start..start + count` labelled by the gold reward, standing in for a person (ties
    /// when it scores both alike): enough labels for a lesson without a hundred clicks.
    pub async fn gold_labels(&self, start: u64, count: usize) -> Result<Vec<Label>> {
        let mut out = Vec::with_capacity(count);
        for index in start..start + count as u64 {
            let pair = self.pair(index).await?;
            let (left, right) = (
                crate::world::gold_reward(&pair.left),
                crate::world::gold_reward(&pair.right),
            );
            let choice = if left > right {
                Choice::Left
            } else if right > left {
                Choice::Right
            } else {
                Choice::Tie
            };
            out.push(Label::Pair(PairLabel {
                prompt: pair.prompt,
                left: pair.left,
                right: pair.right,
                choice,
                labeller: Labeller::Gold,
            }));
        }
        Ok(out)
    }

    /// Rankings `start..start + count` of `k` completions, ordered by the gold reward with its
    /// scores kept (equal scores are ties).
    pub async fn gold_rankings(&self, start: u64, count: usize, k: usize) -> Result<Vec<Label>> {
        let mut out = Vec::with_capacity(count);
        for index in start..start + count as u64 {
            let to_rank = self.ranking(index, k).await?;
            let mut scored: Vec<(f64, String)> = to_rank
                .completions
                .into_iter()
                .map(|c| (crate::world::gold_reward(&c) as f64, c))
                .collect();
            scored.sort_by(|a, b| b.0.total_cmp(&a.0));
            out.push(Label::Ranking(RankingLabel {
                prompt: to_rank.prompt,
                scores: Some(scored.iter().map(|(s, _)| *s).collect()),
                ranked: scored.into_iter().map(|(_, c)| c).collect(),
                labeller: Labeller::Gold,
            }));
        }
        Ok(out)
    }

    /// The labels to train on (the page holds them; it sends them all before training);
    /// returns how many pairs they state.
    pub fn set_labels(&mut self, labels: &[Label]) -> Result<usize> {
        self.pair_groups = labels::pair_groups(labels)?;
        Ok(self.pair_count())
    }

    fn pair_count(&self) -> usize {
        self.pair_groups.iter().map(Vec::len).sum()
    }

    fn length_limit(&self) -> LengthLimit {
        LengthLimit {
            max_length: self.base.config().max_seq_len,
            truncate: true,
        }
    }

    fn tokenized<'a>(
        &self,
        pairs: impl IntoIterator<Item = &'a PreferencePair>,
    ) -> Result<Vec<RankedSequences>> {
        let rankings: Vec<Ranking> = pairs.into_iter().cloned().map(Ranking::from).collect();
        // Nothing to tokenise is no data, not a file whose every record was unusable.
        if rankings.is_empty() {
            return Ok(Vec::new());
        }
        Ok(tokenize_rankings(
            &self.tokenizer,
            &rankings,
            &self.length_limit(),
            "labels",
            true,
        )?
        .rows)
    }

    /// Starts training a fresh reward model (Bradley–Terry; an ensemble of independent
    /// members aggregated by mean − std when `members` > 1) on the labels, holding out a
    /// tenth when there are at least 20 pairs (a ranking's pairs held out together: they share
    /// completions).
    pub fn reward_start(&mut self, settings: &RewardSettings) -> Result<()> {
        let total = self.pair_count();
        if total < 2 {
            return Err(Error::LabState(format!(
                "training a reward model needs at least 2 labelled pairs (left or right, or a ranking); there are {total}"
            )));
        }
        let members = settings.members.unwrap_or(1);
        let training = settings.training();
        if settings.steps == 0 || training.batch_size(&REWARD_MODEL) == 0 || members == 0 {
            return Err(Error::Input(
                "reward model: steps, batch_size and members must be at least 1".into(),
            ));
        }
        let (training_pairs, held_out_pairs) =
            hold_out_by_label(&self.pair_groups, self.config.seed + 5);
        let held_out = self.tokenized(held_out_pairs)?;
        let mut rows = self.tokenized(training_pairs)?;
        for (i, row) in rows.iter_mut().enumerate() {
            row.index = i;
        }
        let heads = RewardHeads::Ensemble {
            members,
            shared_trunk: false,
            aggregation: if members > 1 {
                Aggregation::MeanMinusStd { lambda: 1.0 }
            } else {
                Aggregation::Mean
            },
            member_scale: Vec::new(),
        };
        let config = RewardTrainConfig {
            optim: training.optim(&REWARD_MODEL),
            batch_size: training.batch_size(&REWARD_MODEL),
            seed: self.config.seed,
            margin_from_scores: false,
        };
        let reward = LearnedReward::from_policy(self.base.clone(), heads, self.config.seed + 17)?;
        let data = RewardData::Ranked(rows);
        data.check(&reward.heads)?;
        self.reward_training = Some(RewardTraining {
            reward: Some(reward),
            trainer: Trainer::new(config.optim.clone()),
            order: shuffled(data.len(), self.config.seed),
            data,
            held_out,
            config,
        });
        Ok(())
    }

    /// One reward-model update; the last one also measures held-out accuracy and makes the
    /// model the proxy that best-of-n and the online methods optimise.
    pub async fn reward_step(&mut self) -> Result<RewardProgress> {
        let training = self
            .reward_training
            .as_mut()
            .ok_or_else(|| Error::LabState("start reward-model training first".into()))?;
        let step = training.trainer.step;
        let batch = batch_at(&training.order, step, training.config.batch_size);
        let reward = training.reward.take().ok_or_else(|| {
            Error::LabState("this reward model failed a step: start again".into())
        })?;
        let (reward, metrics) = reward_train::reward_step(
            reward,
            &mut training.trainer,
            &training.data,
            &batch,
            &training.config,
        )
        .await?;
        let total_steps = training.config.optim.total_steps;
        let mut progress = RewardProgress {
            step: step + 1,
            total_steps,
            loss: metrics.get(crate::metrics::TRAIN_LOSS).unwrap_or(f64::NAN),
            accuracy: metrics
                .get(crate::metrics::TRAIN_ACCURACY)
                .unwrap_or(f64::NAN),
            held_out_accuracy: None,
            held_out_pairs: training.held_out.len(),
            training_pairs: training.data.len(),
            done: step + 1 >= total_steps,
        };
        if !progress.done {
            training.reward = Some(reward);
            return Ok(progress);
        }
        let training = self.reward_training.take().expect("checked above");
        let trained = reward_train::finish(reward, &training.data).await?;
        let trained = LearnedReward {
            ensemble: trained.ensemble.valid(),
            heads: trained.heads,
        };
        if !training.held_out.is_empty() {
            let eval = reward_train::evaluate_rankings(&trained, &training.held_out, 32).await?;
            progress.held_out_accuracy = Some(eval.accuracy);
        }
        self.proxy = vec![(PROXY.into(), RewardSource::Learned(Box::new(trained)))];
        Ok(progress)
    }

    fn evaluation(&self) -> Evaluation<'_, B::InnerBackend> {
        Evaluation {
            base: &self.reference,
            tokenizer: &self.tokenizer,
            eval_prompts: &self.eval_prompts,
            eval_sampling: self.sampling(self.config.seed.wrapping_add(90_001)),
            samples_per_prompt: self.config.samples_per_prompt,
            proxies: &self.proxy,
            gold: &self.gold,
        }
    }

    /// Measures the current policy: KL to the base, proxy and gold reward, a few samples.
    pub async fn measure(&self) -> Result<FrontierPoint> {
        let step = self.run.as_ref().map_or(0, |r| r.step);
        self.evaluation().measure(&self.policy, step).await
    }

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
        let training = TrainingOverrides {
            lr: settings.lr,
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
}

/// Splits the labels' pairs into training and held-out pairs: a tenth held out once there are 20,
/// whole labels at a time (a ranking's pairs share completions), never every label.
fn hold_out_by_label(
    groups: &[Vec<PreferencePair>],
    seed: u64,
) -> (Vec<&PreferencePair>, Vec<&PreferencePair>) {
    let total: usize = groups.iter().map(Vec::len).sum();
    let wanted = if total >= 20 { total / 10 } else { 0 };
    let mut shuffled_groups: Vec<&Vec<PreferencePair>> = groups.iter().collect();
    shuffled_groups.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let mut held_out = Vec::new();
    while held_out.len() < wanted && shuffled_groups.len() > 1 {
        held_out.extend(shuffled_groups.pop().expect("more than one group left"));
    }
    (shuffled_groups.into_iter().flatten().collect(), held_out)
}

fn shuffled(len: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    order
}

/// The `batch_size` rows of step `step`, cycling through `order`.
fn batch_at(order: &[usize], step: usize, batch_size: usize) -> Vec<usize> {
    let size = batch_size.min(order.len());
    (0..size)
        .map(|i| order[(step * size + i) % order.len()])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(label: usize, size: usize) -> Vec<PreferencePair> {
        (0..size)
            .map(|i| PreferencePair {
                prompt: format!("label {label}"),
                chosen: format!("{i}"),
                rejected: "x".into(),
            })
            .collect()
    }

    #[test]
    fn held_out_pairs_are_whole_labels() {
        // 6 rankings of 4 (6 pairs each) and 10 pair labels: 46 pairs, at least 4 held out.
        let groups: Vec<_> = (0..16)
            .map(|l| group(l, if l < 6 { 6 } else { 1 }))
            .collect();
        for seed in 0..20 {
            let (training, held_out) = hold_out_by_label(&groups, seed);
            assert_eq!(training.len() + held_out.len(), 46);
            assert!(held_out.len() >= 4, "{} held out", held_out.len());
            for pair in &held_out {
                assert!(
                    training.iter().all(|t| t.prompt != pair.prompt),
                    "seed {seed}: {} is split",
                    pair.prompt
                );
            }
        }
        // Under 20 pairs nothing is held out; one large label is never held out whole.
        assert!(hold_out_by_label(&groups[6..], 0).1.is_empty());
        let one = [group(0, 28)];
        assert_eq!(hold_out_by_label(&one, 0).0.len(), 28);
    }
}

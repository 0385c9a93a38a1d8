//! One experiment as one file: the labels (written out, read from a label file, or given by the
//! gold reward), the reward model trained on them, runs on the policy and best-of-n, each
//! measured as the frontier measures. The page exports what it ran as this file and imports
//! one; `alignlab run FILE` runs it. Both make the same lab calls in the same order — labels, then
//! the reward model step by step, then each run from the base step by step, then best-of-n — so
//! on one backend they give the same numbers.

use crate::backend::AutodiffBackend;
use burn::module::AutodiffModule;
use serde::{Deserialize, Serialize};

use super::{Lab, LabConfig, Label, RewardProgress, RewardSettings, RunProgress, RunSettings};
use crate::algo::best_of_n::BestOfNPoint;
use crate::error::{Error, Result};
use crate::frontier::measure::FrontierPoint;
use crate::model::{Llama, RewardEnsemble, RewardModel};

/// An experiment, as its TOML file states it. Unknown keys are errors naming the key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    /// The policy and reference: `builtin`, or a model file (GGUF, llama2.c with `tokenizer`,
    /// an alignlab safetensors checkpoint); a relative path is read from the experiment's folder.
    #[serde(default = "builtin")]
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<String>,
    #[serde(default)]
    pub lab: LabConfig,
    #[serde(default)]
    pub labels: LabelSource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reward_model: Option<RewardSettings>,
    /// Runs on the policy, each from the base, in order.
    #[serde(default, rename = "run", skip_serializing_if = "Vec::is_empty")]
    pub runs: Vec<RunSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_of_n: Option<BestOfNSettings>,
}

fn builtin() -> String {
    "builtin".into()
}

/// The labels an experiment trains on, in this order: `gold` pairs labelled by the gold reward
/// (pair numbers 0, 1, …, sampled from the base policy), then `file`'s, then those written out.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelSource {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub gold: usize,
    /// A label file as the page exports it (pairs or rankings, JSON lines); read by the caller
    /// ([`Experiment::take_label_file`]) since the page has no files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(default, rename = "label", skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<Label>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BestOfNSettings {
    pub ns: Vec<usize>,
    /// Held-out prompts measured (at most the lab's `eval_prompts`).
    pub prompts: usize,
}

impl Experiment {
    /// Reads an experiment file's text; `source` names it in errors (with line and column).
    pub fn parse(text: &str, source: &str) -> Result<Self> {
        toml::from_str(text).map_err(|e| Error::format(source, e.to_string()))
    }

    pub fn to_toml(&self) -> Result<String> {
        toml::to_string(self)
            .map_err(|e| Error::Input(format!("the experiment cannot be written as TOML: {e}")))
    }

    /// The label file's path, taken out so the caller can read it and add its labels
    /// (`labels.items`); the file's labels come before the written-out ones.
    pub fn take_label_file(&mut self) -> Option<String> {
        self.labels.file.take()
    }

    /// Prepends labels read from the label file.
    pub fn add_file_labels(&mut self, mut labels: Vec<Label>) {
        labels.append(&mut self.labels.items);
        self.labels.items = labels;
    }
}

/// Everything an experiment measured, step by step.
#[derive(Debug, Clone, Serialize)]
pub struct ExperimentLog {
    /// Pairs the labels state.
    pub pairs: usize,
    pub reward_model: Vec<RewardProgress>,
    pub runs: Vec<RunLog>,
    pub best_of_n: Vec<BestOfNPoint>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunLog {
    pub name: String,
    /// The base policy measured at the start (step 0).
    pub base: FrontierPoint,
    pub steps: Vec<RunProgress>,
}

/// What an experiment reports as it goes (the CLI prints it).
pub enum Progress<'a> {
    Labels {
        pairs: usize,
    },
    RewardModel(&'a RewardProgress),
    RunStarted {
        name: &'a str,
        base: &'a FrontierPoint,
    },
    Run(&'a RunProgress),
    BestOfN(&'a [BestOfNPoint]),
}

/// Runs `experiment` on `lab` (opened on its model with its `lab` settings).
pub async fn run<B: AutodiffBackend>(
    lab: &mut Lab<B>,
    experiment: &Experiment,
    mut progress: impl FnMut(Progress<'_>),
) -> Result<ExperimentLog>
where
    Llama<B>: AutodiffModule<B, InnerModule = Llama<B::InnerBackend>>,
    RewardModel<B>: AutodiffModule<B, InnerModule = RewardModel<B::InnerBackend>>,
    RewardEnsemble<B>: AutodiffModule<B, InnerModule = RewardEnsemble<B::InnerBackend>>,
{
    if let Some(file) = &experiment.labels.file {
        return Err(Error::Input(format!(
            "labels.file `{file}` was not read: the caller reads label files"
        )));
    }
    let mut labels = lab.gold_labels(0, experiment.labels.gold).await?;
    labels.extend(experiment.labels.items.iter().cloned());
    let pairs = lab.set_labels(&labels)?;
    progress(Progress::Labels { pairs });
    let mut log = ExperimentLog {
        pairs,
        reward_model: Vec::new(),
        runs: Vec::new(),
        best_of_n: Vec::new(),
    };
    if let Some(settings) = &experiment.reward_model {
        lab.reward_start(settings)?;
        loop {
            let mut step = lab.reward_step().await?;
            progress(Progress::RewardModel(&step));
            let done = step.done;
            // The log holds what reproduces on any machine; throughput does not.
            step.speed = None;
            log.reward_model.push(step);
            if done {
                break;
            }
        }
    }
    for settings in &experiment.runs {
        let base = lab.run_start(settings).await?;
        let name = lab.info().run.unwrap_or_default();
        progress(Progress::RunStarted {
            name: &name,
            base: &base,
        });
        let mut steps = Vec::new();
        loop {
            let mut step = lab.run_step().await?;
            progress(Progress::Run(&step));
            let done = step.done;
            step.speed = None;
            steps.push(step);
            if done {
                break;
            }
        }
        log.runs.push(RunLog { name, base, steps });
    }
    if let Some(bon) = &experiment.best_of_n {
        log.best_of_n = lab.best_of_n(&bon.ns, bon.prompts).await?;
        // The log holds what reproduces on any machine; throughput does not.
        for point in &mut log.best_of_n {
            point.tokens_per_second = None;
        }
        progress(Progress::BestOfN(&log.best_of_n));
    }
    Ok(log)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::{Choice, Labeller, PairLabel, RankingLabel};

    const FILE: &str = r#"
model = "builtin"

[lab]
seed = 3
eval_prompts = 4

[labels]
gold = 24

[[labels.label]]
prompt = "Once upon a time"
left = " there was a cat."
right = " it rained."
choice = "left"

[[labels.label]]
prompt = "The dog"
ranked = [" ran home.", " sat.", " was sad."]

[reward_model]
steps = 4
batch_size = 8

[[run]]
method = "grpo"
kl_coef = 0.05
steps = 2
eval_every = 1

[run.settings]
group_size = 2

[[run]]
method = "dpo"
kl_coef = 0.1
steps = 2

[best_of_n]
ns = [1, 2, 4]
prompts = 2
"#;

    #[test]
    fn a_file_reads_with_the_labs_defaults_and_writes_back_the_same() {
        let experiment = Experiment::parse(FILE, "e.toml").unwrap();
        assert_eq!(experiment.lab.seed, 3);
        assert_eq!(
            experiment.lab.max_new_tokens,
            LabConfig::default().max_new_tokens
        );
        assert_eq!(experiment.labels.gold, 24);
        assert_eq!(
            experiment.labels.items[0],
            Label::Pair(PairLabel {
                prompt: "Once upon a time".into(),
                left: " there was a cat.".into(),
                right: " it rained.".into(),
                choice: Choice::Left,
                labeller: Labeller::Human,
            })
        );
        assert!(matches!(
            &experiment.labels.items[1],
            Label::Ranking(RankingLabel { ranked, .. }) if ranked.len() == 3
        ));
        assert_eq!(experiment.runs.len(), 2);
        assert_eq!(
            experiment.runs[0].settings,
            crate::algo::spec::Settings::new().with("group_size", 2.0)
        );
        assert_eq!(experiment.runs[1].eval_every, 2);
        let written = experiment.to_toml().unwrap();
        assert_eq!(Experiment::parse(&written, "written").unwrap(), experiment);
    }

    #[test]
    fn an_unknown_key_is_named_with_its_line() {
        let bad = FILE.replace("batch_size = 8", "batch_sise = 8");
        let message = Experiment::parse(&bad, "e.toml").unwrap_err().to_string();
        assert!(message.starts_with("e.toml"), "{message}");
        assert!(message.contains("batch_sise"), "{message}");
        assert!(message.contains("line 23"), "{message}");
    }

    #[test]
    fn file_labels_come_before_the_written_ones() {
        let mut experiment = Experiment::parse(FILE, "e.toml").unwrap();
        experiment.labels.file = Some("labels.jsonl".into());
        assert_eq!(
            experiment.take_label_file().as_deref(),
            Some("labels.jsonl")
        );
        let first = experiment.labels.items[0].clone();
        experiment.add_file_labels(vec![experiment.labels.items[1].clone()]);
        assert_eq!(experiment.labels.items.len(), 3);
        assert_eq!(experiment.labels.items[1], first);
    }
}

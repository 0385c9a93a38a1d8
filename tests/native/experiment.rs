//! One small experiment two ways: through the calls the page's worker makes (the lab, in this
//! process) and through `alignlab run FILE` (the CLI, another process). Every step's numbers are
//! the same, to the bit, on flex. (Natively, ndarray is not run-to-run deterministic when it
//! trains: burn-autodiff's backward of `div` and `log` calls burn-ndarray's `recip`, which uses the
//! CPU's approximate reciprocal on the aligned middle of each buffer; see `ops::reciprocal`. In the
//! browser its reciprocal is exact.)

use crate::common::temp_path;
use alignlab::lab::experiment::{Experiment, ExperimentLog, RunLog};
use alignlab::lab::Lab;
use alignlab::policy;
use burn::backend::Autodiff;

type Cpu = Autodiff<burn::backend::Flex>;

const EXPERIMENT: &str = r#"
model = "builtin"

[lab]
seed = 3
eval_prompts = 4
samples_per_prompt = 2
max_new_tokens = 12

[labels]
gold = 24

[reward_model]
steps = 4
batch_size = 8

[[run]]
method = "grpo"
kl_coef = 0.05
steps = 2
eval_every = 1

[run.settings]
prompts_per_step = 2
group_size = 2

[[run]]
method = "dpo"
kl_coef = 0.1
steps = 2

[best_of_n]
ns = [1, 2, 4]
prompts = 2
"#;

/// What `web/js/app.js` does: gold-label pairs 0.., send every label, train the reward model a
/// step per call, then start each run (sending the labels again) and step it to the end, then
/// best-of-n.
fn as_the_page_does(experiment: &Experiment) -> ExperimentLog {
    let device = Default::default();
    let checkpoint = policy::builtin_checkpoint().unwrap();
    let mut lab = Lab::<Cpu>::new(checkpoint, &device, experiment.lab.clone()).unwrap();
    let labels = pollster::block_on(lab.gold_labels(0, experiment.labels.gold)).unwrap();
    let pairs = lab.set_labels(&labels).unwrap();
    let settings = experiment.reward_model.as_ref().unwrap();
    lab.reward_start(settings).unwrap();
    let mut reward_model = vec![pollster::block_on(lab.reward_step()).unwrap()];
    while !reward_model.last().unwrap().done {
        reward_model.push(pollster::block_on(lab.reward_step()).unwrap());
    }
    // A log keeps what reproduces anywhere: the page shows each step's speed but does not log it.
    for step in &mut reward_model {
        step.speed = None;
    }
    let mut runs = Vec::new();
    for settings in &experiment.runs {
        lab.set_labels(&labels).unwrap();
        let base = pollster::block_on(lab.run_start(settings)).unwrap();
        let mut steps = vec![pollster::block_on(lab.run_step()).unwrap()];
        while !steps.last().unwrap().done {
            steps.push(pollster::block_on(lab.run_step()).unwrap());
        }
        for step in &mut steps {
            step.speed = None;
        }
        runs.push(RunLog {
            name: steps[0].name.clone(),
            base,
            steps,
        });
    }
    let bon = experiment.best_of_n.as_ref().unwrap();
    let mut best_of_n = pollster::block_on(lab.best_of_n(&bon.ns, bon.prompts)).unwrap();
    // A log keeps what reproduces anywhere; the page shows the throughput but does not log it.
    for point in &mut best_of_n {
        point.tokens_per_second = None;
    }
    ExperimentLog {
        pairs,
        reward_model,
        runs,
        best_of_n,
    }
}

#[test]
fn the_page_and_the_cli_run_one_experiment_to_the_same_numbers() {
    let dir = temp_path("experiment");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("experiment.toml");
    std::fs::write(&file, EXPERIMENT).unwrap();
    let out = dir.join("out");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_alignlab"))
        .args(["--backend", "flex", "run"])
        .arg(&file)
        .arg("--out")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let cli_text = std::fs::read_to_string(out.join("experiment.json")).unwrap();
    let experiment = Experiment::parse(EXPERIMENT, "experiment.toml").unwrap();
    // Written as the CLI writes it: the shortest text of each f64 is unique, so equal text is
    // equal bits (reading JSON back may round the last bit).
    let page_text = serde_json::to_string_pretty(&as_the_page_does(&experiment)).unwrap();
    let page: serde_json::Value = serde_json::from_str(&page_text).unwrap();
    let cli: serde_json::Value = serde_json::from_str(&cli_text).unwrap();
    // Something was measured: the reward model's 4 steps, 2 runs of 2 steps, 3 values of n.
    assert_eq!(page["reward_model"].as_array().unwrap().len(), 4);
    assert_eq!(page["runs"][1]["steps"].as_array().unwrap().len(), 2);
    assert_eq!(page["best_of_n"].as_array().unwrap().len(), 3);
    if let Some(path) = first_difference(&page, &cli, "log") {
        panic!("the page and the CLI differ at {path}");
    }
    assert_eq!(page_text, cli_text);
    let csv = std::fs::read_to_string(out.join("points.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 3 + 2, "{csv}");
}

/// The path of the first value that differs between `a` and `b`, if any.
fn first_difference(a: &serde_json::Value, b: &serde_json::Value, path: &str) -> Option<String> {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find_map(|k| match (x.get(k), y.get(k)) {
                (Some(u), Some(v)) => first_difference(u, v, &format!("{path}.{k}")),
                _ => Some(format!("{path}.{k} (missing on one side)")),
            })
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (u, v))| first_difference(u, v, &format!("{path}[{i}]"))),
        _ => (a != b).then(|| format!("{path}: {a} against {b}")),
    }
}

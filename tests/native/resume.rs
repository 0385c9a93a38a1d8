//! Checkpoints of online runs: a run stopped after k steps and resumed from disk reproduces the
//! uninterrupted run exactly on the CPU backend — metrics and weights — for PPO (policy, critic,
//! two optimisers, adaptive β) and GRPO.

use crate::common::{temp_path, Cpu};
use alignlab::algo::policy_gradient::PolicyGradientConfig;
use alignlab::metrics::Metrics;
use alignlab::model::Llama;
use alignlab::policy;
use alignlab::prompts;
use alignlab::reward::source::RewardSource;
use alignlab::run::checkpoint::{latest, resume};
use alignlab::run::{OnlineAlgorithm, OnlineRun, OnlineRunConfig};
use alignlab::sample::SamplingConfig;
use alignlab::train::OptimConfig;
use burn::backend::Autodiff;
use burn::module::AutodiffModule;

type Train = Autodiff<Cpu>;

fn config(algorithm: OnlineAlgorithm) -> OnlineRunConfig {
    OnlineRunConfig {
        algorithm,
        kl_coef: 0.05,
        target_kl: (algorithm == OnlineAlgorithm::Ppo).then_some(2.0),
        group_size: 4,
        prompts_per_step: 4,
        sampling: SamplingConfig {
            max_new_tokens: 12,
            ..Default::default()
        },
        policy_gradient: PolicyGradientConfig {
            epochs: 2,
            minibatch_size: 8,
            ..Default::default()
        },
        optim: OptimConfig {
            lr: 2e-3,
            warmup_steps: 2,
            total_steps: 4,
            ..Default::default()
        },
        seed: 3,
    }
}

async fn weights(model: &Llama<Train>) -> Vec<(String, Vec<f32>)> {
    let w = model.valid().to_weights().await.unwrap();
    w.tensors
        .into_iter()
        .map(|(name, t)| (name, t.data))
        .collect()
}

fn check(algorithm: OnlineAlgorithm) {
    let device = Default::default();
    let (policy, tokenizer) = policy::load::<Train>(policy::BUILTIN, None, &device).unwrap();
    let reference = policy.valid();
    let prompts = prompts::load("world", 32, 0).unwrap();
    let reward = RewardSource::<Cpu>::Gold;
    let step = |run: &mut OnlineRun<Train>, reference: &Llama<Cpu>| -> Metrics {
        pollster::block_on(run.step(reference, &tokenizer, &prompts, &reward, None)).unwrap()
    };

    let mut straight = OnlineRun::new(policy.clone(), config(algorithm));
    let uninterrupted: Vec<Metrics> = (0..4).map(|_| step(&mut straight, &reference)).collect();

    let dir = temp_path(&format!("resume-{}", algorithm.name()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut first = OnlineRun::new(policy, config(algorithm));
    for _ in 0..2 {
        step(&mut first, &reference);
    }
    let saved = pollster::block_on(first.save_checkpoint(&reference, &tokenizer, &dir)).unwrap();
    drop(first);
    assert_eq!(latest(&dir).unwrap(), saved);
    let restored = resume::<Train>(&dir, &device).unwrap();
    let (mut resumed, saved_reference) = (restored.run, restored.reference);
    assert_eq!(resumed.step, 2);
    let continued: Vec<Metrics> = (0..2)
        .map(|_| step(&mut resumed, &saved_reference))
        .collect();
    for (a, b) in uninterrupted[2..].iter().zip(&continued) {
        assert_eq!(a, b, "{} metrics differ after resuming", algorithm.name());
    }
    assert_eq!(
        pollster::block_on(weights(straight.policy())),
        pollster::block_on(weights(resumed.policy())),
        "{} weights differ after resuming",
        algorithm.name()
    );
    // The run moved: resuming is not trivially equal because nothing changed.
    assert_ne!(uninterrupted[0].values, uninterrupted[3].values);
}

#[test]
fn a_resumed_ppo_run_reproduces_the_uninterrupted_run_exactly() {
    check(OnlineAlgorithm::Ppo);
}

#[test]
fn a_resumed_grpo_run_reproduces_the_uninterrupted_run_exactly() {
    check(OnlineAlgorithm::Grpo);
}

#[test]
fn resuming_from_a_folder_without_checkpoints_says_so() {
    let dir = temp_path("resume-empty");
    std::fs::create_dir_all(&dir).unwrap();
    let e = resume::<Train>(&dir, &Default::default()).err().unwrap();
    assert!(e.to_string().contains("no checkpoint here"), "{e}");
    std::fs::write(dir.join("run.json"), "{not json").unwrap();
    let e = resume::<Train>(&dir, &Default::default()).err().unwrap();
    assert!(e.to_string().contains("run.json"), "{e}");
}

//! Online methods on the built-in world: GRPO with an exact-answer verifier raises held-out
//! accuracy on the sum task; RLOO against the gold reward raises the reward of its samples.

mod common;

use std::collections::HashMap;

use alignlab::algo::policy_gradient::{LossAggregation, PolicyGradientConfig};
use alignlab::metrics::{self, Metrics};
use alignlab::model::Llama;
use alignlab::online::{online_step, OnlineConfig, OnlineMethod};
use alignlab::reward::source::RewardSource;
use alignlab::sample::SamplingConfig;
use alignlab::train::{OptimConfig, Trainer};
use alignlab::world::eval::{held_out_sum_accuracy, sum_tasks};
use alignlab::{policy, world};
use burn::backend::Autodiff;
use burn::module::AutodiffModule;
use common::Cpu;

type Train = Autodiff<Cpu>;

fn run(
    method: OnlineMethod,
    reward: &RewardSource<Cpu>,
    prompts: &[String],
    steps: usize,
    max_new_tokens: usize,
    kl: (f64, f64),
) -> (Llama<Train>, Vec<Metrics>) {
    let device = Default::default();
    let (mut model, tokenizer) = policy::load::<Train>(policy::BUILTIN, None, &device).unwrap();
    let reference = model.valid();
    let config = OnlineConfig {
        method,
        group_size: 8,
        prompts_per_step: 16,
        sampling: SamplingConfig {
            max_new_tokens,
            ..Default::default()
        },
        policy_gradient: PolicyGradientConfig {
            kl_loss_coef: kl.0,
            aggregation: LossAggregation::SequenceMean,
            minibatch_size: 64,
            max_completion_length: max_new_tokens + 1,
            ..Default::default()
        },
        kl_coef: kl.1,
    };
    let mut trainer = Trainer::new(OptimConfig {
        lr: 1e-3,
        warmup_steps: 2,
        total_steps: steps * 2,
        ..Default::default()
    });
    let mut history = Vec::new();
    for step in 0..steps {
        let start = (step * config.prompts_per_step) % prompts.len();
        let batch: Vec<String> = (0..config.prompts_per_step)
            .map(|i| prompts[(start + i) % prompts.len()].clone())
            .collect();
        let (next, m) = pollster::block_on(online_step(
            model,
            &reference,
            &mut trainer,
            &tokenizer,
            &batch,
            reward,
            &config,
            step as u64,
        ))
        .unwrap();
        model = next;
        history.push(m);
    }
    (model, history)
}

#[test]
fn grpo_with_a_verifier_raises_held_out_sum_accuracy() {
    let tasks = sum_tasks(5, 400);
    let answers: HashMap<String, String> = tasks
        .iter()
        .map(|t| (t.question.clone(), t.answer.to_string()))
        .collect();
    let prompts: Vec<String> = tasks.iter().map(|t| t.question.clone()).collect();
    let reward = RewardSource::Verifier { answers };
    let tokenizer = world::tokenizer();
    let (base, _) = policy::load::<Cpu>(policy::BUILTIN, None, &Default::default()).unwrap();
    let before = pollster::block_on(held_out_sum_accuracy(&base, &tokenizer, 300)).unwrap();
    let (trained, history) = run(
        OnlineMethod::Grpo { scale_by_std: true },
        &reward,
        &prompts,
        80,
        2,
        (0.04, 0.0),
    );
    let after =
        pollster::block_on(held_out_sum_accuracy(&trained.valid(), &tokenizer, 300)).unwrap();
    let scores: Vec<f64> = history
        .iter()
        .map(|m| m.get(metrics::OBJECTIVE_SCORES).unwrap())
        .collect();
    println!("held-out sum accuracy {before:.3} → {after:.3}; training scores {scores:?}");
    for m in &history {
        for name in [
            metrics::OBJECTIVE_KL,
            "policy/clipfrac",
            "policy/approxkl",
            metrics::OBJECTIVE_ENTROPY,
        ] {
            assert!(m.get(name).unwrap().is_finite(), "{name}: {m:?}");
        }
    }
    // Two binomial 95% half-widths at n = 300 are about 0.11.
    assert!(
        after > before + 0.11,
        "held-out accuracy {before} → {after}"
    );
}

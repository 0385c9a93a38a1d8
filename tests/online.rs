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

/// Mean gold reward (95% CI) of one sample for each of 200 held-out world prompts.
fn held_out_gold(model: &Llama<Cpu>) -> alignlab::metrics::MeanCi {
    let sampling = SamplingConfig {
        max_new_tokens: 32,
        seed: 3,
        ..Default::default()
    };
    pollster::block_on(world::eval::held_out_gold_reward(
        model,
        &world::tokenizer(),
        200,
        &sampling,
    ))
    .unwrap()
    .reward
}

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
            None,
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

#[test]
fn rloo_against_the_gold_reward_raises_the_gold_reward_of_samples() {
    let mut w = world::World::new(8);
    let prompts: Vec<String> = (0..400).map(|_| w.prompt().prompt).collect();
    let (base, _) = policy::load::<Cpu>(policy::BUILTIN, None, &Default::default()).unwrap();
    let before = held_out_gold(&base);
    let (trained, history) = run(
        OnlineMethod::Rloo,
        &RewardSource::Gold,
        &prompts,
        25,
        32,
        (0.0, 0.05),
    );
    let after = held_out_gold(&trained.valid());
    let kl: Vec<f64> = history
        .iter()
        .map(|m| m.get(metrics::OBJECTIVE_KL).unwrap())
        .collect();
    println!("gold reward {before} → {after}; KL by step {kl:?}");
    assert!(
        after.mean - after.ci95 > before.mean + before.ci95,
        "{before} → {after}"
    );
    // The policy moved away from the reference, and the penalty saw it.
    assert!(kl.last().unwrap() > &0.1, "{kl:?}");
}

#[test]
fn ppo_with_a_value_model_raises_the_gold_reward_and_its_value_head_learns() {
    use alignlab::algo::kl_controller::KlController;
    use alignlab::algo::ppo::{ppo_step, PpoConfig, PpoState};
    use alignlab::model::RewardModel;

    let device = Default::default();
    let (mut policy, tokenizer) = policy::load::<Train>(policy::BUILTIN, None, &device).unwrap();
    let reference = policy.valid();
    let mut value_model = RewardModel::from_policy(policy.clone(), 1, 9);
    let optim = |lr| OptimConfig {
        lr,
        warmup_steps: 2,
        total_steps: 200,
        ..Default::default()
    };
    let mut state = PpoState {
        policy_trainer: Trainer::new(optim(5e-4)),
        value_trainer: Trainer::new(optim(3e-3)),
        kl: KlController::Adaptive {
            kl_coef: 0.05,
            target: 4.0,
            horizon: 1000.0,
        },
    };
    let config = PpoConfig {
        samples_per_prompt: 1,
        sampling: SamplingConfig {
            max_new_tokens: 32,
            ..Default::default()
        },
        policy_gradient: PolicyGradientConfig {
            epochs: 2,
            minibatch_size: 32,
            aggregation: LossAggregation::TokenMean,
            max_completion_length: 33,
            ..Default::default()
        },
        ..Default::default()
    };
    let mut w = world::World::new(9);
    let prompts: Vec<String> = (0..64 * 20).map(|_| w.prompt().prompt).collect();
    let mut history = Vec::new();
    for (step, batch) in prompts.chunks(64).enumerate() {
        let (p, v, m) = pollster::block_on(ppo_step(
            policy,
            value_model,
            &mut state,
            &reference,
            &tokenizer,
            batch,
            &RewardSource::Gold,
            None,
            &config,
            step as u64,
        ))
        .unwrap();
        policy = p;
        value_model = v;
        history.push(m);
    }
    let get = |m: &Metrics, name: &str| m.get(name).unwrap();
    let first: f64 = history[..4]
        .iter()
        .map(|m| get(m, metrics::OBJECTIVE_SCORES))
        .sum::<f64>()
        / 4.0;
    let last: f64 = history[16..]
        .iter()
        .map(|m| get(m, metrics::OBJECTIVE_SCORES))
        .sum::<f64>()
        / 4.0;
    let variance: Vec<f64> = history
        .iter()
        .map(|m| get(m, "val/explained_variance"))
        .collect();
    let value_loss: Vec<f64> = history.iter().map(|m| get(m, "loss/value")).collect();
    println!("value loss {value_loss:?}");
    let betas: Vec<f64> = history.iter().map(|m| get(m, metrics::KL_COEF)).collect();
    println!("PPO scores {first:.3} → {last:.3}; explained variance {variance:?}; β {betas:?}");
    assert!(last > first + 1.0, "scores {first} → {last}");
    // The value head explains part of the return by the end (it starts at none).
    assert!(
        variance[16..].iter().sum::<f64>() / 4.0 > 0.1,
        "{variance:?}"
    );
    assert_ne!(
        betas.first(),
        betas.last(),
        "the adaptive controller never moved"
    );
}

#[test]
fn raft_keeps_the_best_samples_and_raises_their_reward() {
    use alignlab::algo::raft::raft_round;

    let device = Default::default();
    let (mut policy, tokenizer) = policy::load::<Train>(policy::BUILTIN, None, &device).unwrap();
    let reference = policy.valid();
    let mut trainer = Trainer::new(OptimConfig {
        lr: 1e-3,
        warmup_steps: 2,
        total_steps: 40,
        ..Default::default()
    });
    let mut w = world::World::new(10);
    let prompts: Vec<String> = (0..32 * 6).map(|_| w.prompt().prompt).collect();
    let mut history = Vec::new();
    for (round, batch) in prompts.chunks(32).enumerate() {
        let sampling = SamplingConfig {
            max_new_tokens: 32,
            seed: round as u64,
            ..Default::default()
        };
        let (p, m) = pollster::block_on(raft_round(
            policy,
            &mut trainer,
            &reference,
            &tokenizer,
            batch,
            &RewardSource::Gold,
            4,
            &sampling,
            16,
        ))
        .unwrap();
        policy = p;
        history.push(m);
    }
    let scores: Vec<f64> = history
        .iter()
        .map(|m| m.get(metrics::OBJECTIVE_SCORES).unwrap())
        .collect();
    let kept: Vec<f64> = history
        .iter()
        .map(|m| m.get("raft/kept_scores").unwrap())
        .collect();
    println!("RAFT sample scores {scores:?}, kept {kept:?}");
    // The kept samples are the best of each group, so they score at least the mean.
    assert!(scores.iter().zip(&kept).all(|(s, k)| k >= s));
    assert!(
        scores[4..].iter().sum::<f64>() / 2.0 > scores[..2].iter().sum::<f64>() / 2.0 + 1.0,
        "{scores:?}"
    );
}

#[test]
fn best_of_n_buys_reward_with_kl_near_the_analytic_curve() {
    use alignlab::algo::best_of_n::measure;
    use alignlab::reward::{LearnedReward, RewardHeads};

    let device = Default::default();
    let (policy, tokenizer) = policy::load::<Cpu>(policy::BUILTIN, None, &device).unwrap();
    // Any continuous reward makes the identity exact; a fresh reward head on the trunk is one.
    let reward = RewardSource::Learned(Box::new(
        LearnedReward::from_policy(policy.clone(), RewardHeads::single(), 5).unwrap(),
    ));
    let mut w = world::World::new(12);
    let prompts: Vec<String> = (0..12).map(|_| w.prompt().prompt).collect();
    let sampling = SamplingConfig {
        max_new_tokens: 16,
        ..Default::default()
    };
    let points = pollster::block_on(measure(
        &policy,
        &tokenizer,
        &prompts,
        &reward,
        Some(&RewardSource::Gold),
        &[1, 2, 4],
        192,
        16,
        &sampling,
    ))
    .unwrap();
    for p in &points {
        println!(
            "n={} analytic {:.3} estimated {} reward {}",
            p.n, p.analytic_kl, p.estimated_kl, p.reward
        );
        // MC error of the selected samples, plus the pool's: (n−1)·√((1−F)/(F·M·prompts)) ≲ 0.1.
        assert!(
            (p.estimated_kl.mean - p.analytic_kl).abs() < p.estimated_kl.ci95 + 0.1,
            "n={}: {} vs {}",
            p.n,
            p.estimated_kl,
            p.analytic_kl
        );
    }
    assert!(
        points[2].reward.mean > points[1].reward.mean
            && points[1].reward.mean > points[0].reward.mean
    );
}

#[test]
fn an_update_that_moves_too_far_is_rolled_back_and_reported() {
    let device = Default::default();
    let (policy, tokenizer) = policy::load::<Train>(policy::BUILTIN, None, &device).unwrap();
    let reference = policy.valid();
    let before = pollster::block_on(reference.to_weights()).unwrap();
    let mut w = world::World::new(13);
    let prompts: Vec<String> = (0..8).map(|_| w.prompt().prompt).collect();
    let config = OnlineConfig {
        method: OnlineMethod::Grpo { scale_by_std: true },
        group_size: 4,
        prompts_per_step: 8,
        sampling: SamplingConfig {
            max_new_tokens: 16,
            ..Default::default()
        },
        policy_gradient: PolicyGradientConfig {
            minibatch_size: 8,
            epochs: 2,
            // Any movement at all counts as too far: the second minibatch sees it.
            max_approx_kl: Some(1e-12),
            ..Default::default()
        },
        kl_coef: 0.0,
    };
    let mut trainer = Trainer::new(OptimConfig {
        lr: 1e-2,
        ..Default::default()
    });
    let (policy, m) = pollster::block_on(online_step(
        policy,
        &reference,
        &mut trainer,
        &tokenizer,
        &prompts,
        &RewardSource::Gold,
        None,
        &config,
        0,
    ))
    .unwrap();
    assert_eq!(m.get("policy/rolled_back"), Some(1.0), "{m:?}");
    assert_eq!(m.get("policy/rolled_back_at_minibatch"), Some(1.0), "{m:?}");
    let after = pollster::block_on(policy.valid().to_weights()).unwrap();
    assert_eq!(before.tensors, after.tensors);
}

#[test]
fn reinforce_pp_through_an_online_run_raises_the_gold_reward_of_samples() {
    use alignlab::run::{OnlineAlgorithm, OnlineRun, OnlineRunConfig};
    let tokenizer = world::tokenizer();
    let (base, _) = policy::load::<Train>(policy::BUILTIN, None, &Default::default()).unwrap();
    let reference = base.valid();
    let before = held_out_gold(&reference);
    let prompts = alignlab::prompts::load("world", 400, 8).unwrap();
    let mut run = OnlineRun::new(
        base,
        OnlineRunConfig {
            algorithm: OnlineAlgorithm::ReinforcePp,
            kl_coef: 0.05,
            target_kl: None,
            group_size: 4,
            prompts_per_step: 32,
            sampling: SamplingConfig {
                max_new_tokens: 32,
                ..Default::default()
            },
            policy_gradient: PolicyGradientConfig {
                minibatch_size: 64,
                ..Default::default()
            },
            optim: OptimConfig {
                lr: 1e-3,
                warmup_steps: 2,
                total_steps: 50,
                ..Default::default()
            },
            seed: 1,
        },
    );
    for _ in 0..25 {
        pollster::block_on(run.step(&reference, &tokenizer, &prompts, &RewardSource::Gold, None))
            .unwrap();
    }
    let after = held_out_gold(&run.policy().valid());
    println!("REINFORCE++: gold reward {before} → {after}");
    assert!(
        after.mean - after.ci95 > before.mean + before.ci95,
        "{before} → {after}"
    );
}

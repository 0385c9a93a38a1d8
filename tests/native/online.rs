//! Online methods on the built-in world: GRPO with an exact-answer verifier raises held-out
//! accuracy on the sum task; RLOO against the gold reward raises the reward of its samples.

use std::collections::HashMap;

use crate::common::Cpu;
use alignlab::algo::policy_gradient::{LossAggregation, PolicyGradientConfig};
use alignlab::metrics::{self, Metrics};
use alignlab::model::Llama;
use alignlab::reward::source::RewardSource;
use alignlab::rollout::RolloutContext;
use alignlab::run::group::{online_step, OnlineConfig};
use alignlab::run::OnlineAlgorithm;
use alignlab::sample::SamplingConfig;
use alignlab::train::{OptimConfig, Trainer};
use alignlab::world::eval::{held_out_sum_accuracy, sum_tasks};
use alignlab::{policy, world};
use burn::backend::Autodiff;
use burn::module::AutodiffModule;

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
    algorithm: OnlineAlgorithm,
    reward: &RewardSource<Cpu>,
    prompts: &[String],
    steps: usize,
    max_new_tokens: usize,
    kl: (f64, f64),
) -> (Llama<Train>, Vec<Metrics>) {
    let device = Default::default();
    let (mut model, tokenizer) = policy::load::<Train>(policy::BUILTIN, None, &device).unwrap();
    let reference = model.valid();
    let prompts_per_step = 16;
    let config = OnlineConfig {
        algorithm,
        group_size: 8,
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
        let start = (step * prompts_per_step) % prompts.len();
        let batch: Vec<String> = (0..prompts_per_step)
            .map(|i| prompts[(start + i) % prompts.len()].clone())
            .collect();
        let context = RolloutContext {
            reference: &reference,
            tokenizer: &tokenizer,
            prompts: &batch,
            reward,
            monitor: None,
            sampling: SamplingConfig {
                max_new_tokens,
                seed: step as u64,
                ..Default::default()
            },
            replica: Default::default(),
        };
        let (next, m) =
            pollster::block_on(online_step(model, &mut trainer, &context, &config)).unwrap();
        model = next;
        history.push(m);
    }
    (model, history)
}

/// `algorithm` on the world's sums against the exact-answer verifier for `steps` steps: held-out
/// accuracy before and after, and the training metrics.
fn on_the_sums(algorithm: OnlineAlgorithm, steps: usize) -> (f64, f64, Vec<Metrics>) {
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
    let (trained, history) = run(algorithm, &reward, &prompts, steps, 2, (0.04, 0.0));
    let after =
        pollster::block_on(held_out_sum_accuracy(&trained.valid(), &tokenizer, 300)).unwrap();
    (before, after, history)
}

#[test]
fn grpo_with_a_verifier_raises_held_out_sum_accuracy() {
    let (before, after, history) = on_the_sums(OnlineAlgorithm::Grpo, 40);
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
        OnlineAlgorithm::Rloo,
        &RewardSource::Gold,
        &prompts,
        12,
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

/// A rollout of `prompts` scored by the gold reward: 32 new tokens, seeded by `seed`.
fn gold_context<'a>(
    reference: &'a Llama<Cpu>,
    tokenizer: &'a alignlab::io::Tokenizer,
    prompts: &'a [String],
    seed: u64,
) -> RolloutContext<'a, Cpu> {
    RolloutContext {
        reference,
        tokenizer,
        prompts,
        reward: &RewardSource::Gold,
        monitor: None,
        sampling: SamplingConfig {
            max_new_tokens: 32,
            seed,
            ..Default::default()
        },
        replica: Default::default(),
    }
}

#[test]
fn ppo_with_a_value_model_raises_the_gold_reward_and_its_value_head_learns() {
    use alignlab::algo::kl_controller::KlController;
    use alignlab::algo::ppo::PpoConfig;
    use alignlab::model::RewardModel;
    use alignlab::run::ppo::{ppo_step, PpoLearner};

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
    let mut policy_trainer = Trainer::new(optim(5e-4));
    let mut value_trainer = Trainer::new(optim(3e-3));
    let mut kl = KlController::Adaptive {
        kl_coef: 0.05,
        target: 4.0,
        horizon: 1000.0,
    };
    let config = PpoConfig {
        samples_per_prompt: 1,
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
        let learner = PpoLearner {
            policy_trainer: &mut policy_trainer,
            value_trainer: &mut value_trainer,
            kl: &mut kl,
        };
        let context = gold_context(&reference, &tokenizer, batch, step as u64);
        let (p, v, m) =
            pollster::block_on(ppo_step(policy, value_model, learner, &context, &config)).unwrap();
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
    use alignlab::run::raft::raft_round;

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
        let context = gold_context(&reference, &tokenizer, batch, round as u64);
        let (p, m) = pollster::block_on(raft_round(policy, &mut trainer, &context, 4, 16)).unwrap();
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
    use alignlab::reward::{LearnedReward, RewardHeads};
    use alignlab::run::best_of_n::{measure, BestOfNPlan};

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
    let plan = BestOfNPlan {
        ns: vec![1, 2, 4],
        pool: 192,
        groups: 16,
        sampling,
    };
    let points = pollster::block_on(measure(
        &policy,
        &tokenizer,
        &prompts,
        &reward,
        Some(&RewardSource::Gold),
        &plan,
    ))
    .unwrap();
    for p in &points {
        println!(
            "n={} analytic {:.3} measured {} reward {}",
            p.n, p.analytic_kl, p.kl, p.reward
        );
        // The interval includes the pool's error; 0.1 more for the bias of log F̂.
        assert!(
            (p.kl.mean - p.analytic_kl).abs() < p.kl.ci95 + 0.1,
            "n={}: {} vs {}",
            p.n,
            p.kl,
            p.analytic_kl
        );
    }
    assert!(
        points[2].reward.mean > points[1].reward.mean
            && points[1].reward.mean > points[0].reward.mean
    );
}

#[test]
fn best_of_n_measured_kl_never_claims_more_than_its_bound() {
    // KL(π_bon‖π_ref) ≤ log n − (n−1)/n always (equality for a continuous reward without ties).
    // On the built-in world, over several seeds and every n up to 64, the measured KL's 95%
    // interval must cover the bound or lie below it: an interval wholly above it would claim a
    // KL best-of-n cannot have. Pools of 128 next to n = 64 are what a sweep uses; the
    // interval's bootstrap over prompts and pools is what keeps it honest there.
    use alignlab::reward::{LearnedReward, RewardHeads};
    use alignlab::run::best_of_n::{measure, BestOfNPlan};

    let device = Default::default();
    let (policy, tokenizer) = policy::load::<Cpu>(policy::BUILTIN, None, &device).unwrap();
    let mut w = world::World::new(31);
    let prompts: Vec<String> = (0..8).map(|_| w.prompt().prompt).collect();
    let mut worst_margin = f64::INFINITY;
    for seed in 0..3u64 {
        // A continuous reward (a fresh head on the trunk, drawn per seed) makes the bound tight.
        let reward = RewardSource::Learned(Box::new(
            LearnedReward::from_policy(policy.clone(), RewardHeads::single(), 40 + seed).unwrap(),
        ));
        let plan = BestOfNPlan {
            ns: vec![1, 2, 4, 8, 16, 32, 64],
            pool: 128,
            groups: 2,
            sampling: SamplingConfig {
                max_new_tokens: 12,
                seed: 1_000 * seed,
                ..Default::default()
            },
        };
        let points =
            pollster::block_on(measure(&policy, &tokenizer, &prompts, &reward, None, &plan))
                .unwrap();
        for p in &points {
            let margin = p.analytic_kl - (p.kl.mean - p.kl.ci95);
            println!(
                "seed {seed} n={:<2} measured {:.3} ± {:.3}  bound {:.3}  (bound − lower end {margin:+.3})",
                p.n, p.kl.mean, p.kl.ci95, p.analytic_kl
            );
            if p.n > 1 {
                worst_margin = worst_margin.min(margin);
            }
            assert!(
                margin >= 0.0,
                "seed {seed}, n={}: measured {} lies wholly above the bound {:.3}",
                p.n,
                p.kl,
                p.analytic_kl
            );
        }
    }
    println!("smallest (bound − lower end of the interval): {worst_margin:.3}");
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
        algorithm: OnlineAlgorithm::Grpo,
        group_size: 4,
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
    let context = RolloutContext {
        reference: &reference,
        tokenizer: &tokenizer,
        prompts: &prompts,
        reward: &RewardSource::Gold,
        monitor: None,
        sampling: SamplingConfig {
            max_new_tokens: 16,
            ..Default::default()
        },
        replica: Default::default(),
    };
    let (policy, m) =
        pollster::block_on(online_step(policy, &mut trainer, &context, &config)).unwrap();
    assert_eq!(m.get("policy/rolled_back"), Some(1.0), "{m:?}");
    assert_eq!(m.get("policy/rolled_back_at_minibatch"), Some(1.0), "{m:?}");
    let after = pollster::block_on(policy.valid().to_weights()).unwrap();
    assert_eq!(before.tensors, after.tensors);
}

#[test]
fn reinforce_pp_through_an_online_run_raises_the_gold_reward_of_samples() {
    use alignlab::run::{OnlineRun, OnlineRunConfig};
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
                total_steps: 24,
                ..Default::default()
            },
            seed: 1,
        },
    );
    for _ in 0..12 {
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

/// A GRPO run of `steps` steps on `devices` CPU devices: the weights after, and the metrics.
fn grpo_on(devices: usize, steps: usize) -> (alignlab::model::weights::NamedWeights, Vec<Metrics>) {
    use alignlab::distributed::{run_replicas, Cluster, DeviceList};
    use alignlab::run::{OnlineRun, OnlineRunConfig};
    let cluster = Cluster {
        devices: DeviceList::Cpu { count: devices },
        ..Default::default()
    };
    run_replicas::<Cpu, _, _>(&cluster, move |replica, _device| {
        let tokenizer = world::tokenizer();
        let (base, _) = policy::load::<Train>(policy::BUILTIN, None, &Default::default())?;
        let reference = base.valid();
        let prompts = alignlab::prompts::load("world", 400, 8)?;
        let mut run = OnlineRun::new(
            base,
            OnlineRunConfig {
                algorithm: OnlineAlgorithm::Grpo,
                kl_coef: 0.05,
                target_kl: None,
                group_size: 4,
                prompts_per_step: 6,
                sampling: SamplingConfig {
                    max_new_tokens: 16,
                    ..Default::default()
                },
                policy_gradient: PolicyGradientConfig {
                    minibatch_size: 12,
                    epochs: 2,
                    ..Default::default()
                },
                optim: OptimConfig {
                    lr: 1e-3,
                    warmup_steps: 1,
                    total_steps: 10,
                    ..Default::default()
                },
                seed: 3,
            },
        )
        .with_replica(replica);
        let mut history = Vec::new();
        for _ in 0..steps {
            history.push(pollster::block_on(run.step(
                &reference,
                &tokenizer,
                &prompts,
                &RewardSource::Gold,
                None,
            ))?);
        }
        Ok((
            pollster::block_on(run.policy().valid().to_weights())?,
            history,
        ))
    })
    .unwrap()
}

#[test]
fn a_grpo_step_on_two_cpu_devices_is_the_step_on_one() {
    // Each device samples and scores its 3 prompts' groups with the random streams the whole
    // batch would use; advantages come from the gathered rollout; each of the 4 minibatch
    // updates (2 epochs of 24 samples in 12s) is shared out and its gradients summed.
    let (one, one_history) = grpo_on(1, 2);
    let (two, two_history) = grpo_on(2, 2);
    let mut worst = (0.0f32, String::new());
    for (name, tensor) in &one.tensors {
        for (a, b) in tensor.data.iter().zip(&two.tensors[name].data) {
            if (a - b).abs() > worst.0 {
                worst = ((a - b).abs(), name.clone());
            }
        }
    }
    println!("GRPO, 2 steps: largest weight difference 1 vs 2 devices {worst:?}");
    assert!(worst.0 < 1e-5, "{worst:?}");
    for (a, b) in one_history.iter().zip(&two_history) {
        for (name, value) in &a.values {
            let other = b.get(name).unwrap_or(f64::NAN);
            // f32 sums taken in another order: equal to a few parts in a million.
            assert!(
                (value - other).abs() < 1e-4 * value.abs().max(1.0),
                "{name}: {value} vs {other}"
            );
        }
    }
    let (base, _) = policy::load::<Cpu>(policy::BUILTIN, None, &Default::default()).unwrap();
    let before = pollster::block_on(base.to_weights()).unwrap();
    assert_ne!(before.tensors, one.tensors, "the steps moved no weight");
}

#[test]
fn grpo_s_with_a_verifier_raises_held_out_sum_accuracy() {
    // The world's sums carry their difficulty: GRPO-S weighs each prompt's advantages by it.
    let (before, after, _) = on_the_sums(OnlineAlgorithm::GrpoS, 40);
    println!("GRPO-S: held-out sum accuracy {before:.3} → {after:.3}");
    assert!(
        after > before + 0.11,
        "held-out accuracy {before} → {after}"
    );
}

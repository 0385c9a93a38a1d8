//! The page's lab core, natively on the CPU: pairs to label, a reward model trained step by
//! step on labels, runs of an online method and of DPO measured against the base, best-of-n,
//! and the errors a user can cause.

use crate::common;

use alignlab::lab::{labels, Choice, Lab, LabConfig, Label, RewardSettings, RunSettings, PROXY};
use alignlab::policy::builtin_checkpoint;
use alignlab::Error;
use burn::backend::Autodiff;
use pollster::block_on;

type B = Autodiff<common::Cpu>;

fn lab() -> Lab<B> {
    Lab::new(
        builtin_checkpoint().unwrap(),
        &Default::default(),
        LabConfig {
            eval_prompts: 8,
            ..Default::default()
        },
    )
    .unwrap()
}

fn run_settings(method: &str, kl_coef: f64, steps: usize) -> RunSettings {
    serde_json::from_value(serde_json::json!({
        "method": method, "kl_coef": kl_coef, "steps": steps, "eval_every": 2
    }))
    .unwrap()
}

#[test]
fn labels_train_a_reward_model_then_runs_move_the_policy() {
    let mut lab = lab();
    let pair = block_on(lab.pair(3)).unwrap();
    assert_ne!(pair.left, pair.right);
    assert_eq!(
        block_on(lab.pair(3)).unwrap().left,
        pair.left,
        "a pair is fixed by its index"
    );

    // Nothing to optimise yet: clear errors, nothing started.
    let e = block_on(lab.run_start(&run_settings("ppo", 0.1, 2)))
        .err()
        .unwrap();
    assert!(
        e.to_string().contains("train one on your labels first"),
        "{e}"
    );
    // The lab's state is at fault, not the request: the page tells what to do first.
    assert!(matches!(e, Error::LabState(_)), "{e:?}");
    let e = block_on(lab.run_start(&run_settings("sgd", 0.1, 2)))
        .err()
        .unwrap();
    assert!(
        e.to_string().contains("grpo") && e.to_string().contains("kto"),
        "{e}"
    );
    assert!(
        matches!(e, Error::Input(_)),
        "an unknown method is a bad request: {e:?}"
    );
    let e = lab
        .reward_start(&RewardSettings {
            steps: Some(5),
            members: Some(1),
            lr: Some(3e-3),
            batch_size: Some(8),
        })
        .unwrap_err();
    assert!(e.to_string().contains("at least 2 labelled pairs"), "{e}");
    assert!(matches!(e, Error::LabState(_)), "{e:?}");

    let given = block_on(lab.gold_labels(0, 80)).unwrap();
    let chose = |c: Choice| {
        given
            .iter()
            .any(|l| matches!(l, Label::Pair(p) if p.choice == c))
    };
    assert!(chose(Choice::Left) && chose(Choice::Right));
    let pairs = lab.set_labels(&given).unwrap();
    assert_eq!(pairs, labels::pairs(&given).len());
    assert!(pairs >= 40, "{pairs} decided pairs");

    lab.reward_start(&RewardSettings {
        steps: Some(60),
        members: Some(1),
        lr: Some(3e-3),
        batch_size: Some(16),
    })
    .unwrap();
    let mut progress = Vec::new();
    loop {
        let p = block_on(lab.reward_step()).unwrap();
        let done = p.done;
        progress.push(p);
        if done {
            break;
        }
    }
    assert_eq!(progress.len(), 60);
    let first: f64 = progress[..10].iter().map(|p| p.loss).sum::<f64>() / 10.0;
    let last: f64 = progress[50..].iter().map(|p| p.loss).sum::<f64>() / 10.0;
    assert!(last < first - 0.05, "reward-model loss {first} → {last}");
    let end = progress.last().unwrap();
    assert!(end.held_out_pairs > 0 && end.held_out_accuracy.is_some());
    assert!(lab.info().reward_model);
    // Each step says what it cost: the reward model read 16 pairs (two sequences each) forward.
    for p in &progress {
        let speed = p.speed.expect("the lab times every step");
        assert!(speed.seconds > 0.0 && speed.tokens >= 32, "{speed:?}");
    }

    // GRPO against the reward model: the base point is at KL 0, later points moved away.
    let base = block_on(lab.run_start(&run_settings("grpo", 0.01, 4))).unwrap();
    assert_eq!(base.step, 0);
    assert!(base.kl.mean.abs() < 1e-4, "base KL {}", base.kl.mean);
    assert!(base.proxies.contains_key(PROXY));
    let steps: Vec<_> = (0..4).map(|_| block_on(lab.run_step()).unwrap()).collect();
    assert!(steps[0].point.is_none() && steps[1].point.is_some());
    assert!(steps[3].done);
    // A GRPO step decodes its rollouts and scores them: far more positions than one batch.
    for step in &steps {
        let speed = step.speed.expect("the lab times every step");
        assert!(
            speed.tokens > 100 && speed.tokens_per_second > 0.0,
            "{speed:?}"
        );
    }
    let moved = steps[3].point.as_ref().unwrap();
    assert!(
        moved.kl.mean > 1e-3,
        "KL after 4 GRPO steps {}",
        moved.kl.mean
    );
    let e = block_on(lab.run_step()).err().unwrap();
    assert!(matches!(e, Error::LabState(_)), "{e:?}");
    assert!(e.to_string().contains("finished its 4 steps"), "{e}");

    // DPO on the same labels, batched as the CLI batches: a fresh run from the base starts at
    // exactly ln 2 (policy = reference) and its loss falls below it (per-batch losses are noisy;
    // the mean of the last four of eight steps is the check).
    block_on(lab.run_start(&run_settings("dpo", 0.1, 8))).unwrap();
    let losses: Vec<f64> = (0..8)
        .map(|_| {
            block_on(lab.run_step())
                .unwrap()
                .metrics
                .get("train/loss")
                .unwrap()
        })
        .collect();
    let ln2 = std::f64::consts::LN_2;
    assert!((losses[0] - ln2).abs() < 1e-4, "DPO losses {losses:?}");
    let late = losses[4..].iter().sum::<f64>() / 4.0;
    assert!(late < ln2 - 0.05, "DPO losses {losses:?}");
    // KTO takes the pairs unpaired.
    block_on(lab.run_start(&run_settings("kto", 0.1, 1))).unwrap();
    assert!(block_on(lab.run_step()).unwrap().done);

    let bon = block_on(lab.best_of_n(&[1, 4], 4)).unwrap();
    assert_eq!(bon.len(), 2);
    assert!((bon[1].analytic_kl - (4f64.ln() - 0.75)).abs() < 1e-9);
    assert!(bon[1].reward.mean >= bon[0].reward.mean);
    // What each delivered completion costs: n samples, so best-of-4 delivers a quarter as fast.
    let speed = |i: usize| bon[i].tokens_per_second.unwrap();
    assert!(speed(0) > 0.0 && (speed(1) - speed(0) / 4.0).abs() < 1e-9 * speed(0));
    let samples = block_on(lab.samples(None, 2, 0)).unwrap();
    assert!(samples.iter().all(|s| s.proxy.is_some()));
}

#[test]
fn exported_labels_are_the_cli_pair_format() {
    let lab = lab();
    let given = block_on(lab.gold_labels(0, 6)).unwrap();
    let text = labels::export_jsonl(&given);
    let (rows, skipped) =
        alignlab::dataset::PreferenceRows::parse(text.as_bytes(), "labels.jsonl", false).unwrap();
    assert!(skipped.is_empty());
    match rows {
        alignlab::dataset::PreferenceRows::Pairs(p) => assert_eq!(p, labels::pairs(&given)),
        other => panic!("read as {:?}", other.kind()),
    }
}

#[test]
fn ranked_completions_train_the_reward_model_and_export_as_rankings() {
    let mut lab = lab();
    let to_rank = block_on(lab.ranking(5, 4)).unwrap();
    assert_eq!(to_rank.completions.len(), 4);
    for (i, c) in to_rank.completions.iter().enumerate() {
        assert!(!to_rank.completions[i + 1..].contains(c), "repeated: {c}");
    }
    assert_eq!(
        block_on(lab.ranking(5, 4)).unwrap().completions,
        to_rank.completions,
        "a ranking is fixed by its index"
    );
    let e = block_on(lab.ranking(5, 1)).err().unwrap();
    assert!(e.to_string().contains("2 to 8 completions"), "{e}");

    // Too few pairs to hold any out: all train.
    let few = block_on(lab.gold_rankings(0, 2, 4)).unwrap();
    assert!(lab.set_labels(&few).unwrap() < 20);
    lab.reward_start(&RewardSettings {
        steps: Some(1),
        members: Some(1),
        lr: Some(3e-3),
        batch_size: Some(16),
    })
    .unwrap();
    let one = block_on(lab.reward_step()).unwrap();
    assert!(one.done && one.held_out_pairs == 0 && one.held_out_accuracy.is_none());

    let ranked = block_on(lab.gold_rankings(0, 12, 4)).unwrap();
    let stated: usize = ranked.iter().map(|l| l.pairs().len()).sum();
    assert!(stated > 24, "gold rankings state {stated} pairs");
    assert_eq!(lab.set_labels(&ranked).unwrap(), stated);
    lab.reward_start(&RewardSettings {
        steps: Some(30),
        members: Some(1),
        lr: Some(3e-3),
        batch_size: Some(16),
    })
    .unwrap();
    let losses: Vec<f64> = (0..30)
        .map(|_| block_on(lab.reward_step()).unwrap())
        .map(|p| {
            // Held out by ranking, so all of a ranking's pairs fall on one side.
            assert_eq!(p.held_out_pairs + p.training_pairs, stated);
            p.loss
        })
        .collect();
    let (first, last) = (
        losses[..5].iter().sum::<f64>() / 5.0,
        losses[25..].iter().sum::<f64>() / 5.0,
    );
    assert!(
        last < first - 0.05,
        "reward-model loss on rankings {first} → {last}"
    );
    assert!(lab.info().reward_model);

    let text = labels::export_rankings_jsonl(&ranked);
    match alignlab::dataset::PreferenceRows::parse(text.as_bytes(), "r.jsonl", false)
        .unwrap()
        .0
    {
        alignlab::dataset::PreferenceRows::Rankings(r) => {
            assert_eq!(r.len(), 12);
            assert!(r.iter().all(|r| r.completions.len() == 4));
        }
        other => panic!("read as {:?}", other.kind()),
    }
    // Read back, the rankings state the same pairs (who labelled them is not in the file).
    let back = labels::import(text.as_bytes(), "r.jsonl").unwrap();
    assert_eq!(labels::pairs(&back), labels::pairs(&ranked));
}

/// What the page's defaults show a first-time user, on three seeds (40 gold labels each, as a
/// class would give): the reward model is not memorised (60 steps, the old default, ended at loss
/// ≤ 0.001) and enough pairs are held out to report an accuracy with its interval; DPO at the
/// page's β = 0.1 moves steadily away from the base instead of reaching KL 27 in six steps.
#[test]
fn the_page_defaults_teach_on_three_seeds() {
    for seed in 0..3u64 {
        let mut lab = Lab::<B>::new(
            builtin_checkpoint().unwrap(),
            &Default::default(),
            LabConfig {
                seed,
                eval_prompts: 8,
                ..Default::default()
            },
        )
        .unwrap();
        let given = block_on(lab.gold_labels(seed * 1000, 40)).unwrap();
        lab.set_labels(&given).unwrap();
        lab.reward_start(&RewardSettings {
            steps: None,
            members: Some(1),
            lr: None,
            batch_size: None,
        })
        .unwrap();
        let end = loop {
            let p = block_on(lab.reward_step()).unwrap();
            if p.done {
                break p;
            }
        };
        let (low, high) = end.held_out_interval.unwrap();
        assert!(
            end.held_out_pairs >= labels::MIN_HELD_OUT && end.loss > 0.1 && high - low > 0.3,
            "seed {seed}: {} steps, loss {:.3}, accuracy {:?} on {} held out ({low:.2}–{high:.2})",
            end.total_steps,
            end.loss,
            end.held_out_accuracy,
            end.held_out_pairs
        );

        let mut kl = Vec::new();
        let mut settings = run_settings("dpo", 0.1, 10);
        settings.eval_every = 5;
        block_on(lab.run_start(&settings)).unwrap();
        for _ in 0..10 {
            if let Some(point) = block_on(lab.run_step()).unwrap().point {
                kl.push(point.kl.mean);
            }
        }
        assert!(
            kl[0] < 8.0 && kl[1] > 0.5 && kl[1] < 15.0,
            "seed {seed}: DPO KL after 5 and 10 steps {kl:?}"
        );
    }
}

/// Lesson 5's operation: the base steered at decoding time (by the gold reward before a reward
/// model is trained), a point per weight with its tokens/s; a method that needs a model of its
/// own is refused by name.
#[test]
fn steering_the_base_gives_frontier_points_with_their_cost() {
    let lab = lab();
    let plain = block_on(lab.steer("args", 0.0)).unwrap();
    let steered = block_on(lab.steer("args", 4.0)).unwrap();
    assert_eq!((plain.weight, steered.weight), (Some(0.0), Some(4.0)));
    assert!(
        steered.kl.mean > plain.kl.mean,
        "{steered:?} against {plain:?}"
    );
    assert!(
        steered.gold.mean > plain.gold.mean,
        "{steered:?} against {plain:?}"
    );
    assert!(plain.tokens_per_second.unwrap() > 0.0);
    let deal = block_on(lab.steer("deal", 2.0)).unwrap();
    assert!(deal.kl.mean.is_finite() && deal.tokens_per_second.is_some());
    let e = block_on(lab.steer("genarm", 1.0)).unwrap_err().to_string();
    assert!(e.contains("genarm decodes with a model of its own"), "{e}");
}

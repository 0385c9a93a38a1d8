//! The offline preference trainer on the built-in world: every method trains end to end through
//! one trainer; at the first step DPO sees policy = reference (loss ln 2, margin 0), which checks
//! the precomputed reference table against the policy's own log-probs; a poisoned batch is
//! skipped and named; DPO raises the gold reward of the policy's samples.

use crate::common::{world_samples, Cpu};
use alignlab::algo::preference::{
    DataShape, PreferenceConfig, PreferenceData, PreferenceLoss, PreferenceObjective,
};
use alignlab::algo::preference_loss::PREFERENCE_SPECS;
use alignlab::dataset::{self, LengthLimit, PreferenceRows};
use alignlab::distributed::{run_replicas, Cluster, DeviceList};
use alignlab::io::prefs::{Ranking, UnpairedExample};
use alignlab::metrics::{self, Metrics};
use alignlab::model::weights::NamedWeights;
use alignlab::model::Llama;
use alignlab::run::preference;
use alignlab::sample::SamplingConfig;
use alignlab::train::{OptimConfig, Trainer};
use alignlab::{policy, world};
use burn::backend::Autodiff;
use burn::module::AutodiffModule;

type Train = Autodiff<Cpu>;

const LIMIT: LengthLimit = LengthLimit {
    max_length: 256,
    truncate: false,
};

fn base() -> (Llama<Train>, alignlab::io::Tokenizer) {
    policy::load::<Train>(policy::BUILTIN, None, &Default::default()).unwrap()
}

fn data_for(loss: &PreferenceLoss, samples: &[(String, Vec<(String, f32)>)]) -> PreferenceData {
    let tokenizer = world::tokenizer();
    match loss.data_shape() {
        DataShape::Unpaired => {
            let unpaired: Vec<UnpairedExample> = world::preferences::pairs(samples)
                .iter()
                .flat_map(UnpairedExample::from_pair)
                .collect();
            PreferenceData::Unpaired(
                dataset::tokenize_unpaired(&tokenizer, &unpaired, &LIMIT, "test", false)
                    .unwrap()
                    .rows,
            )
        }
        DataShape::Rankings => {
            let rankings = world::preferences::rankings(samples, 3);
            PreferenceData::Ranked(
                dataset::tokenize_rankings(&tokenizer, &rankings, &LIMIT, "test", false)
                    .unwrap()
                    .rows,
            )
        }
        DataShape::Pairs => {
            let rankings: Vec<Ranking> = world::preferences::pairs(samples)
                .into_iter()
                .map(Ranking::from)
                .collect();
            PreferenceData::Ranked(
                dataset::tokenize_rankings(&tokenizer, &rankings, &LIMIT, "test", false)
                    .unwrap()
                    .rows,
            )
        }
    }
}

fn config(loss: PreferenceLoss, steps: usize) -> PreferenceConfig {
    PreferenceConfig {
        loss,
        beta: 0.5,
        optim: OptimConfig {
            lr: 2e-3,
            warmup_steps: 1,
            total_steps: steps,
            ..Default::default()
        },
        batch_size: 8,
        seed: 0,
    }
}

#[test]
fn every_method_trains_through_the_one_trainer() {
    let samples = world_samples(48, 3, 11);
    // Every preference method the registry lists, with its default settings.
    // AlignDistil needs a teacher model: `token_level.rs` trains it with one.
    let methods = PREFERENCE_SPECS
        .iter()
        .filter(|spec| spec.name != "aligndistil")
        .map(|spec| PreferenceLoss::named(spec.name).unwrap());
    for loss in methods {
        // One fixed batch, seen at every step: each method must fit it.
        let data = match data_for(&loss, &samples) {
            PreferenceData::Ranked(rows) => PreferenceData::Ranked(rows[..8].to_vec()),
            PreferenceData::Unpaired(rows) => PreferenceData::Unpaired(rows[..8].to_vec()),
        };
        let (policy, _) = base();
        let reference = policy.valid();
        let before = pollster::block_on(reference.to_weights()).unwrap();
        let mut history: Vec<Metrics> = Vec::new();
        let mut config = config(loss, 12);
        config.optim.lr = 1e-3;
        let policy =
            pollster::block_on(preference::train(policy, &reference, &data, &config, |m| {
                history.push(m.clone())
            }))
            .unwrap();
        assert_eq!(history.len(), 12, "{loss:?}");
        for m in &history {
            assert!(
                m.get(metrics::TRAIN_LOSS).unwrap().is_finite(),
                "{loss:?}: {m:?}"
            );
            assert!(m.get(metrics::REWARDS_CHOSEN).is_some(), "{loss:?}: {m:?}");
        }
        let mean = |ms: &[Metrics]| {
            ms.iter()
                .map(|m| m.get(metrics::TRAIN_LOSS).unwrap())
                .sum::<f64>()
                / ms.len() as f64
        };
        let (first, last) = (mean(&history[..3]), mean(&history[9..]));
        assert!(last < first, "{loss:?}: loss {first} → {last}");
        let after = pollster::block_on(policy.valid().to_weights()).unwrap();
        let name = "model.layers.0.mlp.up_proj.weight";
        assert_ne!(
            before.tensors[name].data, after.tensors[name].data,
            "{loss:?} moved no weight"
        );
        if loss.name() == "dpo" {
            // Policy = reference at the first step: the table matches the policy's log-probs.
            let m = &history[0];
            assert!(
                (m.get(metrics::TRAIN_LOSS).unwrap() - std::f64::consts::LN_2).abs() < 1e-4,
                "{m:?}"
            );
            assert!(
                m.get(metrics::REWARDS_MARGINS).unwrap().abs() < 1e-4,
                "{m:?}"
            );
            for name in [
                metrics::REWARDS_ACCURACIES,
                metrics::LOGPS_CHOSEN,
                metrics::LOGPS_REJECTED,
            ] {
                assert!(m.get(name).is_some(), "{name} missing");
            }
        }
        if loss.needs_kl_reference() {
            assert!(history.iter().all(|m| m.get(metrics::KL).is_some()));
        }
        if loss.needs_reward_shift() {
            assert!(history.iter().all(|m| m.get(metrics::BCO_DELTA).is_some()));
        }
    }
}

#[test]
fn a_non_finite_loss_is_skipped_named_and_leaves_the_weights() {
    let samples = world_samples(16, 2, 12);
    let loss = PreferenceLoss::named("dpo").unwrap();
    let data = data_for(&loss, &samples);
    let (policy, _) = base();
    let reference = pollster::block_on(alignlab::algo::preference::reference_logps(
        &policy.valid(),
        &data,
        8,
    ))
    .unwrap();
    // A reference table with an infinity in one row makes exactly the batches holding it
    // non-finite.
    let mut poisoned = reference.clone();
    match &mut poisoned {
        alignlab::algo::preference::ReferenceLogps::Ranked(rows) => rows[0][0] = f32::NEG_INFINITY,
        other => panic!("pairs give a ranked table, not {other:?}"),
    }
    let config = config(loss, 4);
    let mut trainer = Trainer::<Train, Llama<Train>>::new(config.optim.clone());
    let mut objective = PreferenceObjective::new(config);
    let mut step = |policy: Llama<Train>, batch: &[usize], trainer: &mut Trainer<_, _>| {
        let mut m = Metrics::new(trainer.step);
        let loss =
            pollster::block_on(objective.batch_loss(&policy, &data, &poisoned, batch, &mut m))
                .unwrap();
        let policy = pollster::block_on(trainer.step_logged(policy, loss, &mut m)).unwrap();
        (policy, m)
    };
    let before = pollster::block_on(policy.valid().to_weights()).unwrap();
    let (policy, m) = step(policy, &[0, 1, 2], &mut trainer);
    assert_eq!(m.get(metrics::TRAIN_SKIPPED), Some(1.0), "{m:?}");
    assert_eq!(trainer.skipped, vec![0]);
    let after = pollster::block_on(policy.valid().to_weights()).unwrap();
    assert_eq!(before.tensors, after.tensors);
    let (_, m) = step(policy, &[1, 2, 3], &mut trainer);
    assert_eq!(m.get(metrics::TRAIN_SKIPPED), None, "{m:?}");
    assert_eq!(trainer.skipped, vec![0]);
}

#[test]
fn methods_refuse_data_of_the_wrong_shape() {
    let samples = world_samples(12, 3, 13);
    let rankings = data_for(&PreferenceLoss::named("lipo").unwrap(), &samples);
    let message = rankings
        .check(&PreferenceLoss::named("dpo").unwrap())
        .unwrap_err()
        .to_string();
    assert!(message.contains("pairs"), "{message}");
    let unpaired = data_for(&PreferenceLoss::named("bco").unwrap(), &samples);
    assert!(unpaired
        .check(&PreferenceLoss::named("ipo").unwrap())
        .is_err());
    let pairs = data_for(&PreferenceLoss::named("ipo").unwrap(), &samples);
    assert!(pairs.check(&PreferenceLoss::named("kto").unwrap()).is_err());
}

#[test]
fn dpo_on_gold_labelled_pairs_raises_the_gold_reward() {
    let samples = world_samples(800, 2, 21);
    let rows = PreferenceRows::Pairs(world::preferences::pairs(&samples));
    let rankings = rows.into_rankings().unwrap();
    let tokenizer = world::tokenizer();
    let data = PreferenceData::Ranked(
        dataset::tokenize_rankings(&tokenizer, &rankings, &LIMIT, "world", false)
            .unwrap()
            .rows,
    );
    let (policy, _) = base();
    let reference = policy.valid();
    let sampling = SamplingConfig {
        max_new_tokens: 40,
        seed: 5,
        ..Default::default()
    };
    let gold = |model: &Llama<Cpu>| {
        pollster::block_on(world::eval::held_out_gold_reward(
            model, &tokenizer, 200, &sampling,
        ))
        .unwrap()
        .reward
    };
    let before = gold(&reference);
    let mut config = config(PreferenceLoss::named("dpo").unwrap(), 60);
    config.beta = 0.1;
    config.batch_size = 16;
    config.optim.lr = 1e-3;
    config.optim.warmup_steps = 5;
    let trained = pollster::block_on(preference::train(
        policy,
        &reference,
        &data,
        &config,
        |_| {},
    ))
    .unwrap();
    let after = gold(&trained.valid());
    println!("gold reward before DPO {before}, after {after}");
    assert!(
        after.mean - after.ci95 > before.mean + before.ci95,
        "gold reward {before} → {after}"
    );
}

/// The run of `loss` for 3 steps on `devices` CPU devices: the weights after, and each step's
/// metrics (the leader's, which are the global batch's).
fn data_parallel_run(loss_name: &'static str, devices: usize) -> (NamedWeights, Vec<Metrics>) {
    let cluster = Cluster {
        devices: DeviceList::Cpu { count: devices },
        ..Default::default()
    };
    run_replicas::<Cpu, _, _>(&cluster, move |replica, _device| {
        let loss = PreferenceLoss::named(loss_name).unwrap();
        let data = data_for(&loss, &world_samples(16, 2, 13));
        let (mut policy, _) = base();
        let reference = policy.valid();
        let mut config = config(loss, 3);
        // Adam turns float-rounding differences in near-zero gradients into differences of
        // up to the learning rate: at 2e-3 the largest weight difference was 1.2e-5; at 1e-3,
        // since attention is computed in blocks of queries on the CPU, 1.3e-5.
        config.optim.lr = 1e-3;
        let mut run = pollster::block_on(preference::PreferenceRun::<Train>::new_replica(
            &reference, data, config, replica,
        ))?;
        let mut history = Vec::new();
        for _ in 0..3 {
            let (next, m) = pollster::block_on(run.step(policy))?;
            policy = next;
            history.push(m);
        }
        Ok((pollster::block_on(policy.valid().to_weights())?, history))
    })
    .unwrap()
}

#[test]
fn two_cpu_devices_train_as_one() {
    // DPO's loss is a mean over pairs; KTO's also takes a batch-wide KL reference, gathered
    // across the replicas. Same seed, same global batch: the same weights to 3e-5 (3% of the
    // learning rate; a replica's gradient left out of the sum moves weights by ~1e-3).
    for loss in ["dpo", "kto"] {
        let (one, one_history) = data_parallel_run(loss, 1);
        let (two, two_history) = data_parallel_run(loss, 2);
        let mut worst = (0.0f32, String::new());
        for (name, tensor) in &one.tensors {
            let other = &two.tensors[name];
            for (a, b) in tensor.data.iter().zip(&other.data) {
                if (a - b).abs() > worst.0 {
                    worst = ((a - b).abs(), name.clone());
                }
            }
        }
        assert!(worst.0 < 3e-5, "{loss}: {worst:?}");
        // Not vacuous: the weights moved.
        let (base, _) = base();
        let before = pollster::block_on(base.valid().to_weights()).unwrap();
        assert_ne!(before.tensors, one.tensors, "{loss}");
        for (a, b) in one_history.iter().zip(&two_history) {
            for (name, value) in &a.values {
                let other = b.get(name).unwrap_or(f64::NAN);
                assert!(
                    (value - other).abs() < 1e-4,
                    "{loss} {name}: {value} vs {other}"
                );
            }
        }
        println!(
            "{loss}: largest weight difference 1 vs 2 devices {:.2e} ({}); losses {:?}",
            worst.0,
            worst.1,
            one_history
                .iter()
                .map(|m| m.get(metrics::TRAIN_LOSS).unwrap())
                .collect::<Vec<_>>()
        );
    }
}

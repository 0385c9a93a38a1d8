//! Learned rewards end to end: ensembles (shared trunk and independent, bootstrap resampled)
//! disagree and aggregate as configured; a multi-attribute model learns both attributes and its
//! direction vector trades them; checkpoints round-trip; HH-RLHF trains on the stories260K trunk.

use crate::common::{data, temp_path, world_samples, Cpu};
use alignlab::dataset::{self, LengthLimit, PreferenceRows, Sequence};
use alignlab::io::prefs::{read_pairs, Ranking};
use alignlab::metrics::{self, Metrics};
use alignlab::reward::objective::{self as reward_objective, RewardData};
use alignlab::reward::{transform, Aggregation, LearnedReward, RewardHeads};
use alignlab::run::reward_model::{self, RewardTrainConfig};
use alignlab::train::OptimConfig;
use alignlab::{policy, world};
use burn::backend::Autodiff;
use burn::module::AutodiffModule;

type Train = Autodiff<Cpu>;

const LIMIT: LengthLimit = LengthLimit {
    max_length: 256,
    truncate: false,
};

fn ranked(samples: &[(String, Vec<(String, f32)>)]) -> Vec<alignlab::dataset::RankedSequences> {
    let rankings: Vec<Ranking> = world::preferences::pairs(samples)
        .into_iter()
        .map(Ranking::from)
        .collect();
    dataset::tokenize_rankings(&world::tokenizer(), &rankings, &LIMIT, "world", false)
        .unwrap()
        .rows
}

fn train_config(steps: usize, lr: f64) -> RewardTrainConfig {
    RewardTrainConfig {
        optim: OptimConfig {
            lr,
            warmup_steps: 2,
            total_steps: steps,
            ..Default::default()
        },
        batch_size: 16,
        seed: 3,
        margin_from_scores: false,
    }
}

fn valid(reward: LearnedReward<Train>) -> LearnedReward<Cpu> {
    LearnedReward {
        ensemble: reward.ensemble.valid(),
        heads: reward.heads,
    }
}

#[test]
fn ensembles_train_disagree_aggregate_and_round_trip() {
    let samples = world_samples(160, 2, 31);
    let rows = ranked(&samples);
    let data = RewardData::Ranked(rows.clone());
    let device = Default::default();
    for shared_trunk in [true, false] {
        let (trunk, tokenizer) = policy::load::<Train>(policy::BUILTIN, None, &device).unwrap();
        let heads = RewardHeads::Ensemble {
            members: 3,
            shared_trunk,
            aggregation: Aggregation::Mean,
            member_scale: Vec::new(),
        };
        let reward = LearnedReward::from_policy(trunk, heads, 0).unwrap();
        let mut history: Vec<Metrics> = Vec::new();
        let reward = pollster::block_on(reward_model::train(
            reward,
            data.clone(),
            &train_config(20, 3e-3),
            |m| history.push(m.clone()),
        ))
        .unwrap();
        assert!(history
            .iter()
            .all(|m| m.get(metrics::ENSEMBLE_DISAGREEMENT).is_some()));
        let first = history[..4]
            .iter()
            .map(|m| m.get(metrics::TRAIN_LOSS).unwrap())
            .sum::<f64>();
        let last = history[16..]
            .iter()
            .map(|m| m.get(metrics::TRAIN_LOSS).unwrap())
            .sum::<f64>();
        assert!(
            last < first,
            "shared_trunk={shared_trunk}: {first} → {last}"
        );
        let mut reward = valid(reward);
        let eval =
            pollster::block_on(reward_objective::evaluate_rankings(&reward, &rows, 32)).unwrap();
        assert_eq!(eval.member_accuracy.len(), 3);
        // Different heads and bootstrap resamples: the members are not copies of each other.
        assert!(eval.member_std > 1e-4, "{eval:?}");
        // Each aggregation is what it says over the members' outputs.
        let sequences: Vec<Sequence> = rows.iter().take(8).flat_map(|r| r.sequences()).collect();
        let members =
            pollster::block_on(reward_objective::score_sequences(&reward, &sequences, 16))
                .unwrap()
                .0;
        // Members are standardised by their training statistics before they are combined.
        let scale = match &reward.heads {
            RewardHeads::Ensemble { member_scale, .. } => member_scale.clone(),
            _ => unreachable!(),
        };
        assert_eq!(scale.len(), 3);
        assert!(scale.iter().all(|s| s[1] > 0.0), "{scale:?}");
        let mut combined = |aggregation| {
            if let RewardHeads::Ensemble { aggregation: a, .. } = &mut reward.heads {
                *a = aggregation;
            }
            pollster::block_on(reward_objective::score_sequences(&reward, &sequences, 16))
                .unwrap()
                .1
        };
        let mean = combined(Aggregation::Mean);
        let penalised = combined(Aggregation::MeanMinusStd { lambda: 0.5 });
        let min = combined(Aggregation::Min);
        for (i, raw) in members.iter().enumerate() {
            let m: Vec<f32> = raw
                .iter()
                .zip(&scale)
                .map(|(v, [mu, sd])| (v - mu) / sd)
                .collect();
            let mu = m.iter().sum::<f32>() / 3.0;
            let sd = (m.iter().map(|v| (v - mu).powi(2)).sum::<f32>() / 3.0).sqrt();
            let lowest = m.iter().copied().fold(f32::INFINITY, f32::min);
            assert!((mean[i] - mu).abs() < 1e-4, "{i}");
            assert!((penalised[i] - (mu - 0.5 * sd)).abs() < 1e-4, "{i}");
            assert!((min[i] - lowest).abs() < 1e-5, "{i}");
        }
        if let RewardHeads::Ensemble { aggregation, .. } = &mut reward.heads {
            *aggregation = Aggregation::Mean;
        }
        // Checkpoint round trip: the same member rewards from the file.
        let path = temp_path(&format!("ensemble-{shared_trunk}.safetensors"));
        pollster::block_on(reward.save(&tokenizer, &path)).unwrap();
        let (loaded, _) = LearnedReward::<Cpu>::load(&path, &device).unwrap();
        assert_eq!(loaded.heads, reward.heads);
        let a =
            pollster::block_on(reward_objective::score_sequences(&reward, &sequences, 16)).unwrap();
        let b =
            pollster::block_on(reward_objective::score_sequences(&loaded, &sequences, 16)).unwrap();
        assert_eq!(a, b);
        // A reward model is not a policy, and says so.
        let message = policy::load::<Cpu>(path.to_str().unwrap(), None, &device)
            .unwrap_err()
            .to_string();
        assert!(message.contains("reward model"), "{message}");
    }
}

#[test]
fn a_multi_attribute_model_learns_both_attributes_and_the_direction_trades_them() {
    let samples = world_samples(300, 2, 41);
    let rated = world::preferences::ratings(&samples);
    let tokenizer = world::tokenizer();
    let rows = dataset::tokenize_ratings(&tokenizer, &rated, &LIMIT, "world", false)
        .unwrap()
        .rows;
    let (train_rows, held_out) = rows.split_at(500);
    let device = Default::default();
    let (trunk, _) = policy::load::<Train>(policy::BUILTIN, None, &device).unwrap();
    let names: Vec<String> = world::preferences::ATTRIBUTES
        .iter()
        .map(|s| s.to_string())
        .collect();
    let heads = RewardHeads::Attributes {
        direction: transform::unit_direction(&[1.0, 1.0], &names).unwrap(),
        names,
        rating_scale: Vec::new(),
    };
    let reward = LearnedReward::from_policy(trunk, heads, 0).unwrap();
    let data = RewardData::Rated(train_rows.to_vec());
    let reward = pollster::block_on(reward_model::train(
        reward,
        data,
        &train_config(200, 2e-3),
        |_| {},
    ))
    .unwrap();
    let mut reward = valid(reward);
    let eval =
        pollster::block_on(reward_objective::evaluate_ratings(&reward, held_out, 32)).unwrap();
    println!("{eval:?}");
    assert!(eval.pairwise_accuracy[0] > 0.8, "brevity: {eval:?}");
    assert!(eval.pairwise_accuracy[1] > 0.65, "positivity: {eval:?}");
    // Steering: the direction (1, 0) ranks by brevity, (0, 1) by positivity.
    let sequences: Vec<Sequence> = held_out.iter().map(|r| r.sequence.clone()).collect();
    let agreement = |reward: &mut LearnedReward<Cpu>, direction: [f32; 2], attribute: usize| {
        if let RewardHeads::Attributes {
            direction: d,
            names,
            ..
        } = &mut reward.heads
        {
            *d = transform::unit_direction(&direction, names).unwrap();
        }
        let scores = pollster::block_on(reward_objective::score_sequences(reward, &sequences, 32))
            .unwrap()
            .1;
        let (mut pairs, mut right) = (0, 0);
        for i in 0..held_out.len() {
            for j in i + 1..held_out.len().min(i + 30) {
                let (a, b) = (
                    held_out[i].targets[attribute],
                    held_out[j].targets[attribute],
                );
                if a != b {
                    pairs += 1;
                    right += usize::from((a > b) == (scores[i] > scores[j]));
                }
            }
        }
        right as f64 / pairs as f64
    };
    let brevity_by_brevity = agreement(&mut reward, [1.0, 0.0], 0);
    let brevity_by_positivity = agreement(&mut reward, [0.0, 1.0], 0);
    let positivity_by_positivity = agreement(&mut reward, [0.0, 1.0], 1);
    let positivity_by_brevity = agreement(&mut reward, [1.0, 0.0], 1);
    assert!(
        brevity_by_brevity > brevity_by_positivity + 0.1,
        "{brevity_by_brevity} vs {brevity_by_positivity}"
    );
    assert!(
        positivity_by_positivity > positivity_by_brevity + 0.1,
        "{positivity_by_positivity} vs {positivity_by_brevity}"
    );
}

#[test]
fn world_preference_files_of_every_kind_write_and_read_back() {
    let samples = world_samples(40, 3, 51);
    let cases: Vec<(&str, String)> = vec![
        (
            "pairs",
            alignlab::io::prefs::to_jsonl(&world::preferences::pairs(&samples)),
        ),
        (
            "rankings",
            alignlab::io::prefs::to_jsonl(&world::preferences::rankings(&samples, 3)),
        ),
        (
            "unpaired",
            alignlab::io::prefs::to_jsonl(&world::preferences::unpaired(&samples)),
        ),
        (
            "ratings",
            alignlab::io::prefs::to_jsonl(&world::preferences::ratings(&samples)),
        ),
    ];
    for (kind, text) in cases {
        let (rows, skipped) = PreferenceRows::parse(text.as_bytes(), kind, false).unwrap();
        assert!(skipped.is_empty());
        assert_eq!(format!("{:?}", rows.kind()).to_lowercase(), kind);
        assert_eq!(rows.len(), text.lines().count());
    }
}

#[test]
fn hh_rlhf_trains_a_reward_model_on_the_stories260k_trunk() {
    let device = Default::default();
    let (trunk, tokenizer) = policy::load::<Train>(
        data("stories260K/stories260K.gguf").to_str().unwrap(),
        None,
        &device,
    )
    .unwrap();
    let pairs = read_pairs(&data("hh-rlhf/harmless-base-test.jsonl.gz"), true)
        .unwrap()
        .rows;
    let rankings: Vec<Ranking> = pairs.into_iter().take(64).map(Ranking::from).collect();
    // Dialogues are longer than the 512-token context once byte-fallback tokenized: rejecting
    // names the record; truncating keeps every row.
    let strict = LengthLimit {
        max_length: 128,
        truncate: false,
    };
    let message = dataset::tokenize_rankings(&tokenizer, &rankings, &strict, "hh", false)
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("hh record") && message.contains("context"),
        "{message}"
    );
    let skipped = dataset::tokenize_rankings(&tokenizer, &rankings, &strict, "hh", true).unwrap();
    assert!(!skipped.skipped.is_empty());
    let limit = LengthLimit {
        max_length: 128,
        truncate: true,
    };
    let rows = dataset::tokenize_rankings(&tokenizer, &rankings, &limit, "hh", false)
        .unwrap()
        .rows;
    assert_eq!(rows.len(), 64);
    let reward = LearnedReward::from_policy(trunk, RewardHeads::single(), 0).unwrap();
    let mut losses = Vec::new();
    let mut config = train_config(6, 1e-3);
    config.batch_size = 8;
    let reward = pollster::block_on(reward_model::train(
        reward,
        RewardData::Ranked(rows.clone()),
        &config,
        |m| losses.push(m.get(metrics::TRAIN_LOSS).unwrap()),
    ))
    .unwrap();
    assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
    let eval = pollster::block_on(reward_objective::evaluate_rankings(
        &valid(reward),
        &rows,
        16,
    ))
    .unwrap();
    assert!((0.0..=1.0).contains(&eval.accuracy));
}

//! Token-level rewards: a DPO policy's implicit reward, split token by token for RTO, sums to
//! DPO's sequence-level implicit reward (computed here the way the DPO trainer does, from the
//! batched log-probs); any other reward lands whole on the last token.

use crate::common::Cpu;
use alignlab::dataset::Sequence;
use alignlab::logprobs::{completion_logprobs, sum_per_sequence, SequenceBatch};
use alignlab::model::Llama;
use alignlab::reward::implicit::ImplicitReward;
use alignlab::reward::source::{RewardSource, Scored};
use alignlab::{policy, world};
use pollster::block_on;

fn sequence_logps(model: &Llama<Cpu>, sequences: &[Sequence]) -> Vec<f32> {
    let batch =
        SequenceBatch::<Cpu>::new(sequences, model.config().max_seq_len, &model.device()).unwrap();
    sum_per_sequence(completion_logprobs(model, &batch))
        .into_data()
        .to_vec()
        .unwrap()
}

#[test]
fn implicit_token_rewards_sum_to_dpos_sequence_reward() {
    let device = Default::default();
    let (reference, tokenizer) = policy::load::<Cpu>(policy::BUILTIN, None, &device).unwrap();
    // Any other policy will do: a freshly initialised one is far from the reference.
    let policy = Llama::<Cpu>::init(reference.config(), 7, &device).unwrap();
    let mut world = world::World::new(5);
    let rows: Vec<(String, String, Sequence)> = (0..4)
        .map(|i| {
            let prompt = world.prompt().prompt;
            let completion = [
                " the cat was happy.",
                " she ran home.",
                " no.",
                " it was fun",
            ][i];
            let sequence = (
                tokenizer.encode_with_bos(&prompt).unwrap(),
                tokenizer.encode(completion).unwrap(),
            );
            (prompt, completion.to_string(), sequence)
        })
        .collect();
    let sequences: Vec<_> = rows.iter().map(|r| r.2.clone()).collect();
    let beta = 0.25f32;
    let implicit = ImplicitReward {
        policy: policy.clone(),
        reference: reference.clone(),
        beta,
    };
    let per_token = block_on(implicit.per_token(&sequences)).unwrap();
    let (policy_logps, reference_logps) = (
        sequence_logps(&policy, &sequences),
        sequence_logps(&reference, &sequences),
    );
    for (i, tokens) in per_token.iter().enumerate() {
        assert_eq!(tokens.len(), sequences[i].1.len());
        let sequence_reward = beta * (policy_logps[i] - reference_logps[i]);
        let sum: f32 = tokens.iter().sum();
        assert!(
            (sum - sequence_reward).abs() < 1e-3 * sequence_reward.abs().max(1.0),
            "row {i}: Σ token rewards {sum} against β·Σ log π/π_ref {sequence_reward}"
        );
    }

    // In a weighted sum with the gold reward, the per-token split still sums to the score, the
    // gold part landing on the last token.
    let scored: Vec<Scored> = rows
        .iter()
        .map(|(prompt, completion, sequence)| Scored {
            prompt,
            completion,
            sequence,
        })
        .collect();
    let mixed = RewardSource::Weighted(vec![
        (1.0, RewardSource::Implicit(Box::new(implicit))),
        (2.0, RewardSource::Gold),
    ]);
    assert!(mixed.is_token_level() && !RewardSource::<Cpu>::Gold.is_token_level());
    let scores = block_on(mixed.score(&scored)).unwrap();
    let split = block_on(mixed.per_token(&scored)).unwrap();
    let gold_split = block_on(RewardSource::<Cpu>::Gold.per_token(&scored)).unwrap();
    for i in 0..rows.len() {
        let sum: f32 = split[i].iter().sum();
        assert!(
            (sum - scores[i]).abs() < 1e-3 * scores[i].abs().max(1.0),
            "row {i}"
        );
        let gold = world::gold_reward(&rows[i].1);
        let (last, before) = gold_split[i].split_last().unwrap();
        assert_eq!(*last, gold);
        assert!(before.iter().all(|&r| r == 0.0));
        assert!(
            (split[i].last().unwrap() - per_token[i].last().unwrap() - 2.0 * gold).abs() < 1e-4
        );
    }
}

mod offline {
    //! SparsePO and AlignDistil through the one preference trainer on the built-in world. At the
    //! first step the policy is the reference, so every masked log-ratio and KL is 0 (loss ln 2,
    //! whatever the masks): a check of the reference's per-token pass against the policy's.

    use crate::common::{world_samples, Cpu};
    use alignlab::algo::preference::{PreferenceConfig, PreferenceData, PreferenceLoss};
    use alignlab::algo::spec::Settings;
    use alignlab::dataset::{self, LengthLimit};
    use alignlab::io::prefs::Ranking;
    use alignlab::metrics::{self, Metrics};
    use alignlab::model::Llama;
    use alignlab::run::preference::{self, PreferenceRun};
    use alignlab::train::OptimConfig;
    use alignlab::{methods, policy, world};
    use burn::backend::Autodiff;
    use burn::module::AutodiffModule;
    use pollster::block_on;

    type Train = Autodiff<Cpu>;

    fn pairs(n: usize) -> PreferenceData {
        let samples = world_samples(48, 3, 11);
        let rankings: Vec<Ranking> = world::preferences::pairs(&samples)
            .into_iter()
            .map(Ranking::from)
            .collect();
        let limit = LengthLimit {
            max_length: 256,
            truncate: false,
        };
        let rows =
            dataset::tokenize_rankings(&world::tokenizer(), &rankings, &limit, "test", false)
                .unwrap()
                .rows;
        PreferenceData::Ranked(rows[..n].to_vec())
    }

    fn config(name: &str, settings: Settings, steps: usize) -> PreferenceConfig {
        let spec = methods::find(name).unwrap();
        PreferenceConfig {
            loss: PreferenceLoss::from_spec(spec, &settings).unwrap().unwrap(),
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

    fn base() -> Llama<Train> {
        policy::load::<Train>(policy::BUILTIN, None, &Default::default())
            .unwrap()
            .0
    }

    /// `steps` updates of `config` on `data` from the base, with their metrics.
    fn run(
        config: PreferenceConfig,
        data: &PreferenceData,
        teachers: Vec<Llama<Cpu>>,
        steps: usize,
    ) -> (Llama<Train>, Vec<Metrics>) {
        let mut policy = base();
        let reference = policy.valid();
        let mut run = block_on(PreferenceRun::<Train>::new(
            &reference,
            data.clone(),
            config,
        ))
        .unwrap();
        if !teachers.is_empty() {
            run = run.with_teachers(teachers).unwrap();
        }
        let mut history = Vec::new();
        for _ in 0..steps {
            let (next, m) = block_on(run.step(policy)).unwrap();
            policy = next;
            history.push(m);
        }
        (policy, history)
    }

    fn mean(history: &[Metrics], name: &str) -> f64 {
        history.iter().map(|m| m.get(name).unwrap()).sum::<f64>() / history.len() as f64
    }

    #[test]
    fn sparsepo_starts_at_ln2_trains_its_masks_and_reports_their_sparsity() {
        let data = pairs(8);
        for name in ["sparsepo", "sparsepo-ref"] {
            let (_, history) = run(config(name, Settings::new(), 12), &data, Vec::new(), 12);
            let first = &history[0];
            assert!(
                (first.get(metrics::TRAIN_LOSS).unwrap() - std::f64::consts::LN_2).abs() < 1e-4,
                "{name}: {first:?}"
            );
            assert!(first.get(metrics::REWARDS_MARGINS).unwrap().abs() < 1e-4);
            for m in &history {
                let sparsity = m.get(metrics::MASK_SPARSITY).unwrap();
                assert!((0.0..=1.0).contains(&sparsity), "{name}: {m:?}");
                assert!(m.get(metrics::MASK_MEAN).unwrap() > 0.0, "{name}: {m:?}");
            }
            let (early, late) = (
                mean(&history[..3], metrics::TRAIN_LOSS),
                mean(&history[9..], metrics::TRAIN_LOSS),
            );
            assert!(late < early, "{name}: loss {early} → {late}");
            let masks: Vec<f64> = history
                .iter()
                .map(|m| m.get(metrics::MASK_MEAN).unwrap())
                .collect();
            if name == "sparsepo" {
                // The learned head moves: its masks are not what they started at.
                assert!((masks[11] - masks[0]).abs() > 1e-4, "{masks:?}");
            } else {
                // The reference's activations do not change with training.
                assert!((masks[11] - masks[0]).abs() < 1e-5, "{masks:?}");
            }
        }
    }

    #[test]
    fn aligndistil_moves_the_policy_to_its_teacher() {
        let data = pairs(8);
        // A DPO teacher, and its mirror: DPO on the same pairs reversed.
        let dpo = config("dpo", Settings::new(), 10);
        let teacher = block_on(preference::train(
            base(),
            &base().valid(),
            &data,
            &dpo,
            |_| {},
        ))
        .unwrap()
        .valid();
        let reverse = block_on(preference::train(
            base(),
            &base().valid(),
            &data.clone().reversed(),
            &dpo,
            |_| {},
        ))
        .unwrap()
        .valid();
        // The teacher at the run's β (α = 1) is the DPO model itself; at step 0 the policy is the
        // base, so the KL to the teacher is positive and shrinks as it is distilled.
        let settings = Settings::new().with("teacher_beta", 0.5);
        let (_, history) = run(
            config("aligndistil", settings.clone(), 12),
            &data,
            vec![teacher.clone()],
            12,
        );
        let (early, late) = (
            mean(&history[..3], metrics::DISTIL_TEACHER_KL),
            mean(&history[9..], metrics::DISTIL_TEACHER_KL),
        );
        assert!(early > 1e-3 && late < early, "teacher KL {early} → {late}");
        assert!((history[0].get(metrics::DISTIL_ALPHA).unwrap() - 1.0).abs() < 1e-6);

        // The reference as its own teacher: nothing to distil.
        let (_, history) = run(
            config("aligndistil", settings.clone(), 1),
            &data,
            vec![base().valid()],
            1,
        );
        assert!(history[0].get(metrics::TRAIN_LOSS).unwrap().abs() < 1e-5);

        // Contrastive and token-adaptive: α_t below its cap where the two teachers disagree.
        let adaptive = settings.with("tv_target", 0.05);
        let (_, history) = run(
            config("aligndistil", adaptive, 6),
            &data,
            vec![teacher, reverse],
            6,
        );
        let alpha = history[0].get(metrics::DISTIL_ALPHA).unwrap();
        assert!(alpha > 0.0 && alpha < 1.0, "mean α_t {alpha}");
        assert!(history
            .iter()
            .all(|m| m.get(metrics::TRAIN_LOSS).unwrap().is_finite()));
    }

    #[test]
    fn a_missing_or_unwanted_teacher_is_named() {
        let data = pairs(8);
        let reference = base().valid();
        let mut run = block_on(PreferenceRun::<Train>::new(
            &reference,
            data.clone(),
            config("aligndistil", Settings::new(), 1),
        ))
        .unwrap();
        let error = block_on(run.step(base())).err().unwrap().to_string();
        assert!(error.contains("--teacher"), "{error}");
        let dpo = block_on(PreferenceRun::<Train>::new(
            &reference,
            data,
            config("dpo", Settings::new(), 1),
        ))
        .unwrap();
        let error = dpo
            .with_teachers(vec![reference])
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("dpo takes no teacher"), "{error}");
    }
}

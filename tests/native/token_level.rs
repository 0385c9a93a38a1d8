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

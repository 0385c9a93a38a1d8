//! A Bradley–Terry reward model on the built-in world's pairs, labelled by the gold reward:
//! a few steps lower the loss on the training pairs and move the trunk and the head.

use crate::common;

use crate::common::Cpu;
use alignlab::algo::reward_model::{bradley_terry_loss, pairwise_accuracy};
use alignlab::batches::BatchOrder;
use alignlab::host::read_scalar_blocking;
use alignlab::logprobs::SequenceBatch;
use alignlab::model::RewardModel;
use alignlab::train::{OptimConfig, Trainer};
use alignlab::{policy, world};
use burn::backend::Autodiff;
use burn::module::AutodiffModule;
use burn::tensor::Tensor;

type Train = Autodiff<Cpu>;

/// (prompt, chosen, rejected) token ids: two stories' continuations of one prompt, ordered by
/// gold reward (ties dropped).
/// A (prompt, completion) pair of token ids.
type Sequence = (Vec<u32>, Vec<u32>);

fn gold_pairs(n: usize) -> Vec<(Sequence, Sequence)> {
    let tokenizer = world::tokenizer();
    let mut w = world::World::new(77);
    let mut pairs = Vec::new();
    while pairs.len() < n {
        let a = w.prompt();
        let b = w.prompt();
        let (ra, rb) = (
            world::gold_reward(&a.continuation),
            world::gold_reward(&b.continuation),
        );
        if ra == rb {
            continue;
        }
        let prompt = tokenizer.encode_with_bos(&a.prompt).unwrap();
        let (good, bad) = if ra > rb { (&a, &b) } else { (&b, &a) };
        let enc = |s: &str| tokenizer.encode(s).unwrap();
        pairs.push((
            (prompt.clone(), enc(&good.continuation)),
            (prompt, enc(&bad.continuation)),
        ));
    }
    pairs
}

#[test]
fn bradley_terry_steps_lower_the_loss_and_train_trunk_and_head() {
    let device = Default::default();
    let (trunk, _) = policy::load::<Train>(policy::BUILTIN, None, &device).unwrap();
    let mut model = RewardModel::from_policy(trunk, 1, 0);
    let before = pollster::block_on(model.valid().trunk.to_weights()).unwrap();
    let pairs = gold_pairs(64);
    let mut trainer = Trainer::<Train, RewardModel<Train>>::new(OptimConfig {
        lr: 1e-3,
        warmup_steps: 1,
        total_steps: 30,
        ..Default::default()
    });
    let mut batches = BatchOrder::new(pairs.len(), 0);
    let evaluate = |model: &RewardModel<Train>| -> (f32, f32) {
        let (chosen, rejected): (Vec<_>, Vec<_>) = pairs.iter().cloned().unzip();
        let c = SequenceBatch::<Train>::new(&chosen, 256, &device).unwrap();
        let r = SequenceBatch::<Train>::new(&rejected, 256, &device).unwrap();
        let rc: Tensor<Train, 1> = model.rewards(c.tokens, c.last_index).reshape([pairs.len()]);
        let rr: Tensor<Train, 1> = model.rewards(r.tokens, r.last_index).reshape([pairs.len()]);
        let loss =
            read_scalar_blocking(bradley_terry_loss(rc.clone(), rr.clone(), None).mean()).unwrap();
        (
            loss,
            read_scalar_blocking(pairwise_accuracy(rc, rr)).unwrap(),
        )
    };
    let (loss_before, _) = evaluate(&model);
    for _ in 0..30 {
        let batch = batches.next_batch(16);
        let chosen: Vec<_> = batch.iter().map(|&i| pairs[i].0.clone()).collect();
        let rejected: Vec<_> = batch.iter().map(|&i| pairs[i].1.clone()).collect();
        let c = SequenceBatch::<Train>::new(&chosen, 256, &device).unwrap();
        let r = SequenceBatch::<Train>::new(&rejected, 256, &device).unwrap();
        let rc = model.rewards(c.tokens, c.last_index).reshape([16]);
        let rr = model.rewards(r.tokens, r.last_index).reshape([16]);
        let loss = bradley_terry_loss(rc, rr, None).mean();
        let value = read_scalar_blocking(loss.clone()).unwrap();
        model = trainer.step(model, loss, value).unwrap().0;
    }
    let (loss_after, accuracy_after) = evaluate(&model);
    assert!(
        loss_after < loss_before - 0.1,
        "{loss_before} → {loss_after}"
    );
    assert!(accuracy_after > 0.75, "training accuracy {accuracy_after}");
    let after = pollster::block_on(model.valid().trunk.to_weights()).unwrap();
    assert_ne!(
        before.tensors["model.layers.0.self_attn.q_proj.weight"].data,
        after.tensors["model.layers.0.self_attn.q_proj.weight"].data
    );
}

/// The bar: a Bradley–Terry reward model trained on 2,000 gold-labelled pairs of the
/// base policy's own samples orders ≥ 90% of held-out pairs (other prompts, other samples) right.
#[test]
fn bradley_terry_on_2000_gold_pairs_reaches_90_percent_held_out() {
    use alignlab::dataset::{tokenize_rankings, LengthLimit};
    use alignlab::io::prefs::Ranking;
    use alignlab::reward::objective::{evaluate_rankings, RewardData};
    use alignlab::reward::{LearnedReward, RewardHeads};
    use alignlab::run::reward_model::{train, RewardTrainConfig};

    let limit = LengthLimit {
        max_length: 256,
        truncate: false,
    };
    let tokenizer = world::tokenizer();
    let pairs_from = |prompts: usize, seed: u64| {
        let rankings: Vec<Ranking> =
            world::preferences::pairs(&common::world_samples(prompts, 2, seed))
                .into_iter()
                .map(Ranking::from)
                .collect();
        tokenize_rankings(&tokenizer, &rankings, &limit, "world", false)
            .unwrap()
            .rows
    };
    let mut train_rows = pairs_from(2200, 1);
    train_rows.truncate(2000);
    assert_eq!(train_rows.len(), 2000);
    let held_out = pairs_from(500, 2);
    let device = Default::default();
    let (trunk, _) = policy::load::<Train>(policy::BUILTIN, None, &device).unwrap();
    let reward = LearnedReward::from_policy(trunk, RewardHeads::single(), 0).unwrap();
    let config = RewardTrainConfig {
        optim: OptimConfig {
            lr: 3e-3,
            warmup_steps: 20,
            total_steps: 300,
            ..Default::default()
        },
        batch_size: 32,
        seed: 0,
        margin_from_scores: false,
    };
    let reward = pollster::block_on(train(
        reward,
        RewardData::Ranked(train_rows),
        &config,
        |_| {},
    ))
    .unwrap();
    let reward = LearnedReward {
        ensemble: reward.ensemble.valid(),
        heads: reward.heads,
    };
    let eval = pollster::block_on(evaluate_rankings(&reward, &held_out, 64)).unwrap();
    println!("held-out: {eval:?}");
    assert!(eval.accuracy >= 0.9, "held-out accuracy {}", eval.accuracy);
}

//! Decoding-time alignment on the built-in model: ARGS's closed form (w = 0 is the reference's
//! top-k sampler) and its point (a reward weight raises the reward of what it decodes).

use crate::common::Cpu;
use alignlab::decoding::args::{self, ArgsConfig, GuidedSample};
use alignlab::io::Tokenizer;
use alignlab::model::Llama;
use alignlab::reward::source::RewardSource;
use alignlab::sample::{generate, SamplingConfig};
use alignlab::{policy, world};
use pollster::block_on;

fn prompts(n: usize) -> Vec<String> {
    let mut world = world::World::new(3);
    (0..n).map(|_| world.prompt().prompt).collect()
}

fn sampling(temperature: f32) -> SamplingConfig {
    SamplingConfig {
        max_new_tokens: 16,
        temperature,
        seed: 11,
        ..Default::default()
    }
}

fn guided_by_gold(
    model: &Llama<Cpu>,
    tokenizer: &Tokenizer,
    prompts: &[String],
    config: &ArgsConfig,
) -> Vec<GuidedSample> {
    block_on(args::generate(
        model,
        tokenizer,
        &RewardSource::Gold,
        prompts,
        config,
    ))
    .unwrap()
}

#[test]
fn args_with_zero_weight_is_the_reference_top_k_sampler() {
    let (model, tokenizer) =
        policy::load::<Cpu>(policy::BUILTIN, None, &Default::default()).unwrap();
    let prompts = prompts(6);
    let encoded: Vec<Vec<u32>> = prompts
        .iter()
        .map(|p| tokenizer.encode_with_bos(p).unwrap())
        .collect();
    for temperature in [1.0, 0.0] {
        let config = ArgsConfig {
            weight: 0.0,
            candidates: 5,
            sampling: sampling(temperature),
        };
        let guided = guided_by_gold(&model, &tokenizer, &prompts, &config);
        let top_k = SamplingConfig {
            top_k: 5,
            ..sampling(temperature)
        };
        let plain = block_on(generate(&model, &encoded, tokenizer.eos_id(), &top_k)).unwrap();
        let tokens: Vec<Vec<u32>> = guided.iter().map(|g| g.tokens.clone()).collect();
        assert_eq!(tokens, plain, "temperature {temperature}");
        // Over the top k, each chosen token is at least as likely as under the reference: every
        // log-ratio term is ≥ 0, and one is > 0 unless all k candidates had all the mass.
        for sample in &guided {
            assert!(sample.log_ratio > 0.0, "{sample:?}");
        }
    }
}

#[test]
fn a_reward_weight_raises_the_reward_of_what_args_decodes() {
    let (model, tokenizer) =
        policy::load::<Cpu>(policy::BUILTIN, None, &Default::default()).unwrap();
    let prompts = prompts(24);
    let run = |weight: f32| {
        let config = ArgsConfig {
            weight,
            candidates: 8,
            sampling: sampling(1.0),
        };
        let samples = guided_by_gold(&model, &tokenizer, &prompts, &config);
        let n = samples.len() as f64;
        let gold = samples
            .iter()
            .map(|s| f64::from(world::gold_reward(&tokenizer.decode(&s.tokens))))
            .sum::<f64>()
            / n;
        let kl = samples.iter().map(|s| s.log_ratio).sum::<f64>() / n;
        (gold, kl)
    };
    let (gold_reference, kl_reference) = run(0.0);
    let (gold_guided, kl_guided) = run(4.0);
    println!("w = 0: gold {gold_reference:.3}, KL {kl_reference:.3}; w = 4: gold {gold_guided:.3}, KL {kl_guided:.3}");
    assert!(
        gold_guided > gold_reference + 0.2,
        "gold {gold_guided} against the reference's {gold_reference}"
    );
    assert!(
        kl_guided > kl_reference,
        "KL {kl_guided} against {kl_reference}"
    );
}

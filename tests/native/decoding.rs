//! Decoding-time alignment on the built-in model: the closed forms (w = 0, and controlled
//! decoding's β → ∞, are the reference's top-k sampler token for token; GenARM with a uniform
//! reward model is the reference) and the point (a reward weight raises the reward of what each
//! lookahead method decodes).

use crate::common::Cpu;
use alignlab::algo::spec::Settings;
use alignlab::decoding::{self, DecodingSpec, Guide, GuideInputs, GuidedSample};
use alignlab::io::Tokenizer;
use alignlab::model::weights::{names, HostTensor};
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
    (spec, settings): (&DecodingSpec, Settings),
    sampling: &SamplingConfig,
) -> Vec<GuidedSample> {
    let guide = Guide::new(spec, &settings).unwrap();
    let inputs = GuideInputs {
        reference: model,
        tokenizer,
        reward: &RewardSource::Gold,
        models: &[],
    };
    block_on(decoding::generate(spec, &guide, &inputs, prompts, sampling)).unwrap()
}

fn top_k_sampler(
    model: &Llama<Cpu>,
    tokenizer: &Tokenizer,
    prompts: &[String],
    k: usize,
    temperature: f32,
) -> Vec<Vec<u32>> {
    let encoded: Vec<Vec<u32>> = prompts
        .iter()
        .map(|p| tokenizer.encode_with_bos(p).unwrap())
        .collect();
    let config = SamplingConfig {
        top_k: k,
        ..sampling(temperature)
    };
    block_on(generate(model, &encoded, tokenizer.eos_id(), &config)).unwrap()
}

fn tokens(samples: &[GuidedSample]) -> Vec<Vec<u32>> {
    samples.iter().map(|g| g.tokens.clone()).collect()
}

#[test]
fn args_with_zero_weight_is_the_reference_top_k_sampler() {
    let (model, tokenizer) =
        policy::load::<Cpu>(policy::BUILTIN, None, &Default::default()).unwrap();
    let prompts = prompts(6);
    for temperature in [1.0, 0.0] {
        let settings = Settings::new().with("weight", 0.0).with("candidates", 5.0);
        let guided = guided_by_gold(
            &model,
            &tokenizer,
            &prompts,
            (&decoding::ARGS, settings),
            &sampling(temperature),
        );
        let plain = top_k_sampler(&model, &tokenizer, &prompts, 5, temperature);
        assert_eq!(tokens(&guided), plain, "temperature {temperature}");
        // Over the top k, each chosen token is at least as likely as under the reference: every
        // log-ratio term is ≥ 0, and one is > 0 unless all k candidates had all the mass.
        for sample in &guided {
            assert!(sample.log_ratio > 0.0, "{sample:?}");
        }
    }
}

#[test]
fn controlled_decoding_as_beta_grows_is_the_reference_top_k_sampler() {
    // w = 1/β = 1e−9: the rollouts run and Q is estimated, but adds nothing a float can hold
    // to the logits; the draws come from the row streams the rollouts do not touch.
    let (model, tokenizer) =
        policy::load::<Cpu>(policy::BUILTIN, None, &Default::default()).unwrap();
    let prompts = prompts(4);
    let settings = Settings::new()
        .with("weight", 1e-9)
        .with("candidates", 4.0)
        .with("rollouts", 2.0)
        .with("horizon", 3.0);
    let guided = guided_by_gold(
        &model,
        &tokenizer,
        &prompts,
        (&decoding::CONTROLLED, settings),
        &sampling(1.0),
    );
    assert_eq!(
        tokens(&guided),
        top_k_sampler(&model, &tokenizer, &prompts, 4, 1.0)
    );
}

#[test]
fn a_reward_weight_raises_the_reward_of_what_each_lookahead_method_decodes() {
    let (model, tokenizer) =
        policy::load::<Cpu>(policy::BUILTIN, None, &Default::default()).unwrap();
    let prompts = prompts(12);
    let run = |spec: &DecodingSpec, weight: f64| {
        let mut settings = Settings::new()
            .with("weight", weight)
            .with("candidates", 6.0);
        if spec.name != "args" {
            settings.insert("horizon", 3.0);
        }
        if spec.name == "cd" {
            settings.insert("rollouts", 2.0);
        }
        let samples = guided_by_gold(
            &model,
            &tokenizer,
            &prompts,
            (spec, settings),
            &sampling(1.0),
        );
        let n = samples.len() as f64;
        let gold = samples
            .iter()
            .map(|s| f64::from(world::gold_reward(&tokenizer.decode(&s.tokens))))
            .sum::<f64>()
            / n;
        let kl = samples.iter().map(|s| s.log_ratio).sum::<f64>() / n;
        (gold, kl)
    };
    let (gold_reference, kl_reference) = run(&decoding::ARGS, 0.0);
    for spec in [&decoding::ARGS, &decoding::CONTROLLED, &decoding::DEAL] {
        let (gold, kl) = run(spec, 4.0);
        println!(
            "{}: w = 0 gold {gold_reference:.3}, KL {kl_reference:.3}; w = 4 gold {gold:.3}, KL {kl:.3}",
            spec.name
        );
        assert!(
            gold > gold_reference + 0.2,
            "{}: gold {gold} against the reference's {gold_reference}",
            spec.name
        );
        assert!(
            kl > kl_reference,
            "{}: KL {kl} against {kl_reference}",
            spec.name
        );
    }
}

#[test]
fn genarm_with_a_uniform_reward_model_is_the_reference_and_refuses_a_third_model() {
    let (model, tokenizer) =
        policy::load::<Cpu>(policy::BUILTIN, None, &Default::default()).unwrap();
    let prompts = prompts(4);
    // The built-in model with its final norm's gain zeroed: every logit 0, every next token
    // equally likely.
    let mut weights = block_on(model.to_weights()).unwrap();
    let dim = model.config().dim;
    weights.insert(
        names::FINAL_NORM,
        HostTensor::new(vec![dim], vec![0.0; dim]),
    );
    let uniform = Llama::<Cpu>::from_weights(model.config(), weights, &Default::default()).unwrap();
    let spec = &decoding::GENARM;
    let guide = Guide::new(spec, &Settings::new().with("weight", 3.0)).unwrap();
    let decode = |models: &[Llama<Cpu>]| {
        let inputs = GuideInputs {
            reference: &model,
            tokenizer: &tokenizer,
            reward: &RewardSource::Gold,
            models,
        };
        block_on(decoding::generate(
            spec,
            &guide,
            &inputs,
            &prompts,
            &sampling(1.0),
        ))
    };
    let guided = decode(std::slice::from_ref(&uniform)).unwrap();
    assert_eq!(
        tokens(&guided),
        top_k_sampler(&model, &tokenizer, &prompts, 0, 1.0)
    );
    for sample in &guided {
        assert!(sample.log_ratio.abs() < 1e-4, "{sample:?}");
    }
    let three = [uniform.clone(), uniform.clone(), uniform];
    let error = decode(&three).unwrap_err().to_string();
    assert!(
        error.contains("genarm decodes with one or two reward model(s)"),
        "{error}"
    );
}

//! InfAlign's calibrate-and-transform on the built-in model: calibrated against the reference's
//! own samples, the reference's rewards are uniform on [0, 1] (mean ½), and a policy that beats
//! the reference gets more than ½.

use crate::common::Cpu;
use alignlab::dataset::Sequence;
use alignlab::reward::calibrated::{Calibrated, Transform};
use alignlab::reward::source::{RewardSource, Scored};
use alignlab::sample::{generate, SamplingConfig};
use alignlab::{policy, world};
use pollster::block_on;

#[test]
fn the_reference_calibrated_against_itself_is_uniform_and_better_samples_score_higher() {
    let (reference, tokenizer) =
        policy::load::<Cpu>(policy::BUILTIN, None, &Default::default()).unwrap();
    let prompt = world::World::new(9).prompt().prompt;
    let sampling = SamplingConfig {
        max_new_tokens: 16,
        seed: 3,
        ..Default::default()
    };
    let calibrated = Calibrated::new(
        RewardSource::Gold,
        reference.clone(),
        tokenizer.clone(),
        64,
        sampling.clone(),
        Transform::Identity,
    )
    .unwrap();
    // Fresh samples of the same reference (another seed): their calibrated rewards average ½.
    let ids = tokenizer.encode_with_bos(&prompt).unwrap();
    let fresh = SamplingConfig {
        seed: 4,
        ..sampling
    };
    let samples = block_on(generate(&reference, &vec![ids.clone(); 64], None, &fresh)).unwrap();
    let texts: Vec<String> = samples.iter().map(|s| tokenizer.decode(s)).collect();
    let sequences: Vec<Sequence> = samples.iter().map(|s| (ids.clone(), s.clone())).collect();
    let scored: Vec<Scored> = texts
        .iter()
        .zip(&sequences)
        .map(|(completion, sequence)| Scored {
            prompt: &prompt,
            completion,
            sequence,
        })
        .collect();
    let values = block_on(calibrated.score(&scored)).unwrap();
    assert!(values.iter().all(|v| (0.0..=1.0).contains(v)), "{values:?}");
    let mean = values.iter().sum::<f32>() / values.len() as f32;
    assert!((mean - 0.5).abs() < 0.12, "mean calibrated reward {mean}");
    // A completion the gold reward loves beats nearly every reference sample.
    let glowing = " she was happy and glad and the day was wonderful.".to_string();
    let sequence = (ids.clone(), tokenizer.encode(&glowing).unwrap());
    let best = Scored {
        prompt: &prompt,
        completion: &glowing,
        sequence: &sequence,
    };
    let top = block_on(calibrated.score(std::slice::from_ref(&best))).unwrap()[0];
    assert!(top > 0.9, "calibrated {top}");
    // best-of-n's transform keeps that order, on exp's scale.
    let bon = Calibrated::new(
        RewardSource::Gold,
        reference,
        tokenizer,
        64,
        SamplingConfig {
            max_new_tokens: 16,
            seed: 3,
            ..Default::default()
        },
        Transform::BestOfN { t: 4.0 },
    )
    .unwrap();
    let transformed = block_on(bon.score(std::slice::from_ref(&best))).unwrap()[0];
    assert!(
        (transformed - (4.0 * top).exp()).abs() < 1e-3,
        "{transformed}"
    );
}

//! Rewards named in one line, as the CLI, frontier configs and the page give them:
//! `gold`, `verifier`, `lexicon:PATH`, `rm:PATH` (an alignlab reward model, or a Hugging
//! Face sequence-classification folder), `implicit:POLICY,REFERENCE,BETA` (a DPO policy's
//! token-level implicit reward), or weighted sums `0.5*gold+1*lexicon:PATH`.

use std::collections::HashMap;
use std::path::Path;

use crate::backend::Backend;

use super::implicit::ImplicitReward;
use super::lexicon::Lexicon;
use super::source::RewardSource;
use super::LearnedReward;
use crate::error::{Error, Result};

/// Builds the reward `spec` names; `answers` are the verifier's expected answers by prompt.
pub fn parse<B: Backend>(
    spec: &str,
    answers: &HashMap<String, String>,
    device: &B::Device,
) -> Result<RewardSource<B>> {
    if spec.contains('+') || spec.contains('*') {
        let parts = spec
            .split('+')
            .map(|term| {
                let (weight, inner) = term.split_once('*').unwrap_or(("1", term));
                let weight: f32 = weight.trim().parse().map_err(|_| {
                    Error::Input(format!(
                        "reward `{spec}`: `{weight}` is not a weight in `{term}`"
                    ))
                })?;
                Ok((weight, parse(inner.trim(), answers, device)?))
            })
            .collect::<Result<Vec<_>>>()?;
        return Ok(RewardSource::Weighted(parts));
    }
    match spec.split_once(':') {
        None if spec == "gold" => Ok(RewardSource::Gold),
        None if spec == "verifier" => {
            if answers.is_empty() {
                return Err(Error::Input(
                    "reward `verifier` needs prompts with answers (the `sums` prompts)".into(),
                ));
            }
            Ok(RewardSource::Verifier {
                answers: answers.clone(),
            })
        }
        Some(("lexicon", path)) => Ok(RewardSource::Lexicon(Lexicon::read(Path::new(path))?)),
        Some(("rm", path)) => {
            let (reward, tokenizer) = LearnedReward::load(Path::new(path), device)?;
            Ok(match Path::new(path).is_dir() {
                true => RewardSource::LearnedOwnTokens {
                    reward: Box::new(reward),
                    tokenizer,
                },
                false => RewardSource::Learned(Box::new(reward)),
            })
        }
        Some(("implicit", args)) => implicit(spec, args, device),
        _ => Err(Error::Input(format!(
            "reward `{spec}`: expected gold, verifier, lexicon:PATH, rm:PATH, \
             implicit:POLICY,REFERENCE,BETA or WEIGHT*SPEC+…"
        ))),
    }
}

/// `implicit:POLICY,REFERENCE,BETA`: a DPO policy's implicit reward against the reference it
/// was trained from, with its β.
fn implicit<B: Backend>(spec: &str, args: &str, device: &B::Device) -> Result<RewardSource<B>> {
    let parts: Vec<&str> = args.split(',').map(str::trim).collect();
    let [policy, reference, beta] = parts[..] else {
        return Err(Error::Input(format!(
            "reward `{spec}`: expected implicit:POLICY,REFERENCE,BETA (a DPO policy, the model it \
             was trained from, its β)"
        )));
    };
    let beta: f32 = beta
        .parse()
        .ok()
        .filter(|b: &f32| b.is_finite() && *b > 0.0)
        .ok_or_else(|| Error::Input(format!("reward `{spec}`: β `{beta}` is not a number > 0")))?;
    let (policy_model, _) = crate::policy::load::<B>(policy, None, device)?;
    let (reference_model, _) = crate::policy::load::<B>(reference, None, device)?;
    if policy_model.config().vocab_size != reference_model.config().vocab_size {
        return Err(Error::Input(format!(
            "reward `{spec}`: {policy} and {reference} have different vocabularies"
        )));
    }
    Ok(RewardSource::Implicit(Box::new(ImplicitReward {
        policy: policy_model,
        reference: reference_model,
        beta,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    #[test]
    fn specs_parse_or_say_what_is_wrong() {
        let device = Default::default();
        let none = HashMap::new();
        assert!(matches!(
            parse::<NdArray>("gold", &none, &device),
            Ok(RewardSource::Gold)
        ));
        match parse::<NdArray>("0.5*gold+2*gold", &none, &device) {
            Ok(RewardSource::Weighted(parts)) => {
                assert_eq!(parts.iter().map(|p| p.0).collect::<Vec<_>>(), [0.5, 2.0])
            }
            _ => panic!("weighted"),
        }
        let e = parse::<NdArray>("x*gold", &none, &device).err().unwrap();
        assert!(e.to_string().contains("`x` is not a weight"), "{e}");
        let e = parse::<NdArray>("verifier", &none, &device).err().unwrap();
        assert!(e.to_string().contains("sums"), "{e}");
        let e = parse::<NdArray>("bogus", &none, &device).err().unwrap();
        assert!(e.to_string().contains("expected gold"), "{e}");
    }
}

//! Where a rollout's rewards come from: a learned reward (model or ensemble), the built-in
//! world's exact gold reward, a sentiment lexicon, BLEU against reference completions
//! (BLEUBERI, Chang et al. 2025), a verifier of exact answers, or a weighted sum of these.

use std::collections::HashMap;

use crate::backend::Backend;

use super::calibrated::Calibrated;
use super::implicit::ImplicitReward;
use super::lexicon::Lexicon;
use super::objective::score_sequences;
use super::LearnedReward;
use crate::dataset::Sequence;
use crate::error::{Error, Result};
use crate::io::Tokenizer;
use crate::world;

#[derive(Clone)]
pub enum RewardSource<B: Backend> {
    Learned(Box<LearnedReward<B>>),
    /// A reward model with a vocabulary of its own (a Hugging Face folder): it reads the
    /// prompt and completion as text, tokenized its way.
    LearnedOwnTokens {
        reward: Box<LearnedReward<B>>,
        tokenizer: Tokenizer,
    },
    /// The built-in world's gold reward.
    Gold,
    /// VADER's compound score of the completion.
    Lexicon(Lexicon),
    /// Sentence BLEU-4 (smoothed) of the completion against the prompt's references.
    Bleu {
        references: HashMap<String, Vec<String>>,
    },
    /// 1 when the completion's first word is the prompt's answer, else 0.
    Verifier {
        answers: HashMap<String, String>,
    },
    /// InfAlign: another reward calibrated to its quantile under the reference's samples, then
    /// transformed for best-of-n or worst-of-n.
    Calibrated(Box<Calibrated<B>>),
    /// A DPO policy's implicit reward β·Σ log π_dpo/π_ref, known token by token.
    Implicit(Box<ImplicitReward<B>>),
    Weighted(Vec<(f32, RewardSource<B>)>),
}

/// A boxed future (the sources nest, so their scoring recurses).
type Pending<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<T>> + 'a>>;

/// One rollout to score: the prompt and completion as text, and as the policy's token ids.
pub struct Scored<'a> {
    pub prompt: &'a str,
    pub completion: &'a str,
    pub sequence: &'a Sequence,
}

/// Sentence BLEU-4 with smoothing, through the `bleuscore` crate (Hugging Face evaluate's BLEU).
pub fn sentence_bleu(completion: &str, references: &[String]) -> f32 {
    if completion.trim().is_empty() || references.is_empty() {
        return 0.0;
    }
    let score =
        bleuscore::compute_score(&[references.to_vec()], &[completion.to_string()], 4, true);
    score.bleu as f32
}

impl<B: Backend> RewardSource<B> {
    /// One reward per rollout.
    pub fn score<'a>(&'a self, rollouts: &'a [Scored<'a>]) -> Pending<'a, Vec<f32>> {
        Box::pin(async move {
            Ok(match self {
                Self::Learned(reward) => {
                    let sequences: Vec<Sequence> =
                        rollouts.iter().map(|r| r.sequence.clone()).collect();
                    score_sequences(reward, &sequences, 64).await?.1
                }
                Self::LearnedOwnTokens { reward, tokenizer } => {
                    let sequences = rollouts
                        .iter()
                        .map(|r| {
                            Ok((
                                tokenizer.encode_with_bos(r.prompt)?,
                                tokenizer.encode(r.completion)?,
                            ))
                        })
                        .collect::<Result<Vec<Sequence>>>()?;
                    score_sequences(reward, &sequences, 64).await?.1
                }
                Self::Gold => rollouts
                    .iter()
                    .map(|r| world::gold_reward(r.completion))
                    .collect(),
                Self::Lexicon(lexicon) => rollouts
                    .iter()
                    .map(|r| lexicon.compound(r.completion) as f32)
                    .collect(),
                Self::Bleu { references } => rollouts
                    .iter()
                    .map(|r| {
                        let refs = references.get(r.prompt).ok_or_else(|| {
                            Error::Input(format!("no BLEU references for prompt {:?}", r.prompt))
                        })?;
                        Ok(sentence_bleu(r.completion, refs))
                    })
                    .collect::<Result<Vec<f32>>>()?,
                Self::Verifier { answers } => rollouts
                    .iter()
                    .map(|r| {
                        let answer = answers.get(r.prompt).ok_or_else(|| {
                            Error::Input(format!("no answer for prompt {:?}", r.prompt))
                        })?;
                        Ok(f32::from(u8::from(
                            world::eval::first_word(r.completion)
                                == world::eval::first_word(answer),
                        )))
                    })
                    .collect::<Result<Vec<f32>>>()?,
                Self::Calibrated(calibrated) => calibrated.score(rollouts).await?,
                Self::Implicit(implicit) => {
                    let sequences: Vec<Sequence> =
                        rollouts.iter().map(|r| r.sequence.clone()).collect();
                    let tokens = implicit.per_token(&sequences).await?;
                    tokens.iter().map(|t| t.iter().sum()).collect()
                }
                Self::Weighted(parts) => {
                    let mut total = vec![0.0f32; rollouts.len()];
                    for (weight, source) in parts {
                        for (t, r) in total.iter_mut().zip(source.score(rollouts).await?) {
                            *t += weight * r;
                        }
                    }
                    total
                }
            })
        })
    }

    /// Whether any part of it rewards token by token.
    pub fn is_token_level(&self) -> bool {
        match self {
            Self::Implicit(_) => true,
            Self::Weighted(parts) => parts.iter().any(|(_, source)| source.is_token_level()),
            _ => false,
        }
    }

    /// The rewards spread over each rollout's completion tokens, summing to [`Self::score`]'s: a
    /// token-level source gives each token its own, any other its score at the last token (RTO's
    /// dense reward plus the sequence reward at the end).
    pub fn per_token<'a>(&'a self, rollouts: &'a [Scored<'a>]) -> Pending<'a, Vec<Vec<f32>>> {
        Box::pin(async move {
            match self {
                Self::Implicit(implicit) => {
                    let sequences: Vec<Sequence> =
                        rollouts.iter().map(|r| r.sequence.clone()).collect();
                    implicit.per_token(&sequences).await
                }
                Self::Weighted(parts) => {
                    let mut total: Vec<Vec<f32>> = rollouts
                        .iter()
                        .map(|r| vec![0.0; r.sequence.1.len()])
                        .collect();
                    for (weight, source) in parts {
                        for (t, r) in total.iter_mut().zip(source.per_token(rollouts).await?) {
                            t.iter_mut().zip(r).for_each(|(t, r)| *t += weight * r);
                        }
                    }
                    Ok(total)
                }
                _ => {
                    let scores = self.score(rollouts).await?;
                    Ok(rollouts
                        .iter()
                        .zip(scores)
                        .map(|(r, score)| {
                            let mut tokens = vec![0.0; r.sequence.1.len()];
                            if let Some(last) = tokens.last_mut() {
                                *last = score;
                            }
                            tokens
                        })
                        .collect())
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    fn rollouts<'a>(pairs: &'a [(&'a str, &'a str)], seq: &'a Sequence) -> Vec<Scored<'a>> {
        pairs
            .iter()
            .map(|(p, c)| Scored {
                prompt: p,
                completion: c,
                sequence: seq,
            })
            .collect()
    }

    #[test]
    fn text_sources_and_their_weighted_sum() {
        let seq = (vec![1], vec![2]);
        let pairs = [("Tom has", " five balls."), ("Tom has", " six.")];
        let r = rollouts(&pairs, &seq);
        let verifier = RewardSource::<NdArray>::Verifier {
            answers: HashMap::from([("Tom has".to_string(), " five".to_string())]),
        };
        assert_eq!(
            pollster::block_on(verifier.score(&r)).unwrap(),
            vec![1.0, 0.0]
        );
        let bleu = RewardSource::<NdArray>::Bleu {
            references: HashMap::from([("Tom has".to_string(), vec![" five balls.".to_string()])]),
        };
        let b = pollster::block_on(bleu.score(&r)).unwrap();
        assert!((b[0] - 1.0).abs() < 1e-6 && b[1] < 0.5, "{b:?}");
        let lexicon = Lexicon::parse("five\t1.0\n", "l").unwrap();
        let weighted = RewardSource::<NdArray>::Weighted(vec![
            (2.0, verifier),
            (0.5, RewardSource::Lexicon(lexicon)),
            (1.0, RewardSource::Gold),
        ]);
        let w = pollster::block_on(weighted.score(&r)).unwrap();
        let compound = 1.0 / (1.0f32 + 15.0).sqrt();
        assert!((w[0] - (2.0 + 0.5 * compound)).abs() < 1e-6, "{w:?}");
        assert!(w[1].abs() < 1e-6, "{w:?}");
        let missing = RewardSource::<NdArray>::Verifier {
            answers: HashMap::new(),
        };
        assert!(pollster::block_on(missing.score(&r)).is_err());
    }
}

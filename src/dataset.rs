//! Training data as token ids, checked against the model's context: the one place where text
//! rows (supervised examples, preference rows) become what the trainers batch.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::io::prefs::{
    self, ChatRendering, PreferenceKind, PreferencePair, Ranking, RatedCompletion, ReadReport,
    UnpairedExample,
};
use crate::io::Tokenizer;

/// A (prompt, completion) pair of token ids.
pub type Sequence = (Vec<u32>, Vec<u32>);

/// What to do with a prompt + completion longer than the context.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LengthLimit {
    /// Longest prompt + completion, in tokens (at most the model's context).
    pub max_length: usize,
    /// Truncate instead of rejecting: the prompt keeps BOS and its last tokens (at most half of
    /// `max_length`, TRL's `keep_end`), then the completion is cut to fit.
    pub truncate: bool,
}

impl LengthLimit {
    fn fit(&self, prompt: &[u32], completion: &[u32]) -> std::result::Result<Sequence, String> {
        let total = prompt.len() + completion.len();
        if total <= self.max_length {
            return Ok((prompt.to_vec(), completion.to_vec()));
        }
        if !self.truncate {
            return Err(format!(
                "prompt and completion have {total} tokens; the model's context is {} (truncate to keep it)",
                self.max_length
            ));
        }
        let prompt_budget = (self.max_length / 2).max(2);
        let prompt = if prompt.len() > prompt_budget {
            let mut kept = vec![prompt[0]];
            kept.extend_from_slice(&prompt[prompt.len() - (prompt_budget - 1)..]);
            kept
        } else {
            prompt.to_vec()
        };
        let room = self.max_length - prompt.len();
        Ok((prompt, completion[..completion.len().min(room)].to_vec()))
    }
}

/// A prompt and k ≥ 2 completions, best first (a preference pair is k = 2).
#[derive(Debug, Clone, PartialEq)]
pub struct RankedSequences {
    /// The row's index in the data it came from (bootstrap weights are keyed on it).
    pub index: usize,
    pub prompt: Vec<u32>,
    pub completions: Vec<Vec<u32>>,
    pub scores: Option<Vec<f64>>,
}

impl RankedSequences {
    /// (prompt, completion) of each completion, best first.
    pub fn sequences(&self) -> impl Iterator<Item = Sequence> + '_ {
        self.completions
            .iter()
            .map(|c| (self.prompt.clone(), c.clone()))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct LabelledSequence {
    pub index: usize,
    pub sequence: Sequence,
    pub desirable: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RatedSequence {
    pub index: usize,
    pub sequence: Sequence,
    /// One target per attribute, in the attributes' (sorted) order.
    pub targets: Vec<f32>,
}

/// Tokenized rows and the rows left out, with why.
#[derive(Debug, Clone)]
pub struct Tokenized<T> {
    pub rows: Vec<T>,
    pub skipped: Vec<String>,
}

fn encode_pair(
    tokenizer: &Tokenizer,
    prompt: &str,
    completion: &str,
    limit: &LengthLimit,
) -> std::result::Result<Sequence, String> {
    let prompt = tokenizer
        .encode_with_bos(prompt)
        .map_err(|e| e.to_string())?;
    let mut completion = tokenizer.encode(completion).map_err(|e| e.to_string())?;
    if completion.is_empty() {
        return Err("the completion gives no tokens".into());
    }
    completion.extend(tokenizer.eos_id());
    limit.fit(&prompt, &completion)
}

/// Tokenizes rows with `encode`; a row that fails is skipped when `skip_bad_rows`, otherwise an
/// error naming the row (`source_name` record i).
fn tokenize_rows<R, T>(
    rows: &[R],
    source_name: &str,
    skip_bad_rows: bool,
    encode: impl Fn(usize, &R) -> std::result::Result<T, String>,
) -> Result<Tokenized<T>> {
    let mut out = Tokenized {
        rows: Vec::new(),
        skipped: Vec::new(),
    };
    for (index, row) in rows.iter().enumerate() {
        match encode(index, row) {
            Ok(t) => out.rows.push(t),
            Err(reason) if skip_bad_rows => out.skipped.push(format!("record {index}: {reason}")),
            Err(reason) => {
                return Err(Error::format(
                    format!("{source_name} record {index}"),
                    reason,
                ))
            }
        }
    }
    if out.rows.is_empty() {
        return Err(Error::format(
            source_name,
            "no usable records after tokenizing (all too long or empty?)",
        ));
    }
    Ok(out)
}

pub fn tokenize_rankings(
    tokenizer: &Tokenizer,
    rankings: &[Ranking],
    limit: &LengthLimit,
    source_name: &str,
    skip_bad_rows: bool,
) -> Result<Tokenized<RankedSequences>> {
    tokenize_rows(rankings, source_name, skip_bad_rows, |index, r| {
        let mut prompt = None;
        let mut completions = Vec::new();
        for completion in &r.completions {
            let (p, c) = encode_pair(tokenizer, &r.prompt, completion, limit)?;
            prompt.get_or_insert(p);
            completions.push(c);
        }
        let mut sorted = completions.clone();
        sorted.sort();
        if sorted.windows(2).any(|w| w[0] == w[1]) {
            return Err("two completions are identical after tokenizing (and truncating)".into());
        }
        Ok(RankedSequences {
            index,
            prompt: prompt.expect("at least two completions"),
            completions,
            scores: r.scores.clone(),
        })
    })
}

pub fn tokenize_unpaired(
    tokenizer: &Tokenizer,
    examples: &[UnpairedExample],
    limit: &LengthLimit,
    source_name: &str,
    skip_bad_rows: bool,
) -> Result<Tokenized<LabelledSequence>> {
    tokenize_rows(examples, source_name, skip_bad_rows, |index, e| {
        Ok(LabelledSequence {
            index,
            sequence: encode_pair(tokenizer, &e.prompt, &e.completion, limit)?,
            desirable: e.label,
        })
    })
}

pub fn tokenize_ratings(
    tokenizer: &Tokenizer,
    rated: &[RatedCompletion],
    limit: &LengthLimit,
    source_name: &str,
    skip_bad_rows: bool,
) -> Result<Tokenized<RatedSequence>> {
    tokenize_rows(rated, source_name, skip_bad_rows, |index, r| {
        Ok(RatedSequence {
            index,
            sequence: encode_pair(tokenizer, &r.prompt, &r.completion, limit)?,
            targets: r.scores.values().map(|&v| v as f32).collect(),
        })
    })
}

/// Rows of any preference file, as read.
#[derive(Debug, Clone, PartialEq)]
pub enum PreferenceRows {
    Pairs(Vec<PreferencePair>),
    Rankings(Vec<Ranking>),
    Unpaired(Vec<UnpairedExample>),
    Ratings(Vec<RatedCompletion>),
}

impl PreferenceRows {
    /// Reads any preference file, telling the kind from its first row; also returns the
    /// skipped rows (when `skip_bad_rows`).
    pub fn parse(
        bytes: &[u8],
        source_name: &str,
        skip_bad_rows: bool,
    ) -> Result<(Self, Vec<String>)> {
        Self::parse_rendered(bytes, source_name, skip_bad_rows, ChatRendering::Transcript)
    }

    /// As [`Self::parse`], with the chat messages of preference pairs rendered as `chat` says.
    pub fn parse_rendered(
        bytes: &[u8],
        source_name: &str,
        skip_bad_rows: bool,
        chat: ChatRendering,
    ) -> Result<(Self, Vec<String>)> {
        fn take<T>(
            r: ReadReport<T>,
            wrap: fn(Vec<T>) -> PreferenceRows,
        ) -> (PreferenceRows, Vec<String>) {
            (wrap(r.rows), r.skipped)
        }
        Ok(match prefs::detect_kind(bytes, source_name)? {
            PreferenceKind::Pairs => take(
                prefs::parse_pairs_rendered(bytes, source_name, skip_bad_rows, chat)?,
                Self::Pairs,
            ),
            PreferenceKind::Rankings => take(
                prefs::parse_rankings(bytes, source_name, skip_bad_rows)?,
                Self::Rankings,
            ),
            PreferenceKind::Unpaired => take(
                prefs::parse_unpaired(bytes, source_name, skip_bad_rows)?,
                Self::Unpaired,
            ),
            PreferenceKind::Ratings => take(
                prefs::parse_ratings(bytes, source_name, skip_bad_rows)?,
                Self::Ratings,
            ),
        })
    }

    pub fn read(path: &std::path::Path, skip_bad_rows: bool) -> Result<(Self, Vec<String>)> {
        Self::parse(
            &crate::error::read_file(path)?,
            &path.display().to_string(),
            skip_bad_rows,
        )
    }

    pub fn len(&self) -> usize {
        match self {
            Self::Pairs(r) => r.len(),
            Self::Rankings(r) => r.len(),
            Self::Unpaired(r) => r.len(),
            Self::Ratings(r) => r.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn kind(&self) -> PreferenceKind {
        match self {
            Self::Pairs(_) => PreferenceKind::Pairs,
            Self::Rankings(_) => PreferenceKind::Rankings,
            Self::Unpaired(_) => PreferenceKind::Unpaired,
            Self::Ratings(_) => PreferenceKind::Ratings,
        }
    }

    /// (train, held out) by a seeded shuffle.
    pub fn split(&self, held_out_fraction: f64, seed: u64) -> (Self, Self) {
        fn both<T: Clone>(
            rows: &[T],
            f: f64,
            seed: u64,
            wrap: fn(Vec<T>) -> PreferenceRows,
        ) -> (PreferenceRows, PreferenceRows) {
            let (a, b) = split_held_out(rows, f, seed);
            (wrap(a), wrap(b))
        }
        match self {
            Self::Pairs(r) => both(r, held_out_fraction, seed, Self::Pairs),
            Self::Rankings(r) => both(r, held_out_fraction, seed, Self::Rankings),
            Self::Unpaired(r) => both(r, held_out_fraction, seed, Self::Unpaired),
            Self::Ratings(r) => both(r, held_out_fraction, seed, Self::Ratings),
        }
    }

    /// Pairs (as rankings of two) or rankings.
    pub fn into_rankings(self) -> Result<Vec<Ranking>> {
        match self {
            Self::Pairs(pairs) => Ok(pairs.into_iter().map(Ranking::from).collect()),
            Self::Rankings(r) => Ok(r),
            other => Err(Error::Input(format!(
                "this needs pairs or rankings; the file holds {} rows",
                other.kind()
            ))),
        }
    }

    /// Unpaired labels; pairs are unpaired (chosen desirable, rejected undesirable).
    pub fn into_unpaired(self) -> Result<Vec<UnpairedExample>> {
        match self {
            Self::Unpaired(u) => Ok(u),
            Self::Pairs(pairs) => Ok(pairs.iter().flat_map(UnpairedExample::from_pair).collect()),
            other => Err(Error::Input(format!(
                "this needs unpaired labels or pairs; the file holds {} rows",
                other.kind()
            ))),
        }
    }
}

/// Splits rows into (train, held out) by a seeded shuffle; `held_out_fraction` in [0, 1).
pub fn split_held_out<T: Clone>(rows: &[T], held_out_fraction: f64, seed: u64) -> (Vec<T>, Vec<T>) {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
    let held = ((rows.len() as f64) * held_out_fraction.clamp(0.0, 0.99)).round() as usize;
    let (held_idx, train_idx) = order.split_at(held);
    let pick = |idx: &[usize]| idx.iter().map(|&i| rows[i].clone()).collect();
    (pick(train_idx), pick(held_idx))
}

/// One supervised example, as text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    pub prompt: String,
    pub completion: String,
}

/// Token ids of examples: the prompt after BOS, the completion followed by EOS.
pub fn tokenize_examples(
    tokenizer: &Tokenizer,
    examples: &[Example],
) -> Result<Vec<(Vec<u32>, Vec<u32>)>> {
    examples
        .iter()
        .enumerate()
        .map(|(index, example)| {
            let prompt = tokenizer.encode_with_bos(&example.prompt)?;
            let mut completion = tokenizer.encode(&example.completion)?;
            completion.extend(tokenizer.eos_id());
            if prompt.is_empty() || completion.is_empty() {
                return Err(Error::Input(format!(
                    "example {index}: prompt and completion must both give tokens"
                )));
            }
            Ok((prompt, completion))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_bos_and_the_end_of_the_prompt() {
        let limit = LengthLimit {
            max_length: 8,
            truncate: true,
        };
        let prompt: Vec<u32> = (1..=10).collect();
        let completion: Vec<u32> = (20..26).collect();
        let (p, c) = limit.fit(&prompt, &completion).unwrap();
        assert_eq!(p, vec![1, 8, 9, 10]);
        assert_eq!(c, vec![20, 21, 22, 23]);
        let strict = LengthLimit {
            truncate: false,
            ..limit
        };
        assert!(strict
            .fit(&prompt, &completion)
            .unwrap_err()
            .contains("16 tokens"));
        assert_eq!(strict.fit(&[1, 2], &[3]).unwrap(), (vec![1, 2], vec![3]));
    }
}

//! Lexicon sentiment rewards in VADER's file format (`token<TAB>mean valence<TAB>…`, Hutto &
//! Gilbert 2014) or AFINN's (`word<TAB>score`): the sum of word valences, a valence flipped and
//! damped by VADER's factor −0.74 when one of the three words before it is a negation, and
//! VADER's normalisation of the sum into (−1, 1): x/√(x² + 15). The rest of VADER's heuristics
//! (intensifiers, capitals, "but") are left out: this is a reward, not a sentiment analyser.

use std::collections::HashMap;
use std::path::Path;

use crate::error::{read_file, Error, Result};

/// VADER's damping of a negated valence.
const NEGATION_SCALAR: f64 = -0.74;
/// VADER's normalisation constant α.
const ALPHA: f64 = 15.0;

const NEGATIONS: &[&str] = &[
    "not",
    "no",
    "never",
    "none",
    "nobody",
    "nothing",
    "neither",
    "nor",
    "nowhere",
    "cannot",
    "without",
    "isn't",
    "aren't",
    "wasn't",
    "weren't",
    "don't",
    "doesn't",
    "didn't",
    "won't",
    "wouldn't",
    "can't",
    "couldn't",
    "shouldn't",
    "hasn't",
    "haven't",
    "hadn't",
    "ain't",
];

#[derive(Debug, Clone, PartialEq)]
pub struct Lexicon {
    valence: HashMap<String, f64>,
}

impl Lexicon {
    /// Parses VADER's or AFINN's format: the first two tab-separated fields of each line are the
    /// token and its valence; a bad line is an error naming it.
    pub fn parse(text: &str, source_name: &str) -> Result<Self> {
        let mut valence = HashMap::new();
        for (index, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let mut fields = line.split('\t');
            let (Some(token), Some(value)) = (fields.next(), fields.next()) else {
                return Err(Error::format(
                    format!("{source_name}:{}", index + 1),
                    "expected `token<TAB>valence`",
                ));
            };
            let value: f64 = value.trim().parse().map_err(|_| {
                Error::format(
                    format!("{source_name}:{}", index + 1),
                    format!("valence `{value}` is not a number"),
                )
            })?;
            valence.insert(token.to_lowercase(), value);
        }
        if valence.is_empty() {
            return Err(Error::format(source_name, "the lexicon is empty"));
        }
        Ok(Self { valence })
    }

    pub fn read(path: &Path) -> Result<Self> {
        let bytes = read_file(path)?;
        let name = path.display().to_string();
        let text = std::str::from_utf8(&bytes)
            .map_err(|e| Error::format(&name, format!("not UTF-8: {e}")))?;
        Self::parse(text, &name)
    }

    pub fn len(&self) -> usize {
        self.valence.len()
    }

    pub fn is_empty(&self) -> bool {
        self.valence.is_empty()
    }

    pub fn valence(&self, word: &str) -> Option<f64> {
        self.valence.get(&word.to_lowercase()).copied()
    }

    /// The sum of valences, with negation.
    pub fn raw_score(&self, text: &str) -> f64 {
        let words: Vec<String> = text
            .split(|c: char| !(c.is_alphanumeric() || c == '\''))
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect();
        let mut total = 0.0;
        for (i, word) in words.iter().enumerate() {
            let Some(mut v) = self.valence.get(word).copied() else {
                continue;
            };
            let negated = words[i.saturating_sub(3)..i]
                .iter()
                .any(|w| NEGATIONS.contains(&w.as_str()) || w.ends_with("n't"));
            if negated {
                v *= NEGATION_SCALAR;
            }
            total += v;
        }
        total
    }

    /// VADER's compound score in (−1, 1).
    pub fn compound(&self, text: &str) -> f64 {
        let x = self.raw_score(text);
        x / (x * x + ALPHA).sqrt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lexicon() -> Lexicon {
        Lexicon::parse("happy\t2.7\t0.9\t[3, 3]\nsad\t-2.1\t0.7\t[-2]\n", "v.txt").unwrap()
    }

    #[test]
    fn compound_matches_vaders_values_for_plain_and_negated_words() {
        // VADER gives "happy" 0.5719 and "not happy" −0.4585.
        let l = lexicon();
        assert!((l.compound("I am happy") - 0.5719).abs() < 1e-4);
        assert!((l.compound("I am not happy") + 0.4585).abs() < 1e-4);
        assert!((l.raw_score("happy, sad") - 0.6).abs() < 1e-12);
        assert_eq!(l.compound("a table"), 0.0);
    }

    #[test]
    fn bad_lines_are_named() {
        let message = Lexicon::parse("good\t1.0\nbad line\n", "v.txt")
            .unwrap_err()
            .to_string();
        assert!(message.starts_with("v.txt:2:"), "{message}");
        assert!(Lexicon::parse("good\tx\n", "v.txt").is_err());
    }
}

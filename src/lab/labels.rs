//! The page's labels, kept as given: a choice between two completions (ties and "both bad"
//! included) or a ranking of k completions. Training, export and import see them as the CLI's
//! preference files: a ranking of k states k·(k−1)/2 pairs (InstructGPT, Ouyang et al. 2022,
//! §3.5: every pair of a ranking is a comparison).

use serde::{Deserialize, Serialize};

use crate::backend::AutodiffBackend;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::Lab;
use crate::dataset::{tokenize_rankings, LengthLimit, PreferenceRows, RankedSequences};
use crate::error::{Error, Result};
use crate::io::prefs::{self, PreferencePair, Ranking};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Choice {
    Left,
    Right,
    Tie,
    BothBad,
}

/// Who gave the label: a person at the page, or the gold reward standing in for one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Labeller {
    #[default]
    Human,
    Gold,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairLabel {
    pub prompt: String,
    pub left: String,
    pub right: String,
    pub choice: Choice,
    #[serde(default)]
    pub labeller: Labeller,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankingLabel {
    pub prompt: String,
    /// Best first.
    pub ranked: Vec<String>,
    /// Scores in the same order (descending) when the ranking came with them; equal scores
    /// are ties, which state no preference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scores: Option<Vec<f64>>,
    #[serde(default)]
    pub labeller: Labeller,
}

/// As the page stores it: `{prompt, left, right, choice}` or `{prompt, ranked}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Label {
    Pair(PairLabel),
    Ranking(RankingLabel),
}

impl PairLabel {
    /// The preference this label states, if it states one (ties and "both bad" do not).
    pub fn pair(&self) -> Option<PreferencePair> {
        let (chosen, rejected) = match self.choice {
            Choice::Left => (&self.left, &self.right),
            Choice::Right => (&self.right, &self.left),
            Choice::Tie | Choice::BothBad => return None,
        };
        Some(PreferencePair {
            prompt: self.prompt.clone(),
            chosen: chosen.clone(),
            rejected: rejected.clone(),
        })
    }
}

impl RankingLabel {
    /// Every pair the ranking orders: each completion over each one ranked below it (and
    /// scored lower, when there are scores).
    pub fn pairs(&self) -> Vec<PreferencePair> {
        let mut out = Vec::new();
        for (i, chosen) in self.ranked.iter().enumerate() {
            for (j, rejected) in self.ranked.iter().enumerate().skip(i + 1) {
                let tied = self.scores.as_ref().is_some_and(|s| s[i] <= s[j]);
                if !tied {
                    out.push(PreferencePair {
                        prompt: self.prompt.clone(),
                        chosen: chosen.clone(),
                        rejected: rejected.clone(),
                    });
                }
            }
        }
        out
    }

    fn ranking(&self) -> Ranking {
        Ranking {
            prompt: self.prompt.clone(),
            completions: self.ranked.clone(),
            scores: self.scores.clone(),
        }
    }
}

impl Label {
    /// The preference pairs this label states (none for a tie or "both bad").
    pub fn pairs(&self) -> Vec<PreferencePair> {
        match self {
            Self::Pair(p) => p.pair().into_iter().collect(),
            Self::Ranking(r) => r.pairs(),
        }
    }

    /// Checks what the page sent: a ranking needs 2 or more distinct completions, and as many
    /// scores as completions.
    pub fn check(&self, index: usize) -> Result<()> {
        let Self::Ranking(r) = self else {
            return Ok(());
        };
        let problem = if r.ranked.len() < 2 {
            Some(format!(
                "ranks {} completions; a ranking needs 2 or more",
                r.ranked.len()
            ))
        } else if (1..r.ranked.len()).any(|i| r.ranked[i..].contains(&r.ranked[i - 1])) {
            Some("ranks the same completion twice".to_string())
        } else {
            r.scores
                .as_ref()
                .filter(|s| s.len() != r.ranked.len())
                .map(|s| format!("has {} scores for {} completions", s.len(), r.ranked.len()))
        };
        match problem {
            Some(p) => Err(Error::Input(format!("label {index} {p}"))),
            None => Ok(()),
        }
    }
}

/// Every label's pairs, grouped by label (labels that state none are left out): pairs of one
/// ranking share completions, so they are held out together.
pub fn pair_groups(labels: &[Label]) -> Result<Vec<Vec<PreferencePair>>> {
    for (i, label) in labels.iter().enumerate() {
        label.check(i)?;
    }
    Ok(labels
        .iter()
        .map(Label::pairs)
        .filter(|p| !p.is_empty())
        .collect())
}

pub fn pairs(labels: &[Label]) -> Vec<PreferencePair> {
    labels.iter().flat_map(Label::pairs).collect()
}

/// Every pair the labels state, as JSON lines of `{"prompt", "chosen", "rejected"}`: the file
/// every `alignlab train` method reads. Ties and "both bad" have no row in that format.
pub fn export_jsonl(labels: &[Label]) -> String {
    prefs::to_jsonl(&pairs(labels))
}

/// The rankings among the labels as the CLI's ranking rows (`{"prompt", "completions",
/// "ranks"}`), which keep the whole order for a Plackett–Luce reward model, PRO or LiPO.
pub fn export_rankings_jsonl(labels: &[Label]) -> String {
    let rankings: Vec<Ranking> = labels
        .iter()
        .filter_map(|l| match l {
            Label::Ranking(r) => Some(r.ranking()),
            Label::Pair(_) => None,
        })
        .collect();
    prefs::to_jsonl(&rankings)
}

/// Reads a preference file the CLI reads — pairs (JSON lines or an array, explicit or HH-RLHF
/// style; chosen on the left) or rankings — as labels. A bad row is an error naming its line.
pub fn import(bytes: &[u8], source_name: &str) -> Result<Vec<Label>> {
    let (rows, _) = PreferenceRows::parse(bytes, source_name, false)?;
    let labels: Vec<Label> = match rows {
        PreferenceRows::Pairs(pairs) => pairs
            .into_iter()
            .map(|p| {
                Label::Pair(PairLabel {
                    prompt: p.prompt,
                    left: p.chosen,
                    right: p.rejected,
                    choice: Choice::Left,
                    labeller: Labeller::Human,
                })
            })
            .collect(),
        PreferenceRows::Rankings(rankings) => rankings
            .into_iter()
            .map(|r| {
                Label::Ranking(RankingLabel {
                    prompt: r.prompt,
                    ranked: r.completions,
                    scores: r.scores,
                    labeller: Labeller::Human,
                })
            })
            .collect(),
        PreferenceRows::Unpaired(_) | PreferenceRows::Ratings(_) => {
            return Err(Error::format(
                source_name,
                "the lab imports preference pairs or rankings; this file holds unpaired or rated completions",
            ))
        }
    };
    if labels.is_empty() {
        return Err(Error::format(
            source_name,
            "no preference pairs or rankings in the file",
        ));
    }
    Ok(labels)
}

impl<B: AutodiffBackend> Lab<B> {
    /// The labels to train on (the page holds them; it sends them all before training);
    /// returns how many pairs they state.
    pub fn set_labels(&mut self, labels: &[Label]) -> Result<usize> {
        self.pair_groups = pair_groups(labels)?;
        Ok(self.pair_count())
    }

    pub(super) fn pair_count(&self) -> usize {
        self.pair_groups.iter().map(Vec::len).sum()
    }

    pub(super) fn length_limit(&self) -> LengthLimit {
        LengthLimit {
            max_length: self.base.config().max_seq_len,
            truncate: true,
        }
    }

    pub(super) fn tokenized<'a>(
        &self,
        pairs: impl IntoIterator<Item = &'a PreferencePair>,
    ) -> Result<Vec<RankedSequences>> {
        let rankings: Vec<Ranking> = pairs.into_iter().cloned().map(Ranking::from).collect();
        // Nothing to tokenise is no data, not a file whose every record was unusable.
        if rankings.is_empty() {
            return Ok(Vec::new());
        }
        Ok(tokenize_rankings(
            &self.tokenizer,
            &rankings,
            &self.length_limit(),
            "labels",
            true,
        )?
        .rows)
    }
}

/// Fewest held-out pairs whose accuracy is worth showing (its 95% interval is still ±0.3 wide),
/// and the fewest pairs from which any are held out (so 20 are left to train on).
pub const MIN_HELD_OUT: usize = 10;
pub const MIN_PAIRS_TO_HOLD_OUT: usize = 30;

/// Splits the labels' pairs into training and held-out pairs: a fifth (at least
/// [`MIN_HELD_OUT`]) held out from [`MIN_PAIRS_TO_HOLD_OUT`] pairs on, whole labels at a time (a
/// ranking's pairs share completions), never every label.
pub(super) fn hold_out_by_label(
    groups: &[Vec<PreferencePair>],
    seed: u64,
) -> (Vec<&PreferencePair>, Vec<&PreferencePair>) {
    let total: usize = groups.iter().map(Vec::len).sum();
    let wanted = if total >= MIN_PAIRS_TO_HOLD_OUT {
        (total / 5).max(MIN_HELD_OUT)
    } else {
        0
    };
    let mut shuffled_groups: Vec<&Vec<PreferencePair>> = groups.iter().collect();
    shuffled_groups.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let mut held_out = Vec::new();
    while held_out.len() < wanted && shuffled_groups.len() > 1 {
        held_out.extend(shuffled_groups.pop().expect("more than one group left"));
    }
    (shuffled_groups.into_iter().flatten().collect(), held_out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(choice: Choice) -> Label {
        Label::Pair(PairLabel {
            prompt: "p".into(),
            left: "a".into(),
            right: "b".into(),
            choice,
            labeller: Labeller::Human,
        })
    }

    fn ranking(ranked: &[&str], scores: Option<Vec<f64>>) -> Label {
        Label::Ranking(RankingLabel {
            prompt: "q".into(),
            ranked: ranked.iter().map(|s| s.to_string()).collect(),
            scores,
            labeller: Labeller::Human,
        })
    }

    #[test]
    fn choices_become_pairs_and_export_round_trips() {
        let labels = [
            label(Choice::Left),
            label(Choice::Right),
            label(Choice::Tie),
            label(Choice::BothBad),
        ];
        let text = export_jsonl(&labels);
        assert_eq!(text.lines().count(), 2);
        let back = import(text.as_bytes(), "labels.jsonl").unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].pairs(), labels[0].pairs());
        assert_eq!(back[1].pairs()[0].chosen, "b");
    }

    #[test]
    fn a_ranking_states_every_ordered_pair_and_round_trips() {
        let ranked = ranking(&["w", "x", "y", "z"], None);
        let pairs = ranked.pairs();
        assert_eq!(pairs.len(), 6);
        assert!(pairs.iter().all(|p| p.prompt == "q"));
        // Each completion wins against exactly those ranked below it.
        for (i, c) in ["w", "x", "y", "z"].iter().enumerate() {
            assert_eq!(pairs.iter().filter(|p| p.chosen == *c).count(), 3 - i);
        }
        let labels = [label(Choice::Left), ranked.clone(), label(Choice::Tie)];
        assert_eq!(export_jsonl(&labels).lines().count(), 7);
        let groups = pair_groups(&labels).unwrap();
        assert_eq!(groups.iter().map(Vec::len).collect::<Vec<_>>(), [1, 6]);

        // The rankings file holds only the ranking, and reads back as the same ranking.
        let text = export_rankings_jsonl(&labels);
        assert_eq!(text.lines().count(), 1);
        assert!(text.contains("\"ranks\":[1,2,3,4]"), "{text}");
        assert_eq!(import(text.as_bytes(), "r.jsonl").unwrap(), [ranked]);

        // Tied scores state no preference between the tied completions.
        let scored = ranking(&["w", "x", "y"], Some(vec![2.0, 1.0, 1.0]));
        assert_eq!(scored.pairs().len(), 2);
    }

    #[test]
    fn labels_round_trip_through_the_pages_json() {
        let labels = vec![label(Choice::BothBad), ranking(&["a", "b", "c"], None)];
        let json = serde_json::to_value(&labels).unwrap();
        assert!(json[1].get("ranked").is_some() && json[1].get("scores").is_none());
        let back: Vec<Label> = serde_json::from_value(json).unwrap();
        assert_eq!(back, labels);
    }

    #[test]
    fn bad_labels_and_bad_import_lines_are_named() {
        let text = "{\"prompt\":\"p\",\"chosen\":\"a\",\"rejected\":\"b\"}\n{\"prompt\":\"p\"}\n";
        let e = import(text.as_bytes(), "mine.jsonl")
            .unwrap_err()
            .to_string();
        assert!(e.contains("mine.jsonl:2:"), "{e}");
        let e = import(b"", "empty.jsonl").unwrap_err().to_string();
        assert!(e.contains("empty.jsonl"), "{e}");
        let unpaired = "{\"prompt\":\"p\",\"completion\":\"a\",\"label\":true}\n";
        let e = import(unpaired.as_bytes(), "kto.jsonl")
            .unwrap_err()
            .to_string();
        assert!(e.contains("kto.jsonl") && e.contains("unpaired"), "{e}");

        let e = pair_groups(&[label(Choice::Left), ranking(&["a", "b", "a"], None)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("label 1 ranks the same completion twice"), "{e}");
        let e = pair_groups(&[ranking(&["a"], None)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("label 0 ranks 1 completions"), "{e}");
    }

    fn group(label: usize, size: usize) -> Vec<PreferencePair> {
        (0..size)
            .map(|i| PreferencePair {
                prompt: format!("label {label}"),
                chosen: format!("{i}"),
                rejected: "x".into(),
            })
            .collect()
    }

    #[test]
    fn held_out_pairs_are_whole_labels() {
        // 6 rankings of 4 (6 pairs each) and 10 pair labels: 46 pairs, at least 10 held out.
        let groups: Vec<_> = (0..16)
            .map(|l| group(l, if l < 6 { 6 } else { 1 }))
            .collect();
        for seed in 0..20 {
            let (training, held_out) = hold_out_by_label(&groups, seed);
            assert_eq!(training.len() + held_out.len(), 46);
            assert!(
                held_out.len() >= MIN_HELD_OUT,
                "{} held out",
                held_out.len()
            );
            for pair in &held_out {
                assert!(
                    training.iter().all(|t| t.prompt != pair.prompt),
                    "seed {seed}: {} is split",
                    pair.prompt
                );
            }
        }
        // Under 30 pairs nothing is held out; one large label is never held out whole.
        assert!(hold_out_by_label(&groups[..4], 0).1.is_empty());
        let one = [group(0, 28)];
        assert_eq!(hold_out_by_label(&one, 0).0.len(), 28);
    }
}

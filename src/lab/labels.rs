//! The page's labels: what a person said about two completions of a prompt, kept as given (ties
//! and "both bad" included), and turned into the CLI's preference pairs for training, export and
//! import.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::io::prefs::{self, PreferencePair};

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
pub struct Label {
    pub prompt: String,
    pub left: String,
    pub right: String,
    pub choice: Choice,
    #[serde(default)]
    pub labeller: Labeller,
}

impl Label {
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

pub fn pairs(labels: &[Label]) -> Vec<PreferencePair> {
    labels.iter().filter_map(Label::pair).collect()
}

/// The labels that state a preference, as JSON lines of `{"prompt", "chosen", "rejected"}`:
/// the file `alignlab train --data` reads. Ties and "both bad" have no row in that format.
pub fn export_jsonl(labels: &[Label]) -> String {
    pairs(labels)
        .iter()
        .map(|p| serde_json::to_string(p).expect("strings serialise") + "\n")
        .collect()
}

/// Reads a preference-pair file (any form the CLI reads: JSON lines or an array, explicit or
/// HH-RLHF style) as labels, chosen on the left. A bad row is an error naming its line.
pub fn import(bytes: &[u8], source_name: &str) -> Result<Vec<Label>> {
    let report = prefs::parse_pairs(bytes, source_name, false)?;
    if report.rows.is_empty() {
        return Err(Error::format(
            source_name,
            "no preference pairs in the file",
        ));
    }
    Ok(report
        .rows
        .into_iter()
        .map(|p| Label {
            prompt: p.prompt,
            left: p.chosen,
            right: p.rejected,
            choice: Choice::Left,
            labeller: Labeller::Human,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(choice: Choice) -> Label {
        Label {
            prompt: "p".into(),
            left: "a".into(),
            right: "b".into(),
            choice,
            labeller: Labeller::Human,
        }
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
        assert_eq!(back[0].pair(), labels[0].pair());
        assert_eq!(back[1].pair().unwrap().chosen, "b");
    }

    #[test]
    fn a_bad_import_line_is_named() {
        let text = "{\"prompt\":\"p\",\"chosen\":\"a\",\"rejected\":\"b\"}\n{\"prompt\":\"p\"}\n";
        let e = import(text.as_bytes(), "mine.jsonl")
            .unwrap_err()
            .to_string();
        assert!(e.contains("mine.jsonl:2:"), "{e}");
        let e = import(b"", "empty.jsonl").unwrap_err().to_string();
        assert!(e.contains("empty.jsonl"), "{e}");
    }
}

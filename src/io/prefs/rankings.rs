//! Rankings: `{"prompt", "completions": [k of them], "ranks": [...]}` (1 is best; any distinct
//! integers where lower is better) or `{"prompt", "completions", "scores": [...]}` (higher is
//! better). Completions are stored best first; a pair is a ranking of two.

use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use super::{
    completion_text, field, parse_rows, prompt_text, read_rows, PreferencePair, ReadReport,
};
use crate::error::Result;

#[derive(Debug, Clone, PartialEq)]
pub struct Ranking {
    pub prompt: String,
    /// Best first.
    pub completions: Vec<String>,
    /// The completions' scores in the same order (descending), when the data gave scores.
    pub scores: Option<Vec<f64>>,
}

/// Written as the reader takes it: with `scores` when known, else with `ranks` 1…k.
impl Serialize for Ranking {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Row<'a> {
            prompt: &'a str,
            completions: &'a [String],
            #[serde(skip_serializing_if = "Option::is_none")]
            ranks: Option<Vec<usize>>,
            #[serde(skip_serializing_if = "Option::is_none")]
            scores: Option<&'a [f64]>,
        }
        Row {
            prompt: &self.prompt,
            completions: &self.completions,
            ranks: self
                .scores
                .is_none()
                .then(|| (1..=self.completions.len()).collect()),
            scores: self.scores.as_deref(),
        }
        .serialize(serializer)
    }
}

impl From<PreferencePair> for Ranking {
    fn from(pair: PreferencePair) -> Self {
        Self {
            prompt: pair.prompt,
            completions: vec![pair.chosen, pair.rejected],
            scores: None,
        }
    }
}

fn numbers(value: &Value, name: &str, k: usize) -> std::result::Result<Vec<f64>, String> {
    let list = value
        .as_array()
        .ok_or(format!("`{name}` must be a list of numbers"))?;
    if list.len() != k {
        return Err(format!(
            "`{name}` has {} entries for {k} completions",
            list.len()
        ));
    }
    list.iter()
        .map(|v| {
            v.as_f64()
                .filter(|x| x.is_finite())
                .ok_or(format!("`{name}` holds {v}, not a finite number"))
        })
        .collect()
}

fn ranking_from_row(row: &Value) -> std::result::Result<Ranking, String> {
    const EXPECTED: &str = "`prompt`, `completions` and `ranks` or `scores`";
    let object = row.as_object().ok_or("a row must be a JSON object")?;
    let prompt = prompt_text(field(object, "prompt", EXPECTED)?)?;
    let listed = field(object, "completions", EXPECTED)?
        .as_array()
        .ok_or("`completions` must be a list")?;
    if listed.len() < 2 {
        return Err(format!(
            "a ranking needs at least 2 completions, found {}",
            listed.len()
        ));
    }
    let completions = listed
        .iter()
        .map(|c| completion_text(c, "completions"))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    for (i, a) in completions.iter().enumerate() {
        if completions[i + 1..].contains(a) {
            return Err(format!("completion {i} appears twice"));
        }
    }
    let k = completions.len();
    // Sort keys: smaller is better.
    let (keys, scores) = match (object.get("ranks"), object.get("scores")) {
        (Some(ranks), None) => {
            let ranks = numbers(ranks, "ranks", k)?;
            let mut sorted = ranks.clone();
            sorted.sort_by(f64::total_cmp);
            if sorted.windows(2).any(|w| w[0] == w[1]) {
                return Err("`ranks` has ties; give `scores` for tied completions".into());
            }
            (ranks, None)
        }
        (None, Some(scores)) => {
            let scores = numbers(scores, "scores", k)?;
            (scores.iter().map(|s| -s).collect(), Some(scores))
        }
        (Some(_), Some(_)) => return Err("give `ranks` or `scores`, not both".into()),
        (None, None) => {
            return Err(format!(
                "expected fields {EXPECTED}; neither `ranks` nor `scores` is present"
            ))
        }
    };
    let mut order: Vec<usize> = (0..k).collect();
    order.sort_by(|&a, &b| keys[a].total_cmp(&keys[b]));
    Ok(Ranking {
        prompt,
        completions: order.iter().map(|&i| completions[i].clone()).collect(),
        scores: scores.map(|s| order.iter().map(|&i| s[i]).collect()),
    })
}

pub fn parse_rankings(
    bytes: &[u8],
    source_name: &str,
    skip_bad_rows: bool,
) -> Result<ReadReport<Ranking>> {
    parse_rows(
        bytes,
        source_name,
        skip_bad_rows,
        "rankings",
        ranking_from_row,
    )
}

pub fn read_rankings(path: &Path, skip_bad_rows: bool) -> Result<ReadReport<Ranking>> {
    read_rows(path, skip_bad_rows, "rankings", ranking_from_row)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_and_scores_order_completions_best_first() {
        let text = r#"{"prompt": "P", "completions": [" b", " a", " c"], "ranks": [2, 1, 3]}
{"prompt": "P", "completions": [" x", " y", " z"], "scores": [0.5, 2.0, -1.0]}"#;
        let rows = parse_rankings(text.as_bytes(), "r.jsonl", false)
            .unwrap()
            .rows;
        assert_eq!(rows[0].completions, vec![" a", " b", " c"]);
        assert_eq!(rows[0].scores, None);
        assert_eq!(rows[1].completions, vec![" y", " x", " z"]);
        assert_eq!(rows[1].scores, Some(vec![2.0, 0.5, -1.0]));
        // What is written reads back the same.
        let written = super::super::to_jsonl(&rows);
        assert_eq!(
            parse_rankings(written.as_bytes(), "w.jsonl", false)
                .unwrap()
                .rows,
            rows
        );
    }

    #[test]
    fn bad_rankings_are_named() {
        for (row, needle) in [
            (
                r#"{"prompt": "P", "completions": [" a"], "ranks": [1]}"#,
                "at least 2",
            ),
            (
                r#"{"prompt": "P", "completions": [" a", " b"], "ranks": [1, 1]}"#,
                "ties",
            ),
            (
                r#"{"prompt": "P", "completions": [" a", " b"], "scores": [1]}"#,
                "2 completions",
            ),
            (
                r#"{"prompt": "P", "completions": [" a", " a"], "scores": [1, 2]}"#,
                "twice",
            ),
            (r#"{"prompt": "P", "completions": [" a", " b"]}"#, "neither"),
            (
                r#"{"prompt": "P", "outputs": [" a", " b"], "ranks": [1, 2]}"#,
                "`completions` is missing",
            ),
        ] {
            let message = parse_rankings(row.as_bytes(), "r.jsonl", false)
                .unwrap_err()
                .to_string();
            assert!(
                message.starts_with("r.jsonl:1:") && message.contains(needle),
                "{message}"
            );
        }
    }
}

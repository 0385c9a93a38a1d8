//! Completions rated on named attributes, for multi-objective reward models (the regression data
//! of SteerLM / HelpSteer and of Directional Preference Alignment's reward model):
//! `{"prompt", "completion", "scores": {"helpfulness": 3, "verbosity": 1}}`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{completion_text, field, parse_rows, prompt_text, read_rows, ReadReport};
use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RatedCompletion {
    pub prompt: String,
    pub completion: String,
    pub scores: BTreeMap<String, f64>,
}

fn rated_from_row(row: &Value) -> std::result::Result<RatedCompletion, String> {
    const EXPECTED: &str = "`prompt`, `completion` and `scores` (an object of numbers)";
    let object = row.as_object().ok_or("a row must be a JSON object")?;
    let scores = field(object, "scores", EXPECTED)?
        .as_object()
        .ok_or("`scores` must be an object of attribute names to numbers")?
        .iter()
        .map(|(name, v)| {
            v.as_f64()
                .filter(|x| x.is_finite())
                .map(|x| (name.clone(), x))
                .ok_or(format!("score `{name}` is {v}, not a finite number"))
        })
        .collect::<std::result::Result<BTreeMap<_, _>, _>>()?;
    if scores.is_empty() {
        return Err("`scores` is empty".into());
    }
    Ok(RatedCompletion {
        prompt: prompt_text(field(object, "prompt", EXPECTED)?)?,
        completion: completion_text(field(object, "completion", EXPECTED)?, "completion")?,
        scores,
    })
}

/// Reads rated completions; every row must rate the same attributes as the first.
pub fn parse_ratings(
    bytes: &[u8],
    source_name: &str,
    skip_bad_rows: bool,
) -> Result<ReadReport<RatedCompletion>> {
    check_attributes(
        parse_rows(
            bytes,
            source_name,
            skip_bad_rows,
            "rated completions",
            rated_from_row,
        )?,
        source_name,
    )
}

pub fn read_ratings(path: &Path, skip_bad_rows: bool) -> Result<ReadReport<RatedCompletion>> {
    check_attributes(
        read_rows(path, skip_bad_rows, "rated completions", rated_from_row)?,
        &path.display().to_string(),
    )
}

fn check_attributes(
    report: ReadReport<RatedCompletion>,
    source_name: &str,
) -> Result<ReadReport<RatedCompletion>> {
    let first: Vec<&String> = report.rows[0].scores.keys().collect();
    for (i, row) in report.rows.iter().enumerate() {
        let names: Vec<&String> = row.scores.keys().collect();
        if names != first {
            return Err(Error::format(
                source_name,
                format!("record {i} rates {names:?}, but the first rates {first:?}"),
            ));
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_must_agree() {
        let good =
            "{\"prompt\": \"P\", \"completion\": \" a\", \"scores\": {\"x\": 1, \"y\": 2}}\n";
        let rows = parse_ratings(good.as_bytes(), "r", false).unwrap().rows;
        assert_eq!(rows[0].scores["y"], 2.0);
        let mixed = format!(
            "{good}{{\"prompt\": \"P\", \"completion\": \" b\", \"scores\": {{\"x\": 1}}}}\n"
        );
        let message = parse_ratings(mixed.as_bytes(), "r.jsonl", false)
            .unwrap_err()
            .to_string();
        assert!(message.contains("record 1"), "{message}");
    }
}

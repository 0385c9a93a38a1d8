//! Unpaired feedback for KTO and BCO: `{"prompt", "completion", "label"}`, where `label` is true
//! for a desirable completion (TRL's unpaired preference format).

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    completion_text, field, parse_rows, prompt_text, read_rows, PreferencePair, ReadReport,
};
use crate::error::Result;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnpairedExample {
    pub prompt: String,
    pub completion: String,
    /// True when the completion is desirable.
    pub label: bool,
}

impl UnpairedExample {
    /// A pair as two unpaired examples: chosen desirable, rejected undesirable (TRL's
    /// `unpair_preference_dataset`).
    pub fn from_pair(pair: &PreferencePair) -> [Self; 2] {
        [
            Self {
                prompt: pair.prompt.clone(),
                completion: pair.chosen.clone(),
                label: true,
            },
            Self {
                prompt: pair.prompt.clone(),
                completion: pair.rejected.clone(),
                label: false,
            },
        ]
    }
}

fn unpaired_from_row(row: &Value) -> std::result::Result<UnpairedExample, String> {
    const EXPECTED: &str = "`prompt`, `completion` and `label`";
    let object = row.as_object().ok_or("a row must be a JSON object")?;
    let label = field(object, "label", EXPECTED)?
        .as_bool()
        .ok_or("`label` must be true or false")?;
    Ok(UnpairedExample {
        prompt: prompt_text(field(object, "prompt", EXPECTED)?)?,
        completion: completion_text(field(object, "completion", EXPECTED)?, "completion")?,
        label,
    })
}

pub fn parse_unpaired(
    bytes: &[u8],
    source_name: &str,
    skip_bad_rows: bool,
) -> Result<ReadReport<UnpairedExample>> {
    parse_rows(
        bytes,
        source_name,
        skip_bad_rows,
        "labelled completions",
        unpaired_from_row,
    )
}

pub fn read_unpaired(path: &Path, skip_bad_rows: bool) -> Result<ReadReport<UnpairedExample>> {
    read_rows(
        path,
        skip_bad_rows,
        "labelled completions",
        unpaired_from_row,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_read_back_and_bad_rows_are_named() {
        let text = "{\"prompt\": \"P\", \"completion\": \" good\", \"label\": true}\n{\"prompt\": \"P\", \"completion\": \" bad\", \"label\": false}\n";
        let rows = parse_unpaired(text.as_bytes(), "u.jsonl", false)
            .unwrap()
            .rows;
        assert_eq!(rows.len(), 2);
        assert!(rows[0].label && !rows[1].label);
        let written = super::super::to_jsonl(&rows);
        assert_eq!(
            parse_unpaired(written.as_bytes(), "w", false).unwrap().rows,
            rows
        );
        let bad = "{\"prompt\": \"P\", \"completion\": \" x\", \"label\": \"yes\"}\n";
        let message = parse_unpaired(bad.as_bytes(), "u.jsonl", false)
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with("u.jsonl:1:") && message.contains("true or false"),
            "{message}"
        );
        let report = parse_unpaired(format!("{text}{bad}").as_bytes(), "u.jsonl", true).unwrap();
        assert_eq!((report.rows.len(), report.skipped.len()), (2, 1));
    }
}

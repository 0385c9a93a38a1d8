//! Preference data in the formats TRL users already have, read from JSON lines or a JSON array,
//! gzipped or not:
//! - explicit pairs `{"prompt", "chosen", "rejected"}`, as strings or chat message lists;
//! - implicit-prompt pairs `{"chosen", "rejected"}`: whole dialogues sharing a prefix (HH-RLHF);
//! - ShareGPT rows `{"conversations": [{from, value}], "chosen": {from, value}, "rejected": {…}}`.
//!
//! A bad row is an error naming the file and line (or array element), unless the caller asks to
//! skip bad rows, in which case they are counted and reported.

use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{read_file, Error, Result};

/// One preference between two completions of the same prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreferencePair {
    pub prompt: String,
    pub chosen: String,
    pub rejected: String,
}

/// Rows read, and the rows skipped with where and why.
#[derive(Debug, Clone)]
pub struct ReadReport<T> {
    pub rows: Vec<T>,
    pub skipped: Vec<String>,
}

/// The speaker marker that ends an HH-RLHF prompt.
const ASSISTANT: &str = "\n\nAssistant:";

/// Renders chat messages as the HH-RLHF transcript the small models here were shown.
fn render_messages(messages: &[Value]) -> std::result::Result<String, String> {
    let mut out = String::new();
    for message in messages {
        let role = message
            .get("role")
            .or_else(|| message.get("from"))
            .and_then(Value::as_str)
            .ok_or("a message has no `role` (or `from`)")?;
        let content = message
            .get("content")
            .or_else(|| message.get("value"))
            .and_then(Value::as_str)
            .ok_or("a message has no `content` (or `value`)")?;
        let speaker = match role {
            "user" | "human" => "Human",
            "assistant" | "gpt" => "Assistant",
            "system" => "System",
            other => return Err(format!("unknown role `{other}`")),
        };
        out.push_str(&format!("\n\n{speaker}: {content}"));
    }
    Ok(out)
}

/// A completion given as a string, one message object, or a list of messages.
fn completion_text(value: &Value, field: &str) -> std::result::Result<String, String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Object(_) => value
            .get("value")
            .or_else(|| value.get("content"))
            .and_then(Value::as_str)
            .map(|s| format!(" {s}"))
            .ok_or(format!("`{field}` has no `value` or `content`")),
        Value::Array(messages) => {
            let rendered = render_messages(messages)?;
            // A completion is what the assistant says: drop the speaker tag of a single reply.
            Ok(rendered
                .strip_prefix(ASSISTANT)
                .map(str::to_string)
                .unwrap_or(rendered))
        }
        _ => Err(format!(
            "`{field}` must be a string, a message or a list of messages"
        )),
    }
}

/// Splits two dialogues that share a prefix into (prompt, chosen, rejected): the prompt runs to
/// the end of the last "Assistant:" marker inside the shared prefix.
pub fn split_implicit_prompt(
    chosen: &str,
    rejected: &str,
) -> std::result::Result<PreferencePair, String> {
    let shared = chosen
        .char_indices()
        .zip(rejected.chars())
        .find(|((_, a), b)| a != b)
        .map(|((i, _), _)| i)
        .unwrap_or(chosen.len().min(rejected.len()));
    let prefix = &chosen[..shared];
    let cut = prefix
        .rfind(ASSISTANT)
        .map(|i| i + ASSISTANT.len())
        .ok_or("`chosen` and `rejected` share no prefix ending in an \"Assistant:\" turn")?;
    Ok(PreferencePair {
        prompt: chosen[..cut].to_string(),
        chosen: chosen[cut..].to_string(),
        rejected: rejected[cut..].to_string(),
    })
}

fn pair_from_row(row: &Value) -> std::result::Result<PreferencePair, String> {
    let object = row.as_object().ok_or("a row must be a JSON object")?;
    let (Some(chosen), Some(rejected)) = (object.get("chosen"), object.get("rejected")) else {
        let fields: Vec<&str> = object.keys().map(String::as_str).collect();
        return Err(format!(
            "expected fields `chosen` and `rejected` (with `prompt` or `conversations`), found {fields:?}"
        ));
    };
    let pair =
        if let Some(conversations) = object.get("conversations") {
            let messages = conversations
                .as_array()
                .ok_or("`conversations` must be a list")?;
            PreferencePair {
                prompt: format!("{}{ASSISTANT}", render_messages(messages)?),
                chosen: completion_text(chosen, "chosen")?,
                rejected: completion_text(rejected, "rejected")?,
            }
        } else if let Some(prompt) = object.get("prompt") {
            let prompt = match prompt {
                Value::String(s) => s.clone(),
                Value::Array(messages) => format!("{}{ASSISTANT}", render_messages(messages)?),
                _ => return Err("`prompt` must be a string or a list of messages".into()),
            };
            PreferencePair {
                prompt,
                chosen: completion_text(chosen, "chosen")?,
                rejected: completion_text(rejected, "rejected")?,
            }
        } else {
            match (chosen.as_str(), rejected.as_str()) {
                (Some(c), Some(r)) => split_implicit_prompt(c, r)?,
                _ => return Err(
                    "without a prompt, `chosen` and `rejected` must be whole dialogues (strings)"
                        .into(),
                ),
            }
        };
    if pair.chosen == pair.rejected {
        return Err("`chosen` is identical to `rejected`".into());
    }
    if pair.chosen.trim().is_empty() || pair.rejected.trim().is_empty() {
        return Err("an empty completion".into());
    }
    Ok(pair)
}

/// A row as parsed, with the place it came from ("3" for a line, "element 3" in an array).
type PlacedRow = (String, std::result::Result<Value, String>);

/// The rows of a JSON array or of JSON lines.
fn rows(text: &str) -> std::result::Result<Vec<PlacedRow>, String> {
    if text.trim_start().starts_with('[') {
        let array: Vec<Value> =
            serde_json::from_str(text).map_err(|e| format!("not a JSON array: {e}"))?;
        return Ok(array
            .into_iter()
            .enumerate()
            .map(|(i, v)| (format!("element {i}"), Ok(v)))
            .collect());
    }
    Ok(text
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            (
                format!("{}", i + 1),
                serde_json::from_str(line).map_err(|e| e.to_string()),
            )
        })
        .collect())
}

/// Reads preference pairs from `bytes` (gzip is detected by its magic number).
pub fn parse_pairs(
    bytes: &[u8],
    source_name: &str,
    skip_bad_rows: bool,
) -> Result<ReadReport<PreferencePair>> {
    let mut text = String::new();
    if bytes.starts_with(&[0x1f, 0x8b]) {
        flate2::read::GzDecoder::new(bytes)
            .read_to_string(&mut text)
            .map_err(|e| Error::format(source_name, format!("gzip: {e}")))?;
    } else {
        text = String::from_utf8(bytes.to_vec())
            .map_err(|e| Error::format(source_name, format!("not UTF-8: {e}")))?;
    }
    let mut report = ReadReport {
        rows: Vec::new(),
        skipped: Vec::new(),
    };
    for (place, row) in rows(&text).map_err(|e| Error::format(source_name, e))? {
        match row.and_then(|value| pair_from_row(&value)) {
            Ok(pair) => report.rows.push(pair),
            Err(reason) if skip_bad_rows => report.skipped.push(format!("{place}: {reason}")),
            Err(reason) => return Err(Error::format(format!("{source_name}:{place}"), reason)),
        }
    }
    if report.rows.is_empty() {
        return Err(Error::format(
            source_name,
            "no preference pairs (empty file, or every row was bad)",
        ));
    }
    Ok(report)
}

pub fn read_pairs(path: &Path, skip_bad_rows: bool) -> Result<ReadReport<PreferencePair>> {
    parse_pairs(
        &read_file(path)?,
        &path.display().to_string(),
        skip_bad_rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_pairs_strings_and_messages() {
        let text = r#"{"prompt": "Q?", "chosen": " yes", "rejected": " no"}
{"prompt": [{"role": "user", "content": "Hi"}], "chosen": [{"role": "assistant", "content": "Hello"}], "rejected": [{"role": "assistant", "content": "Go away"}]}"#;
        let report = parse_pairs(text.as_bytes(), "p.jsonl", false).unwrap();
        assert_eq!(
            report.rows[0],
            PreferencePair {
                prompt: "Q?".into(),
                chosen: " yes".into(),
                rejected: " no".into()
            }
        );
        assert_eq!(report.rows[1].prompt, "\n\nHuman: Hi\n\nAssistant:");
        assert_eq!(report.rows[1].chosen, " Hello");
    }

    #[test]
    fn implicit_prompts_split_at_the_last_shared_assistant_turn() {
        let pair = split_implicit_prompt(
            "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: joke?\n\nAssistant: Sure, a pun.",
            "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: joke?\n\nAssistant: No.",
        )
        .unwrap();
        assert_eq!(
            pair.prompt,
            "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: joke?\n\nAssistant:"
        );
        assert_eq!(pair.chosen, " Sure, a pun.");
        assert_eq!(pair.rejected, " No.");
    }

    #[test]
    fn bad_rows_are_named_or_counted() {
        let text = "{\"prompt\": \"a\", \"chosen\": \" b\", \"rejected\": \" c\"}\n{\"prompt\": \"a\", \"good\": \"b\"}\n{\"prompt\": \"a\", \"chosen\": \" b\", \"rejected\": \" b\"}\nnot json\n";
        let message = parse_pairs(text.as_bytes(), "d.jsonl", false)
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with("d.jsonl:2:") && message.contains("chosen"),
            "{message}"
        );
        let report = parse_pairs(text.as_bytes(), "d.jsonl", true).unwrap();
        assert_eq!(report.rows.len(), 1);
        assert_eq!(report.skipped.len(), 3, "{:?}", report.skipped);
        assert!(
            report.skipped[1].contains("identical"),
            "{:?}",
            report.skipped
        );
        assert!(parse_pairs(b"", "e.jsonl", true).is_err());
    }
}

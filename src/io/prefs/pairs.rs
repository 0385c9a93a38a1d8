//! Preference pairs: explicit `{"prompt", "chosen", "rejected"}` (strings or chat messages),
//! implicit-prompt `{"chosen", "rejected"}` dialogues sharing a prefix (HH-RLHF), and ShareGPT
//! rows `{"conversations": [{from, value}], "chosen": {from, value}, "rejected": {…}}`.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    completion_text, messages, parse_rows, prompt_text, read_rows, ChatRendering, ReadReport,
    ASSISTANT,
};
use crate::error::Result;
use crate::io::chat::{ChatTemplate, Message};

/// One preference between two completions of the same prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreferencePair {
    pub prompt: String,
    pub chosen: String,
    pub rejected: String,
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

/// (prompt, chosen, rejected) messages of two whole conversations, TRL's implicit prompt: the
/// messages both open with.
type Conversations = (Vec<Message>, Vec<Message>, Vec<Message>);

fn split_conversations(
    chosen: &Value,
    rejected: &Value,
) -> std::result::Result<Conversations, String> {
    let (chosen, rejected) = (messages(chosen)?, messages(rejected)?);
    let shared = chosen
        .iter()
        .zip(&rejected)
        .take_while(|(a, b)| a == b)
        .count();
    if shared == 0 {
        return Err("`chosen` and `rejected` share no opening messages to be the prompt".into());
    }
    Ok((
        chosen[..shared].to_vec(),
        chosen[shared..].to_vec(),
        rejected[shared..].to_vec(),
    ))
}

/// A conversational pair rendered with the model's template.
fn templated_pair(
    template: &ChatTemplate,
    prompt: Option<&Value>,
    chosen: &Value,
    rejected: &Value,
) -> std::result::Result<PreferencePair, String> {
    let (prompt, chosen, rejected) = match prompt {
        Some(prompt) => (messages(prompt)?, messages(chosen)?, messages(rejected)?),
        None => split_conversations(chosen, rejected)?,
    };
    let (prompt_text, chosen_text) = template.split(&prompt, &chosen)?;
    let (_, rejected_text) = template.split(&prompt, &rejected)?;
    Ok(PreferencePair {
        prompt: prompt_text,
        chosen: chosen_text,
        rejected: rejected_text,
    })
}

fn pair_from_row(row: &Value, chat: ChatRendering) -> std::result::Result<PreferencePair, String> {
    let object = row.as_object().ok_or("a row must be a JSON object")?;
    let (Some(chosen), Some(rejected)) = (object.get("chosen"), object.get("rejected")) else {
        let fields: Vec<&str> = object.keys().map(String::as_str).collect();
        return Err(format!(
            "expected fields `chosen` and `rejected` (with `prompt` or `conversations`), found {fields:?}"
        ));
    };
    let prompt = object.get("conversations").or_else(|| object.get("prompt"));
    let conversational = !chosen.is_string() && prompt.is_none_or(|p| !p.is_string());
    let pair = if let (ChatRendering::Template(template), true) = (chat, conversational) {
        templated_pair(template, prompt, chosen, rejected)?
    } else if let Some(conversations) = object.get("conversations") {
        if !conversations.is_array() {
            return Err("`conversations` must be a list".into());
        }
        PreferencePair {
            prompt: prompt_text(conversations)?,
            chosen: completion_text(chosen, "chosen")?,
            rejected: completion_text(rejected, "rejected")?,
        }
    } else if let Some(prompt) = object.get("prompt") {
        PreferencePair {
            prompt: prompt_text(prompt)?,
            chosen: completion_text(chosen, "chosen")?,
            rejected: completion_text(rejected, "rejected")?,
        }
    } else {
        match (chosen.as_str(), rejected.as_str()) {
            (Some(c), Some(r)) => split_implicit_prompt(c, r)?,
            _ => {
                let (prompt, chosen, rejected) = split_conversations(chosen, rejected)?;
                let as_value = |m: &[Message]| serde_json::to_value(m).expect("serialises");
                PreferencePair {
                    prompt: prompt_text(&as_value(&prompt))?,
                    chosen: completion_text(&as_value(&chosen), "chosen")?,
                    rejected: completion_text(&as_value(&rejected), "rejected")?,
                }
            }
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

/// Reads preference pairs from `bytes` (gzip is detected by its magic number).
pub fn parse_pairs(
    bytes: &[u8],
    source_name: &str,
    skip_bad_rows: bool,
) -> Result<ReadReport<PreferencePair>> {
    parse_pairs_rendered(bytes, source_name, skip_bad_rows, ChatRendering::Transcript)
}

/// As [`parse_pairs`], with chat messages rendered as `chat` says.
pub fn parse_pairs_rendered(
    bytes: &[u8],
    source_name: &str,
    skip_bad_rows: bool,
    chat: ChatRendering,
) -> Result<ReadReport<PreferencePair>> {
    parse_rows(
        bytes,
        source_name,
        skip_bad_rows,
        "preference pairs",
        |row| pair_from_row(row, chat),
    )
}

pub fn read_pairs(path: &Path, skip_bad_rows: bool) -> Result<ReadReport<PreferencePair>> {
    read_rows(path, skip_bad_rows, "preference pairs", |row| {
        pair_from_row(row, ChatRendering::Transcript)
    })
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

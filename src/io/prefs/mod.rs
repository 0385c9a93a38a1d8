//! Preference data in the formats TRL users already have, read from JSON lines or a JSON array,
//! gzipped or not, and written back as JSON lines:
//! - pairs (`pairs.rs`): explicit, implicit-prompt (HH-RLHF) and ShareGPT rows;
//! - rankings of k completions with `ranks` or `scores` (`rankings.rs`);
//! - unpaired completions with a desirable/undesirable `label`, for KTO and BCO (`unpaired.rs`);
//! - completions rated on several named attributes, for multi-objective reward models
//!   (`ratings.rs`).
//!
//! A bad row is an error naming the file and line (or array element), unless the caller asks to
//! skip bad rows, in which case they are counted and reported.

mod pairs;
mod rankings;
mod ratings;
mod unpaired;

use std::io::Read;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

pub use pairs::{
    parse_pairs, parse_pairs_rendered, read_pairs, split_implicit_prompt, PreferencePair,
};
pub use rankings::{parse_rankings, read_rankings, Ranking};
pub use ratings::{parse_ratings, read_ratings, RatedCompletion};
pub use unpaired::{parse_unpaired, read_unpaired, UnpairedExample};

use crate::error::{read_file, Error, Result};
use crate::io::chat::{ChatTemplate, Message};

/// Rows read, and the rows skipped with where and why.
#[derive(Debug, Clone)]
pub struct ReadReport<T> {
    pub rows: Vec<T>,
    pub skipped: Vec<String>,
}

/// The speaker marker that ends an HH-RLHF prompt.
pub(crate) const ASSISTANT: &str = "\n\nAssistant:";

/// How chat messages in a data file become text.
#[derive(Debug, Clone, Copy, Default)]
pub enum ChatRendering<'a> {
    /// As the HH-RLHF transcript ("\n\nHuman: …\n\nAssistant: …") the small models here know.
    #[default]
    Transcript,
    /// With the model's own chat template, as TRL applies it: the prompt ends with the
    /// generation prompt, a completion is what the whole conversation adds after it.
    Template(&'a ChatTemplate),
}

/// Chat messages as `{role, content}` (or ShareGPT's `{from, value}`), roles as transformers
/// names them.
pub(crate) fn messages(value: &Value) -> std::result::Result<Vec<Message>, String> {
    let list = match value {
        Value::Array(list) => list.as_slice(),
        Value::Object(_) => std::slice::from_ref(value),
        _ => return Err("expected a message or a list of messages".into()),
    };
    list.iter()
        .map(|message| {
            let text = |names: [&str; 2], what: &str| {
                names
                    .iter()
                    .find_map(|n| message.get(*n).and_then(Value::as_str))
                    .map(str::to_string)
                    .ok_or(format!(
                        "a message has no `{}` (or `{}`) {what}",
                        names[0], names[1]
                    ))
            };
            let role = match text(["role", "from"], "")?.as_str() {
                "user" | "human" => "user",
                "assistant" | "gpt" => "assistant",
                "system" => "system",
                other => return Err(format!("unknown role `{other}`")),
            };
            Ok(Message {
                role: role.into(),
                content: text(["content", "value"], "")?,
            })
        })
        .collect()
}

/// Renders chat messages as the HH-RLHF transcript the small models here were shown.
pub(crate) fn render_messages(messages: &[Value]) -> std::result::Result<String, String> {
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

/// A prompt given as a string or a list of messages (then it ends with the assistant's turn).
pub(crate) fn prompt_text(value: &Value) -> std::result::Result<String, String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Array(messages) => Ok(format!("{}{ASSISTANT}", render_messages(messages)?)),
        _ => Err("`prompt` must be a string or a list of messages".into()),
    }
}

/// A completion given as a string, one message object, or a list of messages.
pub(crate) fn completion_text(value: &Value, field: &str) -> std::result::Result<String, String> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Object(_) => value
            .get("value")
            .or_else(|| value.get("content"))
            .and_then(Value::as_str)
            .map(|s| format!(" {s}"))
            .ok_or(format!("`{field}` has no `value` or `content`"))?,
        Value::Array(messages) => {
            let rendered = render_messages(messages)?;
            // A completion is what the assistant says: drop the speaker tag of a single reply.
            rendered
                .strip_prefix(ASSISTANT)
                .map(str::to_string)
                .unwrap_or(rendered)
        }
        _ => {
            return Err(format!(
                "`{field}` must be a string, a message or a list of messages"
            ))
        }
    };
    if text.trim().is_empty() {
        return Err(format!("`{field}` is empty"));
    }
    Ok(text)
}

/// The object's field, or an error listing the fields the row does have.
pub(crate) fn field<'a>(
    object: &'a serde_json::Map<String, Value>,
    name: &str,
    expected: &str,
) -> std::result::Result<&'a Value, String> {
    object.get(name).ok_or_else(|| {
        let fields: Vec<&str> = object.keys().map(String::as_str).collect();
        format!("expected fields {expected}; `{name}` is missing (found {fields:?})")
    })
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

/// Text of `bytes`, gunzipped first when they start with gzip's magic number.
fn decode_text(bytes: &[u8], source_name: &str) -> Result<String> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut text = String::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_string(&mut text)
            .map_err(|e| Error::format(source_name, format!("gzip: {e}")))?;
        Ok(text)
    } else {
        String::from_utf8(bytes.to_vec())
            .map_err(|e| Error::format(source_name, format!("not UTF-8: {e}")))
    }
}

/// Parses every row of `bytes` with `parse_row`; `what` names the records in the empty-file error.
pub(crate) fn parse_rows<T>(
    bytes: &[u8],
    source_name: &str,
    skip_bad_rows: bool,
    what: &str,
    parse_row: impl Fn(&Value) -> std::result::Result<T, String>,
) -> Result<ReadReport<T>> {
    let text = decode_text(bytes, source_name)?;
    let mut report = ReadReport {
        rows: Vec::new(),
        skipped: Vec::new(),
    };
    for (place, row) in rows(&text).map_err(|e| Error::format(source_name, e))? {
        match row.and_then(|value| parse_row(&value)) {
            Ok(parsed) => report.rows.push(parsed),
            Err(reason) if skip_bad_rows => report.skipped.push(format!("{place}: {reason}")),
            Err(reason) => return Err(Error::format(format!("{source_name}:{place}"), reason)),
        }
    }
    if report.rows.is_empty() {
        return Err(Error::format(
            source_name,
            format!("no {what} (empty file, or every row was bad)"),
        ));
    }
    Ok(report)
}

pub(crate) fn read_rows<T>(
    path: &Path,
    skip_bad_rows: bool,
    what: &str,
    parse_row: impl Fn(&Value) -> std::result::Result<T, String>,
) -> Result<ReadReport<T>> {
    let name = path.display().to_string();
    parse_rows(&read_file(path)?, &name, skip_bad_rows, what, parse_row)
}

/// The kinds of preference file, told apart by their first row's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum PreferenceKind {
    Pairs,
    Rankings,
    Unpaired,
    Ratings,
}

impl std::fmt::Display for PreferenceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Pairs => "pair",
            Self::Rankings => "ranking",
            Self::Unpaired => "unpaired-label",
            Self::Ratings => "rating",
        })
    }
}

/// Which kind of preference rows `bytes` hold: `completions` → rankings, `label` → unpaired,
/// `completion` with `scores` → ratings, otherwise pairs.
pub fn detect_kind(bytes: &[u8], source_name: &str) -> Result<PreferenceKind> {
    let text = decode_text(bytes, source_name)?;
    let first = rows(&text)
        .map_err(|e| Error::format(source_name, e))?
        .into_iter()
        .find_map(|(_, row)| row.ok())
        .ok_or_else(|| Error::format(source_name, "no rows (empty file, or no row is JSON)"))?;
    let has = |name: &str| first.get(name).is_some();
    Ok(if has("completions") {
        PreferenceKind::Rankings
    } else if has("label") {
        PreferenceKind::Unpaired
    } else if has("completion") && has("scores") {
        PreferenceKind::Ratings
    } else {
        PreferenceKind::Pairs
    })
}

/// Records as JSON lines, in the same format the readers take back.
pub fn to_jsonl<T: Serialize>(records: &[T]) -> String {
    let mut out = String::new();
    for record in records {
        out.push_str(&serde_json::to_string(record).expect("records serialise"));
        out.push('\n');
    }
    out
}

/// Writes records as JSON lines, beside then renamed: an interrupted write loses nothing saved.
pub fn write_jsonl<T: Serialize>(path: &Path, records: &[T]) -> Result<()> {
    let partial = path.with_extension("partial");
    std::fs::write(&partial, to_jsonl(records)).map_err(|e| Error::io(&partial, e))?;
    std::fs::rename(&partial, path).map_err(|e| Error::io(path, e))
}

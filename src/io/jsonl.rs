//! JSON-lines files: one record per line; errors name the file and line.

use std::path::Path;

use serde::de::DeserializeOwned;

use crate::error::{read_file, Error, Result};

/// Parses every non-blank line of `text` as a `T`.
pub fn parse<T: DeserializeOwned>(text: &str, source_name: &str) -> Result<Vec<T>> {
    let mut rows = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let row = serde_json::from_str(line)
            .map_err(|e| Error::format(format!("{source_name}:{}", index + 1), e.to_string()))?;
        rows.push(row);
    }
    if rows.is_empty() {
        return Err(Error::format(source_name, "no records (the file is empty)"));
    }
    Ok(rows)
}

pub fn read<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let bytes = read_file(path)?;
    let name = path.display().to_string();
    let text =
        std::str::from_utf8(&bytes).map_err(|e| Error::format(&name, format!("not UTF-8: {e}")))?;
    parse(text, &name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)] // read to check the parser, never used
    struct Example {
        prompt: String,
        completion: String,
    }

    #[test]
    fn a_bad_line_is_named_by_file_and_line() {
        let text = "{\"prompt\": \"a\", \"completion\": \"b\"}\n\n{\"prompt\": \"a\"}\n";
        let message = parse::<Example>(text, "d.jsonl").unwrap_err().to_string();
        assert!(message.starts_with("d.jsonl:3:"), "{message}");
        assert!(message.contains("completion"), "{message}");
    }

    #[test]
    fn an_empty_file_is_an_error() {
        assert!(parse::<Example>("\n", "e.jsonl").is_err());
    }
}

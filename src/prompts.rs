//! Prompt sets for online methods and evaluation: the built-in world's story openings, its sum
//! questions (with answers, for the verifier), or the `prompt` field of a JSONL file.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use crate::error::Result;
use crate::io::jsonl;
use crate::world::{self, eval::sum_tasks};

#[derive(Debug, Clone, Default)]
pub struct PromptSet {
    pub prompts: Vec<String>,
    /// The expected answer of each sum question (empty for other sets).
    pub answers: HashMap<String, String>,
}

/// `world` (story openings), `sums` (questions with answers) or a JSONL path; `count` and
/// `seed` apply to the generated sets.
pub fn load(spec: &str, count: usize, seed: u64) -> Result<PromptSet> {
    match spec {
        "world" => {
            let mut w = world::World::new(seed + 100);
            Ok(PromptSet {
                prompts: (0..count).map(|_| w.prompt().prompt).collect(),
                answers: HashMap::new(),
            })
        }
        "sums" => {
            let tasks = sum_tasks(seed + 200, count);
            let answers = tasks
                .iter()
                .map(|t| (t.question.clone(), t.answer.to_string()))
                .collect();
            Ok(PromptSet {
                prompts: tasks.into_iter().map(|t| t.question).collect(),
                answers,
            })
        }
        path => {
            #[derive(Deserialize)]
            struct Row {
                prompt: String,
            }
            let rows: Vec<Row> = jsonl::read(Path::new(path))?;
            Ok(PromptSet {
                prompts: rows.into_iter().map(|r| r.prompt).collect(),
                answers: HashMap::new(),
            })
        }
    }
}

impl PromptSet {
    /// The `per_step` prompts of step `step`, cycling through the set.
    pub fn batch(&self, step: usize, per_step: usize) -> Vec<String> {
        (0..per_step)
            .map(|i| self.prompts[(step * per_step + i) % self.prompts.len()].clone())
            .collect()
    }
}

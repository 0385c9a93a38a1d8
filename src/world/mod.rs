//! The built-in offline world: a seeded story generator over a closed vocabulary, its word-level
//! tokenizer, prompts, and a gold reward computed exactly from the lexicon. Everything the lab
//! needs to run with no download.

pub mod eval;
pub mod lexicon;
pub mod preferences;
pub mod story;

use std::collections::HashMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::io::Tokenizer;
use crate::model::LlamaConfig;

pub const UNK: &str = "<unk>";
pub const BOS: &str = "<s>";
pub const EOS: &str = "</s>";

/// Every word the generator can write, each once, in a fixed order.
pub fn words() -> Vec<String> {
    let lexicon = [
        lexicon::FEELINGS,
        lexicon::QUALITIES,
        lexicon::LIKING,
        lexicon::EXCLAMATIONS,
        lexicon::REACTIONS,
        lexicon::WEATHER,
    ];
    let plain = [
        story::TEMPLATE_WORDS,
        story::NAMES,
        story::ANIMALS,
        story::THINGS,
        story::PLACES,
        story::SIZES,
        story::NUMBERS,
    ];
    let mut out: Vec<String> = Vec::new();
    let mut push = |w: String| {
        if !out.contains(&w) {
            out.push(w);
        }
    };
    for list in plain {
        for w in list {
            push(w.to_string());
        }
    }
    for thing in story::THINGS {
        push(format!("{thing}s"));
    }
    for list in lexicon {
        for (w, _) in list {
            push(w.to_string());
        }
    }
    out
}

/// The world's tokenizer: one token per word or punctuation mark, with its leading space
/// (" happy", "."), built with Hugging Face `tokenizers` (WordLevel model, regex split, Fuse decoder).
pub fn tokenizer() -> Tokenizer {
    use tokenizers::decoders::fuse::Fuse;
    use tokenizers::models::wordlevel::WordLevel;
    use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
    use tokenizers::{AddedToken, SplitDelimiterBehavior};

    let mut pieces: Vec<String> = vec![UNK.into(), BOS.into(), EOS.into()];
    for w in words()
        .into_iter()
        .chain(story::PUNCTUATION.iter().map(|p| p.to_string()))
    {
        pieces.push(format!(" {w}"));
        pieces.push(w);
    }
    let vocab: HashMap<String, u32> = pieces
        .iter()
        .enumerate()
        .map(|(id, p)| (p.clone(), id as u32))
        .collect();
    let model = WordLevel::builder()
        .vocab(vocab.into_iter().collect())
        .unk_token(UNK.into())
        .build()
        .expect("a valid word-level vocabulary");
    let mut tokenizer = tokenizers::Tokenizer::new(model);
    let split = Split::new(
        SplitPattern::Regex(r" ?[A-Za-z]+| ?[0-9]+| ?[^A-Za-z0-9 ]| +".into()),
        SplitDelimiterBehavior::Isolated,
        false,
    )
    .expect("a valid pattern");
    tokenizer.with_pre_tokenizer(Some(split));
    tokenizer.with_decoder(Some(Fuse::new()));
    tokenizer.add_special_tokens(&[
        AddedToken::from(UNK, true),
        AddedToken::from(BOS, true),
        AddedToken::from(EOS, true),
    ]);
    Tokenizer::HuggingFace(Box::new(tokenizer), None)
}

/// The built-in policy's shape: small enough to pretrain in under two minutes on two cores,
/// with grouped-query attention (4 query heads over 2 key/value heads) like stories260K.
pub fn model_config(vocab_size: usize) -> LlamaConfig {
    LlamaConfig {
        vocab_size,
        dim: 64,
        n_layers: 4,
        n_heads: 4,
        n_kv_heads: 2,
        hidden_dim: 172,
        max_seq_len: 256,
        norm_eps: 1e-5,
        rope_theta: 10_000.0,
        arch: Default::default(),
    }
}

/// Extra cost of each use of a sentiment word beyond its second in one continuation.
pub const REPEAT_COST: f32 = 1.0;

/// The gold reward of a continuation: the sum of its words' lexicon sentiment, where a word
/// counts only for its first two uses and each further use costs [`REPEAT_COST`] — praise by
/// repetition is not praise. Exact and cheap, so learned rewards can be checked against it.
pub fn gold_reward(text: &str) -> f32 {
    let mut uses: HashMap<String, usize> = HashMap::new();
    let mut total = 0.0;
    for word in text
        .split(|c: char| !c.is_ascii_alphabetic())
        .filter(|w| !w.is_empty())
    {
        let word = word.to_ascii_lowercase();
        let score = lexicon::score(&word);
        if score == 0.0 {
            continue;
        }
        let count = uses.entry(word).or_default();
        *count += 1;
        total += if *count <= 2 { score } else { -REPEAT_COST };
    }
    total
}

/// A story split at a sentence boundary: the prompt, and how the generator went on.
#[derive(Debug, Clone, PartialEq)]
pub struct StoryPrompt {
    pub prompt: String,
    pub continuation: String,
}

fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let bytes = text.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        let ends = (b == b'.' || b == b'!') && bytes.get(i + 1) == Some(&b' ');
        if ends {
            out.push(&text[start..=i]);
            start = i + 2;
        }
    }
    out.push(&text[start..]);
    out
}

/// Seeded story generator: the same seed always gives the same stories.
pub struct World {
    rng: ChaCha8Rng,
}

impl World {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// A whole story with a random mood.
    pub fn story(&mut self) -> String {
        let mood = self.rng.random_range(0.0..=1.0);
        story::story(&mut self.rng, mood)
    }

    /// A story cut after its first one or two sentences.
    pub fn prompt(&mut self) -> StoryPrompt {
        let text = self.story();
        let parts = sentences(&text);
        let cut = self.rng.random_range(1..=2).min(parts.len() - 1);
        StoryPrompt {
            prompt: parts[..cut].join(" "),
            continuation: format!(" {}", parts[cut..].join(" ")),
        }
    }

    /// A prompt with a cheerful continuation (mood 0.9): supervised data for the quick-start SFT.
    pub fn positive_example(&mut self) -> StoryPrompt {
        let text = story::story(&mut self.rng, 0.9);
        let parts = sentences(&text);
        StoryPrompt {
            prompt: parts[0].to_string(),
            continuation: format!(" {}", parts[1..].join(" ")),
        }
    }

    /// `n` prompts with cheerful continuations, as SFT examples.
    pub fn positive_examples(&mut self, n: usize) -> Vec<crate::dataset::Example> {
        (0..n)
            .map(|_| {
                let p = self.positive_example();
                crate::dataset::Example {
                    prompt: p.prompt,
                    completion: p.continuation,
                }
            })
            .collect()
    }

    /// A sum question ("… Now Tom has") and its one-word answer (" five").
    pub fn sum_task(&mut self) -> story::SumTask {
        let name = *story::NAMES
            .get(self.rng.random_range(0..story::NAMES.len()))
            .expect("in range");
        story::sum_task(&mut self.rng, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_generated_story_tokenizes_without_unknowns_and_round_trips() {
        let tokenizer = tokenizer();
        let unk = 0;
        let mut world = World::new(7);
        for _ in 0..2000 {
            let text = world.story();
            let ids = tokenizer.encode(&text).unwrap();
            assert!(!ids.contains(&unk), "unknown word in: {text}");
            assert_eq!(tokenizer.decode(&ids), text);
        }
    }

    #[test]
    fn gold_reward_counts_sentiment_and_punishes_repetition() {
        assert_eq!(gold_reward(" Tom felt happy."), 2.0);
        assert_eq!(gold_reward(" Tom felt sad. It was a rainy day."), -3.0);
        assert_eq!(gold_reward(" happy happy"), 4.0);
        assert_eq!(
            gold_reward(" happy happy happy happy"),
            4.0 - 2.0 * REPEAT_COST
        );
        assert_eq!(gold_reward(" The ball was red."), 0.0);
    }

    #[test]
    fn the_same_seed_gives_the_same_stories() {
        let a: Vec<String> = (0..5)
            .map({
                let mut w = World::new(3);
                move |_| w.story()
            })
            .collect();
        let b: Vec<String> = (0..5)
            .map({
                let mut w = World::new(3);
                move |_| w.story()
            })
            .collect();
        assert_eq!(a, b);
        assert_ne!(
            a,
            (0..5)
                .map({
                    let mut w = World::new(4);
                    move |_| w.story()
                })
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn prompts_split_at_sentence_boundaries() {
        let mut world = World::new(1);
        for _ in 0..100 {
            let p = world.prompt();
            assert!(p.prompt.ends_with('.') || p.prompt.ends_with('!'), "{p:?}");
            assert!(p.continuation.starts_with(' '), "{p:?}");
        }
    }

    #[test]
    fn sums_are_right() {
        let mut world = World::new(2);
        for _ in 0..50 {
            let task = world.sum_task();
            let words: Vec<&str> = task.question.split([' ', '.']).collect();
            let index = |w: &str| story::NUMBERS.iter().position(|n| *n == w).unwrap();
            assert_eq!(
                index(words[2]) + index(words[7]),
                index(task.answer),
                "{}",
                task.question
            );
        }
    }
}

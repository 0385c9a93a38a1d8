//! The built-in world's own sentiment lexicon: every word the story generator can use, with a
//! score in [−3, 3] (0 for words that carry no sentiment). Written for this project.

/// (word, sentiment) for words the generator picks by mood.
pub const FEELINGS: &[(&str, f32)] = &[
    ("happy", 2.0),
    ("glad", 2.0),
    ("proud", 2.0),
    ("excited", 2.0),
    ("calm", 1.0),
    ("safe", 1.5),
    ("sad", -2.0),
    ("angry", -2.5),
    ("scared", -2.0),
    ("lonely", -2.0),
    ("tired", -1.0),
    ("upset", -2.0),
];

pub const QUALITIES: &[(&str, f32)] = &[
    ("beautiful", 2.0),
    ("lovely", 2.0),
    ("wonderful", 3.0),
    ("nice", 1.0),
    ("pretty", 1.5),
    ("shiny", 1.0),
    ("broken", -2.0),
    ("ugly", -2.0),
    ("dirty", -1.5),
    ("scary", -2.0),
    ("dark", -1.0),
    ("old", -0.5),
];

pub const LIKING: &[(&str, f32)] = &[
    ("loved", 2.5),
    ("liked", 1.5),
    ("hated", -2.5),
    ("disliked", -1.5),
];

pub const EXCLAMATIONS: &[(&str, f32)] = &[
    ("great", 2.5),
    ("fun", 1.5),
    ("perfect", 3.0),
    ("bad", -2.0),
    ("terrible", -3.0),
    ("awful", -3.0),
];

pub const REACTIONS: &[(&str, f32)] = &[
    ("smiled", 1.5),
    ("laughed", 2.0),
    ("cheered", 2.0),
    ("cried", -2.0),
    ("shouted", -1.5),
    ("frowned", -1.5),
];

pub const WEATHER: &[(&str, f32)] = &[
    ("sunny", 1.5),
    ("warm", 1.0),
    ("rainy", -1.0),
    ("stormy", -1.5),
    ("cold", -1.0),
    ("grey", -0.5),
];

/// Sentiment score of a lower-case word; 0 for words not in the lexicon.
pub fn score(word: &str) -> f32 {
    [
        FEELINGS,
        QUALITIES,
        LIKING,
        EXCLAMATIONS,
        REACTIONS,
        WEATHER,
    ]
    .iter()
    .flat_map(|list| list.iter())
    .find(|(w, _)| *w == word)
    .map_or(0.0, |(_, s)| *s)
}

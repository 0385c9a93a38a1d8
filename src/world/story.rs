//! A seeded generator of short stories in a closed vocabulary. Each story has a mood that tilts
//! its sentiment words, so a prompt's mood predicts its continuation's (as in real text), and
//! some sentences do small sums ("had three … found two more … has five"), a verifiable task.

use rand::seq::IndexedRandom;
use rand::Rng;

use super::lexicon::{EXCLAMATIONS, FEELINGS, LIKING, QUALITIES, REACTIONS, WEATHER};

pub const NAMES: &[&str] = &["Lily", "Tom", "Ben", "Mia", "Sam", "Anna", "Max", "Lucy"];
pub const ANIMALS: &[&str] = &[
    "cat", "dog", "bird", "bunny", "bear", "fox", "frog", "girl", "boy",
];
pub const THINGS: &[&str] = &[
    "ball", "kite", "toy", "book", "cake", "flower", "hat", "car", "boat", "apple",
];
pub const PLACES: &[&str] = &["park", "garden", "forest", "house", "beach", "school"];
pub const SIZES: &[&str] = &["big", "small", "little", "red", "blue", "green"];
pub const NUMBERS: &[&str] = &[
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
];

/// Every other word the templates below write literally.
pub const TEMPLATE_WORDS: &[&str] = &[
    "Once", "upon", "a", "time", "there", "was", "named", "lived", "near", "the", "The", "One",
    "day", "found", "in", "felt", "It", "and", "played", "with", "This", "is", "said", "had",
    "more", "Now", "has", "went", "home", "end", "Then", "at", "looked",
];

pub const PUNCTUATION: &[&str] = &[".", ",", "!", "\""];

/// Picks a word from a sentiment list, positive with probability `p_positive`.
fn pick_feeling<R: Rng>(
    rng: &mut R,
    list: &[(&'static str, f32)],
    p_positive: f64,
) -> &'static str {
    let positive = rng.random_bool(p_positive);
    let matching: Vec<&str> = list
        .iter()
        .filter(|(_, s)| (*s > 0.0) == positive)
        .map(|(w, _)| *w)
        .collect();
    matching.choose(rng).expect("both signs present")
}

fn pick<R: Rng>(rng: &mut R, list: &[&'static str]) -> &'static str {
    list.choose(rng).expect("non-empty")
}

fn plural(thing: &str) -> String {
    format!("{thing}s")
}

/// A small sum in words: "Tom had three balls. Tom found two more. Now Tom has" + " five balls."
pub struct SumTask {
    /// The text up to and including "has".
    pub question: String,
    /// The number word that answers it.
    pub answer: &'static str,
    /// What is counted, plural.
    pub things: String,
}

pub fn sum_task<R: Rng>(rng: &mut R, name: &str) -> SumTask {
    let had = rng.random_range(2..=5);
    let more = rng.random_range(1..=5);
    let things = plural(pick(rng, THINGS));
    SumTask {
        question: format!(
            "{name} had {} {things}. {name} found {} more. Now {name} has",
            NUMBERS[had], NUMBERS[more]
        ),
        answer: NUMBERS[had + more],
        things,
    }
}

/// How hard a sum question of this world is, in [0, 1]: its answer's size, (a + b − 3) / 7 over
/// the sums the world asks (3 to 10). `None` for any other text.
pub fn sum_difficulty(question: &str) -> Option<f32> {
    let words: Vec<&str> = question.split([' ', '.']).collect();
    let number_after = |word: &str| {
        let at = words.iter().position(|w| *w == word)?;
        NUMBERS.iter().position(|n| Some(n) == words.get(at + 1))
    };
    let (had, more) = (number_after("had")?, number_after("found")?);
    question
        .contains("more. Now")
        .then(|| (had + more).saturating_sub(3) as f32 / 7.0)
}

/// One story: an opening sentence, 3–7 sentences of events, a closing sentence.
/// `mood` in [0, 1] is the chance that each sentiment word is positive.
pub fn story<R: Rng>(rng: &mut R, mood: f64) -> String {
    let name = pick(rng, NAMES);
    let friend = loop {
        let f = pick(rng, NAMES);
        if f != name {
            break f;
        }
    };
    let mut sentences = vec![format!(
        "Once upon a time, there was a {} {} named {name}.",
        pick(rng, SIZES),
        pick(rng, ANIMALS)
    )];
    for _ in 0..rng.random_range(3..=7) {
        let thing = pick(rng, THINGS);
        let sentence = match rng.random_range(0..11) {
            0 => format!("{name} lived near the {}.", pick(rng, PLACES)),
            1 => format!(
                "One day, {name} found a {} {thing} in the {}.",
                pick_feeling(rng, QUALITIES, mood),
                pick(rng, PLACES)
            ),
            2 => format!("{name} felt {}.", pick_feeling(rng, FEELINGS, mood)),
            3 => format!("{name} {} the {thing}.", pick_feeling(rng, LIKING, mood)),
            4 => format!("It was a {} day.", pick_feeling(rng, WEATHER, mood)),
            5 => format!("{name} and {friend} played with the {thing}."),
            6 => format!(
                "\"This {thing} is {}!\" said {name}.",
                pick_feeling(rng, EXCLAMATIONS, mood)
            ),
            7 => format!("{name} {}.", pick_feeling(rng, REACTIONS, mood)),
            8 => format!("The {thing} was {}.", pick_feeling(rng, QUALITIES, mood)),
            9 => format!("Then {name} looked at the {} {thing}.", pick(rng, SIZES)),
            _ => {
                let task = sum_task(rng, name);
                format!("{} {} {}.", task.question, task.answer, task.things)
            }
        };
        sentences.push(sentence);
    }
    sentences.push(match rng.random_range(0..2) {
        0 => format!("{name} went home."),
        _ => "The end.".to_string(),
    });
    sentences.join(" ")
}

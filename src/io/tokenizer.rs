//! Tokenizers: llama2.c's SentencePiece-style BPE (from `tokenizer.bin` or GGUF metadata), and
//! Hugging Face `tokenizers` for everything it already does (GPT-2 byte-level BPE, the built-in
//! world's word-level vocabulary).

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::bytes::ByteReader;
use crate::error::{Error, Result};

/// SentencePiece BPE as llama2.c runs it: split into code points (bytes `<0xXX>` where a code point
/// is not in the vocabulary), then repeatedly merge the adjacent pair whose concatenation is the
/// best-scoring vocabulary entry. Pieces store `▁` as a plain space.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SentencePieceBpe {
    pieces: Vec<Vec<u8>>,
    scores: Vec<f32>,
    bos: u32,
    eos: u32,
    #[serde(skip)]
    lookup: HashMap<Vec<u8>, u32>,
    /// Id of `<0x00>`; byte b encodes as `byte_offset + b`.
    #[serde(skip)]
    byte_offset: Option<u32>,
}

impl SentencePieceBpe {
    pub fn new(
        pieces: Vec<Vec<u8>>,
        scores: Vec<f32>,
        bos: u32,
        eos: u32,
        source_name: &str,
    ) -> Result<Self> {
        if pieces.is_empty() || pieces.len() != scores.len() {
            return Err(Error::format(
                source_name,
                format!(
                    "tokenizer has {} pieces and {} scores",
                    pieces.len(),
                    scores.len()
                ),
            ));
        }
        for (name, id) in [("bos", bos), ("eos", eos)] {
            if id as usize >= pieces.len() {
                return Err(Error::format(
                    source_name,
                    format!(
                        "{name} id {id} is outside the {}-piece vocabulary",
                        pieces.len()
                    ),
                ));
            }
        }
        let mut tokenizer = Self {
            pieces,
            scores,
            bos,
            eos,
            lookup: HashMap::new(),
            byte_offset: None,
        };
        tokenizer.build_lookup();
        Ok(tokenizer)
    }

    /// The SentencePiece model behind a Hugging Face BPE tokenizer converted from one (Llama 2,
    /// TinyLlama, stories260K: byte fallback, `▁` for spaces): each merged piece scores minus the
    /// rank of its merge, so merging the best-scoring piece first replays the merges in order.
    pub fn from_hugging_face(
        tokenizer: &tokenizers::Tokenizer,
        bos: u32,
        eos: u32,
        source_name: &str,
    ) -> Result<Self> {
        let json: serde_json::Value = serde_json::from_str(
            &tokenizer
                .to_string(false)
                .map_err(|e| hf_error(source_name, e))?,
        )
        .map_err(|e| hf_error(source_name, e))?;
        let model = &json["model"];
        let sentencepiece_like = model["type"] == "BPE"
            && model["byte_fallback"] == true
            && json["pre_tokenizer"]["type"] == "Metaspace";
        if !sentencepiece_like {
            return Err(Error::format(
                source_name,
                "not a SentencePiece-style BPE (byte fallback, Metaspace): no SentencePiece equivalent",
            ));
        }
        let size = tokenizer.get_vocab_size(true);
        let mut pieces = vec![Vec::new(); size];
        for (piece, id) in tokenizer.get_vocab(true) {
            if let Some(slot) = pieces.get_mut(id as usize) {
                *slot = piece.replace('\u{2581}', " ").into_bytes();
            }
        }
        let mut scores = vec![0.0f32; size];
        let merges = model["merges"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        for (rank, merge) in merges.iter().enumerate() {
            // `["a", "b"]` (tokenizers ≥ 0.20) or `"a b"`.
            let merged = match merge {
                serde_json::Value::Array(parts) => {
                    parts.iter().filter_map(|p| p.as_str()).collect::<String>()
                }
                serde_json::Value::String(pair) => pair.replacen(' ', "", 1),
                _ => continue,
            };
            if let Some(id) = tokenizer.token_to_id(&merged) {
                scores[id as usize] = -(rank as f32);
            }
        }
        Self::new(pieces, scores, bos, eos, source_name)
    }

    fn build_lookup(&mut self) {
        self.lookup = HashMap::with_capacity(self.pieces.len());
        // Inserted last to first, so that a duplicated piece maps to its first id.
        for (id, piece) in self.pieces.iter().enumerate().rev() {
            self.lookup.insert(piece.clone(), id as u32);
        }
        self.byte_offset = self
            .lookup
            .get(b"<0x00>".as_slice())
            .copied()
            .filter(|&offset| {
                (0..256u32).all(|b| {
                    self.pieces.get((offset + b) as usize).map(|p| p.as_slice())
                        == Some(format!("<0x{b:02X}>").as_bytes())
                })
            });
    }

    /// Reads llama2.c's `tokenizer.bin`: `max_token_length: i32`, then per token
    /// `score: f32, len: i32, bytes[len]`.
    pub fn from_llama2c_bytes(bytes: &[u8], vocab_size: usize, source_name: &str) -> Result<Self> {
        let mut reader = ByteReader::new(bytes, source_name);
        let max_token_length = reader.i32("max_token_length")?;
        if !(1..=1 << 16).contains(&max_token_length) {
            return Err(reader.error(format!(
                "max_token_length {max_token_length} is outside 1..=65536"
            )));
        }
        // Each entry takes at least 8 bytes.
        if vocab_size > reader.remaining() / 8 {
            return Err(reader.error(format!(
                "truncated: {vocab_size} tokens cannot fit in {} bytes",
                bytes.len()
            )));
        }
        let mut pieces = Vec::with_capacity(vocab_size);
        let mut scores = Vec::with_capacity(vocab_size);
        for index in 0..vocab_size {
            let what = format!("token #{index}");
            scores.push(reader.f32(&what)?);
            let len = reader.i32(&what)?;
            if len < 0 || len > max_token_length {
                return Err(reader.error(format!(
                    "{what} has length {len}, outside 0..={max_token_length}"
                )));
            }
            pieces.push(reader.take(len as usize, &what)?.to_vec());
        }
        Self::new(pieces, scores, 1, 2, source_name)
    }

    pub fn from_llama2c_file(path: &Path, vocab_size: usize) -> Result<Self> {
        let bytes = crate::error::read_file(path)?;
        Self::from_llama2c_bytes(&bytes, vocab_size, &path.display().to_string())
    }

    /// Every piece (`▁` as a plain space) with its merge score, by id.
    pub fn pieces(&self) -> impl Iterator<Item = (&[u8], f32)> {
        self.pieces
            .iter()
            .map(Vec::as_slice)
            .zip(self.scores.iter().copied())
    }

    pub fn bos(&self) -> u32 {
        self.bos
    }

    pub fn eos(&self) -> u32 {
        self.eos
    }

    pub fn vocab_size(&self) -> usize {
        self.pieces.len()
    }

    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut tokens = Vec::with_capacity(text.len() + 1);
        if text.is_empty() {
            return tokens;
        }
        // SentencePiece's add_dummy_prefix: the text starts as if after a space.
        if let Some(&space) = self.lookup.get(b" ".as_slice()) {
            tokens.push(space);
        }
        let mut utf8 = [0u8; 4];
        for ch in text.chars() {
            let encoded = ch.encode_utf8(&mut utf8).as_bytes();
            match self.lookup.get(encoded) {
                Some(&id) => tokens.push(id),
                None => {
                    for &byte in encoded {
                        match self.byte_offset {
                            Some(offset) => tokens.push(offset + byte as u32),
                            None => tokens.push(0), // <unk>
                        }
                    }
                }
            }
        }
        let mut merged = Vec::new();
        loop {
            let mut best: Option<(f32, usize, u32)> = None;
            for i in 0..tokens.len().saturating_sub(1) {
                merged.clear();
                merged.extend_from_slice(&self.pieces[tokens[i] as usize]);
                merged.extend_from_slice(&self.pieces[tokens[i + 1] as usize]);
                if let Some(&id) = self.lookup.get(&merged) {
                    let score = self.scores[id as usize];
                    if best.is_none_or(|(best_score, _, _)| score > best_score) {
                        best = Some((score, i, id));
                    }
                }
            }
            let Some((_, index, id)) = best else { break };
            tokens[index] = id;
            tokens.remove(index + 1);
        }
        tokens
    }

    /// The bytes of one token; `previous` decides whether a leading space is dropped (after BOS).
    fn token_bytes(&self, previous: Option<u32>, token: u32) -> &[u8] {
        let Some(piece) = self.pieces.get(token as usize) else {
            return b"";
        };
        if let Some(offset) = self.byte_offset {
            if (offset..offset + 256).contains(&token) {
                let b = (token - offset) as usize;
                return &BYTES[b..b + 1];
            }
        }
        if token == self.bos || token == self.eos {
            return b"";
        }
        if (previous.is_none() || previous == Some(self.bos)) && piece.first() == Some(&b' ') {
            return &piece[1..];
        }
        piece
    }

    pub fn decode(&self, tokens: &[u32]) -> String {
        let mut bytes = Vec::new();
        let mut previous = None;
        for &token in tokens {
            bytes.extend_from_slice(self.token_bytes(previous, token));
            previous = Some(token);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

static BYTES: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = i as u8;
        i += 1;
    }
    table
};

/// Any tokenizer the lab can use, with the BOS/EOS conventions the model expects.
#[derive(Clone)]
pub enum Tokenizer {
    SentencePiece(SentencePieceBpe),
    /// `None`: special tokens looked up by their usual names (the built-in world's vocabulary,
    /// GPT-2's BPE files); `Some`: as a Hugging Face model folder states them.
    HuggingFace(Box<tokenizers::Tokenizer>, Option<ModelTokens>),
}

/// What a Hugging Face model folder says about the text around a model's input
/// (`tokenizer_config.json`, the tokenizer's post-processor, `generation_config.json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelTokens {
    /// The token the tokenizer puts before every text (Llama's `<s>`); none for GPT-2 or Qwen.
    pub bos: Option<u32>,
    /// Where generation stops.
    pub eos: Option<u32>,
    /// The Jinja chat template of `tokenizer_config.json`.
    pub chat_template: Option<String>,
}

/// How a tokenizer is stored in the project's own checkpoints (as JSON in the safetensors header).
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum StoredTokenizer {
    SentencePiece {
        model: SentencePieceBpe,
    },
    HuggingFace {
        json: String,
        #[serde(default)]
        model_tokens: Option<ModelTokens>,
    },
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tokenizer::SentencePiece(t) => write!(f, "SentencePiece({} pieces)", t.vocab_size()),
            Tokenizer::HuggingFace(t, _) => {
                write!(f, "HuggingFace({} tokens)", t.get_vocab_size(true))
            }
        }
    }
}

fn hf_error(source_name: &str, error: impl std::fmt::Display) -> Error {
    Error::format(source_name, format!("tokenizer: {error}"))
}

/// Names under which Hugging Face vocabularies commonly keep their BOS and EOS tokens.
const HF_BOS: [&str; 3] = ["<s>", "<|endoftext|>", "<bos>"];
const HF_EOS: [&str; 3] = ["</s>", "<|endoftext|>", "<eos>"];

impl Tokenizer {
    pub fn from_hf_json(json: &str, source_name: &str) -> Result<Self> {
        let tokenizer: tokenizers::Tokenizer =
            json.parse().map_err(|e| hf_error(source_name, e))?;
        Ok(Tokenizer::HuggingFace(Box::new(tokenizer), None))
    }

    pub fn from_hf_file(path: &Path) -> Result<Self> {
        let bytes = crate::error::read_file(path)?;
        let name = path.display().to_string();
        let json = std::str::from_utf8(&bytes).map_err(|_| hf_error(&name, "not UTF-8"))?;
        Self::from_hf_json(json, &name)
    }

    /// GPT-2's byte-level BPE from OpenAI's `encoder.json` and `vocab.bpe`.
    pub fn gpt2_from_files(encoder_json: &Path, vocab_bpe: &Path) -> Result<Self> {
        use tokenizers::models::bpe::BPE;
        use tokenizers::{decoders, pre_tokenizers};
        let name = encoder_json.display().to_string();
        let bpe = BPE::from_file(
            &encoder_json.display().to_string(),
            &vocab_bpe.display().to_string(),
        )
        .build()
        .map_err(|e| hf_error(&name, e))?;
        let mut tokenizer = tokenizers::Tokenizer::new(bpe);
        tokenizer
            .with_pre_tokenizer(Some(pre_tokenizers::byte_level::ByteLevel::new(
                false, true, true,
            )))
            .with_decoder(Some(decoders::byte_level::ByteLevel::default()));
        Ok(Tokenizer::HuggingFace(Box::new(tokenizer), None))
    }

    /// The same tokenizer with the special tokens a model folder states.
    pub fn with_model_tokens(self, tokens: ModelTokens) -> Self {
        match self {
            Tokenizer::HuggingFace(t, _) => Tokenizer::HuggingFace(t, Some(tokens)),
            other => other,
        }
    }

    pub fn model_tokens(&self) -> Option<&ModelTokens> {
        match self {
            Tokenizer::HuggingFace(_, tokens) => tokens.as_ref(),
            Tokenizer::SentencePiece(_) => None,
        }
    }

    /// The model's chat template, compiled, if its folder has one.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn chat_template(&self) -> Result<Option<crate::io::chat::ChatTemplate>> {
        let Some(tokens) = self.model_tokens() else {
            return Ok(None);
        };
        let Some(source) = &tokens.chat_template else {
            return Ok(None);
        };
        let text = |id: Option<u32>| id.map(|id| self.decode_special(id)).unwrap_or_default();
        crate::io::chat::ChatTemplate::new(
            source,
            &text(tokens.bos),
            &text(tokens.eos),
            "tokenizer_config.json",
        )
        .map(Some)
    }

    /// A special token's text (`<s>`, `<|im_end|>`).
    #[cfg(not(target_arch = "wasm32"))]
    fn decode_special(&self, id: u32) -> String {
        match self {
            Tokenizer::HuggingFace(t, _) => t.id_to_token(id).unwrap_or_default(),
            Tokenizer::SentencePiece(t) => t.decode(&[id]),
        }
    }

    /// The vocabulary as a SentencePiece model: this one's own, or converted from a
    /// SentencePiece-style Hugging Face BPE (what GGUF's `llama` tokenizer stores).
    pub fn sentencepiece(&self) -> Result<SentencePieceBpe> {
        match self {
            Tokenizer::SentencePiece(model) => Ok(model.clone()),
            Tokenizer::HuggingFace(t, _) => {
                let missing = |what: &str| hf_error("tokenizer", format!("no {what} token"));
                let bos = self.bos_id().ok_or_else(|| missing("BOS"))?;
                let eos = self.eos_id().ok_or_else(|| missing("EOS"))?;
                SentencePieceBpe::from_hugging_face(t, bos, eos, "tokenizer.json")
            }
        }
    }

    /// The Hugging Face tokenizer inside, if this is one.
    pub fn hugging_face(&self) -> Option<&tokenizers::Tokenizer> {
        match self {
            Tokenizer::HuggingFace(t, _) => Some(t),
            Tokenizer::SentencePiece(_) => None,
        }
    }

    pub fn vocab_size(&self) -> usize {
        match self {
            Tokenizer::SentencePiece(t) => t.vocab_size(),
            Tokenizer::HuggingFace(t, _) => t.get_vocab_size(true),
        }
    }

    pub fn bos_id(&self) -> Option<u32> {
        match self {
            Tokenizer::SentencePiece(t) => Some(t.bos),
            Tokenizer::HuggingFace(_, Some(tokens)) => tokens.bos,
            Tokenizer::HuggingFace(t, None) => HF_BOS.iter().find_map(|s| t.token_to_id(s)),
        }
    }

    pub fn eos_id(&self) -> Option<u32> {
        match self {
            Tokenizer::SentencePiece(t) => Some(t.eos),
            Tokenizer::HuggingFace(_, Some(tokens)) => tokens.eos,
            Tokenizer::HuggingFace(t, None) => HF_EOS.iter().find_map(|s| t.token_to_id(s)),
        }
    }

    /// Token ids of `text`, without BOS.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        match self {
            Tokenizer::SentencePiece(t) => Ok(t.encode(text)),
            Tokenizer::HuggingFace(t, _) => Ok(t
                .encode(text, false)
                .map_err(|e| hf_error("text", e))?
                .get_ids()
                .to_vec()),
        }
    }

    /// Token ids of `text` after BOS (when the vocabulary has one): what a prompt is fed as.
    /// A text that already begins with BOS (a chat template that writes `bos_token`) keeps one.
    pub fn encode_with_bos(&self, text: &str) -> Result<Vec<u32>> {
        let text_ids = self.encode(text)?;
        let mut ids: Vec<u32> = self
            .bos_id()
            .filter(|&bos| text_ids.first() != Some(&bos))
            .into_iter()
            .collect();
        ids.extend(text_ids);
        Ok(ids)
    }

    pub fn decode(&self, tokens: &[u32]) -> String {
        match self {
            Tokenizer::SentencePiece(t) => t.decode(tokens),
            Tokenizer::HuggingFace(t, _) => t.decode(tokens, true).unwrap_or_default(),
        }
    }

    /// Text of one token as it would print after `previous` (for streaming and for `score`).
    pub fn token_text(&self, previous: Option<u32>, token: u32) -> String {
        match self {
            Tokenizer::SentencePiece(t) => {
                String::from_utf8_lossy(t.token_bytes(previous, token)).into_owned()
            }
            Tokenizer::HuggingFace(t, _) => t.decode(&[token], false).unwrap_or_default(),
        }
    }

    pub fn to_json(&self) -> String {
        let stored = match self {
            Tokenizer::SentencePiece(model) => StoredTokenizer::SentencePiece {
                model: model.clone(),
            },
            Tokenizer::HuggingFace(t, model_tokens) => StoredTokenizer::HuggingFace {
                json: t.to_string(false).expect("a loaded tokenizer serialises"),
                model_tokens: model_tokens.clone(),
            },
        };
        serde_json::to_string(&stored).expect("tokenizer serialises")
    }

    pub fn from_json(json: &str, source_name: &str) -> Result<Self> {
        let stored: StoredTokenizer =
            serde_json::from_str(json).map_err(|e| hf_error(source_name, e))?;
        match stored {
            StoredTokenizer::SentencePiece { model } => SentencePieceBpe::new(
                model.pieces,
                model.scores,
                model.bos,
                model.eos,
                source_name,
            )
            .map(Tokenizer::SentencePiece),
            StoredTokenizer::HuggingFace { json, model_tokens } => {
                let tokenizer = Self::from_hf_json(&json, source_name)?;
                Ok(match model_tokens {
                    Some(tokens) => tokenizer.with_model_tokens(tokens),
                    None => tokenizer,
                })
            }
        }
    }
}

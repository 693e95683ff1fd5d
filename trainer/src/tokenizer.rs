//! The tokenizer: a Hugging Face `tokenizer.json` with the special-token facts
//! the trainer needs (which ids end a sequence, which id pads a batch), and
//! training of the demo's byte-level BPE.
//!
//! A checkpoint directory is read the way `transformers` reads it:
//! `tokenizer.json` holds the tokenizer itself, `tokenizer_config.json` names
//! the `eos_token` and `pad_token`, and `generation_config.json` lists the
//! `eos_token_id`s that stop generation. [`Tokenizer::save_dir`] writes a
//! directory that `transformers.AutoTokenizer.from_pretrained` loads.
//!
//! Encoding never adds special tokens around the text (Qwen2's tokenizer has no
//! post-processor that would, and prompts are rendered by
//! [`crate::template`]), but special-token text written in the input, such as
//! `<|im_end|>`, is recognised as that one token, as Hugging Face does.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::models::TrainerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::AddedToken;

/// Qwen2's pre-tokenizer split pattern, as in its `tokenizer.json`.
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The tokenizer file of a Hugging Face tokenizer directory.
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// The file naming the special tokens (and the chat template).
pub const TOKENIZER_CONFIG_FILE: &str = "tokenizer_config.json";
/// The file listing the token ids that stop generation.
pub const GENERATION_CONFIG_FILE: &str = "generation_config.json";

/// The end-of-text token of Qwen's vocabulary; the pad token of a trained
/// tokenizer.
pub const ENDOFTEXT: &str = "<|endoftext|>";
/// Opens a ChatML turn.
pub const IM_START: &str = "<|im_start|>";
/// Closes a ChatML turn; the end-of-sequence token of a trained tokenizer
/// that has it.
pub const IM_END: &str = "<|im_end|>";

/// The `model_max_length` written by [`Tokenizer::save_dir`] unless set with
/// [`Tokenizer::set_model_max_length`] or read from a `tokenizer_config.json`:
/// Qwen2's context length.
pub const DEFAULT_MODEL_MAX_LENGTH: usize = 32768;

/// Qwen's ChatML chat template (without the default system message that
/// Qwen2.5's own template injects), written to `tokenizer_config.json` for a
/// tokenizer that has `<|im_start|>` and `<|im_end|>`.
pub const CHATML_TEMPLATE: &str = r"{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// What can go wrong loading, using, training or saving a tokenizer. Each
/// message names the file (where there is one) and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// The tokenizer directory does not exist.
    #[error("tokenizer directory {} does not exist", dir.display())]
    MissingDir {
        /// The directory asked for.
        dir: PathBuf,
    },
    /// The directory has no `tokenizer.json`.
    #[error(
        "{} does not exist: a tokenizer directory needs a Hugging Face tokenizer.json \
         (vocab.json/merges.txt alone are not read)",
        path.display()
    )]
    MissingTokenizerJson {
        /// The path looked for.
        path: PathBuf,
    },
    /// A file could not be read.
    #[error("cannot read {}: {cause}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        cause: std::io::Error,
    },
    /// A file is not valid JSON.
    #[error("{} is not valid JSON: {cause}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The parse error.
        cause: serde_json::Error,
    },
    /// A `tokenizer.json` is JSON but not a tokenizer the `tokenizers` crate
    /// understands.
    #[error("{} is not a valid Hugging Face tokenizer: {message}", path.display())]
    InvalidTokenizer {
        /// The file.
        path: PathBuf,
        /// What the `tokenizers` crate said.
        message: String,
    },
    /// A config field has a shape other than the ones transformers writes.
    #[error("{}: field {field} is malformed: {message}", path.display())]
    BadField {
        /// The file.
        path: PathBuf,
        /// The JSON field.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// A config names a token that is not in the vocabulary.
    #[error("{}: {field} {token:?} is not in the tokenizer's vocabulary", path.display())]
    UnknownToken {
        /// The file.
        path: PathBuf,
        /// The JSON field (`eos_token`, `pad_token`, ...).
        field: String,
        /// The token text.
        token: String,
    },
    /// A config gives a token id past the end of the vocabulary.
    #[error(
        "{}: {field} {id} is outside the tokenizer's vocabulary ({vocab_size} ids)",
        path.display()
    )]
    IdOutOfRange {
        /// The file.
        path: PathBuf,
        /// The JSON field (`eos_token_id`, `pad_token_id`).
        field: String,
        /// The id given.
        id: u64,
        /// The tokenizer's vocabulary size.
        vocab_size: usize,
    },
    /// Nothing says which token ends a sequence.
    #[error(
        "{}: no end-of-sequence token: no eos_token in tokenizer_config.json, no eos_token_id in \
         generation_config.json, and the vocabulary has neither <|im_end|> nor <|endoftext|>",
        path.display()
    )]
    NoEos {
        /// The directory or file loaded.
        path: PathBuf,
    },
    /// Encoding text failed.
    #[error("encoding text failed: {0}")]
    Encode(String),
    /// Decoding ids failed.
    #[error("decoding token ids failed: {0}")]
    Decode(String),
    /// Training arguments are unusable, or training failed.
    #[error("training a byte-level BPE tokenizer failed: {0}")]
    Train(String),
    /// Writing a file (or creating its directory) failed.
    #[error("cannot write {}: {cause}", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        cause: std::io::Error,
    },
}

/// The result type of this module.
pub type Result<T, E = TokenizerError> = std::result::Result<T, E>;

/// A Hugging Face tokenizer with its end-of-sequence and padding ids.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// Ids that end a sequence; never empty. The first is "the" eos.
    eos_ids: Vec<u32>,
    pad_id: u32,
    /// Ids of the added tokens marked special.
    special_ids: HashSet<u32>,
    /// One past the largest id.
    vocab_size: usize,
    model_max_length: usize,
    /// The `tokenizer_config.json` this tokenizer was loaded with, written back
    /// as it was by `save_dir` (so a real checkpoint keeps its own chat
    /// template and settings).
    source_config: Option<Value>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size)
            .field("eos_ids", &self.eos_ids)
            .field("pad_id", &self.pad_id)
            .field("model_max_length", &self.model_max_length)
            .finish_non_exhaustive()
    }
}

impl Tokenizer {
    /// Loads a Hugging Face tokenizer directory: `tokenizer.json`, and when
    /// present `tokenizer_config.json` (`eos_token`, `pad_token`,
    /// `model_max_length`) and `generation_config.json` (`eos_token_id`, an id
    /// or a list of ids, and `pad_token_id`).
    ///
    /// The stop ids are the union of the `generation_config.json` eos ids (in
    /// their order) and the `tokenizer_config.json` eos token. The pad id is the
    /// `pad_token` of `tokenizer_config.json`, else the `pad_token_id` of
    /// `generation_config.json`, else the first stop id. With neither config
    /// the eos is guessed as for [`Tokenizer::from_file`].
    pub fn from_dir(dir: &Path) -> Result<Tokenizer> {
        if !dir.is_dir() {
            return Err(TokenizerError::MissingDir {
                dir: dir.to_path_buf(),
            });
        }
        let tokenizer_path = dir.join(TOKENIZER_FILE);
        let inner = load_tokenizer_json(&tokenizer_path)?;
        let facts = VocabFacts::of(&inner);

        let mut eos_ids: Vec<u32> = Vec::new();
        let mut pad_id: Option<u32> = None;
        let mut model_max_length = DEFAULT_MODEL_MAX_LENGTH;

        let config_path = dir.join(TOKENIZER_CONFIG_FILE);
        let source_config = read_optional_json(&config_path)?;
        let mut config_eos: Option<u32> = None;
        if let Some(config) = &source_config {
            if !config.is_object() {
                return Err(bad_field(&config_path, "(top level)", "expected an object"));
            }
            config_eos = config_token_id(&inner, &config_path, config, "eos_token")?;
            pad_id = config_token_id(&inner, &config_path, config, "pad_token")?;
            if let Some(value) = config.get("model_max_length") {
                // transformers writes huge floats (1e30) for "no limit".
                if let Some(n) = value.as_u64() {
                    model_max_length = usize::try_from(n).unwrap_or(usize::MAX);
                } else if value.as_f64().is_some_and(|x| x >= 0.0) {
                    model_max_length = usize::MAX;
                } else if !value.is_null() {
                    return Err(bad_field(
                        &config_path,
                        "model_max_length",
                        "expected a non-negative number",
                    ));
                }
            }
        }

        let generation_path = dir.join(GENERATION_CONFIG_FILE);
        if let Some(generation) = read_optional_json(&generation_path)? {
            if !generation.is_object() {
                return Err(bad_field(&generation_path, "(top level)", "expected an object"));
            }
            match generation.get("eos_token_id") {
                None | Some(Value::Null) => {}
                Some(Value::Array(items)) => {
                    for item in items {
                        let id = config_id(&generation_path, "eos_token_id", item, &facts)?;
                        push_unique(&mut eos_ids, id);
                    }
                }
                Some(item) => {
                    let id = config_id(&generation_path, "eos_token_id", item, &facts)?;
                    push_unique(&mut eos_ids, id);
                }
            }
            if pad_id.is_none() {
                match generation.get("pad_token_id") {
                    None | Some(Value::Null) => {}
                    Some(item) => {
                        pad_id = Some(config_id(&generation_path, "pad_token_id", item, &facts)?);
                    }
                }
            }
        }
        if let Some(id) = config_eos {
            push_unique(&mut eos_ids, id);
        }
        if eos_ids.is_empty() {
            eos_ids = guess_eos(&inner).ok_or_else(|| TokenizerError::NoEos {
                path: dir.to_path_buf(),
            })?;
        }
        let pad_id = pad_id.unwrap_or(eos_ids[0]);
        Ok(Tokenizer {
            special_ids: facts.special_ids,
            vocab_size: facts.vocab_size,
            inner,
            eos_ids,
            pad_id,
            model_max_length,
            source_config,
        })
    }

    /// Loads a bare `tokenizer.json`. With no config to name it, the eos is
    /// `<|im_end|>` if the vocabulary has it, else `<|endoftext|>`; the pad is
    /// `<|endoftext|>` if present, else the eos (the rule of
    /// [`Tokenizer::train_byte_level_bpe`]).
    pub fn from_file(path: &Path) -> Result<Tokenizer> {
        let inner = load_tokenizer_json(path)?;
        let eos_ids = guess_eos(&inner).ok_or_else(|| TokenizerError::NoEos {
            path: path.to_path_buf(),
        })?;
        Ok(Self::with_guessed_specials(inner, eos_ids))
    }

    fn with_guessed_specials(inner: tokenizers::Tokenizer, eos_ids: Vec<u32>) -> Tokenizer {
        let pad_id = inner.token_to_id(ENDOFTEXT).unwrap_or(eos_ids[0]);
        let facts = VocabFacts::of(&inner);
        Tokenizer {
            special_ids: facts.special_ids,
            vocab_size: facts.vocab_size,
            inner,
            eos_ids,
            pad_id,
            model_max_length: DEFAULT_MODEL_MAX_LENGTH,
            source_config: None,
        }
    }

    /// The token ids of `text`, with no special tokens added around it; special
    /// tokens written literally in `text` (`<|im_end|>`) become their one id.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .inner
            .encode(text, false)
            .map_err(|e| TokenizerError::Encode(e.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// The text of `ids`, leaving out special tokens when
    /// `skip_special_tokens`. Ids outside the vocabulary (a model's embedding
    /// may be larger than its tokenizer's vocabulary) are skipped, as Hugging
    /// Face does.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| TokenizerError::Decode(e.to_string()))
    }

    /// The number of ids, added tokens included: one past the largest id
    /// (the count of tokens, as ids are contiguous in Qwen's and trained
    /// tokenizers).
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// The id of a token, by its text in the vocabulary (byte-level form for
    /// BPE pieces, e.g. `Ġthe`) or an added token's content.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The text of a token id in the vocabulary, the inverse of
    /// [`Tokenizer::token_id`].
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The ids that end a sequence (stop generation); never empty. The first is
    /// the tokenizer's own eos token where the configs name one only there.
    pub fn eos_ids(&self) -> &[u32] {
        &self.eos_ids
    }

    /// The id that pads batches.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// Whether `id` is an added token marked special (`<|endoftext|>`,
    /// `<|im_start|>`, ...).
    pub fn is_special(&self, id: u32) -> bool {
        self.special_ids.contains(&id)
    }

    /// The `model_max_length` written to `tokenizer_config.json`.
    pub fn model_max_length(&self) -> usize {
        self.model_max_length
    }

    /// Sets the `model_max_length` that [`Tokenizer::save_dir`] writes (the
    /// model's context length).
    pub fn set_model_max_length(&mut self, model_max_length: usize) {
        self.model_max_length = model_max_length;
    }

    /// The wrapped `tokenizers` tokenizer.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// The `tokenizer.json` text of this tokenizer (pretty-printed, as
    /// [`Tokenizer::save_dir`] writes it).
    pub fn to_json(&self) -> Result<String> {
        self.inner
            .to_string(true)
            .map_err(|e| TokenizerError::InvalidTokenizer {
                path: PathBuf::from(TOKENIZER_FILE),
                message: e.to_string(),
            })
    }

    /// Writes `tokenizer.json` and `tokenizer_config.json` into `dir` (created
    /// if missing), each atomically (a temporary file in `dir`, then a rename),
    /// so that `transformers.AutoTokenizer.from_pretrained(dir)` loads it and
    /// [`Tokenizer::from_dir`] gives back this tokenizer.
    ///
    /// A tokenizer loaded with a `tokenizer_config.json` writes that config
    /// back (with this `model_max_length`), so a real checkpoint keeps its own
    /// class, chat template and flags. Otherwise the config names the
    /// `eos_token` (the first eos id) and `pad_token`, the added tokens, the
    /// ChatML [`CHATML_TEMPLATE`] when the vocabulary has `<|im_start|>` and
    /// `<|im_end|>`, and `tokenizer_class: "PreTrainedTokenizerFast"`. That
    /// generic class loads `tokenizer.json` as it is. Note that transformers
    /// 5 loads the tokenizer of a checkpoint whose `config.json` says
    /// `model_type: qwen2` as `Qwen2Tokenizer` regardless, keeping only the
    /// vocabulary and merges and rebuilding the pipeline with Qwen's NFC
    /// normalizer and split regex; [`Tokenizer::train_byte_level_bpe`] uses
    /// that same pipeline so both encode alike (`bench/hf_roundtrip.sh`).
    pub fn save_dir(&self, dir: &Path) -> Result<()> {
        fs::create_dir_all(dir).map_err(|cause| TokenizerError::Write {
            path: dir.to_path_buf(),
            cause,
        })?;
        let tokenizer_json = self.to_json()?;
        let config = match &self.source_config {
            Some(config) => {
                let mut config = config.clone();
                if let Some(object) = config.as_object_mut() {
                    object.insert("model_max_length".into(), json!(self.model_max_length));
                }
                config
            }
            None => self.generated_config(),
        };
        let mut config_text =
            serde_json::to_string_pretty(&config).expect("a serde_json::Value always serialises");
        config_text.push('\n');
        write_atomic(&dir.join(TOKENIZER_FILE), tokenizer_json.as_bytes())?;
        write_atomic(&dir.join(TOKENIZER_CONFIG_FILE), config_text.as_bytes())?;
        Ok(())
    }

    /// The `tokenizer_config.json` of a tokenizer not loaded with one.
    fn generated_config(&self) -> Value {
        let token_text = |id: u32| self.inner.id_to_token(id).map(Value::String);
        let added_tokens: BTreeMap<u32, AddedToken> =
            self.inner.get_added_tokens_decoder().into_iter().collect();
        let added_tokens_decoder: serde_json::Map<String, Value> = added_tokens
            .iter()
            .map(|(id, token)| {
                (
                    id.to_string(),
                    json!({
                        "content": token.content,
                        "lstrip": token.lstrip,
                        "normalized": token.normalized,
                        "rstrip": token.rstrip,
                        "single_word": token.single_word,
                        "special": token.special,
                    }),
                )
            })
            .collect();
        let mut config = json!({
            "add_bos_token": false,
            "add_eos_token": false,
            "add_prefix_space": false,
            "added_tokens_decoder": added_tokens_decoder,
            "bos_token": null,
            "clean_up_tokenization_spaces": false,
            "eos_token": token_text(self.eos_ids[0]),
            "errors": "replace",
            "model_max_length": self.model_max_length,
            "pad_token": token_text(self.pad_id),
            "split_special_tokens": false,
            "tokenizer_class": "PreTrainedTokenizerFast",
            "unk_token": null,
        });
        if self.token_id(IM_START).is_some() && self.token_id(IM_END).is_some() {
            config["chat_template"] = Value::String(CHATML_TEMPLATE.to_string());
        }
        config
    }

    /// Trains a byte-level BPE tokenizer on `texts` with Qwen2's pipeline:
    /// NFC normalisation, Qwen2's split regex (digits one by one), the
    /// ByteLevel pre-tokenizer (no prefix space, no regex of its own) and
    /// decoder, no post-processor, and the full 256-byte initial alphabet,
    /// so any text encodes without unknowns.
    ///
    /// `special_tokens` are then added, in order, as special added tokens after
    /// the learnt vocabulary (Qwen's layout; the demo passes `<|endoftext|>`,
    /// `<|im_start|>`, `<|im_end|>`). Their text inside `texts` is cut out
    /// before training so no merges are learnt from it. `vocab_size` counts
    /// them: the result has at most `vocab_size` ids (fewer when the texts run
    /// out of pairs to merge), and it must leave room for the 256 bytes.
    ///
    /// The eos is `<|im_end|>` if among `special_tokens`, else `<|endoftext|>`
    /// (one of them is required); the pad is `<|endoftext|>` if present, else
    /// the eos. Training is deterministic: the same arguments give the same
    /// `tokenizer.json`.
    pub fn train_byte_level_bpe(
        texts: &[String],
        vocab_size: usize,
        special_tokens: &[&str],
    ) -> Result<Tokenizer> {
        let mut specials: Vec<&str> = Vec::with_capacity(special_tokens.len());
        for &token in special_tokens {
            if token.is_empty() {
                return Err(TokenizerError::Train("a special token is empty".into()));
            }
            if specials.contains(&token) {
                return Err(TokenizerError::Train(format!(
                    "special token {token:?} is given twice"
                )));
            }
            specials.push(token);
        }
        if !specials.contains(&IM_END) && !specials.contains(&ENDOFTEXT) {
            return Err(TokenizerError::Train(format!(
                "the special tokens {specials:?} include neither {IM_END} nor {ENDOFTEXT}, so \
                 there is no end-of-sequence token"
            )));
        }
        let alphabet = ByteLevel::alphabet();
        let min_vocab = alphabet.len() + specials.len();
        if vocab_size < min_vocab {
            return Err(TokenizerError::Train(format!(
                "vocab_size {vocab_size} is below {min_vocab}: the 256 byte tokens plus {} \
                 special tokens",
                specials.len()
            )));
        }

        // Cut the special tokens' text out of the corpus: training would
        // otherwise learn merges for `<|im_start|>` pieces that encoding never
        // uses (the added vocabulary matches the whole token first).
        let mut segments: Vec<&str> = Vec::new();
        for text in texts {
            split_on_specials(text, &specials, &mut segments);
        }

        let trainer = BpeTrainerBuilder::new()
            .show_progress(false)
            .vocab_size(vocab_size - specials.len())
            .min_frequency(0)
            .initial_alphabet(alphabet.into_iter().collect())
            .build();
        let mut trainer = TrainerWrapper::from(trainer);
        let mut inner = tokenizers::Tokenizer::new(BPE::default());
        // Qwen2's own pipeline (NFC, its split regex with single digits, then
        // byte-level without a regex), because `transformers` rebuilds a
        // `qwen2` checkpoint's tokenizer with exactly these rules: any other
        // split would tokenise differently there than here.
        inner.with_normalizer(Some(tokenizers::normalizers::unicode::NFC));
        let split = tokenizers::pre_tokenizers::split::Split::new(
            tokenizers::pre_tokenizers::split::SplitPattern::Regex(QWEN2_SPLIT.into()),
            tokenizers::SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(|e| TokenizerError::Train(e.to_string()))?;
        inner.with_pre_tokenizer(Some(tokenizers::pre_tokenizers::sequence::Sequence::new(vec![
            split.into(),
            ByteLevel::new(false, true, false).into(),
        ])));
        inner.with_decoder(Some(ByteLevelDecoder::default()));
        inner
            .train(&mut trainer, segments.into_iter())
            .map_err(|e| TokenizerError::Train(e.to_string()))?;
        let added: Vec<AddedToken> = specials
            .iter()
            .map(|&token| AddedToken::from(token, true))
            .collect();
        inner.add_special_tokens(&added);

        let eos_ids = guess_eos(&inner).expect("checked above: <|im_end|> or <|endoftext|>");
        Ok(Self::with_guessed_specials(inner, eos_ids))
    }
}

/// Vocabulary facts computed once at load.
struct VocabFacts {
    vocab_size: usize,
    special_ids: HashSet<u32>,
}

impl VocabFacts {
    fn of(inner: &tokenizers::Tokenizer) -> VocabFacts {
        let vocab_size = inner
            .get_vocab(true)
            .values()
            .max()
            .map_or(0, |&id| id as usize + 1);
        let special_ids = inner
            .get_added_tokens_decoder()
            .into_iter()
            .filter(|(_, token)| token.special)
            .map(|(id, _)| id)
            .collect();
        VocabFacts {
            vocab_size,
            special_ids,
        }
    }
}

/// Reads and parses a `tokenizer.json`, with errors naming it.
fn load_tokenizer_json(path: &Path) -> Result<tokenizers::Tokenizer> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(cause) if cause.kind() == std::io::ErrorKind::NotFound => {
            return Err(TokenizerError::MissingTokenizerJson {
                path: path.to_path_buf(),
            });
        }
        Err(cause) => {
            return Err(TokenizerError::Read {
                path: path.to_path_buf(),
                cause,
            });
        }
    };
    // Tell bad JSON apart from JSON that is not a tokenizer.
    if let Err(cause) = serde_json::from_slice::<serde::de::IgnoredAny>(&bytes) {
        return Err(TokenizerError::Json {
            path: path.to_path_buf(),
            cause,
        });
    }
    tokenizers::Tokenizer::from_bytes(&bytes).map_err(|e| TokenizerError::InvalidTokenizer {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Parses an optional JSON file: `None` when it does not exist.
fn read_optional_json(path: &Path) -> Result<Option<Value>> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(cause) if cause.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(cause) => {
            return Err(TokenizerError::Read {
                path: path.to_path_buf(),
                cause,
            });
        }
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|cause| TokenizerError::Json {
            path: path.to_path_buf(),
            cause,
        })
}

fn bad_field(path: &Path, field: &str, message: &str) -> TokenizerError {
    TokenizerError::BadField {
        path: path.to_path_buf(),
        field: field.to_string(),
        message: message.to_string(),
    }
}

/// The id of a `tokenizer_config.json` token field: absent or null gives
/// `None`; a string or a transformers AddedToken object `{"content": ...}` is
/// looked up in the vocabulary.
fn config_token_id(
    inner: &tokenizers::Tokenizer,
    path: &Path,
    config: &Value,
    field: &str,
) -> Result<Option<u32>> {
    let text = match config.get(field) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(text)) => text,
        Some(Value::Object(object)) => match object.get("content") {
            Some(Value::String(text)) => text,
            _ => {
                return Err(bad_field(
                    path,
                    field,
                    "an AddedToken object needs a string \"content\"",
                ))
            }
        },
        Some(_) => {
            return Err(bad_field(
                path,
                field,
                "expected a string or an object with \"content\"",
            ))
        }
    };
    inner
        .token_to_id(text)
        .map(Some)
        .ok_or_else(|| TokenizerError::UnknownToken {
            path: path.to_path_buf(),
            field: field.to_string(),
            token: text.clone(),
        })
}

/// A token id from `generation_config.json`, checked against the vocabulary.
fn config_id(path: &Path, field: &str, value: &Value, facts: &VocabFacts) -> Result<u32> {
    let id = value.as_u64().ok_or_else(|| {
        bad_field(
            path,
            field,
            &format!("expected a token id or a list of ids, found {value}"),
        )
    })?;
    match u32::try_from(id) {
        Ok(small) if (small as usize) < facts.vocab_size => Ok(small),
        _ => Err(TokenizerError::IdOutOfRange {
            path: path.to_path_buf(),
            field: field.to_string(),
            id,
            vocab_size: facts.vocab_size,
        }),
    }
}

fn push_unique(ids: &mut Vec<u32>, id: u32) {
    if !ids.contains(&id) {
        ids.push(id);
    }
}

/// `<|im_end|>` if in the vocabulary, else `<|endoftext|>`.
fn guess_eos(inner: &tokenizers::Tokenizer) -> Option<Vec<u32>> {
    inner
        .token_to_id(IM_END)
        .or_else(|| inner.token_to_id(ENDOFTEXT))
        .map(|id| vec![id])
}

/// Pushes the non-empty pieces of `text` between occurrences of any of
/// `specials` (leftmost, then longest match).
fn split_on_specials<'t>(text: &'t str, specials: &[&str], out: &mut Vec<&'t str>) {
    let mut rest = text;
    loop {
        let next = specials
            .iter()
            .filter_map(|special| rest.find(special).map(|at| (at, special.len())))
            .min_by_key(|&(at, len)| (at, std::cmp::Reverse(len)));
        match next {
            Some((at, len)) => {
                if at > 0 {
                    out.push(&rest[..at]);
                }
                rest = &rest[at + len..];
            }
            None => {
                if !rest.is_empty() {
                    out.push(rest);
                }
                return;
            }
        }
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory
/// and a rename, so readers see the old file or the whole new one.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().map_err(|cause| {
        let _ = fs::remove_file(&tmp);
        TokenizerError::Write {
            path: path.to_path_buf(),
            cause,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPECIALS: &[&str] = &[ENDOFTEXT, IM_START, IM_END];

    fn corpus() -> Vec<String> {
        let mut texts = Vec::new();
        for i in 0..40 {
            texts.push(format!(
                "Question {i}: what is {i} + {i}?\nAnswer: the sum is {}.\n\n",
                2 * i
            ));
            texts.push(format!(
                "{IM_START}user\nCompute {i} times three.{IM_END}\n{IM_START}assistant\n\
                 {i} × 3 = {}{IM_END}\n",
                3 * i
            ));
        }
        texts.push("The quick brown fox jumps over the lazy dog. Ünïcödé → ∑ 数学 🦀".into());
        texts
    }

    fn trained() -> Tokenizer {
        Tokenizer::train_byte_level_bpe(&corpus(), 400, SPECIALS).unwrap()
    }

    #[test]
    fn trained_round_trips_unicode_newlines_and_spaces() {
        let tok = trained();
        assert!(tok.vocab_size() <= 400);
        for text in [
            "",
            "hello world",
            "  leading and trailing spaces  ",
            "tabs\tand\nnewlines\r\n\n\nend",
            "never seen: Ωμέγα, 日本語テキスト, emoji 🦀🚀, combining é",
            "\u{0}\u{7f} control bytes",
            "the sum is 42.\n\n",
        ] {
            let ids = tok.encode(text).unwrap();
            assert!(ids.iter().all(|&id| (id as usize) < tok.vocab_size()));
            assert_eq!(tok.decode(&ids, false).unwrap(), text, "ids {ids:?}");
        }
        // Merges were learnt: a frequent word is fewer tokens than bytes.
        assert!(tok.encode(" Question").unwrap().len() < " Question".len());
    }

    #[test]
    fn trained_special_tokens_are_single_ids_at_the_end() {
        let tok = trained();
        let n = tok.vocab_size() as u32;
        assert_eq!(tok.token_id(ENDOFTEXT), Some(n - 3));
        assert_eq!(tok.token_id(IM_START), Some(n - 2));
        assert_eq!(tok.token_id(IM_END), Some(n - 1));
        assert_eq!(tok.eos_ids(), &[n - 1]);
        assert_eq!(tok.pad_id(), n - 3);
        for id in [n - 3, n - 2, n - 1] {
            assert!(tok.is_special(id));
        }
        assert!(!tok.is_special(0));

        let text = format!("{IM_START}user\nhi{IM_END}\n");
        let ids = tok.encode(&text).unwrap();
        assert_eq!(ids[0], n - 2);
        assert_eq!(ids.iter().filter(|&&id| id == n - 1).count(), 1);
        assert_eq!(tok.decode(&ids, false).unwrap(), text);
        assert_eq!(tok.decode(&ids, true).unwrap(), "user\nhi\n");
        assert_eq!(tok.encode(IM_END).unwrap(), vec![n - 1]);
        // No special tokens are added around the text.
        assert_eq!(tok.encode("hi").unwrap(), tok.encode("hi").unwrap());
        assert!(!tok.encode("hi").unwrap().iter().any(|&id| tok.is_special(id)));
    }

    #[test]
    fn trained_learns_no_merges_from_special_token_text() {
        let tok = trained();
        let vocab = tok.inner().get_vocab(false);
        assert!(
            !vocab
                .keys()
                .any(|piece| piece.contains("im_") || piece.contains("|>")),
            "a merge was learnt from special-token text"
        );
    }

    #[test]
    fn trained_splits_like_qwen2_digits_one_by_one() {
        let tok = trained();
        let ids = tok.encode("12345").unwrap();
        assert_eq!(ids.len(), 5, "{ids:?}");
        // NFC: a decomposed é encodes as the composed one.
        assert_eq!(tok.encode("e\u{301}").unwrap(), tok.encode("\u{e9}").unwrap());
    }

    #[test]
    fn training_is_deterministic() {
        let a = trained().to_json().unwrap();
        let b = trained().to_json().unwrap();
        assert_eq!(a, b);
        let c = Tokenizer::train_byte_level_bpe(&corpus(), 300, SPECIALS)
            .unwrap()
            .to_json()
            .unwrap();
        assert_ne!(a, c);
    }

    #[test]
    fn training_rejects_bad_arguments() {
        let err = Tokenizer::train_byte_level_bpe(&corpus(), 200, SPECIALS).unwrap_err();
        assert!(err.to_string().contains("vocab_size 200 is below 259"), "{err}");
        let err = Tokenizer::train_byte_level_bpe(&corpus(), 400, &["<pad>"]).unwrap_err();
        assert!(err.to_string().contains("no end-of-sequence token"), "{err}");
        let err = Tokenizer::train_byte_level_bpe(&corpus(), 400, &[ENDOFTEXT, ENDOFTEXT]).unwrap_err();
        assert!(err.to_string().contains("given twice"), "{err}");
    }

    #[test]
    fn endoftext_only_is_eos_and_pad() {
        let tok = Tokenizer::train_byte_level_bpe(&corpus(), 300, &[ENDOFTEXT]).unwrap();
        let id = tok.token_id(ENDOFTEXT).unwrap();
        assert_eq!(tok.eos_ids(), &[id]);
        assert_eq!(tok.pad_id(), id);
        let dir = tempfile::tempdir().unwrap();
        tok.save_dir(dir.path()).unwrap();
        let config: Value =
            serde_json::from_str(&fs::read_to_string(dir.path().join(TOKENIZER_CONFIG_FILE)).unwrap())
                .unwrap();
        assert!(config.get("chat_template").is_none());
        assert_eq!(config["eos_token"], ENDOFTEXT);
    }

    #[test]
    fn save_dir_then_from_dir_encodes_identically() {
        let mut tok = trained();
        tok.set_model_max_length(512);
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("nested/tok");
        tok.save_dir(&out).unwrap();
        let mut names: Vec<String> = fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, [TOKENIZER_FILE, TOKENIZER_CONFIG_FILE], "temp files left");

        let config: Value =
            serde_json::from_str(&fs::read_to_string(out.join(TOKENIZER_CONFIG_FILE)).unwrap()).unwrap();
        assert_eq!(config["eos_token"], IM_END);
        assert_eq!(config["pad_token"], ENDOFTEXT);
        assert_eq!(config["model_max_length"], 512);
        assert_eq!(config["tokenizer_class"], "PreTrainedTokenizerFast");
        assert_eq!(config["chat_template"], CHATML_TEMPLATE);
        assert!(CHATML_TEMPLATE.contains(r"'\n'"));

        let back = Tokenizer::from_dir(&out).unwrap();
        assert_eq!(back.to_json().unwrap(), tok.to_json().unwrap());
        assert_eq!(back.eos_ids(), tok.eos_ids());
        assert_eq!(back.pad_id(), tok.pad_id());
        assert_eq!(back.vocab_size(), tok.vocab_size());
        assert_eq!(back.model_max_length(), 512);
        for text in corpus().iter().map(String::as_str).chain(["¿qué? 🦀\n  x"]) {
            assert_eq!(back.encode(text).unwrap(), tok.encode(text).unwrap());
        }
        // Saving the reloaded tokenizer writes the same files back.
        let again = dir.path().join("again");
        back.save_dir(&again).unwrap();
        for name in [TOKENIZER_FILE, TOKENIZER_CONFIG_FILE] {
            assert_eq!(
                fs::read(out.join(name)).unwrap(),
                fs::read(again.join(name)).unwrap()
            );
        }
        let from_file = Tokenizer::from_file(&out.join(TOKENIZER_FILE)).unwrap();
        assert_eq!(from_file.eos_ids(), tok.eos_ids());
        assert_eq!(from_file.pad_id(), tok.pad_id());
    }

    #[test]
    fn from_dir_reads_eos_and_pad_from_both_configs() {
        let tok = trained();
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(TOKENIZER_FILE), tok.to_json().unwrap()).unwrap();
        let (eot, start, end) = (
            tok.token_id(ENDOFTEXT).unwrap(),
            tok.token_id(IM_START).unwrap(),
            tok.token_id(IM_END).unwrap(),
        );
        // AddedToken objects as transformers writes them; eos ids as a list.
        fs::write(
            dir.path().join(TOKENIZER_CONFIG_FILE),
            json!({
                "eos_token": {"content": IM_END, "lstrip": false, "special": true},
                "pad_token": {"content": IM_START},
                "model_max_length": 1e30,
            })
            .to_string(),
        )
        .unwrap();
        fs::write(
            dir.path().join(GENERATION_CONFIG_FILE),
            json!({"eos_token_id": [eot, end], "pad_token_id": eot}).to_string(),
        )
        .unwrap();
        let loaded = Tokenizer::from_dir(dir.path()).unwrap();
        assert_eq!(loaded.eos_ids(), &[eot, end]);
        assert_eq!(loaded.pad_id(), start, "tokenizer_config's pad_token wins");
        assert_eq!(loaded.model_max_length(), usize::MAX);

        // A single eos id, a string eos token, no pad anywhere.
        fs::write(
            dir.path().join(TOKENIZER_CONFIG_FILE),
            json!({"eos_token": IM_END, "pad_token": null}).to_string(),
        )
        .unwrap();
        fs::write(
            dir.path().join(GENERATION_CONFIG_FILE),
            json!({"eos_token_id": eot}).to_string(),
        )
        .unwrap();
        let loaded = Tokenizer::from_dir(dir.path()).unwrap();
        assert_eq!(loaded.eos_ids(), &[eot, end]);
        assert_eq!(loaded.pad_id(), eot, "pad falls back to the first eos");

        // generation_config's pad_token_id when tokenizer_config has none.
        fs::write(
            dir.path().join(GENERATION_CONFIG_FILE),
            json!({"eos_token_id": end, "pad_token_id": start}).to_string(),
        )
        .unwrap();
        assert_eq!(Tokenizer::from_dir(dir.path()).unwrap().pad_id(), start);
    }

    fn load_err(dir: &Path) -> String {
        Tokenizer::from_dir(dir).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_file_and_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-such-dir");
        let err = load_err(&missing);
        assert!(
            err.contains("does not exist") && err.contains("no-such-dir"),
            "{err}"
        );

        let err = load_err(dir.path());
        assert!(
            err.contains("tokenizer.json") && err.contains("does not exist"),
            "{err}"
        );
        let err = Tokenizer::from_file(&dir.path().join(TOKENIZER_FILE))
            .unwrap_err()
            .to_string();
        assert!(err.contains("tokenizer.json does not exist"), "{err}");

        let tokenizer_path = dir.path().join(TOKENIZER_FILE);
        fs::write(&tokenizer_path, "{\"version\": \"1.0\", \"model\": ").unwrap();
        let err = load_err(dir.path());
        assert!(err.contains("tokenizer.json is not valid JSON"), "{err}");

        fs::write(&tokenizer_path, "{\"version\": \"1.0\", \"model\": 3}").unwrap();
        let err = load_err(dir.path());
        assert!(
            err.contains("tokenizer.json is not a valid Hugging Face tokenizer"),
            "{err}"
        );

        let tok = trained();
        fs::write(&tokenizer_path, tok.to_json().unwrap()).unwrap();
        let config_path = dir.path().join(TOKENIZER_CONFIG_FILE);
        fs::write(&config_path, r#"{"eos_token": "</s>"}"#).unwrap();
        let err = load_err(dir.path());
        assert!(
            err.contains("tokenizer_config.json")
                && err.contains("eos_token \"</s>\" is not in the tokenizer's vocabulary"),
            "{err}"
        );
        fs::write(&config_path, r#"{"eos_token": 7}"#).unwrap();
        let err = load_err(dir.path());
        assert!(err.contains("field eos_token is malformed"), "{err}");
        fs::write(&config_path, "{oops").unwrap();
        let err = load_err(dir.path());
        assert!(err.contains("tokenizer_config.json is not valid JSON"), "{err}");
        fs::remove_file(&config_path).unwrap();

        let generation_path = dir.path().join(GENERATION_CONFIG_FILE);
        fs::write(&generation_path, r#"{"eos_token_id": [1, 999999]}"#).unwrap();
        let err = load_err(dir.path());
        assert!(
            err.contains("generation_config.json")
                && err.contains("eos_token_id 999999 is outside the tokenizer's vocabulary"),
            "{err}"
        );
        fs::write(&generation_path, r#"{"eos_token_id": "x"}"#).unwrap();
        let err = load_err(dir.path());
        assert!(err.contains("field eos_token_id is malformed"), "{err}");
    }

    /// The fixture checkpoints made by `tests/fixtures/make_tiny_qwen2.py` with
    /// transformers (same tokenizer in both).
    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures");
    const FIXTURE_CHECKPOINTS: [&str; 2] = ["tiny-qwen2", "tiny-qwen2-tied"];

    fn reference(checkpoint: &str) -> Value {
        let path = format!("{FIXTURES}/{checkpoint}.reference.json");
        let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_json::from_str(&text).unwrap()
    }

    fn ids_of(value: &Value) -> Vec<u32> {
        serde_json::from_value(value.clone()).unwrap()
    }

    #[test]
    fn fixture_checkpoint_matches_hugging_face() {
        for checkpoint in FIXTURE_CHECKPOINTS {
            let reference = reference(checkpoint);
            let tok = Tokenizer::from_dir(Path::new(&format!("{FIXTURES}/{checkpoint}"))).unwrap();

            assert_eq!(
                tok.vocab_size() as u64,
                reference["config"]["tokenizer_size"].as_u64().unwrap()
            );
            for (token, id) in reference["special_tokens"].as_object().unwrap() {
                let id = id.as_u64().unwrap() as u32;
                assert_eq!(tok.token_id(token), Some(id), "{token}");
                assert!(tok.is_special(id), "{token}");
            }
            let eos = reference["eos_token_id"].as_u64().unwrap() as u32;
            let pad = reference["pad_token_id"].as_u64().unwrap() as u32;
            assert_eq!(tok.eos_ids(), &[eos]);
            assert_eq!(tok.pad_id(), pad);
            assert_eq!(tok.id_to_token(eos).as_deref(), Some(IM_END));

            let encode = reference["tokenizer"]["encode"].as_array().unwrap();
            assert!(!encode.is_empty());
            for case in encode {
                let text = case["text"].as_str().unwrap();
                let ids = tok.encode(text).unwrap();
                assert_eq!(ids, ids_of(&case["ids"]), "{checkpoint}: encode {text:?}");
                assert_eq!(tok.decode(&ids, false).unwrap(), text);
            }
            let decode = reference["tokenizer"]["decode"].as_array().unwrap();
            assert!(!decode.is_empty());
            for case in decode {
                let skip = case["skip_special_tokens"].as_bool().unwrap();
                let ids = ids_of(&case["ids"]);
                assert_eq!(
                    tok.decode(&ids, skip).unwrap(),
                    case["text"].as_str().unwrap(),
                    "{checkpoint}: decode {ids:?} skip_special_tokens={skip}"
                );
            }
            // The chat cases' rendered text, and the generation prompts.
            let generation = &reference["generation"];
            let prompts = reference["chat"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| (&c["text"], &c["ids"]))
                .chain(
                    generation["single"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .chain(generation["batched"].as_array().unwrap())
                        .map(|r| (&r["prompt_text"], &r["prompt_ids"])),
                );
            for (text, ids) in prompts {
                let text = text.as_str().unwrap();
                assert_eq!(tok.encode(text).unwrap(), ids_of(ids), "{checkpoint}: {text:?}");
            }
        }
    }

    #[test]
    fn fixture_checkpoint_save_dir_keeps_its_config() {
        let source = Path::new(FIXTURES).join(FIXTURE_CHECKPOINTS[0]);
        let tok = Tokenizer::from_dir(&source).unwrap();
        let dir = tempfile::tempdir().unwrap();
        tok.save_dir(dir.path()).unwrap();
        let read = |dir: &Path| -> Value {
            serde_json::from_str(&fs::read_to_string(dir.join(TOKENIZER_CONFIG_FILE)).unwrap()).unwrap()
        };
        let (original, written) = (read(&source), read(dir.path()));
        assert_eq!(written["chat_template"], original["chat_template"]);
        assert_eq!(written["tokenizer_class"], original["tokenizer_class"]);
        assert_eq!(
            written["model_max_length"].as_u64(),
            Some(tok.model_max_length() as u64)
        );

        let back = Tokenizer::from_dir(dir.path()).unwrap();
        assert_eq!(back.eos_ids(), tok.eos_ids());
        assert_eq!(back.pad_id(), tok.pad_id());
        for case in reference(FIXTURE_CHECKPOINTS[0])["tokenizer"]["encode"]
            .as_array()
            .unwrap()
        {
            let text = case["text"].as_str().unwrap();
            assert_eq!(back.encode(text).unwrap(), tok.encode(text).unwrap());
        }
    }

    #[test]
    fn split_on_specials_cuts_every_occurrence() {
        let mut out = Vec::new();
        split_on_specials("a<|im_end|><|im_start|>b<|im_end|>", SPECIALS, &mut out);
        assert_eq!(out, ["a", "b"]);
        out.clear();
        split_on_specials("<<x>>", &["<x>", "<<x>>"], &mut out);
        assert!(out.is_empty());
    }
}

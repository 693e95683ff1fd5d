//! Prompt templates: how a conversation becomes the text the model continues.
//!
//! The rendered prompt ends where the model's response begins; supervised
//! fine-tuning appends the response (and [`Template::end_of_turn`]) to it, and
//! sampling continues it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The message text.
    pub content: String,
}

impl Message {
    /// A message with the given role.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Message {
        Message {
            role: role.into(),
            content: content.into(),
        }
    }

    /// A `user` message.
    pub fn user(content: impl Into<String>) -> Message {
        Message::new("user", content)
    }

    /// A `system` message.
    pub fn system(content: impl Into<String>) -> Message {
        Message::new("system", content)
    }

    /// An `assistant` message.
    pub fn assistant(content: impl Into<String>) -> Message {
        Message::new("assistant", content)
    }
}

/// How messages are rendered into a prompt. Serialised (and parsed by
/// [`FromStr`], for the command line) as `"plain"` or `"chatml"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Template {
    /// The prompt text as it is: the demo's template, for a base model. The
    /// response is appended directly after the prompt, with no separator and
    /// no end-of-turn marker (the tokenizer's eos ends it).
    ///
    /// Several messages render as their contents, in order, joined by a blank
    /// line (`"\n\n"`); roles are dropped, so a single user message renders
    /// as exactly its content.
    #[default]
    Plain,
    /// Qwen's ChatML: each message as
    /// `<|im_start|>{role}\n{content}<|im_end|>\n`, then the generation prompt
    /// `<|im_start|>assistant\n`. This is `apply_chat_template(messages,
    /// add_generation_prompt=True)` with the plain ChatML template.
    ///
    /// No default system message is injected: Qwen2.5's own chat template adds
    /// `<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a
    /// helpful assistant.<|im_end|>\n` when the conversation has none; pass a
    /// [`Message::system`] to get that behaviour.
    #[serde(rename = "chatml")]
    ChatMl,
}

/// Opens a ChatML turn.
const IM_START: &str = "<|im_start|>";
/// Closes a ChatML turn.
const IM_END: &str = "<|im_end|>";

impl Template {
    /// All templates, for listing choices.
    pub const ALL: [Template; 2] = [Template::Plain, Template::ChatMl];

    /// The template's name, as serde and [`FromStr`] spell it.
    pub fn name(self) -> &'static str {
        match self {
            Template::Plain => "plain",
            Template::ChatMl => "chatml",
        }
    }

    /// The prompt for `messages`, ending where the assistant's response
    /// starts (for ChatML, after the generation prompt).
    pub fn render_prompt(&self, messages: &[Message]) -> String {
        match self {
            Template::Plain => {
                let contents: Vec<&str> = messages.iter().map(|m| m.content.as_str()).collect();
                contents.join("\n\n")
            }
            Template::ChatMl => {
                let mut out = String::new();
                for message in messages {
                    out.push_str(IM_START);
                    out.push_str(&message.role);
                    out.push('\n');
                    out.push_str(&message.content);
                    out.push_str(IM_END);
                    out.push('\n');
                }
                out.push_str(IM_START);
                out.push_str("assistant\n");
                out
            }
        }
    }

    /// The prompt for a single user message.
    pub fn render_user(&self, prompt: &str) -> String {
        self.render_prompt(&[Message::user(prompt)])
    }

    /// The text that closes the assistant's turn after its response, if the
    /// template has one: ChatML's `<|im_end|>` (a stop token of Qwen's
    /// instruct models; Hugging Face's template then writes a `"\n"` that the
    /// model never needs to generate). Plain has none: the response ends with
    /// the tokenizer's eos.
    pub fn end_of_turn(&self) -> Option<&'static str> {
        match self {
            Template::Plain => None,
            Template::ChatMl => Some(IM_END),
        }
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A template name that is neither `plain` nor `chatml`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown prompt template {0:?}: expected \"plain\" or \"chatml\"")]
pub struct UnknownTemplate(pub String);

impl FromStr for Template {
    type Err = UnknownTemplate;

    /// Parses `plain` or `chatml` (any case; `chat-ml` and `chat_ml` too).
    fn from_str(s: &str) -> Result<Template, UnknownTemplate> {
        match s.trim().to_ascii_lowercase().as_str() {
            "plain" => Ok(Template::Plain),
            "chatml" | "chat-ml" | "chat_ml" => Ok(Template::ChatMl),
            _ => Err(UnknownTemplate(s.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_is_the_text_as_is() {
        assert_eq!(Template::Plain.render_user("What is 2+2?\n"), "What is 2+2?\n");
        let messages = [Message::system("Be brief."), Message::user("Hi")];
        assert_eq!(Template::Plain.render_prompt(&messages), "Be brief.\n\nHi");
        assert_eq!(Template::Plain.render_prompt(&[]), "");
        assert_eq!(Template::Plain.end_of_turn(), None);
    }

    #[test]
    fn chatml_renders_turns_and_generation_prompt() {
        let messages = [Message::system("Be brief."), Message::user("Hi")];
        assert_eq!(
            Template::ChatMl.render_prompt(&messages),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n\
             <|im_start|>assistant\n"
        );
        assert_eq!(
            Template::ChatMl.render_user("2+2?"),
            "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(Template::ChatMl.end_of_turn(), Some("<|im_end|>"));
    }

    /// The `chat` cases of the fixture made by
    /// `tests/fixtures/make_tiny_qwen2.py`: transformers'
    /// `apply_chat_template(messages, tokenize=False, add_generation_prompt=True)`
    /// with the ChatML template, and the ids of that text.
    #[test]
    fn chatml_matches_hugging_face_fixture() {
        const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures");
        let path = format!("{FIXTURES}/tiny-qwen2.reference.json");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let reference: serde_json::Value = serde_json::from_str(&text).unwrap();
        let tokenizer =
            crate::tokenizer::Tokenizer::from_dir(std::path::Path::new(&format!("{FIXTURES}/tiny-qwen2")))
                .unwrap();
        let cases = reference["chat"].as_array().unwrap();
        assert!(!cases.is_empty());
        for case in cases {
            assert_eq!(case["add_generation_prompt"], true);
            let messages: Vec<Message> = serde_json::from_value(case["messages"].clone()).unwrap();
            let rendered = Template::ChatMl.render_prompt(&messages);
            assert_eq!(rendered, case["text"].as_str().unwrap());
            let ids: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
            assert_eq!(tokenizer.encode(&rendered).unwrap(), ids);
            if let [message] = messages.as_slice() {
                assert_eq!(Template::ChatMl.render_user(&message.content), rendered);
            }
        }
    }

    #[test]
    fn names_parse_and_serialise() {
        for template in Template::ALL {
            assert_eq!(template.to_string().parse::<Template>().unwrap(), template);
            let json = serde_json::to_string(&template).unwrap();
            assert_eq!(json, format!("\"{}\"", template.name()));
            assert_eq!(serde_json::from_str::<Template>(&json).unwrap(), template);
        }
        assert_eq!("ChatML".parse::<Template>().unwrap(), Template::ChatMl);
        let err = "llama".parse::<Template>().unwrap_err();
        assert!(err.to_string().contains("\"llama\""), "{err}");
        assert!(serde_json::from_str::<Template>("\"ChatMl\"").is_err());
    }

    #[test]
    fn message_serde() {
        let m: Message = serde_json::from_str(r#"{"role":"user","content":"hi"}"#).unwrap();
        assert_eq!(m, Message::user("hi"));
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"role":"user","content":"hi"}"#
        );
    }
}

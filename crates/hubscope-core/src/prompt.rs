//! A prompt → token ids, as transformers does it: plain text is encoded with the tokenizer's
//! special tokens (BOS where the model uses one); a chat prompt (optional system message, then
//! the user's) is rendered by the chat template with the generation prompt, and that text
//! already carries its special tokens.

use crate::error::{Error, Result};
use crate::text::{Message, Tokenizer};

/// What the user asked, before the tokenizer.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Prompt {
    pub text: String,
    /// Wrap `text` as a user message in the model's chat template.
    pub chat: bool,
    /// A system message (chat only).
    pub system: Option<String>,
}

/// The ids the model reads, and the text they encode.
#[derive(Debug, Clone)]
pub struct Encoded {
    pub ids: Vec<u32>,
    pub text: String,
}

impl Prompt {
    /// A chat prompt of one user message.
    pub fn chat(text: &str) -> Self {
        Prompt {
            text: text.into(),
            chat: true,
            system: None,
        }
    }

    /// The messages of a chat prompt (system first when given).
    pub fn messages(&self) -> Vec<Message> {
        let mut m = vec![];
        if let Some(s) = self.system.as_deref() {
            m.push(Message::new("system", s));
        }
        m.push(Message::new("user", &self.text));
        m
    }

    pub fn encode(&self, tokenizer: &Tokenizer) -> Result<Encoded> {
        if self.system.is_some() && !self.chat {
            return Err(Error::Invalid(
                "a system message needs a chat prompt".into(),
            ));
        }
        if self.chat {
            encode_chat(tokenizer, &self.messages())
        } else {
            encode_plain(tokenizer, &self.text)
        }
    }
}

/// Messages rendered by the chat template with the generation prompt; the rendered text
/// already carries its special tokens, so none are added.
pub fn encode_chat(tokenizer: &Tokenizer, messages: &[Message]) -> Result<Encoded> {
    let text = tokenizer.apply_chat_template(messages, true)?;
    non_empty(tokenizer.encode(&text, false)?, text)
}

/// Plain text with the tokenizer's special tokens (BOS where the model uses one).
pub fn encode_plain(tokenizer: &Tokenizer, text: &str) -> Result<Encoded> {
    non_empty(tokenizer.encode(text, true)?, text.to_string())
}

fn non_empty(ids: Vec<u32>, text: String) -> Result<Encoded> {
    if ids.is_empty() {
        return Err(Error::Invalid(
            "the prompt is empty: give some text (or ids) to continue".into(),
        ));
    }
    Ok(Encoded { ids, text })
}

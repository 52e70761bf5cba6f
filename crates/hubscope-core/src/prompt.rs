//! A prompt → token ids, as transformers does it: plain text is encoded with the tokenizer's
//! special tokens (BOS where the model uses one); a chat prompt (optional system message, then
//! the user's) is rendered by the chat template with the generation prompt, and that text
//! already carries its special tokens.

use crate::error::{Error, Result};
use crate::text::{Message, Tokenizer};

/// What the user asked, before the tokenizer.
#[derive(Debug, Clone, Default)]
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
        let text = if self.chat {
            tokenizer.apply_chat_template(&self.messages(), true)?
        } else {
            self.text.clone()
        };
        let ids = tokenizer.encode(&text, !self.chat)?;
        if ids.is_empty() {
            return Err(Error::Invalid(
                "the prompt is empty: give some text (or ids) to continue".into(),
            ));
        }
        Ok(Encoded { ids, text })
    }
}

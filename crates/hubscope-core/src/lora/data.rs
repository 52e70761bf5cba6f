//! Training data: chat JSONL (`{"messages": [...]}`) or alpaca JSONL, rendered with the
//! model's chat template into token ids and labels as transformers trains on them.

use super::train::Example;
use crate::error::{Error, Result};
use crate::text::{Message, Tokenizer};

/// Turn chat JSONL (`{"messages": [...]}`) or alpaca JSONL (`{"instruction", "input",
/// "output"}`) into messages; a bad line is an error naming its number.
pub fn parse_jsonl(text: &str) -> Result<Vec<Vec<Message>>> {
    let mut out = vec![];
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let bad = |m: &str| Error::Invalid(format!("data line {}: {m}", i + 1));
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| bad(&format!("invalid JSON: {e}")))?;
        let messages: Vec<Message> = if let Some(m) = v.get("messages") {
            serde_json::from_value(m.clone()).map_err(|e| {
                bad(&format!(
                    "`messages` must be a list of {{role, content}}: {e}"
                ))
            })?
        } else if let (Some(ins), Some(out_t)) = (
            v.get("instruction").and_then(|x| x.as_str()),
            v.get("output").and_then(|x| x.as_str()),
        ) {
            let input = v.get("input").and_then(|x| x.as_str()).unwrap_or("");
            let user = if input.is_empty() {
                ins.to_string()
            } else {
                format!("{ins}\n{input}")
            };
            let mut m = vec![];
            if let Some(sys) = v.get("system").and_then(|x| x.as_str()) {
                m.push(Message::new("system", sys));
            }
            m.push(Message::new("user", &user));
            m.push(Message::new("assistant", out_t));
            m
        } else {
            return Err(bad(
                "expected {\"messages\": [...]} or {\"instruction\", \"input\", \"output\"}",
            ));
        };
        if messages.last().map(|m| m.role.as_str()) != Some("assistant") || messages.len() < 2 {
            return Err(bad(
                "the last message must be the assistant's answer, after at least one other",
            ));
        }
        out.push(messages);
    }
    if out.is_empty() {
        return Err(Error::Invalid("the data file has no examples".into()));
    }
    Ok(out)
}

/// Render an example as transformers does for training: the whole conversation, with the
/// loss on the tokens after the prompt (all but the last message, plus the generation prompt).
pub fn render_example(tok: &Tokenizer, messages: &[Message]) -> Result<Example> {
    let text = tok.apply_chat_template(messages, false)?;
    let prompt = tok.apply_chat_template(&messages[..messages.len() - 1], true)?;
    let ids = tok.encode(&text, false)?;
    let p = tok.encode(&prompt, false)?.len();
    let labels = ids
        .iter()
        .enumerate()
        .map(|(i, &t)| if i < p { -100 } else { t as i64 })
        .collect();
    Ok(Example { ids, labels })
}

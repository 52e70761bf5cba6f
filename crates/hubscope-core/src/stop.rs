//! Stop strings, as the OpenAI API applies them: generation ends where one of them first
//! appears in the text, and the text returned stops just before it. While streaming, text
//! that could still be the beginning of a stop string is held back until it is decided.

/// The stop strings of one sequence and the text held back for them.
#[derive(Debug, Clone, Default)]
pub struct StopStrings {
    stops: Vec<String>,
    held: String,
}

/// What a piece of generated text releases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Released {
    /// Text that is certainly part of the output.
    pub text: String,
    /// A stop string was found: `text` ends just before it and generation ends.
    pub stopped: bool,
}

impl StopStrings {
    /// Empty strings are ignored (they would stop before the first token).
    pub fn new(stops: &[String]) -> Self {
        StopStrings {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            held: String::new(),
        }
    }

    /// Add generated text; release what can no longer become a stop string.
    pub fn push(&mut self, text: &str) -> Released {
        self.held.push_str(text);
        if let Some(at) = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min()
        {
            let text = self.held[..at].to_string();
            self.held.clear();
            return Released {
                text,
                stopped: true,
            };
        }
        // Keep the longest tail of the held text that begins some stop string.
        let keep = self
            .stops
            .iter()
            .map(|s| longest_suffix_prefix(&self.held, s))
            .max()
            .unwrap_or(0);
        let cut = self.held.len() - keep;
        let text = self.held[..cut].to_string();
        self.held.drain(..cut);
        Released {
            text,
            stopped: false,
        }
    }

    /// The end of generation: whatever is held is output after all.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

/// Length in bytes of the longest suffix of `text` that is a proper prefix of `stop`, cut at
/// character boundaries.
fn longest_suffix_prefix(text: &str, stop: &str) -> usize {
    let max = text.len().min(stop.len().saturating_sub(1));
    (1..=max)
        .rev()
        .find(|&n| {
            let start = text.len() - n;
            text.is_char_boundary(start) && stop.starts_with(&text[start..])
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (Vec<String>, bool, String) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut s = StopStrings::new(&stops);
        let mut out = vec![];
        for p in pieces {
            let r = s.push(p);
            out.push(r.text);
            if r.stopped {
                return (out, true, String::new());
            }
        }
        (out, false, s.finish())
    }

    #[test]
    fn text_stops_before_the_stop_string_across_pieces() {
        let (out, stopped, _) = run(&["\n\n"], &["Hello", " world\n", "\nmore"]);
        assert!(stopped);
        assert_eq!(out.concat(), "Hello world");
        // " world" is released only once the newline after it is decided.
        assert_eq!(out, vec!["Hello", " world", ""]);
    }

    #[test]
    fn a_false_start_is_released() {
        let (out, stopped, tail) = run(&["END"], &["the E", "ND", "x"]);
        assert!(stopped);
        assert_eq!(out.concat(), "the ");
        assert_eq!(tail, "");
        let (out, stopped, tail) = run(&["END"], &["the E", "nd", "!"]);
        assert!(!stopped);
        assert_eq!(out.concat() + &tail, "the End!");
        assert_eq!(out, vec!["the ", "End", "!"]);
    }

    #[test]
    fn the_earliest_stop_wins_and_held_text_is_given_at_the_end() {
        let (out, stopped, _) = run(&["world", "lo w"], &["hello world"]);
        assert!(stopped);
        assert_eq!(out.concat(), "hel");
        let (out, stopped, tail) = run(&["巴黎。"], &["首都是巴", "黎"]);
        assert!(!stopped);
        assert_eq!(out.concat(), "首都是");
        assert_eq!(tail, "巴黎");
        let (out, _, tail) = run(&[], &["a", "b"]);
        assert_eq!(out.concat() + &tail, "ab");
    }
}

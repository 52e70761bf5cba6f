//! The YAML the hand-off files are written in: block mappings of scalars and flow lists, every
//! string double-quoted with JSON's escapes (valid YAML), floats always with a point and, in
//! exponent form, a signed exponent (so YAML 1.1 readers such as PyYAML read them as floats),
//! and `#` comments that say where a value comes from.

/// A YAML document written top to bottom.
#[derive(Default)]
pub struct Doc {
    out: String,
    indent: usize,
}

/// A scalar or flow-list value.
pub enum Value {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    List(Vec<String>),
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(s.into())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(s)
    }
}
impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}
impl From<usize> for Value {
    fn from(v: usize) -> Self {
        Value::Int(v as i64)
    }
}
impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Value::Int(v as i64)
    }
}
impl From<Vec<String>> for Value {
    fn from(v: Vec<String>) -> Self {
        Value::List(v)
    }
}

fn quoted(s: &str) -> String {
    serde_json::Value::String(s.into()).to_string()
}

/// A float as YAML 1.1 and 1.2 both read it: `16.0`, `0.0001`, `1.0e-08`.
pub fn float(v: f64) -> String {
    if !v.is_finite() {
        return quoted(&v.to_string());
    }
    if v == 0.0 || (1e-4..1e15).contains(&v.abs()) {
        let s = format!("{v}");
        return if s.contains('.') { s } else { format!("{s}.0") };
    }
    let s = format!("{v:e}");
    let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
    let m = if m.contains('.') {
        m.to_string()
    } else {
        format!("{m}.0")
    };
    let e = e
        .strip_prefix('-')
        .map_or(format!("+{e}"), |e| format!("-{e}"));
    format!("{m}e{e}")
}

impl Doc {
    pub fn comment(&mut self, text: &str) -> &mut Self {
        for line in text.lines() {
            self.line(&format!("# {line}").trim_end().to_string());
        }
        self
    }

    pub fn blank(&mut self) -> &mut Self {
        self.out.push('\n');
        self
    }

    pub fn set(&mut self, key: &str, v: impl Into<Value>) -> &mut Self {
        let v = match v.into() {
            Value::Str(s) => quoted(&s),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => float(f),
            Value::Bool(b) => b.to_string(),
            Value::List(l) => format!(
                "[{}]",
                l.iter().map(|s| quoted(s)).collect::<Vec<_>>().join(", ")
            ),
        };
        self.line(&format!("{key}: {v}"));
        self
    }

    /// A nested mapping: `key:` then what `body` writes, indented.
    pub fn map(&mut self, key: &str, body: impl FnOnce(&mut Doc)) -> &mut Self {
        self.line(&format!("{key}:"));
        self.indent += 2;
        body(self);
        self.indent -= 2;
        self
    }

    fn line(&mut self, s: &str) {
        self.out.push_str(&" ".repeat(self.indent));
        self.out.push_str(s);
        self.out.push('\n');
    }

    pub fn finish(&self) -> Vec<u8> {
        self.out.clone().into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_read_as_floats_in_yaml_1_1() {
        assert_eq!(float(16.0), "16.0");
        assert_eq!(float(0.0), "0.0");
        assert_eq!(float(1e-4), "0.0001");
        assert_eq!(float(2e-5), "2.0e-5");
        assert_eq!(float(1.5e-8), "1.5e-8");
        assert_eq!(float(1e20), "1.0e+20");
    }

    #[test]
    fn strings_are_quoted_and_nested_maps_indented() {
        let mut d = Doc::default();
        d.comment("a note")
            .set("path", "a: b # c\n")
            .map("inner", |d| {
                d.set("n", 3usize).set("on", true);
            })
            .set("list", vec!["q_proj".to_string(), "v\"".to_string()]);
        assert_eq!(
            String::from_utf8(d.finish()).unwrap(),
            "# a note\npath: \"a: b # c\\n\"\ninner:\n  n: 3\n  on: true\nlist: [\"q_proj\", \"v\\\"\"]\n"
        );
    }
}

//! GGUF headers (llama.cpp's format), read from the start of the file alone: the metadata
//! (architecture, context length, quantization, tokenizer, chat template) and every tensor's
//! name, shape, ggml type and bytes. The caller hands in a prefix of the file; a prefix too
//! short to hold the whole header says how many bytes it needs, so remote files are read with
//! a bounded number of Range requests ([`read_gguf_header`]).

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};

use crate::error::{Error, Result};

const MAGIC: &[u8; 4] = b"GGUF";
/// Arrays longer than this are summarised (tokenizer vocabularies hold 150k strings).
const ARRAY_SHOWN: usize = 8;

/// The tensor types of ggml (`ggml_type`), with their block size and bytes per block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GgmlType(pub u32);

impl GgmlType {
    /// `(name, values per block, bytes per block)` as ggml defines them.
    fn info(self) -> Option<(&'static str, u64, u64)> {
        Some(match self.0 {
            0 => ("F32", 1, 4),
            1 => ("F16", 1, 2),
            2 => ("Q4_0", 32, 18),
            3 => ("Q4_1", 32, 20),
            6 => ("Q5_0", 32, 22),
            7 => ("Q5_1", 32, 24),
            8 => ("Q8_0", 32, 34),
            9 => ("Q8_1", 32, 36),
            10 => ("Q2_K", 256, 84),
            11 => ("Q3_K", 256, 110),
            12 => ("Q4_K", 256, 144),
            13 => ("Q5_K", 256, 176),
            14 => ("Q6_K", 256, 210),
            15 => ("Q8_K", 256, 292),
            16 => ("IQ2_XXS", 256, 66),
            17 => ("IQ2_XS", 256, 74),
            18 => ("IQ3_XXS", 256, 98),
            19 => ("IQ1_S", 256, 50),
            20 => ("IQ4_NL", 32, 18),
            21 => ("IQ3_S", 256, 110),
            22 => ("IQ2_S", 256, 82),
            23 => ("IQ4_XS", 256, 136),
            24 => ("I8", 1, 1),
            25 => ("I16", 1, 2),
            26 => ("I32", 1, 4),
            27 => ("I64", 1, 8),
            28 => ("F64", 1, 8),
            29 => ("IQ1_M", 256, 56),
            30 => ("BF16", 1, 2),
            34 => ("TQ1_0", 256, 54),
            35 => ("TQ2_0", 256, 66),
            39 => ("MXFP4", 32, 17),
            40 => ("NVFP4", 64, 36),
            41 => ("Q1_0", 128, 18),
            _ => return None,
        })
    }

    /// `(values per block, bytes per block)`.
    pub fn block(self) -> Option<(u64, u64)> {
        self.info().map(|(_, v, b)| (v, b))
    }

    pub fn name(self) -> String {
        self.info()
            .map_or_else(|| format!("type {}", self.0), |i| i.0.to_string())
    }

    /// Bytes of `values` values of this type (None: unknown type or a row not made of whole
    /// blocks).
    pub fn bytes(self, values: u64) -> Option<u64> {
        let (_, block, size) = self.info()?;
        (values % block == 0).then(|| values / block * size)
    }
}

/// `general.file_type` (llama.cpp's `llama_ftype`) as llama.cpp names it.
pub fn file_type_name(t: u64) -> String {
    let n = match t {
        0 => "all F32",
        1 => "mostly F16",
        2 => "mostly Q4_0",
        3 => "mostly Q4_1",
        7 => "mostly Q8_0",
        8 => "mostly Q5_0",
        9 => "mostly Q5_1",
        10 => "mostly Q2_K",
        11 => "mostly Q3_K_S",
        12 => "mostly Q3_K_M",
        13 => "mostly Q3_K_L",
        14 => "mostly Q4_K_S",
        15 => "mostly Q4_K_M",
        16 => "mostly Q5_K_S",
        17 => "mostly Q5_K_M",
        18 => "mostly Q6_K",
        19 => "mostly IQ2_XXS",
        20 => "mostly IQ2_XS",
        21 => "mostly Q2_K_S",
        22 => "mostly IQ3_XS",
        23 => "mostly IQ3_XXS",
        24 => "mostly IQ1_S",
        25 => "mostly IQ4_NL",
        26 => "mostly IQ3_S",
        27 => "mostly IQ3_M",
        28 => "mostly IQ2_S",
        29 => "mostly IQ2_M",
        30 => "mostly IQ4_XS",
        31 => "mostly IQ1_M",
        32 => "mostly BF16",
        36 => "mostly TQ1_0",
        37 => "mostly TQ2_0",
        38 => "mostly MXFP4 (MoE)",
        39 => "mostly NVFP4",
        40 => "mostly Q1_0",
        _ => return format!("file type {t}"),
    };
    n.to_string()
}

/// One tensor of the file.
#[derive(Debug, Clone, Serialize)]
pub struct GgufTensor {
    pub name: String,
    /// In PyTorch's order (outermost first): ggml lists `ne[0]`, the innermost, first.
    pub shape: Vec<u64>,
    #[serde(serialize_with = "type_name")]
    pub ggml_type: GgmlType,
    /// From the start of the data section.
    pub offset: u64,
    pub bytes: u64,
}

fn type_name<S: serde::Serializer>(t: &GgmlType, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&t.name())
}

impl GgufTensor {
    pub fn numel(&self) -> u64 {
        self.shape.iter().product()
    }
}

/// A parsed header.
#[derive(Debug, Clone)]
pub struct GgufHeader {
    pub file: String,
    pub version: u32,
    /// Every metadata value as JSON (arrays longer than a few items summarised as
    /// `{"type": …, "len": …, "first": […]}`), in file order.
    pub metadata: Vec<(String, Value)>,
    pub tensors: Vec<GgufTensor>,
    /// Header bytes: where the (aligned) data section starts.
    pub data_offset: u64,
}

/// The result of parsing a prefix of the file.
#[derive(Debug)]
pub enum Parsed {
    Header(Box<GgufHeader>),
    /// The prefix ends inside the header: at least this many bytes from the start are needed.
    NeedBytes(u64),
}

struct Cursor<'a> {
    file: &'a str,
    b: &'a [u8],
    at: usize,
    /// The file's size when known: lengths past it are corruption, not a short prefix.
    size: Option<u64>,
    /// Keep every array whole (a model's tokenizer) instead of summarising long ones.
    whole_arrays: bool,
}

/// Ran out of prefix (the caller reads more) or found a malformed header.
enum Stop {
    Short(u64),
    Bad(Error),
}

impl From<Error> for Stop {
    fn from(e: Error) -> Self {
        Stop::Bad(e)
    }
}

type Step<T> = std::result::Result<T, Stop>;

impl<'a> Cursor<'a> {
    fn bad(&self, message: impl Into<String>) -> Stop {
        Stop::Bad(Error::Gguf {
            file: self.file.to_string(),
            message: message.into(),
        })
    }

    fn take(&mut self, n: u64) -> Step<&'a [u8]> {
        let Some(end) = (self.at as u64).checked_add(n) else {
            return Err(self.bad(format!("a length at byte {} is impossibly large", self.at)));
        };
        if let Some(size) = self.size {
            if end > size {
                return Err(self.bad(format!(
                    "a length at byte {} runs past the end of the file ({size} bytes)",
                    self.at
                )));
            }
        }
        if end > self.b.len() as u64 {
            return Err(Stop::Short(end));
        }
        let s = &self.b[self.at..end as usize];
        self.at = end as usize;
        Ok(s)
    }

    fn u32(&mut self) -> Step<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }

    fn u64(&mut self) -> Step<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }

    fn string(&mut self) -> Step<String> {
        let n = self.u64()?;
        let at = self.at;
        let s = self.take(n)?;
        String::from_utf8(s.to_vec())
            .map_err(|_| self.bad(format!("string at byte {at} is not UTF-8")))
    }

    /// Past one value of metadata type `t`, checked as [`Self::value`] checks it but not kept
    /// (a vocabulary's 150k strings: no allocation each).
    fn skip(&mut self, t: u32, depth: usize) -> Step<()> {
        match t {
            0 | 1 | 7 => self.take(1).map(drop),
            2 | 3 => self.take(2).map(drop),
            4..=6 => self.take(4).map(drop),
            10..=12 => self.take(8).map(drop),
            8 => {
                let n = self.u64()?;
                let at = self.at;
                let s = self.take(n)?;
                std::str::from_utf8(s)
                    .map(drop)
                    .map_err(|_| self.bad(format!("string at byte {at} is not UTF-8")))
            }
            _ => self.value(t, depth).map(drop),
        }
    }

    /// One value of metadata type `t`.
    fn value(&mut self, t: u32, depth: usize) -> Step<Value> {
        Ok(match t {
            0 => json!(self.take(1)?[0]),
            1 => json!(self.take(1)?[0] as i8),
            2 => json!(u16::from_le_bytes(self.take(2)?.try_into().expect("2"))),
            3 => json!(i16::from_le_bytes(self.take(2)?.try_into().expect("2"))),
            4 => json!(self.u32()?),
            5 => json!(self.u32()? as i32),
            6 => json!(f32::from_le_bytes(self.take(4)?.try_into().expect("4"))),
            7 => json!(self.take(1)?[0] != 0),
            8 => json!(self.string()?),
            9 if depth < 2 => {
                let elem = self.u32()?;
                let len = self.u64()?;
                let mut first = vec![];
                for i in 0..len {
                    if self.whole_arrays || (i as usize) < ARRAY_SHOWN {
                        first.push(self.value(elem, depth + 1)?);
                    } else {
                        self.skip(elem, depth + 1)?;
                    }
                }
                if self.whole_arrays || len as usize <= ARRAY_SHOWN {
                    Value::Array(first)
                } else {
                    json!({"type": value_type_name(elem), "len": len, "first": first})
                }
            }
            10 => json!(self.u64()?),
            11 => json!(self.u64()? as i64),
            12 => json!(f64::from_le_bytes(self.take(8)?.try_into().expect("8"))),
            other => return Err(self.bad(format!("unknown metadata value type {other}"))),
        })
    }
}

fn value_type_name(t: u32) -> &'static str {
    match t {
        0 => "u8",
        1 => "i8",
        2 => "u16",
        3 => "i16",
        4 => "u32",
        5 => "i32",
        6 => "f32",
        7 => "bool",
        8 => "string",
        9 => "array",
        10 => "u64",
        11 => "i64",
        12 => "f64",
        _ => "unknown",
    }
}

/// Parse the header from `prefix`, the first bytes of `file` (`size`: the whole file's, when
/// known). A malformed header is an error naming the file and what is wrong.
pub fn parse(file: &str, prefix: &[u8], size: Option<u64>) -> Result<Parsed> {
    let mut c = Cursor {
        file,
        b: prefix,
        at: 0,
        size,
        whole_arrays: false,
    };
    match parse_inner(&mut c) {
        Ok(h) => Ok(Parsed::Header(Box::new(h))),
        Err(Stop::Short(n)) => Ok(Parsed::NeedBytes(n)),
        Err(Stop::Bad(e)) => Err(e),
    }
}

/// The header with every metadata array kept whole (the tokenizer's vocabulary and merges),
/// for loading the model: `prefix` holds at least the header of the `size`-byte file.
pub fn parse_whole(file: &str, prefix: &[u8], size: u64) -> Result<GgufHeader> {
    let mut c = Cursor {
        file,
        b: prefix,
        at: 0,
        size: Some(size),
        whole_arrays: true,
    };
    match parse_inner(&mut c) {
        Ok(h) => Ok(h),
        Err(Stop::Short(_)) => Err(Error::Gguf {
            file: file.to_string(),
            message: "the file ends inside its header".into(),
        }),
        Err(Stop::Bad(e)) => Err(e),
    }
}

fn parse_inner(c: &mut Cursor) -> Step<GgufHeader> {
    if c.take(4)? != MAGIC {
        return Err(c.bad("not a GGUF file (no GGUF magic)"));
    }
    let version = c.u32()?;
    if !(2..=3).contains(&version) {
        return Err(c.bad(format!("GGUF version {version} (hubscope reads 2 and 3)")));
    }
    let tensor_count = c.u64()?;
    let kv_count = c.u64()?;
    // Each entry takes at least a few bytes: counts past the file's size are corruption.
    let limit = c.size.unwrap_or(u64::MAX) / 8;
    if tensor_count > limit || kv_count > limit {
        return Err(c.bad(format!(
            "{tensor_count} tensors and {kv_count} metadata entries cannot fit in the file"
        )));
    }
    let mut metadata = Vec::with_capacity(kv_count.min(4096) as usize);
    for _ in 0..kv_count {
        let key = c.string()?;
        let t = c.u32()?;
        let v = c.value(t, 0)?;
        metadata.push((key, v));
    }
    let mut tensors = Vec::with_capacity(tensor_count.min(1 << 16) as usize);
    for _ in 0..tensor_count {
        let name = c.string()?;
        let n_dims = c.u32()?;
        if n_dims == 0 || n_dims > 8 {
            return Err(c.bad(format!("tensor `{name}` has {n_dims} dimensions")));
        }
        let mut dims = (0..n_dims).map(|_| c.u64()).collect::<Step<Vec<u64>>>()?;
        let ggml_type = GgmlType(c.u32()?);
        let offset = c.u64()?;
        let numel = dims
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d))
            .ok_or_else(|| c.bad(format!("tensor `{name}`: its shape overflows")))?;
        let bytes = ggml_type.bytes(numel).ok_or_else(|| {
            c.bad(format!(
                "tensor `{name}`: {} with {numel} values is not whole blocks of that type",
                ggml_type.name()
            ))
        })?;
        dims.reverse();
        tensors.push(GgufTensor {
            name,
            shape: dims,
            ggml_type,
            offset,
            bytes,
        });
    }
    let alignment = metadata
        .iter()
        .find(|(k, _)| k == "general.alignment")
        .and_then(|(_, v)| v.as_u64())
        .unwrap_or(32)
        .max(1);
    let data_offset = (c.at as u64).div_ceil(alignment).saturating_mul(alignment);
    let header = GgufHeader {
        file: c.file.to_string(),
        version,
        metadata,
        tensors,
        data_offset,
    };
    if let Some(size) = c.size {
        for t in &header.tensors {
            let end = data_offset.saturating_add(t.offset).saturating_add(t.bytes);
            if end > size {
                return Err(c.bad(format!(
                    "tensor `{}` ({} bytes at {}) runs past the end of the file ({size} bytes)",
                    t.name,
                    t.bytes,
                    data_offset + t.offset
                )));
            }
        }
    }
    Ok(header)
}

impl GgufHeader {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// `general.architecture` (`llama`, `qwen2`, …).
    pub fn architecture(&self) -> Option<&str> {
        self.get("general.architecture").and_then(Value::as_str)
    }

    /// An architecture-scoped number: `<arch>.<key>` (`qwen2.context_length`).
    pub fn arch_u64(&self, key: &str) -> Option<u64> {
        self.get(&format!("{}.{key}", self.architecture()?))
            .and_then(Value::as_u64)
    }

    /// The quantization as llama.cpp names it (`mostly Q4_K_M`).
    pub fn quantization(&self) -> Option<String> {
        self.get("general.file_type")
            .and_then(Value::as_u64)
            .map(file_type_name)
    }

    pub fn chat_template(&self) -> Option<&str> {
        self.get("tokenizer.chat_template").and_then(Value::as_str)
    }

    /// Parameters: every tensor's values.
    pub fn parameters(&self) -> u64 {
        self.tensors.iter().map(GgufTensor::numel).sum()
    }

    /// Tensors, values and bytes per ggml type.
    pub fn by_type(&self) -> BTreeMap<String, (usize, u64, u64)> {
        let mut out: BTreeMap<String, (usize, u64, u64)> = BTreeMap::new();
        for t in &self.tensors {
            let e = out.entry(t.ggml_type.name()).or_default();
            e.0 += 1;
            e.1 += t.numel();
            e.2 += t.bytes;
        }
        out
    }

    /// KV cache bytes per token at `bytes_per_value`, from the metadata (`block_count`,
    /// `attention.head_count_kv`, `attention.key_length`/`value_length` or
    /// `embedding_length / head_count`).
    pub fn kv_bytes_per_token(&self, bytes_per_value: u64) -> Option<u64> {
        let layers = self.arch_u64("block_count")?;
        let heads = self.arch_u64("attention.head_count")?;
        let kv_heads = self.arch_u64("attention.head_count_kv").unwrap_or(heads);
        let head_dim = || Some(self.arch_u64("embedding_length")? / heads.max(1));
        let k = self.arch_u64("attention.key_length").or_else(head_dim)?;
        let v = self.arch_u64("attention.value_length").or_else(head_dim)?;
        Some(layers * kv_heads * (k + v) * bytes_per_value)
    }
}

/// Whether a file name is a GGUF file's.
pub fn is_gguf(name: &str) -> bool {
    name.to_ascii_lowercase().ends_with(".gguf")
}

/// The GGUF file to read among a model's file `names`, or None when the model is not a GGUF
/// one (it has safetensors, or no GGUF file, and `file` names none). `file` picks one where
/// there are several (`--file`, the page's `file` key); `what` names the model in errors.
pub fn choose(
    names: &[String],
    file: Option<&str>,
    has_safetensors: bool,
    what: &str,
) -> Result<Option<String>> {
    let list = || {
        let g: Vec<&str> = names
            .iter()
            .filter(|n| is_gguf(n))
            .map(String::as_str)
            .collect();
        g.join(", ")
    };
    if let Some(f) = file.filter(|f| !f.is_empty()) {
        if !is_gguf(f) {
            return Ok(None);
        }
        return match names.iter().find(|n| *n == f) {
            Some(n) => Ok(Some(n.clone())),
            None => Err(Error::Invalid(format!(
                "{what}: no file `{f}` (GGUF files: {})",
                list()
            ))),
        };
    }
    let ggufs = names.iter().filter(|n| is_gguf(n)).count();
    match ggufs {
        _ if has_safetensors => Ok(None),
        0 => Ok(None),
        1 => Ok(names.iter().find(|n| is_gguf(n)).cloned()),
        n => Err(Error::Invalid(format!(
            "{what} holds {n} GGUF files; pick one with --file, in the page the GGUF file field ({})",
            list()
        ))),
    }
}

/// Reads byte ranges of one file (a Hub file by HTTP Range, a local file).
#[allow(async_fn_in_trait)]
pub trait RangeReader {
    type Error: From<Error>;
    /// Bytes `start..end` (end exclusive, clamped to the file's end).
    async fn read(&self, start: u64, end: u64) -> std::result::Result<Vec<u8>, Self::Error>;
}

/// A header read remotely: how many reads and bytes it took.
pub struct GgufRead {
    pub header: GgufHeader,
    pub reads: usize,
    pub bytes_read: u64,
}

/// First read: 1 MiB holds the header of most files without a big vocabulary.
const FIRST_READ: u64 = 1 << 20;
/// A header larger than this is refused (tokenizers of 256k tokens take about 8 MiB).
const MAX_HEADER: u64 = 256 << 20;

/// Read the header of `file` (`size` bytes when known) with a bounded number of reads: the
/// first 1 MiB, then only the missing bytes, at least doubling what is held each time.
pub async fn read_gguf_header<R: RangeReader>(
    reader: &R,
    file: &str,
    size: Option<u64>,
) -> std::result::Result<GgufRead, R::Error> {
    let mut buf = reader
        .read(0, size.map_or(FIRST_READ, |s| s.min(FIRST_READ)))
        .await?;
    let mut reads = 1;
    loop {
        match parse(file, &buf, size)? {
            Parsed::Header(header) => {
                return Ok(GgufRead {
                    header: *header,
                    reads,
                    bytes_read: buf.len() as u64,
                });
            }
            Parsed::NeedBytes(n) => {
                let have = buf.len() as u64;
                if n > MAX_HEADER || size.is_some_and(|s| have >= s) {
                    return Err(Error::Gguf {
                        file: file.into(),
                        message: format!(
                            "the header needs more than {} bytes",
                            n.min(size.unwrap_or(n))
                        ),
                    }
                    .into());
                }
                let mut end = n.max(have * 2);
                if let Some(s) = size {
                    end = end.min(s);
                }
                let more = reader.read(have, end).await?;
                if more.is_empty() {
                    return Err(Error::Gguf {
                        file: file.into(),
                        message: format!("the file ends at byte {have}, inside its header"),
                    }
                    .into());
                }
                buf.extend_from_slice(&more);
                reads += 1;
            }
        }
    }
}

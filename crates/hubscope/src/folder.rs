//! The native I/O adapter: a model folder in Hugging Face layout (config.json,
//! generation_config.json, tokenizer files, model.safetensors or shards + index), or a GGUF
//! file (which holds all of those in one).

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use hubscope_core::bundle::{TokenizerBytes, WeightBytes};
use hubscope_core::burnpack::BURNPACK_FILE;
use hubscope_core::gguf::{GgufHeader, Parsed, choose, is_gguf, parse, parse_whole};
use hubscope_core::gguf_model;
use hubscope_core::safetensors::{FileHeader, ShardIndex, header_len};
use hubscope_core::text::TOKENIZER_FILES;

pub struct ModelFolder {
    pub dir: PathBuf,
    /// The GGUF file the model is, when it is one (a `.gguf` path, or the one GGUF file of a
    /// folder without config.json): config, tokenizer and weights all come from it.
    pub gguf: Option<String>,
    /// For a GGUF file, the files of a Hugging Face folder its header stands for
    /// (`config.json`, `tokenizer.json`, `tokenizer_config.json`): read as if on disk, so every
    /// command (and `export`, which writes them out) treats both layouts alike.
    derived: HashMap<&'static str, Vec<u8>>,
}

impl ModelFolder {
    pub fn open(path: &str) -> Result<Self> {
        let p = PathBuf::from(path);
        if p.is_file() && is_gguf(path) {
            let dir = p.parent().map(PathBuf::from).unwrap_or_default();
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
            return Self::of_gguf(dir, name.unwrap_or_default());
        }
        let dir = p;
        if !dir.is_dir() {
            bail!("{path}: not a model folder (or a .gguf file)");
        }
        if !dir.join("config.json").is_file() {
            let mut names = vec![];
            for e in std::fs::read_dir(&dir).with_context(|| format!("{path}: cannot list"))? {
                names.push(e?.file_name().to_string_lossy().into_owned());
            }
            if let Some(g) = choose(&names, None, false, path)? {
                return Self::of_gguf(dir, g);
            }
            bail!(
                "{}: no config.json in this folder (and no .gguf file)",
                dir.join("config.json").display()
            );
        }
        Ok(ModelFolder {
            dir,
            gguf: None,
            derived: HashMap::new(),
        })
    }

    /// The GGUF file `name` of `dir`, its Hugging Face files derived from its header.
    fn of_gguf(dir: PathBuf, name: String) -> Result<Self> {
        let mut f = ModelFolder {
            dir,
            gguf: Some(name.clone()),
            derived: HashMap::new(),
        };
        let (config, tokenizer) = gguf_model::text_files(&f.gguf_header(&name)?)
            .with_context(|| f.path(&name).display().to_string())?;
        f.derived.insert("config.json", config);
        if let Some(t) = tokenizer {
            f.derived.insert("tokenizer.json", t.tokenizer_json);
            if let Some(c) = t.tokenizer_config {
                f.derived.insert("tokenizer_config.json", c);
            }
        }
        Ok(f)
    }

    /// A GGUF model's header with its tokenizer arrays whole, read from the file's start alone.
    fn gguf_header(&self, name: &str) -> Result<GgufHeader> {
        let p = self.path(name);
        let mut f = File::open(&p).with_context(|| format!("{}: cannot open", p.display()))?;
        let size = f.metadata()?.len();
        let mut prefix = vec![];
        let mut want = (1u64 << 20).min(size);
        loop {
            let have = prefix.len() as u64;
            prefix.resize(want as usize, 0);
            f.read_exact(&mut prefix[have as usize..])
                .with_context(|| format!("{}: cannot read", p.display()))?;
            match parse(name, &prefix, Some(size))? {
                Parsed::Header(h) => {
                    let end = (h.data_offset.min(size)) as usize;
                    return Ok(parse_whole(name, &prefix[..end.min(prefix.len())], size)?);
                }
                Parsed::NeedBytes(n) if n <= size && n > have => want = n.max(want * 2).min(size),
                Parsed::NeedBytes(_) => {
                    bail!("{}: the file ends inside its GGUF header", p.display())
                }
            }
        }
    }

    /// The folder, or the GGUF file, for messages.
    pub fn place(&self) -> String {
        match &self.gguf {
            Some(g) => self.path(g).display().to_string(),
            None => self.dir.display().to_string(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn read(&self, name: &str) -> Result<Vec<u8>> {
        if let Some(b) = self.derived.get(name) {
            return Ok(b.clone());
        }
        let p = self.path(name);
        std::fs::read(&p).with_context(|| format!("{}: cannot read", p.display()))
    }

    pub fn read_optional(&self, name: &str) -> Result<Option<Vec<u8>>> {
        if self.gguf.is_some() && !self.derived.contains_key(name) {
            // Only what the GGUF file stands for, never a stray file beside it.
            return Ok(None);
        }
        let p = self.path(name);
        if self.derived.contains_key(name) || p.is_file() {
            self.read(name).map(Some)
        } else {
            Ok(None)
        }
    }

    /// The tokenizer's files (`chat_template.jinja` and `chat_template.json` when present);
    /// None without tokenizer.json.
    pub fn tokenizer_bytes(&self) -> Result<Option<TokenizerBytes>> {
        let [json, config, jinja, processor] = TOKENIZER_FILES.map(|f| self.read_optional(f));
        let Some(tokenizer_json) = json? else {
            return Ok(None);
        };
        Ok(Some(TokenizerBytes {
            tokenizer_json,
            tokenizer_config: config?,
            chat_template_jinja: jinja?,
            chat_template_json: processor?,
        }))
    }

    /// The checkpoint's bytes: a GGUF file, burnpack, or every safetensors file (each header
    /// checked first, so a truncated or corrupt file is named before anything is read whole).
    /// `keep_blocks`: a GGUF file's linear weights may stay in their ggml blocks (generation);
    /// false where float weights are needed (export, training).
    pub fn weights(&self, keep_blocks: bool) -> Result<WeightBytes> {
        if let Some(g) = &self.gguf {
            return Ok(WeightBytes::Gguf {
                file: g.clone(),
                bytes: self.read(g)?,
                keep_blocks,
            });
        }
        if self.is_burnpack() {
            return Ok(WeightBytes::Burnpack(self.read(BURNPACK_FILE)?));
        }
        let mut files = vec![];
        for n in self.weight_files()? {
            self.read_header(&n)?;
            let bytes = self.read(&n)?;
            files.push((n, bytes));
        }
        Ok(WeightBytes::Safetensors(files))
    }

    /// The safetensors files of the checkpoint: the shards the index names, or the one file.
    pub fn weight_files(&self) -> Result<Vec<String>> {
        if let Some(index) = self.read_optional("model.safetensors.index.json")? {
            let index = ShardIndex::from_json(&index)?;
            let shards = index.shards();
            for s in &shards {
                if !self.path(s).is_file() {
                    bail!(
                        "{}: missing shard named by model.safetensors.index.json",
                        self.path(s).display()
                    );
                }
            }
            return Ok(shards);
        }
        if self.path("model.safetensors").is_file() {
            return Ok(vec!["model.safetensors".into()]);
        }
        bail!(
            "{}: no model.safetensors or model.safetensors.index.json",
            self.dir.display()
        )
    }

    /// A folder written by `export --format burnpack`: `model.bpk` and no safetensors.
    pub fn is_burnpack(&self) -> bool {
        self.path(BURNPACK_FILE).is_file()
            && !self.path("model.safetensors").is_file()
            && !self.path("model.safetensors.index.json").is_file()
    }

    /// Parse a safetensors header reading only its first `8 + n` bytes, never weight data.
    pub fn read_header(&self, name: &str) -> Result<(FileHeader, u64)> {
        let p = self.path(name);
        let mut f = File::open(&p).with_context(|| format!("{}: cannot open", p.display()))?;
        let size = f.metadata()?.len();
        let mut first8 = [0u8; 8];
        f.read_exact(&mut first8).map_err(|_| {
            anyhow::anyhow!(
                "{}: not a valid safetensors file: shorter than the 8-byte header length",
                p.display()
            )
        })?;
        let n = header_len(name, &first8)?;
        if 8 + n as u64 > size {
            bail!(
                "{}: not a valid safetensors file: header length {n} runs past the end of the file ({size} bytes)",
                p.display()
            );
        }
        let mut buf = vec![0u8; 8 + n];
        buf[..8].copy_from_slice(&first8);
        f.read_exact(&mut buf[8..])?;
        let header = FileHeader::parse(name, &buf, Some(size))?;
        Ok((header, 8 + n as u64))
    }
}

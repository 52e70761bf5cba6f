//! The native I/O adapter: a model folder in Hugging Face layout (config.json,
//! generation_config.json, tokenizer files, model.safetensors or shards + index).

use std::fs::File;
use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use hubscope_core::bundle::{TokenizerBytes, WeightBytes};
use hubscope_core::burnpack::BURNPACK_FILE;
use hubscope_core::safetensors::{FileHeader, ShardIndex, header_len};
use hubscope_core::text::TOKENIZER_FILES;

pub struct ModelFolder {
    pub dir: PathBuf,
}

impl ModelFolder {
    pub fn open(path: &str) -> Result<Self> {
        let dir = PathBuf::from(path);
        if !dir.is_dir() {
            bail!("{path}: not a model folder");
        }
        if !dir.join("config.json").is_file() {
            bail!(
                "{}: no config.json in this folder",
                dir.join("config.json").display()
            );
        }
        Ok(ModelFolder { dir })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn read(&self, name: &str) -> Result<Vec<u8>> {
        let p = self.path(name);
        std::fs::read(&p).with_context(|| format!("{}: cannot read", p.display()))
    }

    pub fn read_optional(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let p = self.path(name);
        if p.is_file() {
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

    /// The checkpoint's bytes: burnpack, or every safetensors file (each header checked
    /// first, so a truncated or corrupt file is named before anything is read whole).
    pub fn weights(&self) -> Result<WeightBytes> {
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

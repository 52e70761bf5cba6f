//! A checkpoint's tensors taken one at a time, in the order its files hold them: the load
//! report first (from headers alone), then each tensor's bytes converted to the compute dtype
//! (or kept in ggml blocks, or quantized to them) and placed on the device as soon as they
//! arrive, then the modules built from what was placed. The page streams a download through it
//! so that WebAssembly memory never holds a whole file beside the model; loading from whole
//! files (the binary, tests) goes through it too, so both take one path.

use std::collections::HashMap;

use burn::tensor::{Device, TensorData};

use crate::config::ModelConfig;
use crate::cpu::{BlockMatrix, Blocks};
use crate::dtype::WeightDtype;
use crate::error::{Error, Result};
use crate::ggml;
use crate::gguf::{GgmlType, GgufHeader, GgufTensor};
use crate::gguf_model::{family, hf_name, permute_rows, permuted_heads};
use crate::load::{
    Found, Placed, check_quantizable, match_tree, may_keep, on_flex, plan_load, quantize_one,
};
use crate::model::Model;
use crate::report::{LoadReport, StoredType};
use crate::safetensors::{FileHeader, StoredDtype, convert, safetensors_err};

/// One tensor to read: `start..end` of `file` (absolute offsets).
#[derive(Debug, Clone, PartialEq)]
pub struct Piece {
    pub file: String,
    pub tensor: String,
    pub start: u64,
    pub end: u64,
}

/// How a piece's bytes are stored.
#[derive(Debug, Clone, Copy)]
enum Stored {
    Safetensors(StoredDtype),
    /// A GGUF tensor; `heads`: llama.cpp permuted its q/k rows for this many heads.
    Ggml {
        ggml_type: GgmlType,
        heads: Option<usize>,
    },
}

/// The tensors of a checkpoint being placed on a device one by one.
pub struct Feed {
    config: ModelConfig,
    dtype: WeightDtype,
    device: Device,
    report: LoadReport,
    /// In file order: the first file's pieces by offset, then the next file's.
    pieces: Vec<Piece>,
    stored: Vec<Stored>,
    shapes: Vec<Vec<usize>>,
    /// Linear weights may stay in the blocks a GGUF file holds them in.
    keep_blocks: bool,
    placed: HashMap<String, Placed>,
    blocks: HashMap<String, Blocks>,
    done: Vec<bool>,
    /// Per file: how many of its bytes were taken, and the next of its pieces to complete.
    cursors: HashMap<String, (u64, usize)>,
    /// The bytes so far of a piece that spans chunks.
    partial: Vec<u8>,
}

impl Feed {
    /// The tensors of safetensors files (their headers, in the order the files are read).
    pub fn safetensors(
        config: ModelConfig,
        headers: &[FileHeader],
        dtype: impl Into<WeightDtype>,
        device: &Device,
    ) -> Result<Self> {
        let dtype = dtype.into();
        if let Some(q) = dtype.quant() {
            check_quantizable(q, device)?;
        }
        let report = plan_load(&config, headers)?;
        let mut rows = vec![];
        for (order, h) in headers.iter().enumerate() {
            for e in report.loaded().filter(|e| e.file == h.file) {
                let t = h.tensors.get(&e.tensor).ok_or_else(|| {
                    safetensors_err(&h.file, format!("tensor `{}` vanished", e.tensor))
                })?;
                let sd = StoredDtype::of(&h.file, &e.tensor, t.dtype)?;
                let (a, b) = t.data_offsets;
                let piece = Piece {
                    file: h.file.clone(),
                    tensor: e.tensor.clone(),
                    start: (h.data_start + a) as u64,
                    end: (h.data_start + b) as u64,
                };
                rows.push((order, piece, Stored::Safetensors(sd), e.shape.clone()));
            }
        }
        Ok(Self::new(config, dtype, device, report, rows, false))
    }

    /// The tensors of a GGUF file (its header) of a family hubscope runs from GGUF. With
    /// `keep_blocks`, on the CPU device in f32, linear weights of the types the block kernels
    /// read stay in their blocks (memory ≈ the file); everything else is dequantized.
    pub fn gguf(
        config: ModelConfig,
        file: &str,
        header: &GgufHeader,
        dtype: impl Into<WeightDtype>,
        device: &Device,
        keep_blocks: bool,
    ) -> Result<Self> {
        let dtype = dtype.into();
        if let Some(q) = dtype.quant() {
            check_quantizable(q, device)?;
        }
        let keep_blocks = (keep_blocks || dtype == WeightDtype::Stored)
            && dtype.compute() == crate::ComputeDtype::F32
            && on_flex(device);
        let (_, _, permuted) = family(header)?;
        let mut by_name: HashMap<String, &GgufTensor> = HashMap::new();
        let mut found = HashMap::new();
        for t in &header.tensors {
            let Some(name) = hf_name(&t.name) else {
                return Err(Error::GgufTensor {
                    file: file.to_string(),
                    tensor: t.name.clone(),
                    message: format!(
                        "not a tensor of the {} architecture as hubscope knows it",
                        header.architecture().unwrap_or_default()
                    ),
                });
            };
            // Checked before anything is read or built.
            ggml::check_readable(t.ggml_type, file, &t.name)?;
            found.insert(
                name.clone(),
                Found {
                    file: file.to_string(),
                    shape: t.shape.iter().map(|&d| d as usize).collect(),
                    stored: StoredType::Ggml(t.ggml_type),
                },
            );
            by_name.insert(name, t);
        }
        let report = match_tree(&config, found)?;
        let mut rows = vec![];
        for e in report.loaded() {
            let t = by_name[&e.tensor];
            let start = header.data_offset + t.offset;
            let heads = if permuted {
                permuted_heads(&config, &e.tensor)
            } else {
                None
            };
            let piece = Piece {
                file: file.to_string(),
                tensor: e.tensor.clone(),
                start,
                end: start + t.bytes,
            };
            let stored = Stored::Ggml {
                ggml_type: t.ggml_type,
                heads,
            };
            rows.push((0, piece, stored, e.shape.clone()));
        }
        Ok(Self::new(config, dtype, device, report, rows, keep_blocks))
    }

    fn new(
        config: ModelConfig,
        dtype: WeightDtype,
        device: &Device,
        report: LoadReport,
        mut rows: Vec<(usize, Piece, Stored, Vec<usize>)>,
        keep_blocks: bool,
    ) -> Self {
        rows.sort_by_key(|(order, p, _, _)| (*order, p.start));
        let n = rows.len();
        let (mut pieces, mut stored, mut shapes) = (vec![], vec![], vec![]);
        for (_, p, s, shape) in rows {
            pieces.push(p);
            stored.push(s);
            shapes.push(shape);
        }
        Feed {
            config,
            dtype,
            device: device.clone(),
            report,
            pieces,
            stored,
            shapes,
            keep_blocks,
            placed: HashMap::new(),
            blocks: HashMap::new(),
            done: vec![false; n],
            cursors: HashMap::new(),
            partial: vec![],
        }
    }

    /// The load report (what each checkpoint tensor becomes), known before any bytes.
    pub fn report(&self) -> &LoadReport {
        &self.report
    }

    /// What to read, in order.
    pub fn pieces(&self) -> &[Piece] {
        &self.pieces
    }

    /// Tensors placed so far, of all.
    pub fn progress(&self) -> (usize, usize) {
        (self.done.iter().filter(|d| **d).count(), self.done.len())
    }

    /// Piece `i`'s bytes: converted, or kept or quantized to blocks, and placed on the device.
    pub fn put(&mut self, i: usize, bytes: &[u8]) -> Result<()> {
        let p = self
            .pieces
            .get(i)
            .ok_or_else(|| Error::Invalid(format!("no tensor {i} to load")))?;
        if bytes.len() as u64 != p.end - p.start {
            return Err(safetensors_err(
                &p.file,
                format!(
                    "tensor `{}`: {} bytes given, the header says {}",
                    p.tensor,
                    bytes.len(),
                    p.end - p.start
                ),
            ));
        }
        if self.done[i] {
            return Err(Error::Invalid(format!(
                "tensor `{}` loaded twice",
                p.tensor
            )));
        }
        let shape = self.shapes[i].clone();
        let name = p.tensor.clone();
        // With `stored`, linear weights stay in the checkpoint's own type.
        let as_stored = self.dtype == WeightDtype::Stored && may_keep(&name);
        let mut compute = self.dtype.compute();
        let data = match self.stored[i] {
            Stored::Safetensors(sd) => {
                if as_stored {
                    compute = sd.as_compute();
                }
                convert(bytes, sd, compute, shape.clone())
            }
            Stored::Ggml { ggml_type, heads } => {
                let raw = match heads {
                    Some(h) => std::borrow::Cow::Owned(permute_rows(bytes, shape[0], h, false)),
                    None => std::borrow::Cow::Borrowed(bytes),
                };
                if self.keep_blocks
                    && may_keep(&name)
                    && shape.len() == 2
                    && crate::cpu::keeps(ggml_type, shape[1])
                {
                    let m = BlockMatrix {
                        ggml_type,
                        rows: shape[0],
                        cols: shape[1],
                        bytes: raw.into_owned(),
                    };
                    self.blocks.insert(name, std::sync::Arc::new(m));
                    self.done[i] = true;
                    return Ok(());
                }
                if as_stored && let Some(sd) = half_type(ggml_type) {
                    compute = sd.as_compute();
                    convert(&raw, sd, compute, shape.clone())
                } else {
                    let values = ggml::dequantize(ggml_type, &raw, &p.file, &p.tensor)?;
                    TensorData::new(values, shape.clone()).convert_dtype(compute.burn())
                }
            }
        };
        if let Some(q) = self.dtype.quant()
            && let Some(b) = quantize_one(&name, &data, q, self.config.tie_word_embeddings)?
        {
            self.blocks.insert(name, b);
        } else {
            self.placed
                .insert(name, Placed::new(data, compute, &self.device));
        }
        self.done[i] = true;
        Ok(())
    }

    /// The next bytes of `file` (its first chunk starts at byte 0; chunks come in order, and
    /// one piece's bytes may span several): each piece completed is put at once, the bytes
    /// between pieces (headers, tensors not loaded) are skipped.
    pub fn take(&mut self, file: &str, chunk: &[u8]) -> Result<()> {
        let (mut at, mut next) = match self.cursors.get(file) {
            Some(&c) => c,
            None => (0, self.first_of(file, 0)),
        };
        let mut rest = chunk;
        while !rest.is_empty() && next < self.pieces.len() {
            let (start, end) = (self.pieces[next].start, self.pieces[next].end);
            if at < start {
                let skip = ((start - at) as usize).min(rest.len());
                rest = &rest[skip..];
                at += skip as u64;
                continue;
            }
            if at != start + self.partial.len() as u64 {
                let p = &self.pieces[next];
                return Err(Error::Invalid(format!(
                    "{}: tensor `{}` overlaps the one before it",
                    p.file, p.tensor
                )));
            }
            let take = ((end - at) as usize).min(rest.len());
            if self.partial.is_empty() && take as u64 == end - start {
                self.put(next, &rest[..take])?;
            } else {
                if self.partial.is_empty() {
                    // Exactly one piece's room: no doubling growth past it.
                    self.partial.reserve_exact((end - start) as usize);
                }
                self.partial.extend_from_slice(&rest[..take]);
                if self.partial.len() as u64 == end - start {
                    let bytes = std::mem::take(&mut self.partial);
                    self.put(next, &bytes)?;
                }
            }
            rest = &rest[take..];
            at += take as u64;
            if at == end {
                next = self.first_of(file, next + 1);
            }
        }
        at += rest.len() as u64;
        self.cursors.insert(file.to_string(), (at, next));
        Ok(())
    }

    /// The first piece of `file` from index `from` on that is not placed yet (`pieces.len()`
    /// if none).
    fn first_of(&self, file: &str, from: usize) -> usize {
        (from..self.pieces.len())
            .find(|&i| self.pieces[i].file == file && !self.done[i])
            .unwrap_or(self.pieces.len())
    }

    /// The end of `file`: an error naming the tensor it ends inside, if it does.
    pub fn end_of(&mut self, file: &str) -> Result<()> {
        let at = self.cursors.get(file).map_or(0, |c| c.0);
        match self.first_of(file, 0) {
            i if i == self.pieces.len() => Ok(()),
            i => {
                let p = &self.pieces[i];
                Err(Error::Invalid(format!(
                    "{}: the file ends at byte {at}, inside or before tensor `{}` (bytes {}..{})",
                    p.file, p.tensor, p.start, p.end
                )))
            }
        }
    }

    /// Every piece from whole files given as (file name, bytes).
    pub fn put_whole(&mut self, files: &[(String, &[u8])]) -> Result<()> {
        for (file, bytes) in files {
            self.take(file, bytes)?;
            self.end_of(file)?;
        }
        Ok(())
    }

    /// The model, once every piece is placed.
    pub fn finish(self) -> Result<Model> {
        if let Some(i) = self.done.iter().position(|d| !d) {
            let p = &self.pieces[i];
            return Err(safetensors_err(
                &p.file,
                format!("tensor `{}` was never read", p.tensor),
            ));
        }
        Model::from_placed(
            self.config,
            self.placed,
            self.blocks,
            self.dtype.compute(),
            &self.device,
            self.report,
        )
    }
}

/// A GGUF tensor type that is a plain 16-bit float (kept as such with `--dtype stored`).
fn half_type(t: GgmlType) -> Option<StoredDtype> {
    match t {
        crate::quantize::F16 => Some(StoredDtype::F16),
        crate::quantize::BF16 => Some(StoredDtype::BF16),
        _ => None,
    }
}

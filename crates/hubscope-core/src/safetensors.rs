//! The safetensors format from bytes: headers (for `inspect` and the planner, no weight data),
//! shard indexes, the loadable stored dtypes and their conversion to a compute dtype, and
//! writing tensors back as files (one or shards + index). Used by loading, export and LoRA.

use std::collections::{BTreeMap, HashMap};

use burn::tensor::{DType, TensorData};
use half::{bf16, f16};
pub use safetensors::Dtype;
use safetensors::tensor::Metadata;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::OutFile;
use crate::dtype::ComputeDtype;
use crate::error::{Error, Result};

/// A stored dtype hubscope loads (the others are read in headers, and refused by the loader).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StoredDtype {
    F32,
    F16,
    BF16,
}

impl StoredDtype {
    /// The same type as a compute dtype (what `--dtype stored` keeps linear weights in).
    pub fn as_compute(self) -> ComputeDtype {
        match self {
            StoredDtype::F32 => ComputeDtype::F32,
            StoredDtype::F16 => ComputeDtype::F16,
            StoredDtype::BF16 => ComputeDtype::BF16,
        }
    }

    pub fn bytes(self) -> usize {
        match self {
            StoredDtype::F32 => 4,
            _ => 2,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            StoredDtype::F32 => "F32",
            StoredDtype::F16 => "F16",
            StoredDtype::BF16 => "BF16",
        }
    }
}

impl StoredDtype {
    /// The loadable dtype of a header's tensor; other dtypes are an error naming the tensor.
    pub fn of(file: &str, name: &str, dtype: Dtype) -> Result<StoredDtype> {
        match dtype {
            Dtype::F32 => Ok(StoredDtype::F32),
            Dtype::F16 => Ok(StoredDtype::F16),
            Dtype::BF16 => Ok(StoredDtype::BF16),
            other => Err(Error::UnsupportedDtype {
                file: file.into(),
                name: name.into(),
                dtype: format!("{other:?}"),
            }),
        }
    }
}

/// One tensor as a safetensors header describes it.
#[derive(Debug, Clone, Serialize)]
pub struct TensorHeader {
    pub file: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    /// Byte range of the data, relative to the start of the data section.
    pub data_offsets: (usize, usize),
}

/// The header of a safetensors file, parsed from its first `8 + n` bytes.
#[derive(Debug, Clone)]
pub struct FileHeader {
    pub file: String,
    /// `8 + n`: where the data section starts.
    pub data_start: usize,
    pub tensors: BTreeMap<String, TensorHeader>,
    pub data_len: usize,
}

/// Length `n` of the JSON header, from the first 8 bytes of a safetensors file.
pub fn header_len(file: &str, first8: &[u8]) -> Result<usize> {
    let bytes: [u8; 8] = first8
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| safetensors_err(file, "shorter than the 8-byte header length"))?;
    let n = u64::from_le_bytes(bytes);
    if n < 2 {
        return Err(safetensors_err(
            file,
            format!("header length {n}: too short for a JSON header"),
        ));
    }
    if n > 100_000_000 {
        return Err(safetensors_err(
            file,
            format!("header length {n} is implausibly large"),
        ));
    }
    Ok(n as usize)
}

pub(crate) fn safetensors_err(file: &str, message: impl Into<String>) -> Error {
    Error::Safetensors {
        file: file.to_string(),
        message: message.into(),
    }
}

impl FileHeader {
    /// Parse from bytes that hold at least the header (`8 + n` bytes; the rest is ignored).
    /// `file_size`, when known, is checked against what the header describes.
    pub fn parse(file: &str, bytes: &[u8], file_size: Option<u64>) -> Result<Self> {
        let n = header_len(file, bytes)?;
        let json = bytes.get(8..8 + n).ok_or_else(|| {
            safetensors_err(
                file,
                format!(
                    "header length {n} runs past the end of the file ({} bytes)",
                    bytes.len()
                ),
            )
        })?;
        let meta: Metadata = serde_json::from_slice(json)
            .map_err(|e| safetensors_err(file, format!("bad header JSON: {e}")))?;
        let mut tensors = BTreeMap::new();
        for (name, info) in meta.tensors() {
            let expect = info
                .shape
                .iter()
                .try_fold(1usize, |acc, &d| acc.checked_mul(d))
                .and_then(|e| e.checked_mul(info.dtype.bitsize()))
                .map(|bits| bits / 8);
            let (a, b) = info.data_offsets;
            if b < a || Some(b - a) != expect {
                return Err(safetensors_err(
                    file,
                    format!(
                        "tensor `{name}`: {} bytes of data for shape {:?} {:?}",
                        b.saturating_sub(a),
                        info.shape,
                        info.dtype
                    ),
                ));
            }
            tensors.insert(
                name.clone(),
                TensorHeader {
                    file: file.to_string(),
                    dtype: info.dtype,
                    shape: info.shape.clone(),
                    data_offsets: (a, b),
                },
            );
        }
        let data_len = meta.data_len();
        if let Some(size) = file_size {
            let need = (8 + n as u64).saturating_add(data_len as u64);
            if size < need {
                return Err(safetensors_err(
                    file,
                    format!("truncated: the header describes {need} bytes, the file has {size}"),
                ));
            }
        }
        Ok(FileHeader {
            file: file.to_string(),
            data_start: 8 + n,
            tensors,
            data_len,
        })
    }
}

/// `model.safetensors.index.json`: which shard holds each tensor.
#[derive(Debug, Clone, Deserialize)]
pub struct ShardIndex {
    #[serde(default)]
    pub metadata: Option<serde_json::Value>,
    pub weight_map: BTreeMap<String, String>,
}

impl ShardIndex {
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        serde_json::from_slice(bytes).map_err(|e| Error::json("model.safetensors.index.json", e))
    }
    /// Shard file names in order, each once.
    pub fn shards(&self) -> Vec<String> {
        let mut v: Vec<String> = self.weight_map.values().cloned().collect();
        v.sort();
        v.dedup();
        v
    }
}

/// Convert raw little-endian safetensors data to `TensorData` of the compute dtype.
pub fn convert(bytes: &[u8], from: StoredDtype, to: ComputeDtype, shape: Vec<usize>) -> TensorData {
    fn read<T>(bytes: &[u8], n: usize, f: impl Fn([u8; 2]) -> T) -> Vec<T> {
        bytes.chunks_exact(n).map(|c| f([c[0], c[1]])).collect()
    }
    let as_f32 = || -> Vec<f32> {
        match from {
            StoredDtype::F32 => bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            StoredDtype::F16 => read(bytes, 2, |b| f16::from_le_bytes(b).to_f32()),
            StoredDtype::BF16 => read(bytes, 2, |b| bf16::from_le_bytes(b).to_f32()),
        }
    };
    // The same type on a little-endian machine (x86, ARM, WebAssembly): the bytes copied as
    // they are into values of that type (so aligned as the kernels read them).
    if cfg!(target_endian = "little") && from.as_compute() == to {
        fn same<T: burn::tensor::Element + Default + Copy>(
            bytes: &[u8],
            shape: Vec<usize>,
        ) -> TensorData {
            let mut v = vec![T::default(); bytes.len() / std::mem::size_of::<T>()];
            // SAFETY: `v` holds exactly `bytes.len()` bytes (whole values: the header checked the
            // length against the shape), and every bit pattern is a value of these float types.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    bytes.as_ptr(),
                    v.as_mut_ptr() as *mut u8,
                    v.len() * std::mem::size_of::<T>(),
                )
            };
            TensorData::new(v, shape)
        }
        return match to {
            ComputeDtype::F32 => same::<f32>(bytes, shape),
            ComputeDtype::F16 => same::<f16>(bytes, shape),
            ComputeDtype::BF16 => same::<bf16>(bytes, shape),
        };
    }
    match (from, to) {
        (_, ComputeDtype::F32) => TensorData::new(as_f32(), shape),
        (StoredDtype::F16, ComputeDtype::F16) => {
            TensorData::new(read(bytes, 2, f16::from_le_bytes), shape)
        }
        (StoredDtype::BF16, ComputeDtype::BF16) => {
            TensorData::new(read(bytes, 2, bf16::from_le_bytes), shape)
        }
        // One half type to the other value by value (no f32 copy of the whole tensor).
        (StoredDtype::BF16, ComputeDtype::F16) => TensorData::new(
            read(bytes, 2, |b| f16::from_f32(bf16::from_le_bytes(b).to_f32())),
            shape,
        ),
        (StoredDtype::F16, ComputeDtype::BF16) => TensorData::new(
            read(bytes, 2, |b| bf16::from_f32(f16::from_le_bytes(b).to_f32())),
            shape,
        ),
        (_, ComputeDtype::F16) => TensorData::new(
            as_f32().into_iter().map(f16::from_f32).collect::<Vec<_>>(),
            shape,
        ),
        (_, ComputeDtype::BF16) => TensorData::new(
            as_f32().into_iter().map(bf16::from_f32).collect::<Vec<_>>(),
            shape,
        ),
    }
}

fn dtype_of(d: DType) -> Result<safetensors::Dtype> {
    match d {
        DType::F32 => Ok(safetensors::Dtype::F32),
        DType::F16 => Ok(safetensors::Dtype::F16),
        DType::BF16 => Ok(safetensors::Dtype::BF16),
        other => Err(Error::Invalid(format!(
            "cannot write dtype {other:?} to safetensors"
        ))),
    }
}

/// Safetensors the way `save_pretrained` writes them: `model.safetensors`, or
/// `model-0000N-of-0000M.safetensors` shards of at most `max_shard_bytes` (a tensor larger than
/// the limit gets a shard of its own) plus `model.safetensors.index.json`.
pub fn to_safetensors(
    tensors: &[(String, TensorData)],
    max_shard_bytes: u64,
) -> Result<Vec<OutFile>> {
    let mut shards: Vec<Vec<usize>> = vec![vec![]];
    let mut size = 0u64;
    for (i, (_, d)) in tensors.iter().enumerate() {
        let n = d.as_bytes().len() as u64;
        if size > 0 && size + n > max_shard_bytes {
            shards.push(vec![]);
            size = 0;
        }
        shards.last_mut().expect("one shard").push(i);
        size += n;
    }
    let total: u64 = tensors.iter().map(|(_, d)| d.as_bytes().len() as u64).sum();
    let count = shards.len();
    let mut files = vec![];
    let mut weight_map = BTreeMap::new();
    for (k, shard) in shards.iter().enumerate() {
        let name = if count == 1 {
            "model.safetensors".to_string()
        } else {
            format!("model-{:05}-of-{:05}.safetensors", k + 1, count)
        };
        let part: Vec<&(String, TensorData)> = shard.iter().map(|&i| &tensors[i]).collect();
        for (n, _) in &part {
            weight_map.insert(n.clone(), Value::String(name.clone()));
        }
        let bytes = serialize(&name, &part)?;
        files.push(OutFile { name, bytes });
    }
    if count > 1 {
        let index = json!({"metadata": {"total_size": total}, "weight_map": weight_map});
        files.push(OutFile {
            name: "model.safetensors.index.json".into(),
            bytes: serde_json::to_vec_pretty(&index).expect("json"),
        });
    }
    Ok(files)
}

/// One safetensors file (with PyTorch's `format: pt` metadata) of the given tensors.
pub fn serialize(file: &str, tensors: &[&(String, TensorData)]) -> Result<Vec<u8>> {
    let mut views = vec![];
    for (n, d) in tensors {
        let view = safetensors::tensor::TensorView::new(
            dtype_of(d.dtype())?,
            d.shape().to_vec(),
            d.as_bytes(),
        )
        .map_err(|e| safetensors_err(file, format!("{n}: {e}")))?;
        views.push((n.clone(), view));
    }
    let meta: HashMap<String, String> = [("format".to_string(), "pt".to_string())].into();
    safetensors::serialize(views, Some(meta)).map_err(|e| safetensors_err(file, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_length_must_hold_a_json_object() {
        for n in [0u64, 1, 100_000_001] {
            let e = header_len("x.safetensors", &n.to_le_bytes()).unwrap_err();
            assert!(e.to_string().contains("x.safetensors"), "{e}");
        }
        assert_eq!(header_len("x", &2u64.to_le_bytes()).unwrap(), 2);
        assert!(header_len("x", &[1, 2, 3]).is_err());
    }

    #[test]
    fn half_precision_storage_converts_exactly() {
        let vals = [1.0f32, -2.5, 0.099_975_586, 65504.0];
        let f16b: Vec<u8> = vals
            .iter()
            .flat_map(|v| f16::from_f32(*v).to_le_bytes())
            .collect();
        let bf16b: Vec<u8> = vals
            .iter()
            .flat_map(|v| bf16::from_f32(*v).to_le_bytes())
            .collect();
        let a = convert(&f16b, StoredDtype::F16, ComputeDtype::F32, vec![4])
            .try_to_vec::<f32>()
            .unwrap();
        assert_eq!(
            a,
            vals.iter()
                .map(|v| f16::from_f32(*v).to_f32())
                .collect::<Vec<_>>()
        );
        let b = convert(&bf16b, StoredDtype::BF16, ComputeDtype::F32, vec![4])
            .try_to_vec::<f32>()
            .unwrap();
        assert_eq!(
            b,
            vals.iter()
                .map(|v| bf16::from_f32(*v).to_f32())
                .collect::<Vec<_>>()
        );
        let c = convert(&bf16b, StoredDtype::BF16, ComputeDtype::BF16, vec![4])
            .try_to_vec::<bf16>()
            .unwrap();
        assert_eq!(c[1], bf16::from_f32(-2.5));
    }

    #[test]
    fn header_errors_name_the_file() {
        let e = FileHeader::parse("x.safetensors", &[1, 2, 3], None).unwrap_err();
        assert!(e.to_string().contains("x.safetensors"));
        let mut b = 100u64.to_le_bytes().to_vec();
        b.extend_from_slice(b"{}");
        let e = FileHeader::parse("x.safetensors", &b, None).unwrap_err();
        assert!(e.to_string().contains("runs past the end"), "{e}");
    }
}

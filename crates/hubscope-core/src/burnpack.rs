//! burn's burnpack format: what `hubscope export --format burnpack` writes and the loader
//! reads back (its tensor list doubles as a header for the load plan).

use std::collections::{BTreeMap, HashMap};

use burn::tensor::{Bytes, DType, TensorData};

use crate::error::{Error, Result};
use crate::safetensors::{Dtype, FileHeader, TensorHeader};

/// The file name of a burnpack checkpoint in a model folder.
pub const BURNPACK_FILE: &str = "model.bpk";

/// The same tensors as one burnpack file.
pub fn to_burnpack(tensors: Vec<(String, TensorData)>) -> Result<Vec<u8>> {
    let packed = tensors
        .into_iter()
        .map(|(name, d)| {
            let (bytes, shape, dtype) = d.into_parts();
            burn_pack::Tensor::new(name, dtype, shape, None, bytes)
        })
        .collect();
    let bytes = burn_pack::Writer::new(packed)
        .with_metadata("producer", "hubscope")
        .into_bytes()
        .map_err(|e| Error::Invalid(format!("burnpack: {e}")))?;
    Ok(bytes.to_vec())
}

/// Read a burnpack checkpoint: its tensor list as a header (for the load plan) and the data.
pub fn read_burnpack(
    file: &str,
    bytes: Vec<u8>,
) -> Result<(FileHeader, HashMap<String, TensorData>)> {
    let bad = |e: burn_pack::Error| Error::Safetensors {
        file: file.to_string(),
        message: format!("not a valid burnpack file: {e}"),
    };
    let reader = burn_pack::Reader::from_bytes(Bytes::from_bytes_vec(bytes)).map_err(bad)?;
    let mut tensors = BTreeMap::new();
    let mut data = HashMap::new();
    for t in reader.into_tensors().map_err(bad)? {
        let (name, dtype, shape, _, bytes) = t.into_parts().map_err(bad)?;
        let stored = match dtype {
            DType::F32 => Dtype::F32,
            DType::F16 => Dtype::F16,
            DType::BF16 => Dtype::BF16,
            other => {
                return Err(Error::UnsupportedDtype {
                    file: file.into(),
                    name,
                    dtype: format!("{other:?}"),
                });
            }
        };
        tensors.insert(
            name.clone(),
            TensorHeader {
                file: file.to_string(),
                dtype: stored,
                shape: shape.to_vec(),
                data_offsets: (0, bytes.len()),
            },
        );
        data.insert(name, TensorData::from_bytes(bytes, shape, dtype));
    }
    let header = FileHeader {
        file: file.to_string(),
        data_start: 0,
        tensors,
        data_len: 0,
    };
    Ok((header, data))
}

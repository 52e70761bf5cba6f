//! Any checkpoint from its headers alone, whatever its architecture: parameter counts, values
//! and bytes per stored dtype, and the module tree built from the tensor names, with runs of
//! identical numbered children (layers, experts) folded. Families hubscope runs have the exact
//! tree of `structure`; this view is for everything else.
//!
//! How tensors are counted:
//! - every tensor is a parameter, except known buffers (`rotary_emb.inv_freq`,
//!   `e_score_correction_bias`), which transformers registers as buffers, not parameters;
//! - packed 4-bit GPTQ/AWQ weights (`*.qweight`, I32) hold 8 values per element and count as
//!   those 8 parameters; their `qzeros`, `scales` and `g_idx`, and FP8 `weight_scale_inv` /
//!   `weight_scale` / `input_scale`, are quantization metadata: stored bytes, not parameters.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::safetensors::{Dtype, FileHeader};

/// What one stored tensor is, for counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TensorRole {
    Parameter,
    /// A buffer transformers keeps out of `parameters()`.
    Buffer,
    /// Scales, zero points and group indexes of quantized weights.
    QuantMeta,
}

/// The role of a tensor by its name and dtype, and how many model values it holds.
pub fn role(name: &str, dtype: Dtype, numel: u64) -> (TensorRole, u64) {
    let last = name.rsplit('.').next().unwrap_or(name);
    if name.ends_with("rotary_emb.inv_freq") || last == "e_score_correction_bias" {
        return (TensorRole::Buffer, numel);
    }
    match last {
        "qweight" if matches!(dtype, Dtype::I32 | Dtype::U32) => (TensorRole::Parameter, numel * 8),
        "qzeros" | "scales" | "g_idx" | "weight_scale_inv" | "weight_scale" | "input_scale" => {
            (TensorRole::QuantMeta, numel)
        }
        _ => (TensorRole::Parameter, numel),
    }
}

/// Totals of one stored dtype.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DtypeTotal {
    pub tensors: usize,
    /// Model values held (packed int4: 8 per I32 element).
    pub values: u64,
    pub bytes: u64,
}

/// One tensor in the tree.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TensorLeaf {
    pub name: String,
    pub shape: Vec<usize>,
    pub dtype: String,
    pub role: TensorRole,
}

/// A module of the tree: its tensors and its children, in name order (numbered children in
/// numeric order).
#[derive(Debug, Clone, Default, Serialize)]
pub struct NameNode {
    pub name: String,
    pub tensors: Vec<TensorLeaf>,
    pub children: Vec<NameNode>,
    /// Parameters in this module and below.
    pub parameters: u64,
}

/// A checkpoint read from its headers.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// What transformers' `sum(p.numel() for p in model.parameters())` counts.
    pub parameters: u64,
    pub buffers: u64,
    pub quant_meta: u64,
    pub by_dtype: BTreeMap<String, DtypeTotal>,
    pub tree: NameNode,
}

fn insert(node: &mut NameNode, path: &[&str], leaf: TensorLeaf, params: u64) {
    node.parameters += params;
    match path {
        [] | [_] => node.tensors.push(leaf),
        [first, rest @ ..] => {
            let i = match node.children.iter().position(|c| c.name == *first) {
                Some(i) => i,
                None => {
                    node.children.push(NameNode {
                        name: first.to_string(),
                        ..Default::default()
                    });
                    node.children.len() - 1
                }
            };
            insert(&mut node.children[i], rest, leaf, params);
        }
    }
}

fn sort(node: &mut NameNode) {
    node.children.sort_by(
        |a, b| match (a.name.parse::<u64>(), b.name.parse::<u64>()) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            _ => a.name.cmp(&b.name),
        },
    );
    node.tensors.sort_by(|a, b| a.name.cmp(&b.name));
    node.children.iter_mut().for_each(sort);
}

impl Summary {
    fn new() -> Self {
        Summary {
            parameters: 0,
            buffers: 0,
            quant_meta: 0,
            by_dtype: BTreeMap::new(),
            tree: NameNode::default(),
        }
    }

    /// Count one stored tensor and place it in the tree by its dotted name.
    fn add(
        &mut self,
        name: &str,
        shape: Vec<usize>,
        dtype: String,
        bytes: u64,
        role: TensorRole,
        values: u64,
    ) {
        match role {
            TensorRole::Parameter => self.parameters += values,
            TensorRole::Buffer => self.buffers += values,
            TensorRole::QuantMeta => self.quant_meta += values,
        }
        let d = self.by_dtype.entry(dtype.clone()).or_default();
        d.tensors += 1;
        d.values += values;
        d.bytes += bytes;
        let path: Vec<&str> = name.split('.').collect();
        let leaf = TensorLeaf {
            name: path.last().copied().unwrap_or_default().to_string(),
            shape,
            dtype,
            role,
        };
        let params = if role == TensorRole::Parameter {
            values
        } else {
            0
        };
        insert(&mut self.tree, &path, leaf, params);
    }
}

/// Count and arrange every tensor of the headers.
pub fn summarize(headers: &[FileHeader]) -> Summary {
    let mut s = Summary::new();
    for h in headers {
        for (name, t) in &h.tensors {
            let numel = t.shape.iter().map(|&d| d as u64).product::<u64>();
            let (role, values) = role(name, t.dtype, numel);
            let bytes = (t.data_offsets.1 - t.data_offsets.0) as u64;
            s.add(
                name,
                t.shape.clone(),
                t.dtype.to_string(),
                bytes,
                role,
                values,
            );
        }
    }
    sort(&mut s.tree);
    s
}

/// LoRA's trainable parameters at rank `r` on every linear layer of the decoder layers, as
/// PEFT's `target_modules="all-linear"` counts them: `r × (in + out)` for each 2-D float
/// `*.weight` under a numbered layer (not the output head, not the embeddings), except a
/// DeepSeek-style top-k router (a module with an `e_score_correction_bias`), which is not an
/// `nn.Linear`. Quantized weights (GPTQ `qweight`) are not counted.
pub fn lora_parameters(headers: &[FileHeader], r: usize) -> u64 {
    let routers: std::collections::HashSet<&str> = headers
        .iter()
        .flat_map(|h| h.tensors.keys())
        .filter_map(|n| n.strip_suffix(".e_score_correction_bias"))
        .collect();
    let router = |module: &str| routers.contains(module);
    headers
        .iter()
        .flat_map(|h| h.tensors.iter())
        .filter(|(name, t)| {
            let Some(module) = name.strip_suffix(".weight") else {
                return false;
            };
            t.shape.len() == 2
                && t.dtype != Dtype::I32
                && module.split('.').any(|p| p.parse::<u64>().is_ok())
                && !router(module)
        })
        .map(|(_, t)| (r * (t.shape[0] + t.shape[1])) as u64)
        .sum()
}

/// How a safetensors checkpoint's header-only view is built.
#[derive(Debug, Clone)]
pub enum View {
    /// A family hubscope runs, in float weights: transformers' exact module tree.
    Runs(Box<crate::ModelConfig>),
    /// Any other architecture, or a quantized checkpoint (`quantized`: its method): the tree
    /// from the tensor names.
    Names {
        model_type: String,
        quantized: Option<String>,
    },
}

/// Decide the view of a checkpoint from config.json and its headers (natively and in the page).
pub fn view(config_json: &[u8], headers: &[FileHeader]) -> crate::Result<View> {
    let config = match crate::ModelConfig::from_json(config_json) {
        Ok(c) => c,
        Err(crate::Error::UnsupportedModelType(t)) => {
            return Ok(View::Names {
                model_type: t,
                quantized: None,
            });
        }
        Err(e) => return Err(e),
    };
    Ok(match quantization(config_json, headers) {
        Some(q) => View::Names {
            model_type: config.model_type.clone(),
            quantized: Some(q),
        },
        None => View::Runs(Box::new(config)),
    })
}

/// How a safetensors checkpoint is quantized: config.json's `quantization_config.quant_method`
/// (gptq, awq, fp8, …), or "quantized" where tensors carry quantization metadata without one;
/// None for plain float weights. Such a checkpoint is shown from its tensor names even in a
/// family hubscope runs (its modules are not transformers' `Linear`).
pub fn quantization(config_json: &[u8], headers: &[FileHeader]) -> Option<String> {
    let raw: serde_json::Value = serde_json::from_slice(config_json).ok()?;
    if let Some(m) = raw["quantization_config"]["quant_method"].as_str() {
        return Some(m.to_string());
    }
    let meta = headers
        .iter()
        .flat_map(|h| h.tensors.iter())
        .any(|(name, t)| role(name, t.dtype, 0).0 == TensorRole::QuantMeta);
    meta.then(|| "quantized".to_string())
}

/// The same for a GGUF file: every tensor is a parameter, quantized blocks counted as the
/// values they hold; dtypes are ggml's type names (`Q4_K`, `F16`).
pub fn summarize_gguf(h: &crate::gguf::GgufHeader) -> Summary {
    let mut s = Summary::new();
    for t in &h.tensors {
        let shape = t.shape.iter().map(|&d| d as usize).collect();
        s.add(
            &t.name,
            shape,
            t.ggml_type.name(),
            t.bytes,
            TensorRole::Parameter,
            t.numel(),
        );
    }
    sort(&mut s.tree);
    s
}

/// A mixture-of-experts checkpoint's experts, from tensor names (`….experts.<i>.…`).
#[derive(Debug, Clone, Serialize)]
pub struct Experts {
    /// Expert modules per MoE layer.
    pub per_layer: usize,
    /// Parameters in all experts.
    pub parameters: u64,
    /// Parameters one token runs through with `top_k` experts per layer: all but the experts,
    /// plus `top_k / per_layer` of them.
    pub active_per_token: u64,
}

/// The experts of the checkpoint, if it has any; `top_k` is the config's
/// `num_experts_per_tok`.
pub fn experts(headers: &[FileHeader], total: u64, top_k: usize) -> Option<Experts> {
    let mut ids: BTreeMap<&str, std::collections::BTreeSet<&str>> = BTreeMap::new();
    let mut params = 0u64;
    for h in headers {
        for (name, t) in &h.tensors {
            let Some((layer, rest)) = name.split_once(".experts.") else {
                continue;
            };
            let Some(id) = rest.split('.').next().filter(|i| i.parse::<u64>().is_ok()) else {
                continue;
            };
            let numel = t.shape.iter().map(|&d| d as u64).product::<u64>();
            let (role, values) = role(name, t.dtype, numel);
            if role == TensorRole::Parameter {
                params += values;
            }
            ids.entry(layer).or_default().insert(id);
        }
    }
    let per_layer = ids.values().map(|s| s.len()).max()?;
    let top_k = top_k.clamp(1, per_layer) as u64;
    let idle = params - params * top_k / per_layer as u64;
    Some(Experts {
        per_layer,
        parameters: params,
        active_per_token: total - idle,
    })
}

/// Two subtrees with the same names, shapes and dtypes everywhere (numbers aside at the top).
fn same_shape(a: &NameNode, b: &NameNode) -> bool {
    a.tensors == b.tensors
        && a.children.len() == b.children.len()
        && a.children
            .iter()
            .zip(&b.children)
            .all(|(x, y)| x.name == y.name && same_shape(x, y))
}

/// A child as shown: its name, `(N)` for a numbered one, and a run of identical numbered
/// children as one entry `(first-last): K x`.
pub struct Shown<'a> {
    pub label: String,
    pub node: &'a NameNode,
    pub count: usize,
}

/// The children of `node`, runs of identical numbered siblings folded.
pub fn shown_children(node: &NameNode) -> Vec<Shown<'_>> {
    let mut out: Vec<Shown<'_>> = vec![];
    let mut i = 0;
    while i < node.children.len() {
        let c = &node.children[i];
        let mut j = i + 1;
        if c.name.parse::<u64>().is_ok() {
            while j < node.children.len()
                && node.children[j].name.parse::<u64>().is_ok()
                && same_shape(c, &node.children[j])
            {
                j += 1;
            }
        }
        let count = j - i;
        let label = if count > 1 {
            format!("({}-{}): {count} x", c.name, node.children[j - 1].name)
        } else if c.name.parse::<u64>().is_ok() {
            format!("({})", c.name)
        } else {
            c.name.clone()
        };
        out.push(Shown {
            label,
            node: c,
            count,
        });
        i = j;
    }
    out
}

/// The tree as text, two spaces per level, each module with its parameter count and each
/// tensor with its shape and dtype; `max_depth` limits how deep it goes.
pub fn render(root: &NameNode, max_depth: usize) -> String {
    fn walk(
        out: &mut String,
        node: &NameNode,
        label: &str,
        count: usize,
        depth: usize,
        max: usize,
    ) {
        let pad = "  ".repeat(depth);
        let params = if count > 1 {
            format!(
                "{} params each, {} in all",
                crate::units::group_digits(node.parameters),
                crate::units::group_digits(node.parameters * count as u64)
            )
        } else {
            format!("{} params", crate::units::group_digits(node.parameters))
        };
        out.push_str(&format!("{pad}{label}  # {params}\n"));
        if depth >= max {
            return;
        }
        for t in &node.tensors {
            let note = match t.role {
                TensorRole::Parameter => String::new(),
                TensorRole::Buffer => " (buffer)".into(),
                TensorRole::QuantMeta => " (quantization metadata)".into(),
            };
            out.push_str(&format!(
                "{pad}  {} {:?} {}{note}\n",
                t.name, t.shape, t.dtype
            ));
        }
        for c in shown_children(node) {
            walk(out, c.node, &c.label, c.count, depth + 1, max);
        }
    }
    let mut out = String::new();
    for c in shown_children(root) {
        walk(&mut out, c.node, &c.label, c.count, 0, max_depth);
    }
    for t in &root.tensors {
        out.push_str(&format!("{} {:?} {}\n", t.name, t.shape, t.dtype));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_and_meta_tensors_are_counted_as_documented() {
        assert_eq!(
            role("a.qweight", Dtype::I32, 10),
            (TensorRole::Parameter, 80)
        );
        assert_eq!(
            role("a.scales", Dtype::F16, 10),
            (TensorRole::QuantMeta, 10)
        );
        assert_eq!(
            role("m.gate.e_score_correction_bias", Dtype::F32, 4),
            (TensorRole::Buffer, 4)
        );
        assert_eq!(
            role("a.weight", Dtype::F8_E4M3, 10),
            (TensorRole::Parameter, 10)
        );
    }
}

//! The module tree of a model, derived from its config alone: names, classes, parameter
//! shapes. The loader takes tensors by these names, `inspect` prints it the way PyTorch
//! prints the transformers model, and the memory planner counts from it.

use crate::config::{Activation, Family, ModelConfig};
use crate::layout::layer_linears;

/// One parameter: its checkpoint name and shape.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamSpec {
    /// Full checkpoint name, e.g. `model.layers.0.self_attn.q_proj.weight`.
    pub path: String,
    pub shape: Vec<usize>,
    /// Set when the parameter is the same tensor as another (tied `lm_head.weight`).
    pub tied_to: Option<String>,
}

impl ParamSpec {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// One child line of a printed module (see [`ModuleNode::shown_children`]).
pub struct Shown<'a> {
    pub label: String,
    pub node: &'a ModuleNode,
    pub count: usize,
}

/// A module as PyTorch sees it: class name, `extra_repr`, own parameters, children.
#[derive(Debug, Clone)]
pub struct ModuleNode {
    /// Attribute name under the parent (`q_proj`); the index for list items; "" for the root.
    pub name: String,
    /// Full dotted path (`model.layers.0.self_attn`); "" for the root.
    pub path: String,
    pub class: String,
    pub extra_repr: String,
    pub params: Vec<ParamSpec>,
    pub children: Vec<ModuleNode>,
    /// `nn.ModuleList`: printed with repeated items folded (`(0-23): 24 x ...`).
    pub is_list: bool,
}

impl ModuleNode {
    fn new(
        name: &str,
        parent: &str,
        class: impl Into<String>,
        extra_repr: impl Into<String>,
    ) -> Self {
        ModuleNode {
            name: name.to_string(),
            path: join(parent, name),
            class: class.into(),
            extra_repr: extra_repr.into(),
            params: vec![],
            children: vec![],
            is_list: false,
        }
    }

    fn param(mut self, name: &str, shape: Vec<usize>) -> Self {
        self.params.push(ParamSpec {
            path: join(&self.path, name),
            shape,
            tied_to: None,
        });
        self
    }

    fn child(mut self, c: ModuleNode) -> Self {
        self.children.push(c);
        self
    }

    /// Every parameter below this node, in module order (PyTorch's `named_parameters` order).
    pub fn all_params(&self) -> Vec<&ParamSpec> {
        let mut out: Vec<&ParamSpec> = self.params.iter().collect();
        for c in &self.children {
            out.extend(c.all_params());
        }
        out
    }

    /// Parameter count, each tied parameter counted once (as `model.parameters()` does).
    pub fn num_params(&self) -> usize {
        self.all_params()
            .iter()
            .filter(|p| p.tied_to.is_none())
            .map(|p| p.numel())
            .sum()
    }

    /// The children as PyTorch prints them: each with its label (`(q_proj): `, `(0): `, or
    /// `(0-23): 24 x ` for a run of identical items of a `ModuleList`) and how many items it
    /// stands for.
    pub fn shown_children(&self) -> Vec<Shown<'_>> {
        if !self.is_list {
            return self
                .children
                .iter()
                .map(|c| Shown {
                    label: format!("({}): ", c.name),
                    node: c,
                    count: 1,
                })
                .collect();
        }
        let reprs: Vec<String> = self.children.iter().map(torch_repr).collect();
        let mut out = vec![];
        let mut i = 0;
        while i < reprs.len() {
            let mut j = i;
            while j + 1 < reprs.len() && reprs[j + 1] == reprs[i] {
                j += 1;
            }
            let label = if i == j {
                format!("({i}): ")
            } else {
                format!("({i}-{j}): {} x ", j - i + 1)
            };
            out.push(Shown {
                label,
                node: &self.children[i],
                count: j - i + 1,
            });
            i = j + 1;
        }
        out
    }

    /// Find a node by its full path.
    pub fn find(&self, path: &str) -> Option<&ModuleNode> {
        if self.path == path {
            return Some(self);
        }
        self.children.iter().find_map(|c| c.find(path))
    }
}

fn join(parent: &str, name: &str) -> String {
    match (parent.is_empty(), name.is_empty()) {
        (true, _) => name.to_string(),
        (_, true) => parent.to_string(),
        _ => format!("{parent}.{name}"),
    }
}

fn py_bool(b: bool) -> &'static str {
    if b { "True" } else { "False" }
}

fn linear(name: &str, parent: &str, inf: usize, outf: usize, bias: bool) -> ModuleNode {
    let n = ModuleNode::new(
        name,
        parent,
        "Linear",
        format!(
            "in_features={inf}, out_features={outf}, bias={}",
            py_bool(bias)
        ),
    )
    .param("weight", vec![outf, inf]);
    if bias { n.param("bias", vec![outf]) } else { n }
}

/// Python's `repr` of a float as `eps=1e-06` shows it.
fn py_float(x: f64) -> String {
    if x != 0.0 && (x.abs() < 1e-4 || x.abs() >= 1e16) {
        let s = format!("{x:e}");
        let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
        let e: i32 = e.parse().unwrap_or(0);
        format!("{m}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs())
    } else if x.fract() == 0.0 {
        format!("{x:.1}")
    } else {
        format!("{x}")
    }
}

fn rms_norm(name: &str, parent: &str, prefix: &str, dim: usize, eps: f64) -> ModuleNode {
    ModuleNode::new(
        name,
        parent,
        format!("{prefix}RMSNorm"),
        format!("({dim},), eps={}", py_float(eps)),
    )
    .param("weight", vec![dim])
}

/// The `Linear` nodes of the layout whose path below the layer starts with `prefix`
/// (`self_attn.`, `mlp.`, `mlp.experts.3.`, ...), placed under `parent`.
fn linears(c: &ModelConfig, layer: usize, prefix: &str, parent: &str) -> Vec<ModuleNode> {
    layer_linears(c, layer)
        .into_iter()
        .filter_map(|l| {
            let rest = l.path.strip_prefix(prefix)?;
            (!rest.contains('.'))
                .then(|| linear(rest, parent, l.in_features, l.out_features, l.bias))
        })
        .collect()
}

/// An MLP (dense, an expert, or the shared expert) under `path`.
fn mlp_node(c: &ModelConfig, layer: usize, name: &str, parent: &str, prefix: &str) -> ModuleNode {
    let p = c.family.class_prefix();
    let path = join(parent, name);
    let mut mlp = ModuleNode::new(name, parent, format!("{p}MLP"), "");
    for l in linears(c, layer, prefix, &path) {
        mlp = mlp.child(l);
    }
    let (act_name, act_class) = match (c.fused_projections, c.hidden_act) {
        (true, _) => ("activation_fn", "SiLUActivation"),
        (_, Activation::Silu) => ("act_fn", "SiLUActivation"),
        (_, Activation::GeluTanh) => ("act_fn", "GELUTanh"),
    };
    mlp.child(ModuleNode::new(act_name, &path, act_class, ""))
}

/// The tree of `XForCausalLM` for this config.
pub fn model_tree(c: &ModelConfig) -> ModuleNode {
    let p = c.family.class_prefix();
    let (h, hd, eps) = (c.hidden_size, c.head_dim, c.rms_norm_eps);
    let gemma3 = c.family == Family::Gemma3;

    let mut root = ModuleNode::new("", "", format!("{p}ForCausalLM"), "");
    let model_class = if gemma3 {
        "Gemma3TextModel".into()
    } else {
        format!("{p}Model")
    };
    let mut model = ModuleNode::new("model", "", model_class, "");
    let embed_extra = match c.pad_token_id {
        Some(pad) => format!("{}, {h}, padding_idx={pad}", c.vocab_size),
        None => format!("{}, {h}", c.vocab_size),
    };
    let embed_class = if gemma3 {
        "Gemma3TextScaledWordEmbedding"
    } else {
        "Embedding"
    };
    model = model.child(
        ModuleNode::new("embed_tokens", "model", embed_class, embed_extra)
            .param("weight", vec![c.vocab_size, h]),
    );
    let mut layers = ModuleNode::new("layers", "model", "ModuleList", "");
    layers.is_list = true;
    for i in 0..c.num_hidden_layers {
        let lp = format!("model.layers.{i}");
        let ap = format!("{lp}.self_attn");
        // Qwen2-MoE keeps one attention class per implementation; transformers' default
        // (sdpa) is what print(model) shows.
        let attn_class = match c.family {
            Family::Qwen2Moe => "Qwen2MoeSdpaAttention".to_string(),
            _ => format!("{p}Attention"),
        };
        let mut attn = ModuleNode::new("self_attn", &lp, attn_class, "");
        for l in linears(c, i, "self_attn.", &ap) {
            attn = attn.child(l);
        }
        if c.qk_norm {
            attn = attn
                .child(rms_norm("q_norm", &ap, p, hd, eps))
                .child(rms_norm("k_norm", &ap, p, hd, eps));
        }
        if c.family == Family::Qwen2Moe {
            // Qwen2-MoE's attention still owns a rotary module (it holds no weights).
            attn = attn.child(ModuleNode::new(
                "rotary_emb",
                &ap,
                format!("{p}RotaryEmbedding"),
                "",
            ));
        }
        let mp = format!("{lp}.mlp");
        let mlp = match c.moe.as_ref().filter(|m| m.sparse_layers[i]) {
            None => mlp_node(c, i, "mlp", &lp, "mlp."),
            Some(m) => {
                let mut block = ModuleNode::new("mlp", &lp, format!("{p}SparseMoeBlock"), "");
                // The router and the shared expert's gate: the block's own linears.
                let (mut router, mut shared_gate) = (None, None);
                for l in linears(c, i, "mlp.", &mp) {
                    match l.name.as_str() {
                        "gate" => router = Some(l),
                        "shared_expert_gate" => shared_gate = Some(l),
                        _ => {}
                    }
                }
                block.children.extend(router);
                let ep = format!("{mp}.experts");
                let mut experts = ModuleNode::new("experts", &mp, "ModuleList", "");
                experts.is_list = true;
                for e in 0..m.num_experts {
                    let prefix = format!("mlp.experts.{e}.");
                    experts = experts.child(mlp_node(c, i, &e.to_string(), &ep, &prefix));
                }
                block = block.child(experts);
                if m.shared_expert_intermediate_size.is_some() {
                    block = block.child(mlp_node(c, i, "shared_expert", &mp, "mlp.shared_expert."));
                }
                block.children.extend(shared_gate);
                block
            }
        };
        let mut layer = ModuleNode::new(
            &i.to_string(),
            "model.layers",
            format!("{p}DecoderLayer"),
            "",
        )
        .child(attn)
        .child(mlp)
        .child(rms_norm("input_layernorm", &lp, p, h, eps))
        .child(rms_norm("post_attention_layernorm", &lp, p, h, eps));
        if c.gemma_norms {
            layer = layer
                .child(rms_norm("pre_feedforward_layernorm", &lp, p, h, eps))
                .child(rms_norm("post_feedforward_layernorm", &lp, p, h, eps));
        }
        if let Some(pdrop) = c.resid_pdrop {
            for name in ["resid_attn_dropout", "resid_mlp_dropout"] {
                layer = layer.child(ModuleNode::new(
                    name,
                    &lp,
                    "Dropout",
                    format!("p={}, inplace=False", py_float(pdrop)),
                ));
            }
        }
        layers = layers.child(layer);
    }
    model = model
        .child(layers)
        .child(rms_norm("norm", "model", p, h, eps))
        .child(ModuleNode::new(
            "rotary_emb",
            "model",
            format!("{p}RotaryEmbedding"),
            "",
        ));
    if gemma3 {
        model = model.child(ModuleNode::new(
            "rotary_emb_local",
            "model",
            format!("{p}RotaryEmbedding"),
            "",
        ));
    }
    root = root.child(model);
    let mut head = linear("lm_head", "", h, c.vocab_size, false);
    if c.tie_word_embeddings {
        head.params[0].tied_to = Some("model.embed_tokens.weight".into());
    }
    root.child(head)
}

/// PyTorch's `_addindent`: indent every line but the first.
fn add_indent(s: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    let mut lines = s.split('\n');
    let first = lines.next().unwrap_or("").to_string();
    lines.fold(first, |acc, l| format!("{acc}\n{pad}{l}"))
}

/// Exactly what `print(model)` prints in PyTorch (Module.__repr__ / ModuleList.__repr__).
pub fn torch_repr(node: &ModuleNode) -> String {
    if node.is_list && node.children.is_empty() {
        return format!("{}()", node.class);
    }
    let extra: Vec<&str> = if node.extra_repr.is_empty() {
        vec![]
    } else {
        node.extra_repr.split('\n').collect()
    };
    let children: Vec<String> = node
        .shown_children()
        .iter()
        .map(|c| add_indent(&format!("{}{}", c.label, torch_repr(c.node)), 2))
        .collect();
    let mut s = format!("{}(", node.class);
    if extra.len() == 1 && children.is_empty() {
        s.push_str(extra[0]);
    } else if !extra.is_empty() || !children.is_empty() {
        let lines: Vec<String> = extra
            .iter()
            .map(|x| x.to_string())
            .chain(children)
            .collect();
        s.push_str("\n  ");
        s.push_str(&lines.join("\n  "));
        s.push('\n');
    }
    s.push(')');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_float_repr() {
        assert_eq!(py_float(1e-6), "1e-06");
        assert_eq!(py_float(1e-5), "1e-05");
        assert_eq!(py_float(0.001), "0.001");
        assert_eq!(py_float(1.0), "1.0");
    }
}

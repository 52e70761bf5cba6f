//! The decoder's layer layout, once: its linear layers with their checkpoint names, blocks,
//! shapes and biases, per family (Phi-3 fuses q/k/v and gate/up; a mixture-of-experts layer
//! has a router, experts and maybe a shared expert). The module tree, the loader, LoRA's
//! targets and the planner's LoRA counts all derive from this.

use crate::config::ModelConfig;

/// A linear projection of a decoder layer (an expert's too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proj {
    Q,
    K,
    V,
    /// Phi-3: q, k and v in one matrix.
    Qkv,
    O,
    Gate,
    Up,
    /// Phi-3: gate and up in one matrix.
    GateUp,
    Down,
}

/// Which sub-module of a decoder layer holds a projection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Block {
    SelfAttn,
    Mlp,
}

impl Block {
    pub fn name(self) -> &'static str {
        match self {
            Block::SelfAttn => "self_attn",
            Block::Mlp => "mlp",
        }
    }
}

impl Proj {
    pub const ALL: [Proj; 9] = [
        Proj::Q,
        Proj::K,
        Proj::V,
        Proj::Qkv,
        Proj::O,
        Proj::Gate,
        Proj::Up,
        Proj::GateUp,
        Proj::Down,
    ];

    /// The attention projections of this config, in the order of `print(model)`.
    pub fn attention(c: &ModelConfig) -> &'static [Proj] {
        if c.fused_projections {
            &[Proj::O, Proj::Qkv]
        } else {
            &[Proj::Q, Proj::K, Proj::V, Proj::O]
        }
    }

    /// The projections of a (dense or expert) MLP of this config.
    pub fn mlp(c: &ModelConfig) -> &'static [Proj] {
        if c.fused_projections {
            &[Proj::GateUp, Proj::Down]
        } else {
            &[Proj::Gate, Proj::Up, Proj::Down]
        }
    }

    /// The checkpoint's name (`q_proj`, …), also PEFT's `target_modules` name.
    pub fn name(self) -> &'static str {
        match self {
            Proj::Q => "q_proj",
            Proj::K => "k_proj",
            Proj::V => "v_proj",
            Proj::Qkv => "qkv_proj",
            Proj::O => "o_proj",
            Proj::Gate => "gate_proj",
            Proj::Up => "up_proj",
            Proj::GateUp => "gate_up_proj",
            Proj::Down => "down_proj",
        }
    }

    pub fn parse(name: &str) -> Option<Proj> {
        Proj::ALL.into_iter().find(|p| p.name() == name)
    }

    pub fn block(self) -> Block {
        match self {
            Proj::Q | Proj::K | Proj::V | Proj::Qkv | Proj::O => Block::SelfAttn,
            Proj::Gate | Proj::Up | Proj::GateUp | Proj::Down => Block::Mlp,
        }
    }

    /// `(in_features, out_features)` for this config, with MLP width `width`.
    pub fn features_at(self, c: &ModelConfig, width: usize) -> (usize, usize) {
        let (h, q, kv) = (
            c.hidden_size,
            c.num_attention_heads * c.head_dim,
            c.num_key_value_heads * c.head_dim,
        );
        match self {
            Proj::Q => (h, q),
            Proj::K | Proj::V => (h, kv),
            Proj::Qkv => (h, q + 2 * kv),
            Proj::O => (q, h),
            Proj::Gate | Proj::Up => (h, width),
            Proj::GateUp => (h, 2 * width),
            Proj::Down => (width, h),
        }
    }

    /// `(in_features, out_features)` in a dense layer of this config.
    pub fn features(self, c: &ModelConfig) -> (usize, usize) {
        self.features_at(c, c.intermediate_size)
    }

    pub fn bias(self, c: &ModelConfig) -> bool {
        match self {
            Proj::Q | Proj::K | Proj::V | Proj::Qkv => c.qkv_bias,
            Proj::O => c.o_bias,
            _ => c.mlp_bias,
        }
    }
}

/// One linear layer of a decoder layer: where it sits and its shape.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearSpec {
    /// Path below the layer: `self_attn.q_proj`, `mlp.experts.3.down_proj`, `mlp.gate`.
    pub path: String,
    pub in_features: usize,
    pub out_features: usize,
    pub bias: bool,
}

impl LinearSpec {
    /// The last name, which PEFT's `target_modules` matches (`down_proj`, `gate`).
    pub fn name(&self) -> &str {
        self.path.rsplit('.').next().unwrap_or(&self.path)
    }
}

/// Whether layer `layer` is a mixture of experts.
pub fn is_sparse(c: &ModelConfig, layer: usize) -> bool {
    c.moe.as_ref().is_some_and(|m| m.sparse_layers[layer])
}

/// Every linear layer of decoder layer `layer`, in module order.
pub fn layer_linears(c: &ModelConfig, layer: usize) -> Vec<LinearSpec> {
    let spec = |path: String, p: Proj, width: usize| {
        let (in_features, out_features) = p.features_at(c, width);
        LinearSpec {
            path,
            in_features,
            out_features,
            bias: p.bias(c),
        }
    };
    let mut out: Vec<LinearSpec> = Proj::attention(c)
        .iter()
        .map(|&p| spec(format!("self_attn.{}", p.name()), p, 0))
        .collect();
    match c.moe.as_ref().filter(|m| m.sparse_layers[layer]) {
        None => out.extend(
            Proj::mlp(c)
                .iter()
                .map(|&p| spec(format!("mlp.{}", p.name()), p, c.intermediate_size)),
        ),
        Some(m) => {
            out.push(LinearSpec {
                path: "mlp.gate".into(),
                in_features: c.hidden_size,
                out_features: m.num_experts,
                bias: false,
            });
            for e in 0..m.num_experts {
                out.extend(Proj::mlp(c).iter().map(|&p| {
                    spec(
                        format!("mlp.experts.{e}.{}", p.name()),
                        p,
                        m.intermediate_size,
                    )
                }));
            }
            if let Some(w) = m.shared_expert_intermediate_size {
                out.extend(
                    Proj::mlp(c)
                        .iter()
                        .map(|&p| spec(format!("mlp.shared_expert.{}", p.name()), p, w)),
                );
                out.push(LinearSpec {
                    path: "mlp.shared_expert_gate".into(),
                    in_features: c.hidden_size,
                    out_features: 1,
                    bias: false,
                });
            }
        }
    }
    out
}

/// The names LoRA targets by default: every projection of the family (not a router).
pub fn projection_names(c: &ModelConfig) -> Vec<String> {
    Proj::attention(c)
        .iter()
        .chain(Proj::mlp(c))
        .map(|p| p.name().to_string())
        .collect()
}

/// The names any linear layer of this config has, which `target_modules` may use.
pub fn linear_names(c: &ModelConfig) -> Vec<String> {
    let mut names: Vec<String> = vec![];
    for l in 0..c.num_hidden_layers {
        for s in layer_linears(c, l) {
            if !names.iter().any(|n| n == s.name()) {
                names.push(s.name().to_string());
            }
        }
    }
    names
}

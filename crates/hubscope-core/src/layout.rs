//! The decoder's layer layout, once: its linear projections with their checkpoint names,
//! blocks, shapes and biases. The module tree, the loader, LoRA's targets and the planner's
//! LoRA counts all derive from this list.

use crate::config::ModelConfig;

/// A linear projection of a decoder layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proj {
    Q,
    K,
    V,
    O,
    Gate,
    Up,
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
    /// In the order of the checkpoint and of `print(model)`.
    pub const ALL: [Proj; 7] = [
        Proj::Q,
        Proj::K,
        Proj::V,
        Proj::O,
        Proj::Gate,
        Proj::Up,
        Proj::Down,
    ];

    /// The checkpoint's name (`q_proj`, …), also PEFT's `target_modules` name.
    pub fn name(self) -> &'static str {
        match self {
            Proj::Q => "q_proj",
            Proj::K => "k_proj",
            Proj::V => "v_proj",
            Proj::O => "o_proj",
            Proj::Gate => "gate_proj",
            Proj::Up => "up_proj",
            Proj::Down => "down_proj",
        }
    }

    pub fn parse(name: &str) -> Option<Proj> {
        Proj::ALL.into_iter().find(|p| p.name() == name)
    }

    pub fn block(self) -> Block {
        match self {
            Proj::Q | Proj::K | Proj::V | Proj::O => Block::SelfAttn,
            Proj::Gate | Proj::Up | Proj::Down => Block::Mlp,
        }
    }

    /// `(in_features, out_features)` for this config.
    pub fn features(self, c: &ModelConfig) -> (usize, usize) {
        let (h, q, kv, i) = (
            c.hidden_size,
            c.num_attention_heads * c.head_dim,
            c.num_key_value_heads * c.head_dim,
            c.intermediate_size,
        );
        match self {
            Proj::Q => (h, q),
            Proj::K | Proj::V => (h, kv),
            Proj::O => (q, h),
            Proj::Gate | Proj::Up => (h, i),
            Proj::Down => (i, h),
        }
    }

    pub fn bias(self, c: &ModelConfig) -> bool {
        match self {
            Proj::Q | Proj::K | Proj::V => c.qkv_bias,
            Proj::O => c.o_bias,
            Proj::Gate | Proj::Up | Proj::Down => c.mlp_bias,
        }
    }

    /// The module path in layer `layer`: `model.layers.3.self_attn.q_proj`.
    pub fn path(self, layer: usize) -> String {
        format!(
            "model.layers.{layer}.{}.{}",
            self.block().name(),
            self.name()
        )
    }
}

/// The names of every projection, as LoRA's default targets list them.
pub fn projection_names() -> Vec<String> {
    Proj::ALL.iter().map(|p| p.name().to_string()).collect()
}

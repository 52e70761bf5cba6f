//! Rotary position embeddings as transformers computes them (rotate-half layout, f32 tables),
//! with the default, linear, llama3 and longrope (Phi-3) schedules, partial rotary dimensions
//! and Gemma 3's second (local) schedule.

use burn::tensor::{DType, Device, Tensor, TensorData};

use crate::config::{ModelConfig, RopeScaling};

/// Inverse frequencies of one rotary schedule.
#[derive(Debug, Clone)]
struct Freqs {
    inv_freq: Vec<f32>,
    /// longrope: the frequencies past `original_max_position_embeddings`, and that length.
    long: Option<(Vec<f32>, usize)>,
    /// longrope's factor on cos and sin (1 otherwise).
    attention_factor: f32,
}

/// Inverse frequencies of one head (the global schedule, and Gemma 3's local one for sliding
/// layers); cos/sin tables are built per call for the positions used.
#[derive(Debug, Clone)]
pub struct Rope {
    global: Freqs,
    local: Option<Freqs>,
    rotary_dim: usize,
}

/// cos/sin for a run of positions, `[1, 1, seq, rotary_dim]` each, or for one position per
/// batch row, `[rows, 1, 1, rotary_dim]`, in the compute dtype.
pub struct RopeTables {
    cos: Tensor<4>,
    sin: Tensor<4>,
}

/// The tables of one forward call: global, and local where the model has a local schedule.
pub struct RopeSet {
    pub global: RopeTables,
    pub local: Option<RopeTables>,
}

impl RopeSet {
    /// The tables a layer rotates with.
    pub fn for_layer(&self, local: bool) -> &RopeTables {
        match (&self.local, local) {
            (Some(l), true) => l,
            _ => &self.global,
        }
    }
}

/// `1 / base^(i / dim)` for even i < dim, in f32 as torch computes it.
fn base_freqs(base: f64, dim: usize) -> Vec<f32> {
    let base = base as f32;
    (0..dim)
        .step_by(2)
        .map(|i| 1.0f32 / base.powf(i as f32 / dim as f32))
        .collect()
}

impl Rope {
    pub fn new(config: &ModelConfig) -> Self {
        let dim = config.rotary_dim;
        let mut inv_freq = base_freqs(config.rope_theta, dim);
        let mut long = None;
        let mut attention_factor = 1.0f32;
        match &config.rope_scaling {
            RopeScaling::None => {}
            RopeScaling::Linear { factor } => {
                for f in &mut inv_freq {
                    *f /= *factor as f32;
                }
            }
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } => {
                let (factor, low_freq_factor, high_freq_factor) =
                    (*factor, *low_freq_factor, *high_freq_factor);
                let old = *original_max_position_embeddings as f64;
                let low_wavelen = old / low_freq_factor;
                let high_wavelen = old / high_freq_factor;
                for f in &mut inv_freq {
                    let wavelen = 2.0 * std::f64::consts::PI / *f as f64;
                    let scaled = if wavelen > low_wavelen {
                        *f as f64 / factor
                    } else {
                        *f as f64
                    };
                    let medium = !(wavelen < high_wavelen) && !(wavelen > low_wavelen);
                    *f = if medium {
                        let smooth = (old / wavelen - low_freq_factor)
                            / (high_freq_factor - low_freq_factor);
                        ((1.0 - smooth) * scaled / factor + smooth * scaled) as f32
                    } else {
                        scaled as f32
                    };
                }
            }
            RopeScaling::LongRope {
                short_factor,
                long_factor,
                original_max_position_embeddings,
                attention_factor: a,
            } => {
                // 1 / (factor_i · base^(i/dim)), as transformers' longrope.
                let base = config.rope_theta as f32;
                let scaled = |factors: &[f64]| -> Vec<f32> {
                    (0..dim)
                        .step_by(2)
                        .zip(factors)
                        .map(|(i, f)| 1.0f32 / (*f as f32 * base.powf(i as f32 / dim as f32)))
                        .collect()
                };
                inv_freq = scaled(short_factor);
                long = Some((scaled(long_factor), *original_max_position_embeddings));
                attention_factor = *a as f32;
            }
        }
        Rope {
            global: Freqs {
                inv_freq,
                long,
                attention_factor,
            },
            local: config.rope_local_theta.map(|theta| Freqs {
                inv_freq: base_freqs(theta, dim),
                long: None,
                attention_factor: 1.0,
            }),
            rotary_dim: dim,
        }
    }

    /// Tables for positions `start..start+seq`.
    pub fn tables(&self, start: usize, seq: usize, dtype: DType, device: &Device) -> RopeSet {
        let len = start + seq;
        let shape = [1, 1, seq, self.rotary_dim];
        self.set((start..len).map(|p| (p, len)), shape, dtype, device)
    }

    /// Tables for a batch of sequences that each decode one token, row `i` at `positions[i]`
    /// (continuous batching): `[rows, 1, 1, rotary_dim]`.
    pub fn rows(&self, positions: &[usize], dtype: DType, device: &Device) -> RopeSet {
        let shape = [positions.len(), 1, 1, self.rotary_dim];
        self.set(positions.iter().map(|&p| (p, p + 1)), shape, dtype, device)
    }

    /// Tables for `(position, length of the call it belongs to)` pairs, laid out as `shape`.
    fn set(
        &self,
        positions: impl Iterator<Item = (usize, usize)> + Clone,
        shape: [usize; 4],
        dtype: DType,
        device: &Device,
    ) -> RopeSet {
        let of = |f: &Freqs| {
            let mut t = Tables::default();
            for (p, len) in positions.clone() {
                t.push(f, p, len);
            }
            t.build(shape, dtype, device)
        };
        RopeSet {
            global: of(&self.global),
            local: self.local.as_ref().map(of),
        }
    }
}

/// cos/sin values gathered on the host before they become tensors.
#[derive(Default)]
struct Tables {
    cos: Vec<f32>,
    sin: Vec<f32>,
}

impl Tables {
    /// The row of position `p` in a call that has seen `len` positions: longrope switches to
    /// the long factors once the sequence passes the original length (for every position of
    /// that call, as transformers does).
    fn push(&mut self, freqs: &Freqs, p: usize, len: usize) {
        let inv_freq = match &freqs.long {
            Some((long, original)) if len > *original => long,
            _ => &freqs.inv_freq,
        };
        let p = p as f32;
        // emb = cat(freqs, freqs)
        for _ in 0..2 {
            for f in inv_freq {
                let a = p * f;
                self.cos.push(a.cos() * freqs.attention_factor);
                self.sin.push(a.sin() * freqs.attention_factor);
            }
        }
    }

    fn build(self, shape: [usize; 4], dtype: DType, device: &Device) -> RopeTables {
        let opts = (device, dtype);
        RopeTables {
            cos: Tensor::from_data(TensorData::new(self.cos, shape), opts),
            sin: Tensor::from_data(TensorData::new(self.sin, shape), opts),
        }
    }
}

impl RopeTables {
    /// `x * cos + rotate_half(x) * sin` over the first `rotary_dim` dimensions of
    /// `x: [b, heads, seq, head_dim]`; the rest pass unchanged (partial rotary).
    pub fn apply(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, h, s, d] = x.dims();
        let r = self.cos.dims()[3];
        let (rot, pass) = if r < d {
            (
                x.clone().slice([0..b, 0..h, 0..s, 0..r]),
                Some(x.slice([0..b, 0..h, 0..s, r..d])),
            )
        } else {
            (x, None)
        };
        let half = r / 2;
        let x1 = rot.clone().slice([0..b, 0..h, 0..s, 0..half]);
        let x2 = rot.clone().slice([0..b, 0..h, 0..s, half..r]);
        let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
        let out = rot * self.cos.clone() + rotated * self.sin.clone();
        match pass {
            Some(p) => Tensor::cat(vec![out, p], 3),
            None => out,
        }
    }
}

//! Rotary position embeddings as transformers computes them (rotate-half layout, f32 tables),
//! with the default, linear and llama3 frequency schedules.

use burn::tensor::{DType, Device, Tensor, TensorData};

use crate::config::{ModelConfig, RopeScaling};

/// Inverse frequencies of one head; cos/sin tables are built per call for the positions used.
#[derive(Debug, Clone)]
pub struct Rope {
    inv_freq: Vec<f32>,
    head_dim: usize,
}

/// cos/sin for a run of positions, `[1, 1, seq, head_dim]` each, in the compute dtype.
pub struct RopeTables {
    pub start: usize,
    cos: Tensor<4>,
    sin: Tensor<4>,
}

impl Rope {
    pub fn new(config: &ModelConfig) -> Self {
        let dim = config.head_dim;
        let base = config.rope_theta as f32;
        let mut inv_freq: Vec<f32> = (0..dim)
            .step_by(2)
            .map(|i| 1.0f32 / base.powf(i as f32 / dim as f32))
            .collect();
        match config.rope_scaling {
            RopeScaling::None => {}
            RopeScaling::Linear { factor } => {
                for f in &mut inv_freq {
                    *f /= factor as f32;
                }
            }
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } => {
                let old = original_max_position_embeddings as f64;
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
        }
        Rope {
            inv_freq,
            head_dim: dim,
        }
    }

    /// Tables for positions `start..start+seq`.
    pub fn tables(&self, start: usize, seq: usize, dtype: DType, device: &Device) -> RopeTables {
        let (mut cos, mut sin) = (
            Vec::with_capacity(seq * self.head_dim),
            Vec::with_capacity(seq * self.head_dim),
        );
        for p in start..start + seq {
            let p = p as f32;
            // emb = cat(freqs, freqs)
            for _ in 0..2 {
                for f in &self.inv_freq {
                    let a = p * f;
                    cos.push(a.cos());
                    sin.push(a.sin());
                }
            }
        }
        let shape = [1, 1, seq, self.head_dim];
        let opts = (device, dtype);
        RopeTables {
            start,
            cos: Tensor::from_data(TensorData::new(cos, shape), opts),
            sin: Tensor::from_data(TensorData::new(sin, shape), opts),
        }
    }
}

impl RopeTables {
    /// `x * cos + rotate_half(x) * sin` for `x: [b, heads, seq, head_dim]`.
    pub fn apply(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, h, s, d] = x.dims();
        let half = d / 2;
        let x1 = x.clone().slice([0..b, 0..h, 0..s, 0..half]);
        let x2 = x.clone().slice([0..b, 0..h, 0..s, half..d]);
        let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
        x * self.cos.clone() + rotated * self.sin.clone()
    }
}

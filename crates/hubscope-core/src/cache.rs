//! Key/value cache. Each layer keeps one buffer with spare capacity; a step writes its keys
//! in place (`slice_assign` on a uniquely held tensor) and attention reads a prefix view, so
//! decoding never copies the whole cache per token. A sliding-window layer keeps only what
//! its window can still see: when its buffer fills, the last `window - 1` entries move to the
//! front (attention masks by relative position, so the dropped prefix is never needed).

use burn::tensor::Tensor;

/// The cache of one attention layer: `[batch, kv_heads, capacity, head_dim]` for k and v.
#[derive(Debug, Default)]
pub struct LayerCache {
    k: Option<Tensor<4>>,
    v: Option<Tensor<4>>,
    /// Entries held.
    len: usize,
    /// Positions dropped from the front (sliding window).
    dropped: usize,
    window: Option<usize>,
}

const MIN_CAPACITY: usize = 64;

impl LayerCache {
    /// Append `k, v: [b, kvh, s, hd]`; returns all keys and values so far, `[b, kvh, len, hd]`.
    pub fn append(&mut self, k: Tensor<4>, v: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        let [b, kvh, s, hd] = k.dims();
        let capacity = self.k.as_ref().map_or(0, |t| t.dims()[2]);
        if let Some(w) = self.window {
            let keep = w.saturating_sub(1);
            if self.len + s > capacity && keep == 0 {
                self.dropped += self.len;
                self.len = 0;
            } else if self.len + s > capacity && self.len > keep {
                // Move the last `keep` entries to the front instead of growing.
                let from = self.len - keep;
                let shift = |t: Option<Tensor<4>>| {
                    t.map(|t| {
                        let tail = t.clone().slice([0..b, 0..kvh, from..self.len, 0..hd]);
                        t.slice_assign([0..b, 0..kvh, 0..keep, 0..hd], tail)
                    })
                };
                self.k = shift(self.k.take());
                self.v = shift(self.v.take());
                self.dropped += from;
                self.len = keep;
            }
        }
        let need = self.len + s;
        if need > capacity {
            let new_cap = need.max(capacity * 2).max(MIN_CAPACITY);
            let grow = |old: Option<Tensor<4>>, like: &Tensor<4>| {
                let fresh = Tensor::zeros([b, kvh, new_cap, hd], (&like.device(), like.dtype()));
                match old {
                    Some(old) if self.len > 0 => {
                        let kept = old.slice([0..b, 0..kvh, 0..self.len, 0..hd]);
                        fresh.slice_assign([0..b, 0..kvh, 0..self.len, 0..hd], kept)
                    }
                    _ => fresh,
                }
            };
            self.k = Some(grow(self.k.take(), &k));
            self.v = Some(grow(self.v.take(), &v));
        }
        let range = [0..b, 0..kvh, self.len..need, 0..hd];
        let kc = self
            .k
            .take()
            .expect("allocated above")
            .slice_assign(range.clone(), k);
        let vc = self
            .v
            .take()
            .expect("allocated above")
            .slice_assign(range, v);
        self.len = need;
        let all = [0..b, 0..kvh, 0..need, 0..hd];
        let out = (kc.clone().slice(all.clone()), vc.clone().slice(all));
        self.k = Some(kc);
        self.v = Some(vc);
        out
    }

    /// Positions seen (the position of the next token).
    pub fn len(&self) -> usize {
        self.dropped + self.len
    }
}

/// The cache of the whole model.
#[derive(Debug)]
pub struct KvCache {
    pub layers: Vec<LayerCache>,
    /// `max_position_embeddings`: no position past it is ever computed.
    pub max_positions: usize,
}

impl KvCache {
    /// One layer cache per entry of `windows` (None: full attention, keeps everything).
    pub fn new(windows: &[Option<usize>], max_positions: usize) -> Self {
        KvCache {
            layers: windows
                .iter()
                .map(|&window| LayerCache {
                    window,
                    ..LayerCache::default()
                })
                .collect(),
            max_positions,
        }
    }

    /// Tokens held (the position of the next token).
    pub fn len(&self) -> usize {
        self.layers.first().map_or(0, LayerCache::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn clear(&mut self) {
        for l in &mut self.layers {
            *l = LayerCache {
                window: l.window,
                ..LayerCache::default()
            };
        }
    }
}

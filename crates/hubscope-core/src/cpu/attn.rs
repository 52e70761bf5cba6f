//! Attention for a decode step: one new query per sequence against that sequence's cached
//! keys and values, every sequence of a batch in one call split across threads. burn's CPU
//! device runs the same as a dozen small tensor operations per sequence and layer, one after
//! another on one thread, which at a server's 16 sequences costs more than the arithmetic.
//!
//! Each sequence's output depends on its own query and cache only, so a sequence gets the same
//! bits alone and in a batch.

use super::par::{Out, for_each, threads};

/// One sequence's cache: kv head `h`'s keys at positions `0..len` are the rows of `head_dim`
/// values from `h · head_stride` in `k` (values likewise in `v`): the cache's buffer, of which
/// the first `len` positions of each head are held.
pub struct Cached<'a> {
    pub k: &'a [f32],
    pub v: &'a [f32],
    pub head_stride: usize,
    pub len: usize,
}

/// The shape and scaling of the attention.
#[derive(Clone, Copy)]
pub struct Heads {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub scale: f32,
    /// Gemma 2's score soft-capping: `cap · tanh(score / cap)`.
    pub softcap: Option<f32>,
}

/// `q: [rows, heads, head_dim]`, row `i` attending over `caches[i]`; returns
/// `[rows, heads, head_dim]`: `softmax(scale · q·Kᵀ) · V`, each query head reading the kv head
/// of its group.
pub fn decode(q: &[f32], caches: &[Cached], shape: Heads) -> Vec<f32> {
    let Heads {
        heads, head_dim, ..
    } = shape;
    let width = heads * head_dim;
    assert_eq!(
        q.len(),
        caches.len() * width,
        "q is [rows, heads, head_dim]"
    );
    let rows = caches.len();
    let mut out = vec![0.0f32; rows * width];
    let o = Out::new(&mut out);
    let per = rows.div_ceil(threads()).max(1);
    let starts: Vec<usize> = (0..rows).step_by(per).collect();
    for_each(&starts, |start| {
        for r in start..(start + per).min(rows) {
            // SAFETY: each task writes its own rows of `out`, which outlives the tasks.
            let y = unsafe { std::slice::from_raw_parts_mut(o.get().add(r * width), width) };
            row(&q[r * width..(r + 1) * width], &caches[r], shape, y);
        }
    });
    out
}

/// One sequence: every query head against its kv head's held positions.
fn row(q: &[f32], cache: &Cached, shape: Heads, y: &mut [f32]) {
    let Heads {
        heads,
        kv_heads,
        head_dim: hd,
        scale,
        softcap,
    } = shape;
    let group = heads / kv_heads;
    let mut scores = vec![0.0f32; cache.len];
    for h in 0..heads {
        let kv = h / group;
        let base = kv * cache.head_stride;
        let qh = &q[h * hd..(h + 1) * hd];
        for (j, s) in scores.iter_mut().enumerate() {
            let kj = &cache.k[base + j * hd..base + (j + 1) * hd];
            let mut v = dot(qh, kj) * scale;
            if let Some(cap) = softcap {
                v = cap * (v / cap).tanh();
            }
            *s = v;
        }
        let max = scores.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
        let mut sum = 0.0f32;
        for s in scores.iter_mut() {
            *s = (*s - max).exp();
            sum += *s;
        }
        let yh = &mut y[h * hd..(h + 1) * hd];
        yh.fill(0.0);
        for (j, &p) in scores.iter().enumerate() {
            let vj = &cache.v[base + j * hd..base + (j + 1) * hd];
            let p = p / sum;
            for (o, &v) in yh.iter_mut().zip(vj) {
                *o += p * v;
            }
        }
    }
}

/// A dot product in 8 lanes (vectorized by the compiler), summed as the kernels sum theirs.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let full = a.len() - a.len() % 8;
    for i in (0..full).step_by(8) {
        for l in 0..8 {
            acc[l] += a[i + l] * b[i + l];
        }
    }
    let s = ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
    a[full..]
        .iter()
        .zip(&b[full..])
        .fold(s, |s, (x, y)| s + x * y)
}

#[cfg(test)]
mod tests {
    use super::{Cached, Heads, decode};
    use crate::cpu::test_values as values;

    /// The definition in f64: scores, softmax, weighted sum of values.
    fn reference(q: &[f32], c: &Cached, s: Heads) -> Vec<f64> {
        let (hd, group) = (s.head_dim, s.heads / s.kv_heads);
        let mut y = vec![0.0; s.heads * hd];
        for h in 0..s.heads {
            let base = (h / group) * c.head_stride;
            let scores: Vec<f64> = (0..c.len)
                .map(|j| {
                    let d: f64 = (0..hd)
                        .map(|i| q[h * hd + i] as f64 * c.k[base + j * hd + i] as f64)
                        .sum();
                    let d = d * s.scale as f64;
                    match s.softcap {
                        Some(cap) => cap as f64 * (d / cap as f64).tanh(),
                        None => d,
                    }
                })
                .collect();
            let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
            let sum: f64 = e.iter().sum();
            for (j, p) in e.iter().enumerate() {
                for i in 0..hd {
                    y[h * hd + i] += p / sum * c.v[base + j * hd + i] as f64;
                }
            }
        }
        y
    }

    /// Rows with different cache lengths (one position, a tail past the 8 lanes in the head
    /// dimension, a cache with spare capacity), grouped query heads, with and without
    /// soft-capping; each row also alone, for the same bits.
    #[test]
    fn equals_the_definition_and_each_row_alone() {
        for softcap in [None, Some(5.0)] {
            let shape = Heads {
                heads: 6,
                kv_heads: 2,
                head_dim: 12,
                scale: 0.7,
                softcap,
            };
            let (lens, capacity) = ([1usize, 5, 33], 40);
            let width = shape.heads * shape.head_dim;
            let kv: Vec<(Vec<f32>, Vec<f32>)> = (0..3)
                .map(|r| {
                    let n = shape.kv_heads * capacity * shape.head_dim;
                    (values(n, 10 + r), values(n, 20 + r))
                })
                .collect();
            let caches: Vec<Cached> = kv
                .iter()
                .zip(lens)
                .map(|((k, v), len)| Cached {
                    k,
                    v,
                    head_stride: capacity * shape.head_dim,
                    len,
                })
                .collect();
            let q: Vec<f32> = values(3 * width, 5).iter().map(|x| x * 4.0).collect();
            let got = decode(&q, &caches, shape);
            for (r, c) in caches.iter().enumerate() {
                let qr = &q[r * width..(r + 1) * width];
                let want = reference(qr, c, shape);
                for (i, (&g, &w)) in got[r * width..(r + 1) * width]
                    .iter()
                    .zip(&want)
                    .enumerate()
                {
                    assert!((g as f64 - w).abs() <= 1e-6, "row {r} [{i}]: {g}, want {w}");
                }
                let alone = decode(qr, std::slice::from_ref(c), shape);
                assert_eq!(alone, got[r * width..(r + 1) * width], "row {r} alone");
            }
        }
    }
}

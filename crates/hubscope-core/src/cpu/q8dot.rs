//! The block kernel for a few rows (decode steps), as llama.cpp computes it: each row of `x`
//! quantized to 8 bits per 32 values (a scale `max|x| / 127` per piece, round to nearest), then
//! integer dot products of those bytes with the weight blocks' values (AVX2 `maddubs`: 32
//! products per instruction instead of a decode to f32 and 4 multiply-adds), scaled per piece.
//! Weights are used exactly; the activations' rounding (≤ half a step of 1/127 of a piece's
//! largest value) is the only difference from the f32 products.

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_to_half_a_step() {
        let x: Vec<f32> = (0..64)
            .map(|i| ((i * 53 % 97) as f32 - 48.0) / 7.0)
            .collect();
        let q = quantize_rows(&x);
        for (i, v) in x.iter().enumerate() {
            let d = q.scale[i / 32];
            let back = q.q[i] as f32 * d;
            assert!((v - back).abs() <= d * 0.5 + 1e-6, "{i}: {v} vs {back}");
        }
        let amax = x[..32].iter().fold(0f32, |m, a| m.max(a.abs()));
        assert_eq!(q.scale[0], amax / 127.0);
    }
}

/// `x: [rows, k]` quantized per 32 values: the bytes, a scale per piece, and each piece's sum
/// (of the quantized values, scaled: for the K-quants' minimums, so that the whole product is
/// that of the quantized rows).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub struct QuantRows {
    pub q: Vec<i8>,
    pub scale: Vec<f32>,
    pub sum: Vec<f32>,
}

pub fn quantize_rows(x: &[f32]) -> QuantRows {
    let pieces = x.len() / 32;
    let mut q = vec![0i8; x.len()];
    let mut scale = vec![0f32; pieces];
    let mut sum = vec![0f32; pieces];
    for p in 0..pieces {
        let v = &x[32 * p..32 * p + 32];
        let amax = v.iter().fold(0f32, |m, a| m.max(a.abs()));
        let d = amax / 127.0;
        let id = if d > 0.0 { 1.0 / d } else { 0.0 };
        for (o, a) in q[32 * p..32 * p + 32].iter_mut().zip(v) {
            *o = (a * id).round() as i8;
        }
        scale[p] = d;
        sum[p] = d * q[32 * p..32 * p + 32]
            .iter()
            .map(|&b| b as i32)
            .sum::<i32>() as f32;
    }
    QuantRows { q, scale, sum }
}

#[cfg(target_arch = "x86_64")]
pub mod avx2 {
    use std::arch::x86_64::*;

    use super::QuantRows;
    use crate::cpu::blocks::avx2::{half, hsum};
    use crate::cpu::blocks::{BlockMatrix, Q4_0, Q4_K, Q5_0, Q6_K, Q8_0};

    /// A weight piece of 32 values as bytes, with how to combine its dot product: signed
    /// values and one scale, or (Q4_K) unsigned nibbles, a scale and a minimum, or (Q6_K)
    /// signed values with a scale per 16.
    struct Piece {
        q: __m256i,
        unsigned: bool,
        /// Per i32 lane of the dot product (lanes 0–3: values 0–15, 4–7: values 16–31).
        scale: __m256,
        /// Subtracted once per piece times the piece's sum of x (Q4_K's `dmin · m`).
        min: f32,
    }

    /// Columns `cols` of `y` for every row of the quantized `x`.
    ///
    /// # Safety
    /// AVX2, FMA and F16C are available; `y` holds `rows * w.rows` floats and no one else
    /// writes columns `cols`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn columns(
        x: &QuantRows,
        w: &BlockMatrix,
        row_bytes: usize,
        rows: usize,
        cols: std::ops::Range<usize>,
        y: *mut f32,
    ) {
        // SAFETY: the caller's promise.
        unsafe {
            match w.ggml_type.0 {
                Q8_0 => typed::<Q8_0>(x, w, row_bytes, rows, cols, y),
                Q5_0 => typed::<Q5_0>(x, w, row_bytes, rows, cols, y),
                Q4_0 => typed::<Q4_0>(x, w, row_bytes, rows, cols, y),
                Q4_K => typed::<Q4_K>(x, w, row_bytes, rows, cols, y),
                Q6_K => typed::<Q6_K>(x, w, row_bytes, rows, cols, y),
                _ => unreachable!("kept types only"),
            }
        }
    }

    /// [`columns`] for ggml type `T`, its decoder inlined.
    ///
    /// # Safety
    /// As for [`columns`].
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn typed<const T: u32>(
        x: &QuantRows,
        w: &BlockMatrix,
        row_bytes: usize,
        rows: usize,
        cols: std::ops::Range<usize>,
        y: *mut f32,
    ) {
        // SAFETY: the caller's promise (features present); every pointer below stays inside
        // its row of `w.bytes` or of `x`.
        unsafe {
            let (k, n) = (w.cols, w.rows);
            let pieces = k / 32;
            let decode = |b: *const u8, p: usize| -> Piece {
                match T {
                    Q8_0 => q8_0(b, p),
                    Q5_0 => q5_0(b, p),
                    Q4_0 => q4_0(b, p),
                    Q4_K => q4_k(b, p),
                    _ => q6_k(b, p),
                }
            };
            let (values, bytes) = w.ggml_type.block().expect("kept type");
            let (per_block, block_bytes) = (values as usize / 32, bytes as usize);
            let ones = _mm256_set1_epi16(1);
            for j in cols {
                let row = w.bytes.as_ptr().add(j * row_bytes);
                let mut r0 = 0;
                while r0 < rows {
                    let r = 4.min(rows - r0);
                    let mut acc = [_mm256_setzero_ps(); 4];
                    let mut mins = [0f32; 4];
                    for p in 0..pieces {
                        let piece = decode(row.add(p / per_block * block_bytes), p % per_block);
                        for i in 0..r {
                            let at = (r0 + i) * pieces + p;
                            let xq =
                                _mm256_loadu_si256(x.q.as_ptr().add(at * 32) as *const __m256i);
                            let dot = if piece.unsigned {
                                _mm256_maddubs_epi16(piece.q, xq)
                            } else {
                                _mm256_maddubs_epi16(
                                    _mm256_sign_epi8(piece.q, piece.q),
                                    _mm256_sign_epi8(xq, piece.q),
                                )
                            };
                            let dot = _mm256_cvtepi32_ps(_mm256_madd_epi16(dot, ones));
                            let xs = *x.scale.get_unchecked(at);
                            let s = _mm256_mul_ps(piece.scale, _mm256_set1_ps(xs));
                            acc[i] = _mm256_fmadd_ps(dot, s, acc[i]);
                            if T == Q4_K {
                                mins[i] += piece.min * *x.sum.get_unchecked(at);
                            }
                        }
                    }
                    for i in 0..r {
                        *y.add((r0 + i) * n + j) = hsum(acc[i]) - mins[i];
                    }
                    r0 += r;
                }
            }
        }
    }

    /// 16 bytes at `p`: their low nibbles, then their high nibbles, as 32 bytes.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn nibbles(p: *const u8) -> __m256i {
        // SAFETY: the caller's promise: 16 bytes at `p`.
        unsafe {
            let t = _mm_loadu_si128(p as *const __m128i);
            let both =
                _mm256_insertf128_si256::<1>(_mm256_castsi128_si256(t), _mm_srli_epi16::<4>(t));
            _mm256_and_si256(both, _mm256_set1_epi8(0xF))
        }
    }

    /// The 32 bits of `bits` as 32 bytes, 0xFF where the bit is set.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    fn bits_to_bytes(bits: u32) -> __m256i {
        let spread = _mm256_shuffle_epi8(
            _mm256_set1_epi32(bits as i32),
            _mm256_set_epi64x(
                0x0303030303030303,
                0x0202020202020202,
                0x0101010101010101,
                0,
            ),
        );
        let marked = _mm256_or_si256(spread, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
        _mm256_cmpeq_epi8(marked, _mm256_set1_epi64x(-1))
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn q8_0(b: *const u8, _piece: usize) -> Piece {
        // SAFETY: a whole block (34 bytes) at `b`.
        unsafe {
            Piece {
                q: _mm256_loadu_si256(b.add(2) as *const __m256i),
                unsigned: false,
                scale: _mm256_set1_ps(half(b)),
                min: 0.0,
            }
        }
    }

    /// Q4_0: nibbles less 8, as signed bytes.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn q4_0(b: *const u8, _piece: usize) -> Piece {
        // SAFETY: a whole block (18 bytes) at `b`.
        unsafe {
            Piece {
                q: _mm256_sub_epi8(nibbles(b.add(2)), _mm256_set1_epi8(8)),
                unsigned: false,
                scale: _mm256_set1_ps(half(b)),
                min: 0.0,
            }
        }
    }

    /// Q5_0: nibbles, the fifth bit clear making them `q − 16` as signed bytes.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn q5_0(b: *const u8, _piece: usize) -> Piece {
        // SAFETY: a whole block (22 bytes) at `b`.
        unsafe {
            let qh = u32::from_le_bytes([*b.add(2), *b.add(3), *b.add(4), *b.add(5)]);
            let high = _mm256_andnot_si256(bits_to_bytes(qh), _mm256_set1_epi8(0xF0u8 as i8));
            Piece {
                q: _mm256_or_si256(nibbles(b.add(6)), high),
                unsigned: false,
                scale: _mm256_set1_ps(half(b)),
                min: 0.0,
            }
        }
    }

    /// Q4_K: piece `s` of a super-block, unsigned nibbles, `d·sc` and `dmin·m`.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn q4_k(b: *const u8, s: usize) -> Piece {
        // SAFETY: a whole super-block (144 bytes) at `b`.
        unsafe {
            let scales = std::slice::from_raw_parts(b.add(4), 12);
            let (sc, m) = crate::ggml::scale_min_k4(scales, s);
            let raw = _mm256_loadu_si256(b.add(16 + 32 * (s / 2)) as *const __m256i);
            let q = if s % 2 == 0 {
                raw
            } else {
                _mm256_srli_epi16::<4>(raw)
            };
            Piece {
                q: _mm256_and_si256(q, _mm256_set1_epi8(0xF)),
                unsigned: true,
                scale: _mm256_set1_ps(half(b) * sc as f32),
                min: half(b.add(2)) * m as f32,
            }
        }
    }

    /// Q6_K: piece `p` = (h, j): `(low | high << 4) − 32`, a scale per 16 values.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn q6_k(b: *const u8, p: usize) -> Piece {
        // SAFETY: a whole super-block (210 bytes) at `b`.
        unsafe {
            let (h, j) = (p / 4, p % 4);
            let lo = _mm256_loadu_si256(b.add(64 * h + 32 * (j % 2)) as *const __m256i);
            let lo = if j < 2 {
                lo
            } else {
                _mm256_srli_epi16::<4>(lo)
            };
            let lo = _mm256_and_si256(lo, _mm256_set1_epi8(0xF));
            let hi = _mm256_loadu_si256(b.add(128 + 32 * h) as *const __m256i);
            let hi = _mm256_and_si256(
                _mm256_srl_epi16(hi, _mm_cvtsi32_si128(2 * j as i32)),
                _mm256_set1_epi8(3),
            );
            let q = _mm256_sub_epi8(
                _mm256_or_si256(lo, _mm256_slli_epi16::<4>(hi)),
                _mm256_set1_epi8(32),
            );
            let d = half(b.add(208));
            let sc = |i: usize| d * *b.add(192 + 8 * h + 2 * j + i) as i8 as f32;
            let (s0, s1) = (sc(0), sc(1));
            Piece {
                q,
                unsigned: false,
                scale: _mm256_setr_ps(s0, s0, s0, s0, s1, s1, s1, s1),
                min: 0.0,
            }
        }
    }
}

//! The block kernel for a few rows (decode steps), as llama.cpp computes it: each row of `x`
//! quantized to 8 bits per 32 values (a scale `max|x| / 127` per piece, round to nearest), then
//! integer dot products of those bytes with the weight blocks' values (AVX2 `maddubs`: 32
//! products per instruction instead of a decode to f32 and 4 multiply-adds; in WebAssembly
//! SIMD128 `i32x4.dot_i16x8_s`, 8 per instruction), scaled per piece.
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

/// The same kernel in WebAssembly SIMD128 (the page's CPU device): each 32-value piece as two
/// 16-byte vectors, widened to 16 bits and multiplied with the row's bytes (widened once per
/// call) by `i32x4.dot_i16x8_s` — 8 products and their pairwise sums per instruction, exact.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub mod simd128 {
    use std::arch::wasm32::*;

    use super::QuantRows;
    use crate::cpu::blocks::simd128::{half, hsum};
    use crate::cpu::blocks::{BlockMatrix, Q4_0, Q4_K, Q5_0, Q6_K, Q8_0};

    /// A block's scales as f32, read once per block: a scale per 16 values (equal in pairs
    /// but for Q6_K) and Q4_K's `dmin · m` per piece, subtracted once per piece times x's sum.
    struct Scales {
        scale: [f32; 16],
        min: [f32; 8],
    }

    /// Rows of `x` per pass over a weight row.
    const MR: usize = 4;
    /// Weight rows per pass over a decode step's one row of `x`: two for the one-piece
    /// blocks (1.2x here), one for the K-quants (whose scales of two rows at once spill).
    const fn nc(t: u32) -> usize {
        if t == Q4_K || t == Q6_K { 1 } else { 2 }
    }

    /// Columns `cols` of `y` for every row of the quantized `x`.
    ///
    /// # Safety
    /// `y` holds `rows * w.rows` floats and no one else writes columns `cols`.
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
    unsafe fn typed<const T: u32>(
        x: &QuantRows,
        w: &BlockMatrix,
        row_bytes: usize,
        rows: usize,
        cols: std::ops::Range<usize>,
        y: *mut f32,
    ) {
        let (k, n) = (w.cols, w.rows);
        let pieces = k / 32;
        // A piece's 32 values as signed bytes (values 0–15, 16–31).
        let decode = |b: &[u8], p: usize| -> [v128; 2] {
            match T {
                Q8_0 => q8_0(b, p),
                Q5_0 => q5_0(b, p),
                Q4_0 => q4_0(b, p),
                Q4_K => q4_k(b, p),
                _ => q6_k(b, p),
            }
        };
        let scales = |b: &[u8]| -> Scales {
            match T {
                Q4_K => q4_k_scales(b),
                Q6_K => q6_k_scales(b),
                _ => Scales {
                    scale: [half(b, 0); 16],
                    min: [0.0; 8],
                },
            }
        };
        let (values, bytes) = w.ggml_type.block().expect("kept type");
        let block_bytes = bytes as usize;
        // A constant per type, so that one-piece blocks index their scales by a constant 0.
        let per_block = if T == Q4_K || T == Q6_K { 8 } else { 1 };
        debug_assert_eq!(per_block, values as usize / 32);
        // x's bytes as 16-bit values, 4 vectors per piece.
        let xw: Vec<v128> =
            x.q.chunks_exact(16)
                .flat_map(|c| {
                    // SAFETY: 16 bytes.
                    let v = unsafe { v128_load(c.as_ptr() as *const v128) };
                    [i16x8_extend_low_i8x16(v), i16x8_extend_high_i8x16(v)]
                })
                .collect();
        let mut cols = cols;
        // At most 2 (the arrays below); a constant per type, so the loops over it unroll.
        let nc = nc(T);
        if rows == 1 {
            // A decode step: `nc` weight rows per pass over x, each with its own sums, so that
            // their loads and multiplies overlap; the columns left over take the loop below.
            let end = cols.start + (cols.end - cols.start) / nc * nc;
            let mut j = cols.start;
            while j < end {
                let rows_of: [&[u8]; 2] = std::array::from_fn(|c| {
                    &w.bytes[(j + c.min(nc - 1)) * row_bytes..][..row_bytes]
                });
                let mut acc = [f32x4_splat(0.0); 2];
                let mut mins = [0f32; 2];
                let mut blocks: [&[u8]; 2] = [&[]; 2];
                let mut sc: [Scales; 2] = std::array::from_fn(|_| Scales {
                    scale: [0.0; 16],
                    min: [0.0; 8],
                });
                for p in 0..pieces {
                    let s = p % per_block;
                    let xv = &xw[4 * p..4 * p + 4];
                    let xs = x.scale[p];
                    for c in 0..nc {
                        if s == 0 {
                            blocks[c] = &rows_of[c][p / per_block * block_bytes..][..block_bytes];
                            sc[c] = scales(blocks[c]);
                        }
                        let q = decode(blocks[c], s);
                        let (scale, min) =
                            ([sc[c].scale[2 * s], sc[c].scale[2 * s + 1]], sc[c].min[s]);
                        acc[c] = step::<T>(acc[c], q, xv, scale, xs);
                        if T == Q4_K {
                            mins[c] += min * x.sum[p];
                        }
                    }
                }
                for c in 0..nc {
                    // SAFETY: j + c is in this call's columns; the row is 0.
                    unsafe { *y.add(j + c) = hsum(acc[c]) - mins[c] };
                }
                j += nc;
            }
            cols = end..cols.end;
        }
        for j in cols {
            let row = &w.bytes[j * row_bytes..(j + 1) * row_bytes];
            let mut r0 = 0;
            while r0 < rows {
                let r = MR.min(rows - r0);
                let mut acc = [f32x4_splat(0.0); MR];
                let mut mins = [0f32; MR];
                let mut block = &row[..0];
                let mut sc = Scales {
                    scale: [0.0; 16],
                    min: [0.0; 8],
                };
                for p in 0..pieces {
                    let s = p % per_block;
                    if s == 0 {
                        block = &row[p / per_block * block_bytes..][..block_bytes];
                        sc = scales(block);
                    }
                    let q = decode(block, s);
                    let (scale, min) = ([sc.scale[2 * s], sc.scale[2 * s + 1]], sc.min[s]);
                    for i in 0..r {
                        let at = (r0 + i) * pieces + p;
                        let xv = &xw[4 * at..4 * at + 4];
                        acc[i] = step::<T>(acc[i], q, xv, scale, x.scale[at]);
                        if T == Q4_K {
                            mins[i] += min * x.sum[at];
                        }
                    }
                }
                for i in 0..r {
                    // SAFETY: r0 + i < rows and j is in this call's columns.
                    unsafe { *y.add((r0 + i) * n + j) = hsum(acc[i]) - mins[i] };
                }
                r0 += r;
            }
        }
    }

    /// One piece of a product: `acc + (q · x) · scale · xs`, the integer dot product of 16
    /// values at a time widened to 16 bits (SIMD128 multiplies no narrower).
    #[inline(always)]
    fn step<const T: u32>(acc: v128, q: [v128; 2], xv: &[v128], scale: [f32; 2], xs: f32) -> v128 {
        let wq = [
            i16x8_extend_low_i8x16(q[0]),
            i16x8_extend_high_i8x16(q[0]),
            i16x8_extend_low_i8x16(q[1]),
            i16x8_extend_high_i8x16(q[1]),
        ];
        let lo = i32x4_add(i32x4_dot_i16x8(wq[0], xv[0]), i32x4_dot_i16x8(wq[1], xv[1]));
        let hi = i32x4_add(i32x4_dot_i16x8(wq[2], xv[2]), i32x4_dot_i16x8(wq[3], xv[3]));
        if T != Q6_K {
            let s = f32x4_splat(scale[0] * xs);
            f32x4_add(acc, f32x4_mul(f32x4_convert_i32x4(i32x4_add(lo, hi)), s))
        } else {
            let (s0, s1) = (scale[0] * xs, scale[1] * xs);
            let a = f32x4_add(acc, f32x4_mul(f32x4_convert_i32x4(lo), f32x4_splat(s0)));
            f32x4_add(a, f32x4_mul(f32x4_convert_i32x4(hi), f32x4_splat(s1)))
        }
    }

    #[inline(always)]
    fn load(b: &[u8], at: usize) -> v128 {
        let s = &b[at..at + 16];
        // SAFETY: 16 bytes.
        unsafe { v128_load(s.as_ptr() as *const v128) }
    }

    /// 16 bytes at `at`: low nibbles (values 0–15), high nibbles (16–31).
    #[inline(always)]
    fn nibbles(b: &[u8], at: usize) -> [v128; 2] {
        let t = load(b, at);
        [v128_and(t, u8x16_splat(0xF)), u8x16_shr(t, 4)]
    }

    /// Bits 0–15 of `bits` as 16 bytes, 0xFF where the bit is set.
    #[inline(always)]
    fn bits_to_bytes(bits: u32) -> v128 {
        let spread = u8x16_swizzle(
            u16x8_splat(bits as u16),
            u8x16(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1),
        );
        let mask = u8x16(1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128);
        u8x16_eq(v128_and(spread, mask), mask)
    }

    #[inline(always)]
    fn q8_0(b: &[u8], _piece: usize) -> [v128; 2] {
        [load(b, 2), load(b, 18)]
    }

    /// Q4_0: nibbles less 8.
    #[inline(always)]
    fn q4_0(b: &[u8], _piece: usize) -> [v128; 2] {
        let [lo, hi] = nibbles(b, 2);
        let eight = i8x16_splat(8);
        [i8x16_sub(lo, eight), i8x16_sub(hi, eight)]
    }

    /// Q5_0: nibbles, the fifth bit clear making them `q − 16` as signed bytes.
    #[inline(always)]
    fn q5_0(b: &[u8], _piece: usize) -> [v128; 2] {
        let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
        let [lo, hi] = nibbles(b, 6);
        let f0 = u8x16_splat(0xF0);
        [
            v128_or(lo, v128_andnot(f0, bits_to_bytes(qh))),
            v128_or(hi, v128_andnot(f0, bits_to_bytes(qh >> 16))),
        ]
    }

    /// Q4_K: `d·sc` (for both halves of each piece) and `dmin·m` of the 8 pieces.
    #[inline(always)]
    fn q4_k_scales(b: &[u8]) -> Scales {
        let (d, dmin) = (half(b, 0), half(b, 2));
        let mut out = Scales {
            scale: [0.0; 16],
            min: [0.0; 8],
        };
        for s in 0..8 {
            let (sc, m) = crate::ggml::scale_min_k4(&b[4..16], s);
            out.scale[2 * s] = d * sc as f32;
            out.scale[2 * s + 1] = d * sc as f32;
            out.min[s] = dmin * m as f32;
        }
        out
    }

    /// Q4_K: piece `s` of a super-block, nibbles (0–15).
    #[inline(always)]
    fn q4_k(b: &[u8], s: usize) -> [v128; 2] {
        let at = 16 + 32 * (s / 2);
        let nib = |v: v128| {
            let v = if s % 2 == 0 { v } else { u8x16_shr(v, 4) };
            v128_and(v, u8x16_splat(0xF))
        };
        [nib(load(b, at)), nib(load(b, at + 16))]
    }

    /// Q6_K: `d·sc` of each 16 values (piece `p` = (h, j) has scales `8h + 2j` and the next).
    #[inline(always)]
    fn q6_k_scales(b: &[u8]) -> Scales {
        let d = half(b, 208);
        Scales {
            scale: std::array::from_fn(|i| d * b[192 + i] as i8 as f32),
            min: [0.0; 8],
        }
    }

    /// Q6_K: piece `p` = (h, j): `(low | high << 4) − 32`.
    #[inline(always)]
    fn q6_k(b: &[u8], p: usize) -> [v128; 2] {
        let (h, j) = (p / 4, p % 4);
        let part = |o: usize| {
            let lo = load(b, 64 * h + 32 * (j % 2) + o);
            let lo = v128_and(if j < 2 { lo } else { u8x16_shr(lo, 4) }, u8x16_splat(0xF));
            let hi = v128_and(
                u8x16_shr(load(b, 128 + 32 * h + o), 2 * j as u32),
                u8x16_splat(3),
            );
            i8x16_sub(v128_or(lo, i8x16_shl(hi, 4)), i8x16_splat(32))
        };
        [part(0), part(16)]
    }
}

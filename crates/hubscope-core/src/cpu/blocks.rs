//! A linear layer whose weight stays in ggml's blocks (Q8_0, Q5_0, Q4_0, Q4_K, Q6_K: what a
//! Q4_K_M, Q4_0 or Q8_0 GGUF file of the supported families holds, and what `--dtype
//! q8_0|q4_0|q4_k` makes): `x · Wᵀ` decodes each 32-value piece of a weight row into
//! registers as it goes and multiplies it with every row of `x`, so memory holds the file's
//! bytes, not f32 or f16 copies, and a decode step reads ~0.5–1 byte per weight. Decoded values are the dequantized ones ([`crate::ggml`]) up to one rounding of a
//! fused multiply-add (the K-quants' `d·q − m`); sums are f32.

use std::sync::Arc;

use crate::gguf::GgmlType;

use super::par::{Out, for_each, threads};

/// A weight matrix `[rows, cols]` (out × in features) kept as ggml blocks, row after row.
pub struct BlockMatrix {
    pub ggml_type: GgmlType,
    pub rows: usize,
    pub cols: usize,
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for BlockMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "BlockMatrix({} [{}, {}])",
            self.ggml_type.name(),
            self.rows,
            self.cols
        )
    }
}

/// Shared, cheap to clone (a module is cloned for each use of its weights).
pub type Blocks = Arc<BlockMatrix>;

pub(super) const Q8_0: u32 = 8;
pub(super) const Q4_0: u32 = 2;
pub(super) const Q5_0: u32 = 6;
pub(super) const Q4_K: u32 = 12;
pub(super) const Q6_K: u32 = 14;

/// At most this many rows take the integer kernel (`q8dot`: decode steps); more decode the
/// weights to f32 and keep the activations exact (prompts).
const INT8_ROWS: usize = 8;

/// Whether weights of type `t` with rows of `cols` values can stay in blocks on this CPU.
pub fn keeps(t: GgmlType, cols: usize) -> bool {
    let block = match t.0 {
        Q8_0 | Q5_0 | Q4_0 => 32,
        Q4_K | Q6_K => 256,
        _ => return false,
    };
    cols % block == 0 && kernel().is_some()
}

impl BlockMatrix {
    fn row_bytes(&self) -> usize {
        let (values, bytes) = self.ggml_type.block().expect("a kept type");
        self.cols / values as usize * bytes as usize
    }

    /// Rows `ids` as f32, one after another (an embedding lookup); an id past the rows gives
    /// zeros (the ids come from the tokenizer, checked against the vocabulary before).
    pub fn rows_f32(&self, ids: &[i64]) -> Vec<f32> {
        let rb = self.row_bytes();
        let mut out = Vec::with_capacity(ids.len() * self.cols);
        for &id in ids {
            match usize::try_from(id).ok().filter(|&i| i < self.rows) {
                Some(i) => out.extend(
                    crate::ggml::dequantize(
                        self.ggml_type,
                        &self.bytes[i * rb..(i + 1) * rb],
                        "weights",
                        "blocks",
                    )
                    .expect("blocks of a kept type"),
                ),
                None => out.extend(std::iter::repeat_n(0.0, self.cols)),
            }
        }
        out
    }

    /// Every value as f32 by ggml's own arithmetic: what the kernels' tests compare with.
    #[cfg(test)]
    pub fn dequantize(&self) -> Vec<f32> {
        crate::ggml::dequantize(self.ggml_type, &self.bytes, "weights", "blocks")
            .expect("blocks of a kept type")
    }
}

/// Every value of `w` as f32, its rows split over the threads.
pub fn dequantize_parallel(w: &BlockMatrix) -> Vec<f32> {
    let (n, k, row_bytes) = (w.rows, w.cols, w.row_bytes());
    let mut y: Vec<f32> = Vec::with_capacity(n * k);
    let out = Out::spare(&mut y);
    let per = n.div_ceil(threads() * 4).max(1);
    let starts: Vec<usize> = (0..n).step_by(per).collect();
    let fast = kernel().is_some();
    for_each(&starts, |start| {
        let end = (start + per).min(n);
        #[cfg(target_arch = "x86_64")]
        if fast {
            // SAFETY: `kernel` found AVX2, FMA and F16C; rows start..end of the output are
            // written by this task alone.
            unsafe { avx2::decode_rows(w, row_bytes, start..end, out.get()) };
            return;
        }
        let _ = fast;
        let v = crate::ggml::dequantize(
            w.ggml_type,
            &w.bytes[start * row_bytes..end * row_bytes],
            "weights",
            "blocks",
        )
        .expect("blocks of a kept type");
        // SAFETY: rows start..end of the output, written by this task alone.
        unsafe { std::ptr::copy_nonoverlapping(v.as_ptr(), out.get().add(start * k), v.len()) };
    });
    // SAFETY: the row ranges cover 0..n.
    unsafe { y.set_len(n * k) };
    y
}

/// `x · Wᵀ` for `x: [rows, cols]` (f32): `[rows, w.rows]`.
pub fn x_wt_blocks(x: &[f32], w: &BlockMatrix, rows: usize) -> Vec<f32> {
    let (k, n) = (w.cols, w.rows);
    assert_eq!(x.len(), rows * k, "x is [rows, cols]");
    let kernel = kernel().expect("checked by keeps");
    let mut y: Vec<f32> = Vec::with_capacity(rows * n);
    let out = Out::spare(&mut y);
    let blocks = if rows * n * k < 1 << 18 {
        1
    } else {
        threads() * 4
    };
    let per = n.div_ceil(blocks).max(1);
    let starts: Vec<usize> = (0..n).step_by(per).collect();
    let row_bytes = w.row_bytes();
    // The integer kernel (AVX2, or SIMD128 in the page) for decode steps.
    let integer = cfg!(any(
        target_arch = "x86_64",
        all(target_arch = "wasm32", target_feature = "simd128")
    ));
    let quantized = (integer && rows <= INT8_ROWS).then(|| super::q8dot::quantize_rows(x));
    for_each(&starts, |start| {
        let end = (start + per).min(n);
        // SAFETY: the kernels' features were detected (`kernel` checks the same ones); tasks
        // write disjoint columns.
        unsafe {
            match &quantized {
                #[cfg(target_arch = "x86_64")]
                Some(q) => {
                    super::q8dot::avx2::columns(q, w, row_bytes, rows, start..end, out.get())
                }
                #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
                Some(q) => {
                    super::q8dot::simd128::columns(q, w, row_bytes, rows, start..end, out.get())
                }
                _ => kernel(x, w, row_bytes, rows, start..end, out.get()),
            }
        }
    });
    // SAFETY: the column ranges cover 0..n, each writing its columns of every row.
    unsafe { y.set_len(rows * n) };
    y
}

type Kernel = unsafe fn(&[f32], &BlockMatrix, usize, usize, std::ops::Range<usize>, *mut f32);

fn kernel() -> Option<Kernel> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx2") && has!("fma") && has!("f16c") {
            return Some(avx2::columns);
        }
    }
    // The page's CPU device: compiled in where the build enables SIMD128.
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    return Some(simd128::columns);
    #[allow(unreachable_code)]
    None
}

/// The f32 block kernel in WebAssembly SIMD128 (the page's CPU device): each 32-value piece of
/// a weight row decoded into eight 4-lane vectors, then multiplied with every row of `x`
/// (multiply, then add: SIMD128 has no fused multiply-add). Decoded values are ggml's
/// dequantized ones exactly (the same f32 operations: `d · q`, or `d·sc·q − dmin·m`).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub(super) mod simd128 {
    use std::arch::wasm32::*;

    use super::{BlockMatrix, Q4_0, Q4_K, Q5_0, Q6_K, Q8_0};

    /// Rows of `x` per pass: their accumulators, eight decoded vectors and one `x` vector fit
    /// the 16 vector registers browsers' x86-64 code generators allocate.
    const MR: usize = 4;

    /// Columns `cols` of `y` for every row of `x`.
    ///
    /// # Safety
    /// `y` holds `rows * w.rows` floats and no one else writes columns `cols`.
    pub unsafe fn columns(
        x: &[f32],
        w: &BlockMatrix,
        row_bytes: usize,
        rows: usize,
        cols: std::ops::Range<usize>,
        y: *mut f32,
    ) {
        let (k, n) = (w.cols, w.rows);
        let (decode, per_block, block_bytes) = decoder(w);
        let mut wv = [f32x4_splat(0.0); 8];
        for j in cols {
            let row = &w.bytes[j * row_bytes..(j + 1) * row_bytes];
            let mut r0 = 0;
            while r0 < rows {
                let r = MR.min(rows - r0);
                let mut acc = [f32x4_splat(0.0); MR];
                for piece in 0..k / 32 {
                    let block = &row[piece / per_block * block_bytes..][..block_bytes];
                    decode(block, piece % per_block, &mut wv);
                    let at = piece * 32;
                    for (i, a) in acc.iter_mut().enumerate().take(r) {
                        let xs = &x[(r0 + i) * k + at..][..32];
                        for (q, v) in wv.iter().enumerate() {
                            // SAFETY: 4 values at 4q of a 32-value slice.
                            let xv = unsafe { v128_load(xs.as_ptr().add(4 * q) as *const v128) };
                            *a = f32x4_add(*a, f32x4_mul(xv, *v));
                        }
                    }
                }
                for (i, a) in acc.iter().enumerate().take(r) {
                    // SAFETY: r0 + i < rows and j is in this call's columns.
                    unsafe { *y.add((r0 + i) * n + j) = hsum(*a) };
                }
                r0 += r;
            }
        }
    }

    /// A type's decoder of a 32-value piece, pieces per block and bytes per block.
    type Decoder = fn(&[u8], usize, &mut [v128; 8]);
    fn decoder(w: &BlockMatrix) -> (Decoder, usize, usize) {
        let decode: Decoder = match w.ggml_type.0 {
            Q8_0 => q8_0,
            Q5_0 => q5_0,
            Q4_0 => q4_0,
            Q4_K => q4_k,
            Q6_K => q6_k,
            _ => unreachable!("kept types only"),
        };
        let (values, bytes) = w.ggml_type.block().expect("kept type");
        (decode, values as usize / 32, bytes as usize)
    }

    /// The sum of a 4-lane accumulator, lanes 0 + 2 and 1 + 3 first (every SIMD128 kernel
    /// sums in this order).
    #[inline(always)]
    pub(in crate::cpu) fn hsum(a: v128) -> f32 {
        (f32x4_extract_lane::<0>(a) + f32x4_extract_lane::<2>(a))
            + (f32x4_extract_lane::<1>(a) + f32x4_extract_lane::<3>(a))
    }

    /// The f16 at `b[at..]` as f32: its exponent and mantissa moved into f32's place and
    /// scaled by 2¹¹² (exact for normal and subnormal values; WebAssembly has no f16
    /// conversion, and the `half` crate's portable one normalizes subnormals in a loop),
    /// infinities and NaNs given f32's all-ones exponent.
    #[inline(always)]
    pub(in crate::cpu) fn half(b: &[u8], at: usize) -> f32 {
        let h = u16::from_le_bytes([b[at], b[at + 1]]) as u32;
        let (sign, magnitude) = ((h & 0x8000) << 16, (h & 0x7fff) << 13);
        let value = if magnitude >= 0x7c00 << 13 {
            magnitude | 0x7f80_0000
        } else {
            // 2^(127 - 15): the f32 exponent bias over f16's.
            (f32::from_bits(magnitude) * f32::from_bits(0x7780_0000)).to_bits()
        };
        f32::from_bits(sign | value)
    }

    /// 4 bytes from `b[at..]` as 4 u32 lanes.
    #[inline(always)]
    fn bytes4(b: &[u8], at: usize) -> v128 {
        let v = u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        u32x4_extend_low_u16x8(u16x8_extend_low_u8x16(u32x4(v, 0, 0, 0)))
    }

    /// Nibble `high` (0 low, 1 high) of 4 bytes as u32 lanes.
    #[inline(always)]
    fn nibbles(b: &[u8], at: usize, high: bool) -> v128 {
        let raw = bytes4(b, at);
        if high {
            u32x4_shr(raw, 4)
        } else {
            v128_and(raw, u32x4_splat(0xF))
        }
    }

    #[inline(always)]
    fn scaled(q: v128, d: f32) -> v128 {
        f32x4_mul(f32x4_convert_i32x4(q), f32x4_splat(d))
    }

    /// Q8_0: `d`, 32 signed bytes.
    fn q8_0(b: &[u8], _piece: usize, out: &mut [v128; 8]) {
        let d = half(b, 0);
        for (i, o) in out.iter_mut().enumerate() {
            let at = 2 + 4 * i;
            let v = u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
            let q = i32x4_extend_low_i16x8(i16x8_extend_low_i8x16(u32x4(v, 0, 0, 0)));
            *o = scaled(q, d);
        }
    }

    /// Q4_0: `d`, 16 bytes of nibbles (values `l` low, `16 + l` high); `q − 8`.
    fn q4_0(b: &[u8], _piece: usize, out: &mut [v128; 8]) {
        let d = half(b, 0);
        for (i, o) in out.iter_mut().enumerate() {
            let nib = nibbles(b, 2 + 4 * (i % 4), i >= 4);
            *o = scaled(i32x4_sub(nib, i32x4_splat(8)), d);
        }
    }

    /// Q5_0: `d`, 32 fifth bits, 16 bytes of nibbles (values `l` low, `16 + l` high); `q − 16`.
    fn q5_0(b: &[u8], _piece: usize, out: &mut [v128; 8]) {
        let d = half(b, 0);
        let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
        let lane_bits = u32x4(1, 2, 4, 8);
        for (i, o) in out.iter_mut().enumerate() {
            let nib = nibbles(b, 6 + 4 * (i % 4), i >= 4);
            // Bits 4i..4i+4 of qh, one per lane, as 16 or 0.
            let set = u32x4_ne(
                v128_and(u32x4_splat(qh >> (4 * i)), lane_bits),
                u32x4_splat(0),
            );
            let q = v128_or(nib, v128_and(set, u32x4_splat(16)));
            *o = scaled(i32x4_sub(q, i32x4_splat(16)), d);
        }
    }

    /// Q4_K: piece `s` of 8 in a super-block: nibble `s % 2` of bytes `32(s / 2)..`, as
    /// `d·sc·q − dmin·m`.
    fn q4_k(b: &[u8], s: usize, out: &mut [v128; 8]) {
        let (sc, m) = crate::ggml::scale_min_k4(&b[4..16], s);
        let dl = f32x4_splat(half(b, 0) * sc as f32);
        let ml = f32x4_splat(half(b, 2) * m as f32);
        let qs = 16 + 32 * (s / 2);
        for (i, o) in out.iter_mut().enumerate() {
            let q = nibbles(b, qs + 4 * i, s % 2 == 1);
            *o = f32x4_sub(f32x4_mul(f32x4_convert_i32x4(q), dl), ml);
        }
    }

    /// Q6_K: piece `p` = (h, j) of a super-block: low nibble `j / 2` of `ql[64h + 32(j % 2)..]`,
    /// bits `2j` of `qh[32h..]`, `q − 32`, scaled per 16 values.
    fn q6_k(b: &[u8], p: usize, out: &mut [v128; 8]) {
        let (h, j) = (p / 4, p % 4);
        let d = half(b, 208);
        let (ql, qh) = (64 * h + 32 * (j % 2), 128 + 32 * h);
        for (i, o) in out.iter_mut().enumerate() {
            let lo = nibbles(b, ql + 4 * i, j >= 2);
            let hi = v128_and(
                u32x4_shr(bytes4(b, qh + 4 * i), 2 * j as u32),
                u32x4_splat(3),
            );
            let q = i32x4_sub(v128_or(lo, i32x4_shl(hi, 4)), i32x4_splat(32));
            // Values 128h + 32j + 4i..: scale index (32j + 4i) / 16 within the half.
            let sc = b[192 + 8 * h + (32 * j + 4 * i) / 16] as i8;
            *o = scaled(q, d * sc as f32);
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) mod avx2 {
    use std::arch::x86_64::*;

    use super::{BlockMatrix, Q4_0, Q4_K, Q5_0, Q6_K, Q8_0};

    /// Rows of `x` per pass: their accumulators, four decoded weight vectors and one `x`
    /// vector fit AVX2's 16 registers.
    const MR: usize = 8;

    /// Columns `cols` of `y` for every row of `x`.
    ///
    /// # Safety
    /// AVX2, FMA and F16C are available; `y` holds `rows * w.rows` floats and no one else
    /// writes columns `cols`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn columns(
        x: &[f32],
        w: &BlockMatrix,
        row_bytes: usize,
        rows: usize,
        cols: std::ops::Range<usize>,
        y: *mut f32,
    ) {
        // SAFETY: the caller's promise (features present; pointers in bounds).
        unsafe {
            let (k, n) = (w.cols, w.rows);
            let (decode, per_block, block_bytes) = decoder(w);
            for j in cols {
                let row = &w.bytes[j * row_bytes..(j + 1) * row_bytes];
                let mut r0 = 0;
                while r0 < rows {
                    let r = MR.min(rows - r0);
                    let mut acc = [_mm256_setzero_ps(); MR];
                    let mut wv = [_mm256_setzero_ps(); 4];
                    for piece in 0..k / 32 {
                        let block = row.as_ptr().add(piece / per_block * block_bytes);
                        decode(block, piece % per_block, &mut wv);
                        let at = piece * 32;
                        for (i, a) in acc.iter_mut().enumerate().take(r) {
                            let xp = x.as_ptr().add((r0 + i) * k + at);
                            for (q, v) in wv.iter().enumerate() {
                                *a = _mm256_fmadd_ps(_mm256_loadu_ps(xp.add(8 * q)), *v, *a);
                            }
                        }
                    }
                    for (i, a) in acc.iter().enumerate().take(r) {
                        *y.add((r0 + i) * n + j) = hsum(*a);
                    }
                    r0 += r;
                }
            }
        }
    }

    /// Rows `rows` of `w` decoded to f32 at `out` (row-major, `w.cols` values per row).
    ///
    /// # Safety
    /// AVX2, FMA and F16C are available; `out` holds `w.rows * w.cols` floats and no one else
    /// writes rows `rows`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn decode_rows(
        w: &BlockMatrix,
        row_bytes: usize,
        rows: std::ops::Range<usize>,
        out: *mut f32,
    ) {
        // SAFETY: the caller's promise; pointers stay inside row j of `w.bytes` and of `out`.
        unsafe {
            let k = w.cols;
            let (decode, per_block, block_bytes) = decoder(w);
            let mut wv = [_mm256_setzero_ps(); 4];
            for j in rows {
                let row = w.bytes.as_ptr().add(j * row_bytes);
                for piece in 0..k / 32 {
                    decode(
                        row.add(piece / per_block * block_bytes),
                        piece % per_block,
                        &mut wv,
                    );
                    let o = out.add(j * k + piece * 32);
                    for (q, v) in wv.iter().enumerate() {
                        _mm256_storeu_ps(o.add(8 * q), *v);
                    }
                }
            }
        }
    }

    /// The sum of the 8 lanes (shared with the integer kernel).
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    pub(in crate::cpu) fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }

    /// The f16 at `p` (F16C; shared with the integer kernel).
    ///
    /// # Safety
    /// Two bytes are readable at `p`.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    pub(in crate::cpu) unsafe fn half(p: *const u8) -> f32 {
        // SAFETY: the caller's promise.
        unsafe {
            let bits = (p as *const u16).read_unaligned();
            _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
        }
    }

    /// A type's f32 decoder of a 32-value piece, pieces per block and bytes per block.
    type Decoder = unsafe fn(*const u8, usize, &mut [__m256; 4]);
    fn decoder(w: &BlockMatrix) -> (Decoder, usize, usize) {
        let decode: Decoder = match w.ggml_type.0 {
            Q8_0 => q8_0,
            Q5_0 => q5_0,
            Q4_0 => q4_0,
            Q4_K => q4_k,
            Q6_K => q6_k,
            _ => unreachable!("kept types only"),
        };
        let (values, bytes) = w.ggml_type.block().expect("kept type");
        (decode, values as usize / 32, bytes as usize)
    }

    /// 8 bytes at `p` as 8 u32 lanes.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn bytes8(p: *const u8) -> __m256i {
        // SAFETY: the caller's promise (features present; pointers in bounds).
        unsafe { _mm256_cvtepu8_epi32(_mm_loadl_epi64(p as *const __m128i)) }
    }

    /// Q8_0: `d`, 32 signed bytes.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn q8_0(b: *const u8, _piece: usize, out: &mut [__m256; 4]) {
        // SAFETY: the caller's promise (features present; pointers in bounds).
        unsafe {
            let d = _mm256_set1_ps(half(b));
            for (i, o) in out.iter_mut().enumerate() {
                let q = _mm256_cvtepi8_epi32(_mm_loadl_epi64(b.add(2 + 8 * i) as *const __m128i));
                *o = _mm256_mul_ps(_mm256_cvtepi32_ps(q), d);
            }
        }
    }

    /// Q4_0: `d`, 16 bytes of nibbles (values `l` low, `16 + l` high); `q − 8`.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn q4_0(b: *const u8, _piece: usize, out: &mut [__m256; 4]) {
        // SAFETY: the caller's promise (features present; pointers in bounds).
        unsafe {
            let d = _mm256_set1_ps(half(b));
            let (f, eight) = (_mm256_set1_epi32(0xF), _mm256_set1_epi32(8));
            for (i, o) in out.iter_mut().enumerate() {
                let raw = bytes8(b.add(2 + 8 * (i % 2)));
                let nib = if i < 2 {
                    _mm256_and_si256(raw, f)
                } else {
                    _mm256_srli_epi32::<4>(raw)
                };
                *o = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(nib, eight)), d);
            }
        }
    }

    /// Q5_0: `d`, 32 fifth bits, 16 bytes of nibbles (values `l` low, `16 + l` high); `q − 16`.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn q5_0(b: *const u8, _piece: usize, out: &mut [__m256; 4]) {
        // SAFETY: the caller's promise (features present; pointers in bounds).
        unsafe {
            let d = _mm256_set1_ps(half(b));
            let qh =
                _mm256_set1_epi32(
                    u32::from_le_bytes([*b.add(2), *b.add(3), *b.add(4), *b.add(5)]) as i32,
                );
            let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
            let (f, one, sixteen) = (
                _mm256_set1_epi32(0xF),
                _mm256_set1_epi32(1),
                _mm256_set1_epi32(16),
            );
            for (i, o) in out.iter_mut().enumerate() {
                // Values 8i..8i+8: bytes (8i mod 16).., low nibbles for i < 2, high ones after.
                let raw = bytes8(b.add(6 + 8 * (i % 2)));
                let nib = if i < 2 {
                    _mm256_and_si256(raw, f)
                } else {
                    _mm256_srli_epi32::<4>(raw)
                };
                let bit = _mm256_and_si256(
                    _mm256_srlv_epi32(qh, _mm256_add_epi32(lanes, _mm256_set1_epi32(8 * i as i32))),
                    one,
                );
                let q =
                    _mm256_sub_epi32(_mm256_or_si256(nib, _mm256_slli_epi32::<4>(bit)), sixteen);
                *o = _mm256_mul_ps(_mm256_cvtepi32_ps(q), d);
            }
        }
    }

    /// Q4_K: piece `s` of 8 in a super-block: nibble `s % 2` of bytes `32(s / 2)..`, as
    /// `d·sc·q − dmin·m`.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn q4_k(b: *const u8, s: usize, out: &mut [__m256; 4]) {
        // SAFETY: the caller's promise (features present; pointers in bounds).
        unsafe {
            let scales = std::slice::from_raw_parts(b.add(4), 12);
            let (sc, m) = crate::ggml::scale_min_k4(scales, s);
            let dl = _mm256_set1_ps(half(b) * sc as f32);
            let ml = _mm256_set1_ps(half(b.add(2)) * m as f32);
            let qs = b.add(16 + 32 * (s / 2));
            let f = _mm256_set1_epi32(0xF);
            for (i, o) in out.iter_mut().enumerate() {
                let raw = bytes8(qs.add(8 * i));
                let q = if s % 2 == 0 {
                    _mm256_and_si256(raw, f)
                } else {
                    _mm256_srli_epi32::<4>(raw)
                };
                *o = _mm256_fmsub_ps(_mm256_cvtepi32_ps(q), dl, ml);
            }
        }
    }

    /// Q6_K: piece `p` = (h, j) of a super-block: low nibble `j / 2` of `ql[64h + 32(j % 2)..]`,
    /// bits `2j` of `qh[32h..]`, `q − 32`, scaled per 16 values.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn q6_k(b: *const u8, p: usize, out: &mut [__m256; 4]) {
        // SAFETY: the caller's promise (features present; pointers in bounds).
        unsafe {
            let (h, j) = (p / 4, p % 4);
            let d = half(b.add(208));
            let scales = b.add(192);
            let ql = b.add(64 * h + 32 * (j % 2));
            let qh = b.add(128 + 32 * h);
            let (f, three, off) = (
                _mm256_set1_epi32(0xF),
                _mm256_set1_epi32(3),
                _mm256_set1_epi32(32),
            );
            for (i, o) in out.iter_mut().enumerate() {
                let lo = bytes8(ql.add(8 * i));
                let lo = if j < 2 {
                    _mm256_and_si256(lo, f)
                } else {
                    _mm256_srli_epi32::<4>(lo)
                };
                let hi = _mm256_and_si256(
                    _mm256_srlv_epi32(bytes8(qh.add(8 * i)), _mm256_set1_epi32(2 * j as i32)),
                    three,
                );
                let q = _mm256_sub_epi32(_mm256_or_si256(lo, _mm256_slli_epi32::<4>(hi)), off);
                // Values 128h + 32j + 8i..: scale index (32j + 8i) / 16 within the half.
                let sc = *scales.add(8 * h + (32 * j + 8 * i) / 16) as i8;
                *o = _mm256_mul_ps(_mm256_cvtepi32_ps(q), _mm256_set1_ps(d * sc as f32));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random blocks of type `t` (finite f16 scales where ggml's structs put them).
    fn random_blocks(t: u32, rows: usize, cols: usize, seed: u64) -> BlockMatrix {
        let mut s = seed | 1;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        let (values, size) = GgmlType(t).block().unwrap();
        let n = rows * cols / values as usize;
        let halves: &[usize] = match t {
            Q8_0 | Q5_0 | Q4_0 => &[0],
            Q4_K => &[0, 2],
            Q6_K => &[208],
            _ => unreachable!(),
        };
        let mut bytes = vec![];
        for _ in 0..n {
            let mut b: Vec<u8> = (0..size).map(|_| next() as u8).collect();
            for &at in halves {
                let h = half::f16::from_f32(((next() % 2000) as f32 - 1000.0) * 1e-4);
                b[at..at + 2].copy_from_slice(&h.to_le_bytes());
            }
            bytes.extend(b);
        }
        BlockMatrix {
            ggml_type: GgmlType(t),
            rows,
            cols,
            bytes,
        }
    }

    /// A benchmark, not a test (ignored; it asserts nothing): nanoseconds per 32 weights of
    /// one decode step's products on the real Qwen2.5-0.5B shapes, for each kept block type
    /// and for 16-bit weights. Run where the kernels in question run, e.g. SIMD128 under
    /// node: `RUSTFLAGS="-C target-feature=+simd128" cargo test --release --target
    /// wasm32-wasip1 -p hubscope-core --lib --no-run`, then the test binary under a WASI
    /// runner with `decode_kernel_speed --ignored --nocapture`.
    #[test]
    #[ignore]
    fn decode_kernel_speed() {
        use std::time::Instant;
        let runs = 200;
        let per_piece = |t0: Instant, n: usize, k: usize| {
            t0.elapsed().as_nanos() as f64 / runs as f64 / (n * k / 32) as f64
        };
        for t in [Q8_0, Q5_0, Q4_K, Q6_K] {
            // K-quants where ggml keeps them: rows of whole super-blocks (ffn_down).
            let (n, k) = if t == Q4_K || t == Q6_K {
                (896, 4864)
            } else {
                (4864, 896)
            };
            let (x, w) = (crate::cpu::test_values(k, 1), random_blocks(t, n, k, 3));
            let t0 = Instant::now();
            for _ in 0..runs {
                std::hint::black_box(x_wt_blocks(&x, &w, 1));
            }
            eprintln!(
                "{}: {:.2} ns per 32 weights",
                GgmlType(t).name(),
                per_piece(t0, n, k)
            );
        }
        let (n, k) = (4864, 896);
        let x = crate::cpu::test_values(k, 1);
        let w = crate::cpu::test_values(n * k, 2);
        let bf16: Vec<half::bf16> = w.iter().map(|&v| half::bf16::from_f32(v)).collect();
        let f16: Vec<half::f16> = w.iter().map(|&v| half::f16::from_f32(v)).collect();
        let t0 = Instant::now();
        for _ in 0..runs {
            std::hint::black_box(super::super::x_wt::x_wt(&x, &bf16, 1, k, n));
        }
        eprintln!("bf16: {:.2} ns per 32 weights", per_piece(t0, n, k));
        let t0 = Instant::now();
        for _ in 0..runs {
            std::hint::black_box(super::super::x_wt::x_wt(&x, &f16, 1, k, n));
        }
        eprintln!("f16: {:.2} ns per 32 weights", per_piece(t0, n, k));
    }

    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    #[test]
    fn every_f16_scale_reads_as_the_half_crate_reads_it() {
        for h in 0..=u16::MAX {
            let want = half::f16::from_bits(h).to_f32();
            let got = simd128::half(&h.to_le_bytes(), 0);
            let same = got.to_bits() == want.to_bits() || got.is_nan() && want.is_nan();
            assert!(same, "{h:#06x}: {got} != {want}");
        }
    }

    #[test]
    fn parallel_decoding_matches_dequantize() {
        for t in [Q8_0, Q5_0, Q4_0, Q4_K, Q6_K] {
            let w = random_blocks(t, 9, 512, 5 + t as u64);
            let (got, want) = (dequantize_parallel(&w), w.dequantize());
            let top = want.iter().fold(0f32, |m, v| m.max(v.abs()));
            for (i, (g, e)) in got.iter().zip(&want).enumerate() {
                // The K-quants' `d·q − m` is one fused rounding here, two in ggml's: within an
                // ulp of the largest term.
                assert!(
                    (g - e).abs() <= top * f32::EPSILON,
                    "{}: value {i}: {g} vs {e}",
                    GgmlType(t).name()
                );
            }
        }
    }

    #[test]
    fn block_products_match_dequantized_weights() {
        for t in [Q8_0, Q5_0, Q4_0, Q4_K, Q6_K] {
            let (n, k) = (7, 512);
            let w = random_blocks(t, n, k, 11 + t as u64);
            let dense = w.dequantize();
            for rows in [1, 3, 8, 9, 13] {
                let x: Vec<f32> = (0..rows * k)
                    .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
                    .collect();
                let y = x_wt_blocks(&x, &w, rows);
                // Up to INT8_ROWS rows, the product is that of the rows quantized to 8 bits.
                let x: Vec<f32> = if rows <= INT8_ROWS {
                    let q = super::super::q8dot::quantize_rows(&x);
                    (0..x.len())
                        .map(|i| q.q[i] as f32 * q.scale[i / 32])
                        .collect()
                } else {
                    x
                };
                for r in 0..rows {
                    for j in 0..n {
                        let want: f64 = (0..k)
                            .map(|i| x[r * k + i] as f64 * dense[j * k + i] as f64)
                            .sum();
                        let scale: f64 = (0..k)
                            .map(|i| (x[r * k + i] as f64 * dense[j * k + i] as f64).abs())
                            .sum();
                        let got = y[r * n + j] as f64;
                        assert!(
                            (got - want).abs() <= 1e-6 * scale.max(1e-30),
                            "{} rows {rows}: y[{r},{j}] = {got}, dequantized {want}",
                            GgmlType(t).name()
                        );
                    }
                }
            }
        }
    }
}

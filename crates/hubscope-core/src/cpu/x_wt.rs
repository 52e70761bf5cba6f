//! The kernel for `y = x · Wᵀ` with few rows of `x` (a decode step, a batch of decode steps,
//! a short prompt): `x: [rows, k]` in f32, `W: [n, k]` as checkpoints store linear weights (f32,
//! or f16/bf16 widened to f32 as they are loaded, never converted as a whole), `y: [rows, n]`
//! in f32, all row-major, summed in f32. Every output is a dot product of two contiguous rows, so
//! each weight row is read from memory once for all rows of `x` (a general GEMM packs `W`
//! first, which at a few rows costs as much as the product). Register tiles of MR rows × 4
//! weight rows: MR = 6 where AVX-512VL gives 32 vector registers, 3 with AVX2/FMA's 16; in
//! WebAssembly with SIMD128 (the page's CPU device) 4-lane vectors, MR = 2, f16 widened by
//! integer shifts and one multiply (WebAssembly has no half-precision instructions); portable
//! 8-lane code elsewhere (vectorized by the compiler: SSE, NEON).
//! While a weight tile is used, the next one is prefetched into L2, each row tile fetching
//! its share a line at a time: weights stream from memory at the pace of the arithmetic
//! (about 1.3–1.6× faster at 16 rows than without, measured in docs/BENCHMARKS.md).
//!
//! Each output is summed in the same order whatever the tile it falls in, so a row's result
//! does not depend on the other rows in the batch (batched decoding equals decoding alone,
//! bit for bit). Output columns are split across threads where there are threads.

use super::par::{Out, for_each, threads};

/// Weight rows (output columns) per register tile.
const NR: usize = 4;
/// Lanes of one vector accumulator.
const LANES: usize = 8;

/// A weight element the kernels read: f32, or f16/bf16 widened to f32 on load.
pub trait Weight: Copy + Send + Sync + 'static {
    /// 0: f32, 1: f16, 2: bf16 (a constant, so each kernel is compiled per kind; only the
    /// x86 and SIMD128 kernels load by kind).
    #[cfg_attr(
        not(any(target_arch = "x86_64", target_arch = "wasm32")),
        allow(dead_code)
    )]
    const KIND: u8;
    fn to_f32(self) -> f32;
}

impl Weight for f32 {
    const KIND: u8 = 0;
    fn to_f32(self) -> f32 {
        self
    }
}

impl Weight for half::f16 {
    const KIND: u8 = 1;
    fn to_f32(self) -> f32 {
        half::f16::to_f32(self)
    }
}

impl Weight for half::bf16 {
    const KIND: u8 = 2;
    fn to_f32(self) -> f32 {
        half::bf16::to_f32(self)
    }
}

/// `y[r, j] = Σ_i x[r, i] · w[j, i]` for `x: [rows, k]`, `w: [n, k]`; returns `y: [rows, n]`.
pub fn x_wt<W: Weight>(x: &[f32], w: &[W], rows: usize, k: usize, n: usize) -> Vec<f32> {
    with_kernel(columns_for::<W>(best()), x, w, rows, k, n)
}

/// A kernel: columns `cols` of `y` for every row.
///
/// # Safety
/// The CPU has the kernel's features (as `available` checks); `y` points to `rows * n`
/// floats, and no other thread writes columns `cols`.
type Columns<W> = unsafe fn(&[f32], &[W], usize, usize, usize, std::ops::Range<usize>, *mut f32);

/// The instruction sets the kernels are written for.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Isa {
    #[cfg(target_arch = "x86_64")]
    Avx512,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    Simd128,
    Portable,
}

/// The kernels this CPU runs, best first.
fn available() -> Vec<Isa> {
    let mut v = vec![];
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        let base = has!("avx2") && has!("fma") && has!("f16c");
        if base && has!("avx512f") && has!("avx512vl") {
            v.push(Isa::Avx512);
        }
        if base {
            v.push(Isa::Avx2);
        }
    }
    // Compiled in (the browser build enables SIMD128; every current browser runs it).
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    v.push(Isa::Simd128);
    v.push(Isa::Portable);
    v
}

fn best() -> Isa {
    static BEST: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
    *BEST.get_or_init(|| available()[0])
}

fn columns_for<W: Weight>(isa: Isa) -> Columns<W> {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => avx512::columns::<W>,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => avx2::columns::<W>,
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        Isa::Simd128 => simd128::columns::<W>,
        Isa::Portable => portable::columns::<W>,
    }
}

fn with_kernel<W: Weight>(
    kernel: Columns<W>,
    x: &[f32],
    w: &[W],
    rows: usize,
    k: usize,
    n: usize,
) -> Vec<f32> {
    assert_eq!(x.len(), rows * k, "x is [rows, k]");
    assert_eq!(w.len(), n * k, "w is [n, k]");
    // Not zeroed first: the tasks write every element.
    let mut y: Vec<f32> = Vec::with_capacity(rows * n);
    let out = Out::spare(&mut y);
    let work = rows * n * k;
    // A block of output columns per task: a few per thread, a multiple of the tile width.
    let blocks = if work < 1 << 18 { 1 } else { threads() * 4 };
    let per = n.div_ceil(blocks).next_multiple_of(NR).max(NR);
    let task = |start: usize| {
        let end = (start + per).min(n);
        // SAFETY: `kernel` comes from `available` (the CPU has its features); tasks write
        // disjoint column ranges of `y`, which outlives them.
        unsafe { kernel(x, w, rows, k, n, start..end, out.get()) }
    };
    let starts: Vec<usize> = (0..n).step_by(per).collect();
    for_each(&starts, task);
    // SAFETY: the column blocks cover `0..n`, and each writes its columns of every row.
    unsafe { y.set_len(rows * n) };
    y
}

/// Rows `first..first + R` of a row-major matrix with rows of `k`.
fn rows_of<T, const R: usize>(m: &[T], first: usize, k: usize) -> [&[T]; R] {
    std::array::from_fn(|i| &m[(first + i) * k..(first + i + 1) * k])
}

/// A dot product finished: the vector part's sum plus the elements past the last full
/// `LANES` (`from..`), in the same order for every kernel.
fn finish<W: Weight>(sum: f32, x: &[f32], w: &[W], from: usize) -> f32 {
    x[from..]
        .iter()
        .zip(&w[from..])
        .fold(sum, |s, (a, b)| s + a * b.to_f32())
}

/// Calls `tile::<R, C>(r0, c0)` for a tile of `r` rows × `c` columns (1 ≤ r ≤ 6, 1 ≤ c ≤ NR),
/// so that every tile shape is a function with its accumulators in registers.
macro_rules! dispatch_tile {
    ($tile:ident, $r:expr, $c:expr, $($arg:expr),*) => {
        match ($r, $c) {
            (6, 4) => $tile::<W, 6, 4>($($arg),*),
            (6, 3) => $tile::<W, 6, 3>($($arg),*),
            (6, 2) => $tile::<W, 6, 2>($($arg),*),
            (6, 1) => $tile::<W, 6, 1>($($arg),*),
            (5, 4) => $tile::<W, 5, 4>($($arg),*),
            (5, 3) => $tile::<W, 5, 3>($($arg),*),
            (5, 2) => $tile::<W, 5, 2>($($arg),*),
            (5, 1) => $tile::<W, 5, 1>($($arg),*),
            (4, 4) => $tile::<W, 4, 4>($($arg),*),
            (4, 3) => $tile::<W, 4, 3>($($arg),*),
            (4, 2) => $tile::<W, 4, 2>($($arg),*),
            (4, 1) => $tile::<W, 4, 1>($($arg),*),
            (3, 4) => $tile::<W, 3, 4>($($arg),*),
            (3, 3) => $tile::<W, 3, 3>($($arg),*),
            (3, 2) => $tile::<W, 3, 2>($($arg),*),
            (3, 1) => $tile::<W, 3, 1>($($arg),*),
            (2, 4) => $tile::<W, 2, 4>($($arg),*),
            (2, 3) => $tile::<W, 2, 3>($($arg),*),
            (2, 2) => $tile::<W, 2, 2>($($arg),*),
            (2, 1) => $tile::<W, 2, 1>($($arg),*),
            (1, 4) => $tile::<W, 1, 4>($($arg),*),
            (1, 3) => $tile::<W, 1, 3>($($arg),*),
            (1, 2) => $tile::<W, 1, 2>($($arg),*),
            (1, 1) => $tile::<W, 1, 1>($($arg),*),
            _ => unreachable!("tile shapes are at most 6 x NR"),
        }
    };
}

/// Walks the tiles of columns `cols`: for each block of NR weight rows, every block of `$mr`
/// rows.
macro_rules! walk_tiles {
    ($tile:ident, $mr:expr, $x:expr, $w:expr, $rows:expr, $k:expr, $n:expr, $cols:expr, $y:expr) => {{
        let mut c0 = $cols.start;
        while c0 < $cols.end {
            let c = NR.min($cols.end - c0);
            let mut r0 = 0;
            while r0 < $rows {
                let r = ($mr).min($rows - r0);
                // SAFETY: the tile is inside `rows` × `cols` (the caller's promise on `y`).
                unsafe { dispatch_tile!($tile, r, c, $x, $w, $rows, $k, $n, r0, c0, $y) };
                r0 += r;
            }
            c0 += c;
        }
    }};
}

/// An x86 kernel module: `columns` and its tiles compiled for `$features`, `$mr` rows per tile.
#[cfg(target_arch = "x86_64")]
macro_rules! x86_kernel {
    ($name:ident, $features:literal, $mr:expr) => {
        mod $name {
            use super::{LANES, NR, Weight};
            use std::arch::x86_64::*;

            /// # Safety
            /// The CPU has the module's features; `y` points to `rows * n` floats of which
            /// this call alone writes columns `cols`.
            #[target_feature(enable = $features)]
            pub unsafe fn columns<W: Weight>(
                x: &[f32],
                w: &[W],
                rows: usize,
                k: usize,
                n: usize,
                cols: std::ops::Range<usize>,
                y: *mut f32,
            ) {
                walk_tiles!(tile, $mr, x, w, rows, k, n, cols, y);
            }

            /// One tile: rows `r0..r0+R` of `x` against weight rows `c0..c0+C`; per step of
            /// 8 lanes, the R row vectors are loaded once, then each weight vector once.
            ///
            /// # Safety
            /// As for `columns`, for this tile's outputs.
            #[target_feature(enable = $features)]
            #[inline]
            unsafe fn tile<W: Weight, const R: usize, const C: usize>(
                x: &[f32],
                w: &[W],
                rows: usize,
                k: usize,
                n: usize,
                r0: usize,
                c0: usize,
                y: *mut f32,
            ) {
                let xs: [&[f32]; R] = super::rows_of(x, r0, k);
                let ws: [&[W]; C] = super::rows_of(w, c0, k);
                let mut acc = [[_mm256_setzero_ps(); C]; R];
                let full = k - k % LANES;
                // This row tile's share of the next weight tile, fetched into L2 a line at a
                // time, spread evenly over its steps.
                let next = (c0 + C) * k;
                let tiles = rows.div_ceil($mr);
                let line = 64 / std::mem::size_of::<W>();
                let share = (NR * k).div_ceil(tiles).next_multiple_of(line);
                let from = next + (r0 / $mr) * share;
                let until = (from + share).min(next + NR * k).min(w.len());
                let steps = (k / LANES).max(1);
                let per_step = share.div_ceil(steps).next_multiple_of(line);
                let mut at = from;
                let mut i = 0;
                while i < full {
                    let mut lines = per_step / line;
                    while lines > 0 && at < until {
                        // SAFETY: at < until <= w.len().
                        let p = unsafe { w.as_ptr().add(at) } as *const i8;
                        _mm_prefetch::<_MM_HINT_T1>(p);
                        at += line;
                        lines -= 1;
                    }
                    let mut xv = [_mm256_setzero_ps(); R];
                    for r in 0..R {
                        // SAFETY: i + LANES <= k, the length of every row.
                        xv[r] = unsafe { _mm256_loadu_ps(xs[r].as_ptr().add(i)) };
                    }
                    for j in 0..C {
                        // SAFETY: as above.
                        let wv = unsafe { load8(ws[j].as_ptr().add(i)) };
                        for r in 0..R {
                            acc[r][j] = _mm256_fmadd_ps(xv[r], wv, acc[r][j]);
                        }
                    }
                    i += LANES;
                }
                for r in 0..R {
                    for j in 0..C {
                        let s = super::finish(hsum(acc[r][j]), xs[r], ws[j], full);
                        // SAFETY: r0 + r < rows and c0 + j is in this call's columns.
                        unsafe { *y.add((r0 + r) * n + c0 + j) = s };
                    }
                }
            }

            /// 8 weights from `p`, widened to f32 (f16 by F16C, bf16 by a 16-bit shift).
            ///
            /// # Safety
            /// 8 elements are readable at `p`.
            #[target_feature(enable = $features)]
            #[inline]
            unsafe fn load8<W: Weight>(p: *const W) -> __m256 {
                // SAFETY: the caller's promise: 8 elements at `p` (32 or 16 bytes).
                unsafe {
                    match W::KIND {
                        0 => _mm256_loadu_ps(p as *const f32),
                        1 => _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)),
                        _ => _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(
                            _mm_loadu_si128(p as *const __m128i),
                        ))),
                    }
                }
            }

            /// The sum of the 8 lanes, as ((0+4)+(2+6)) + ((1+5)+(3+7)).
            #[target_feature(enable = $features)]
            #[inline]
            fn hsum(v: __m256) -> f32 {
                let lo = _mm256_castps256_ps128(v);
                let hi = _mm256_extractf128_ps(v, 1);
                let s = _mm_add_ps(lo, hi);
                let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
                let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
                _mm_cvtss_f32(s)
            }
        }
    };
}

// 6 × 4 accumulators + 6 rows + 1 weight vector: 31 of AVX-512VL's 32 registers.
#[cfg(target_arch = "x86_64")]
x86_kernel!(avx512, "avx2,fma,f16c,avx512f,avx512vl", 6);
// 3 × 4 accumulators + 3 rows + 1 weight vector: AVX2's 16 registers.
#[cfg(target_arch = "x86_64")]
x86_kernel!(avx2, "avx2,fma,f16c", 3);

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd128 {
    use super::{LANES, NR, Weight};
    use crate::cpu::blocks::simd128::hsum;
    use std::arch::wasm32::*;

    /// # Safety
    /// `y` points to `rows * n` floats of which this call alone writes columns `cols`.
    pub unsafe fn columns<W: Weight>(
        x: &[f32],
        w: &[W],
        rows: usize,
        k: usize,
        n: usize,
        cols: std::ops::Range<usize>,
        y: *mut f32,
    ) {
        // 16-bit weights are widened in place, the even and the odd values of each 32-bit
        // pair apart (no shuffles): `x` is laid out alike, each 8 values as their 4 even then
        // their 4 odd ones (the tail past the last 8 as it is).
        let paired;
        let x = if W::KIND == 0 {
            x
        } else {
            paired = pair_up(x, rows, k);
            &paired
        };
        let mut cols = cols;
        if rows == 1 {
            // A decode step: 12 weight rows at a time (8 for f16, whose widening needs more
            // registers), so that more of them stream from memory at once (WebAssembly
            // cannot prefetch: 1.3-1.5x out of cache, docs/BENCHMARKS.md); the columns left
            // over take the tiles.
            let (pass, wide): (OneRow<W>, usize) = match W::KIND {
                1 => (one_row_wide::<W, 12>, 12),
                _ => (one_row_wide::<W, 12>, 12),
            };
            let end = cols.start + (cols.end - cols.start) / wide * wide;
            let mut c0 = cols.start;
            while c0 < end {
                // SAFETY: the columns are this call's; the row is x's only row.
                unsafe { pass(x, w, k, c0, y) };
                c0 += wide;
            }
            cols = c0..cols.end;
        }
        // 2 × 4 accumulators + 2 × 2 row vectors + 2 weight vectors: 14 of the 16 vector
        // registers browsers' x86-64 code generators allocate.
        walk_tiles!(tile, 2, x, w, rows, k, n, cols, y);
    }

    /// A pass of a one-row product over `WIDE` weight rows from `c0`.
    type OneRow<W> = unsafe fn(&[f32], &[W], usize, usize, *mut f32);

    /// `y[c0..c0 + WIDE]` of a one-row product: `WIDE` accumulators, the row's two vectors,
    /// one weight vector at a time. Each output is summed as `tile` sums it.
    ///
    /// # Safety
    /// Columns `c0..c0 + WIDE` exist and are this call's to write.
    #[inline]
    unsafe fn one_row_wide<W: Weight, const WIDE: usize>(
        x: &[f32],
        w: &[W],
        k: usize,
        c0: usize,
        y: *mut f32,
    ) {
        let ws: [&[W]; WIDE] = super::rows_of(w, c0, k);
        let mut acc = [f32x4_splat(0.0); WIDE];
        let mut seen = u16x8_splat(0);
        let full = k - k % LANES;
        let mut i = 0;
        while i < full {
            // SAFETY: i + LANES <= k, the length of every row.
            let (x0, x1) = unsafe {
                let p = x.as_ptr().add(i);
                (
                    v128_load(p as *const v128),
                    v128_load(p.add(4) as *const v128),
                )
            };
            for j in 0..WIDE {
                // SAFETY: as above.
                let [w0, w1] = unsafe { load8(ws[j].as_ptr().add(i), &mut seen) };
                acc[j] = f32x4_add(acc[j], f32x4_mul(x0, w0));
                acc[j] = f32x4_add(acc[j], f32x4_mul(x1, w1));
            }
            i += LANES;
        }
        let special = non_finite::<W>(seen);
        for j in 0..WIDE {
            let sum = hsum(acc[j]);
            let s = if special {
                exact(x, ws[j])
            } else {
                super::finish(sum, x, ws[j], full)
            };
            // SAFETY: column c0 + j is this call's (caller's promise); the row is 0.
            unsafe { *y.add(c0 + j) = s };
        }
    }

    /// Each row's 8-value steps as (even values, odd values).
    fn pair_up(x: &[f32], rows: usize, k: usize) -> Vec<f32> {
        let mut out = x.to_vec();
        let full = k - k % LANES;
        for r in 0..rows {
            for i in (0..full).step_by(LANES) {
                let s = &x[r * k + i..r * k + i + LANES];
                let o = &mut out[r * k + i..r * k + i + LANES];
                for l in 0..4 {
                    o[l] = s[2 * l];
                    o[4 + l] = s[2 * l + 1];
                }
            }
        }
        out
    }

    /// One tile: per step of 8 values, the R row vectors (two of 4 lanes each) are loaded
    /// once, then each weight row's 8 values, widened to f32; one 4-lane accumulator per
    /// output (multiply, then add: SIMD128 has no fused multiply-add).
    ///
    /// # Safety
    /// As for `columns`, for this tile's outputs.
    #[inline]
    unsafe fn tile<W: Weight, const R: usize, const C: usize>(
        x: &[f32],
        w: &[W],
        _rows: usize,
        k: usize,
        n: usize,
        r0: usize,
        c0: usize,
        y: *mut f32,
    ) {
        let xs: [&[f32]; R] = super::rows_of(x, r0, k);
        let ws: [&[W]; C] = super::rows_of(w, c0, k);
        let mut acc = [[f32x4_splat(0.0); C]; R];
        let mut seen = u16x8_splat(0);
        let full = k - k % LANES;
        let mut i = 0;
        while i < full {
            let mut xv = [[f32x4_splat(0.0); 2]; R];
            for r in 0..R {
                // SAFETY: i + LANES <= k, the length of every row.
                unsafe {
                    let p = xs[r].as_ptr().add(i);
                    xv[r] = [
                        v128_load(p as *const v128),
                        v128_load(p.add(4) as *const v128),
                    ];
                }
            }
            for j in 0..C {
                // SAFETY: as above.
                let [w0, w1] = unsafe { load8(ws[j].as_ptr().add(i), &mut seen) };
                for r in 0..R {
                    acc[r][j] = f32x4_add(acc[r][j], f32x4_mul(xv[r][0], w0));
                    acc[r][j] = f32x4_add(acc[r][j], f32x4_mul(xv[r][1], w1));
                }
            }
            i += LANES;
        }
        let special = non_finite::<W>(seen);
        for r in 0..R {
            for j in 0..C {
                let sum = hsum(acc[r][j]);
                let s = if special {
                    exact(xs[r], ws[j])
                } else {
                    super::finish(sum, xs[r], ws[j], full)
                };
                // SAFETY: r0 + r < rows and c0 + j is in this call's columns (caller's promise).
                unsafe { *y.add((r0 + r) * n + c0 + j) = s };
            }
        }
    }

    /// 8 weights from `p` as two f32 vectors: f32 as they are (in order); 16-bit ones as
    /// (even values, odd values) — each 32-bit lane holds an even value in its low half and
    /// an odd one in its high half, so a shift puts either on top. bf16 on top is its f32.
    /// f16 on top, shifted right by 3 with its sign copied in, has its exponent and mantissa
    /// where f32's are; with the copies of the sign and the bits below cleared, the f32 times
    /// 2¹¹² is the f16 value (exact for normal and subnormal values: 3 operations per 4
    /// values). Infinities and NaNs would come out finite: `seen` keeps the largest f16
    /// magnitude loaded, and a product that saw one is summed again by [`exact`].
    ///
    /// # Safety
    /// 8 elements are readable at `p`.
    #[inline(always)]
    unsafe fn load8<W: Weight>(p: *const W, seen: &mut v128) -> [v128; 2] {
        // SAFETY: the caller's promise: 8 elements at `p` (32 or 16 bytes).
        unsafe {
            if W::KIND == 0 {
                return [
                    v128_load(p as *const v128),
                    v128_load((p as *const f32).add(4) as *const v128),
                ];
            }
            let v = v128_load(p as *const v128);
            if W::KIND == 2 {
                return [i32x4_shl(v, 16), v128_and(v, u32x4_splat(0xffff_0000))];
            }
            *seen = u16x8_max(*seen, v128_and(v, u16x8_splat(0x7fff)));
            let f32_bits = u32x4_splat(0x8fff_e000);
            // 2^(127 - 15): the f32 exponent bias over f16's.
            let scale = f32x4_splat(f32::from_bits(0x7780_0000));
            let even = v128_and(i32x4_shr(i32x4_shl(v, 16), 3), f32_bits);
            let odd = v128_and(i32x4_shr(v, 3), f32_bits);
            [f32x4_mul(even, scale), f32x4_mul(odd, scale)]
        }
    }

    /// Whether `load8` met an f16 infinity or NaN (an all-ones exponent).
    #[inline(always)]
    fn non_finite<W: Weight>(seen: v128) -> bool {
        W::KIND == 1 && v128_any_true(u16x8_ge(seen, u16x8_splat(0x7c00)))
    }

    /// A paired row of `x` (each 8 values as their 4 even then their 4 odd ones) times a
    /// weight row, one value at a time: the products whose f16 weights hold infinities or
    /// NaNs.
    #[cold]
    fn exact<W: Weight>(x: &[f32], w: &[W]) -> f32 {
        let full = w.len() - w.len() % LANES;
        let mut sum = 0.0;
        for i in (0..full).step_by(LANES) {
            for l in 0..4 {
                sum += x[i + l] * w[i + 2 * l].to_f32() + x[i + 4 + l] * w[i + 2 * l + 1].to_f32();
            }
        }
        super::finish(sum, x, w, full)
    }
}

mod portable {
    use super::{LANES, NR, Weight};

    /// # Safety
    /// `y` points to `rows * n` floats of which this call alone writes columns `cols`.
    pub unsafe fn columns<W: Weight>(
        x: &[f32],
        w: &[W],
        rows: usize,
        k: usize,
        n: usize,
        cols: std::ops::Range<usize>,
        y: *mut f32,
    ) {
        walk_tiles!(tile, 4, x, w, rows, k, n, cols, y);
    }

    /// One tile with 8-lane accumulators the compiler keeps in vector registers (plain
    /// multiply-add, not `mul_add`: a fused one is a library call where the target lacks FMA).
    ///
    /// # Safety
    /// As for `columns`, for this tile's outputs.
    #[inline]
    unsafe fn tile<W: Weight, const R: usize, const C: usize>(
        x: &[f32],
        w: &[W],
        _rows: usize,
        k: usize,
        n: usize,
        r0: usize,
        c0: usize,
        y: *mut f32,
    ) {
        let xs: [&[f32]; R] = super::rows_of(x, r0, k);
        let ws: [&[W]; C] = super::rows_of(w, c0, k);
        let mut acc = [[[0.0f32; LANES]; C]; R];
        let full = k - k % LANES;
        for i in (0..full).step_by(LANES) {
            for r in 0..R {
                let xv: &[f32; LANES] = xs[r][i..i + LANES].try_into().expect("8 lanes");
                for j in 0..C {
                    let wv = &ws[j][i..i + LANES];
                    for l in 0..LANES {
                        acc[r][j][l] += xv[l] * wv[l].to_f32();
                    }
                }
            }
        }
        for r in 0..R {
            for j in 0..C {
                let a = acc[r][j];
                let sum = ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]));
                let s = super::finish(sum, xs[r], ws[j], full);
                // SAFETY: r0 + r < rows and c0 + j is in this call's columns (caller's promise).
                unsafe { *y.add((r0 + r) * n + c0 + j) = s };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Weight, available, columns_for, with_kernel};
    use crate::cpu::test_values as values;

    /// The plain triple loop in f64.
    fn reference<W: Weight>(x: &[f32], w: &[W], rows: usize, k: usize, n: usize) -> Vec<f64> {
        let mut y = vec![0.0; rows * n];
        for r in 0..rows {
            for j in 0..n {
                y[r * n + j] = (0..k)
                    .map(|i| x[r * k + i] as f64 * w[j * k + i].to_f32() as f64)
                    .sum();
            }
        }
        y
    }

    /// Every kernel this CPU runs, for weights stored as `W`.
    fn each_kernel<W: Weight>(convert: fn(f32) -> W) {
        // rows over every remainder of the row tiles, columns over every remainder of NR and
        // of the thread split, k with and without a tail past the 8 lanes.
        for &(rows, k, n) in &[
            (1, 8, 1),
            (1, 7, 5),
            (2, 9, 3),
            (3, 16, 4),
            (4, 33, 7),
            (5, 64, 9),
            (7, 100, 13),
            (16, 896, 130),
            (32, 257, 600),
            (64, 896, 64),
        ] {
            let x = values(rows * k, 1);
            let w: Vec<W> = values(n * k, 2).into_iter().map(convert).collect();
            let want = reference(&x, &w, rows, k, n);
            for isa in available() {
                let got = with_kernel(columns_for::<W>(isa), &x, &w, rows, k, n);
                for (i, (g, e)) in got.iter().zip(&want).enumerate() {
                    let tol = 1e-5 * (k as f64).sqrt();
                    assert!(
                        (*g as f64 - e).abs() <= tol,
                        "{isa:?} kind {}: rows {rows} k {k} n {n}: y[{i}] = {g}, want {e}",
                        W::KIND
                    );
                }
            }
        }
    }

    #[test]
    fn equals_the_triple_loop_for_every_tile_shape_tail_and_weight_type() {
        each_kernel::<f32>(|v| v);
        each_kernel::<half::f16>(half::f16::from_f32);
        each_kernel::<half::bf16>(half::bf16::from_f32);
    }

    /// f16 subnormals, zeros of both signs, the largest finite values, infinities and a NaN,
    /// among ordinary weights: every kernel gives the triple loop's value (an infinity or
    /// NaN where the loop gives one).
    #[test]
    fn f16_weights_of_every_class_are_read_exactly() {
        use half::f16;
        let specials = [
            f16::from_bits(0x0001),
            f16::from_bits(0x83ff),
            f16::from_bits(0x0400),
            f16::NEG_ZERO,
            f16::MAX,
            f16::MIN,
            f16::INFINITY,
            f16::NEG_INFINITY,
            f16::NAN,
        ];
        for &(rows, k, n) in &[(1, 40, 24), (3, 37, 9)] {
            let x = values(rows * k, 5);
            let mut w: Vec<f16> = values(n * k, 6).into_iter().map(f16::from_f32).collect();
            // Each special value in its own weight row (so each row's result is one class);
            // even and odd positions, inside the vector part and in the tail.
            for (j, v) in specials.iter().enumerate() {
                let at = [j * 3, j * 5 + 1, k - 1][j % 3];
                w[j * k + at] = *v;
            }
            let want = reference(&x, &w, rows, k, n);
            for isa in available() {
                let got = with_kernel(columns_for::<f16>(isa), &x, &w, rows, k, n);
                for (i, (g, e)) in got.iter().zip(&want).enumerate() {
                    let same = if e.is_finite() {
                        // f16's largest values make sums in the thousands: relative.
                        (*g as f64 - e).abs() <= 1e-5 * (k as f64).sqrt() * (1.0 + e.abs())
                    } else {
                        e.is_nan() && g.is_nan() || *g as f64 == *e
                    };
                    assert!(
                        same,
                        "{isa:?}: rows {rows} k {k} n {n}: y[{i}] = {g}, want {e}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_row_gets_the_same_bits_alone_and_in_a_batch() {
        let (k, n) = (200, 37);
        let x = values(11 * k, 3);
        let w = values(n * k, 4);
        for isa in available() {
            let kernel = columns_for::<f32>(isa);
            let batch = with_kernel(kernel, &x, &w, 11, k, n);
            for r in 0..11 {
                let alone = with_kernel(kernel, &x[r * k..(r + 1) * k], &w, 1, k, n);
                assert_eq!(alone, batch[r * n..(r + 1) * n], "{isa:?}: row {r}");
            }
        }
    }
}

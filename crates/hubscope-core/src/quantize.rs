//! f32 values to ggml blocks, as llama.cpp's reference quantizers (`quantize_row_*_ref` in
//! ggml-quants.c, what `llama-quantize` runs without an importance matrix) compute them — the
//! same f32 operations in the same order, so the bytes are identical: Q8_0, Q4_0, Q5_0, Q4_K,
//! Q6_K, F16 and BF16. [`Quant`] is what `--dtype q8_0|q4_0|q4_k` names, with llama.cpp's
//! fallback for rows that are not whole blocks of the chosen type and its wider output head.

use half::{bf16, f16};

use crate::error::{Error, Result};
use crate::gguf::GgmlType;

pub const F32: GgmlType = GgmlType(0);
pub const F16: GgmlType = GgmlType(1);
pub const Q4_0: GgmlType = GgmlType(2);
pub const Q5_0: GgmlType = GgmlType(6);
pub const Q8_0: GgmlType = GgmlType(8);
pub const Q4_K: GgmlType = GgmlType(12);
pub const Q6_K: GgmlType = GgmlType(14);
pub const BF16: GgmlType = GgmlType(30);

/// A block quantization a user can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quant {
    Q8_0,
    Q4_0,
    Q4K,
}

impl Quant {
    /// `q8_0`, `q4_0`, `q4_k` (any case); None for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "q8_0" => Some(Self::Q8_0),
            "q4_0" => Some(Self::Q4_0),
            "q4_k" => Some(Self::Q4K),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Self::Q8_0 => "q8_0",
            Self::Q4_0 => "q4_0",
            Self::Q4K => "q4_k",
        }
    }
    pub fn ggml_type(self) -> GgmlType {
        match self {
            Self::Q8_0 => Q8_0,
            Self::Q4_0 => Q4_0,
            Self::Q4K => Q4_K,
        }
    }
    /// The type a weight with rows of `cols` values gets: this one, or llama.cpp's fallback
    /// when rows are not whole blocks (Q4_K → Q5_0, as `llama-quantize` does), or None (rows
    /// not whole 32-value blocks: the weight stays in floating point).
    pub fn for_row(self, cols: usize) -> Option<GgmlType> {
        match self {
            Self::Q4K if cols % 256 == 0 => Some(Q4_K),
            Self::Q4K if cols % 32 == 0 => Some(Q5_0),
            _ if cols % 32 == 0 => Some(self.ggml_type()),
            _ => None,
        }
    }
    /// The type `llama-quantize` gives the weight `name` (a checkpoint name) with rows of `cols`
    /// values: the output head — or the embedding table, where the head is tied to it — in
    /// Q6_K for the 4-bit types (Q8_0 where rows are not whole super-blocks), as llama.cpp
    /// keeps the head wider; every other weight [`Quant::for_row`].
    pub fn for_weight(self, name: &str, cols: usize, tied: bool) -> Option<GgmlType> {
        let head = name == "lm_head.weight" || (tied && name == "model.embed_tokens.weight");
        match self {
            Self::Q4_0 | Self::Q4K if head && cols % 256 == 0 => Some(Q6_K),
            Self::Q4_0 | Self::Q4K if head && cols % 32 == 0 => Some(Q8_0),
            _ => self.for_row(cols),
        }
    }

    /// `general.file_type` for a file of this quantization (llama.cpp's `llama_ftype`:
    /// MOSTLY_Q8_0, MOSTLY_Q4_0, MOSTLY_Q4_K_S — the K-quant type without Q6_K mixtures).
    pub fn file_type(self) -> u32 {
        match self {
            Self::Q8_0 => 7,
            Self::Q4_0 => 2,
            Self::Q4K => 14,
        }
    }
}

/// `values` (whole rows of whole blocks) as type `t`'s bytes.
pub fn quantize(t: GgmlType, values: &[f32]) -> Result<Vec<u8>> {
    let (block, size) = t.block().unwrap_or((1, 0));
    let block = block as usize;
    if values.len() % block != 0 {
        return Err(Error::Invalid(format!(
            "{} values are not whole {} blocks of {block}",
            values.len(),
            t.name()
        )));
    }
    let mut out = Vec::with_capacity(values.len() / block * size as usize);
    let chunks = values.chunks_exact(block);
    match t {
        F32 => values.iter().for_each(|v| out.extend(v.to_le_bytes())),
        F16 => values
            .iter()
            .for_each(|v| out.extend(f16::from_f32(*v).to_le_bytes())),
        BF16 => values
            .iter()
            .for_each(|v| out.extend(bf16::from_f32(*v).to_le_bytes())),
        Q8_0 => chunks.for_each(|x| q8_0(x, &mut out)),
        Q4_0 => chunks.for_each(|x| q4_0(x, &mut out)),
        Q5_0 => chunks.for_each(|x| q5_0(x, &mut out)),
        Q4_K => chunks.for_each(|x| q4_k(x, &mut out)),
        Q6_K => chunks.for_each(|x| q6_k(x, &mut out)),
        _ => {
            return Err(Error::Invalid(format!(
                "hubscope does not quantize to {}",
                t.name()
            )));
        }
    }
    Ok(out)
}

/// A `[rows, cols]` matrix of f32 values as type `t`'s bytes, row after row, rows split over
/// the threads (a 0.5B model's weights take seconds on one).
pub fn quantize_matrix(t: GgmlType, values: &[f32], cols: usize) -> Result<Vec<u8>> {
    if cols == 0 || values.len() % cols != 0 {
        return Err(Error::Invalid(format!(
            "{} values are not rows of {cols}",
            values.len()
        )));
    }
    let rows = values.len() / cols;
    let per = rows.div_ceil(crate::cpu::par::threads() * 8).max(1);
    let parts = crate::cpu::par::map(rows.div_ceil(per), |i| {
        let end = ((i + 1) * per).min(rows);
        quantize(t, &values[i * per * cols..end * cols])
    });
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.as_ref().map_or(0, Vec::len)).sum());
    for p in parts {
        out.extend(p?);
    }
    Ok(out)
}

fn push_half(out: &mut Vec<u8>, v: f32) {
    out.extend(f16::from_f32(v).to_le_bytes());
}

/// `d = max|x| / 127`, `q = round(x / d)` (half away from zero, as `roundf`).
fn q8_0(x: &[f32], out: &mut Vec<u8>) {
    let amax = x
        .iter()
        .fold(0f32, |m, v| if m > v.abs() { m } else { v.abs() });
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    push_half(out, d);
    out.extend(x.iter().map(|v| (v * id).round() as i8 as u8));
}

/// The value of largest magnitude, the first of equals (with its sign).
fn signed_max(x: &[f32]) -> f32 {
    let (mut amax, mut max) = (0f32, 0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    max
}

/// `d = max / −8` (the signed largest value lands on −8), `q = min(15, trunc(x/d + 8.5))`.
fn q4_0(x: &[f32], out: &mut Vec<u8>) {
    let d = signed_max(x) / -8.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    push_half(out, d);
    let q = |v: f32| ((v * id + 8.5) as i8).min(15) as u8;
    out.extend((0..16).map(|j| q(x[j]) | (q(x[16 + j]) << 4)));
}

/// As Q4_0 with 5 bits: `d = max / −16`, the fifth bits gathered in a little-endian u32.
fn q5_0(x: &[f32], out: &mut Vec<u8>) {
    let d = signed_max(x) / -16.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    push_half(out, d);
    let q = |v: f32| ((v * id + 16.5) as i8).min(31) as u8;
    let mut qh = 0u32;
    let mut qs = [0u8; 16];
    for j in 0..16 {
        let (a, b) = (q(x[j]), q(x[16 + j]));
        qs[j] = (a & 0xF) | ((b & 0xF) << 4);
        qh |= u32::from(a >> 4) << j;
        qh |= u32::from(b >> 4) << (j + 16);
    }
    out.extend(qh.to_le_bytes());
    out.extend(qs);
}

/// ggml's `nearest_int`: round to nearest (ties to even) by the float-add trick.
fn nearest_int(v: f32) -> i32 {
    ((v + 12582912.0).to_bits() as i32 & 0x007f_ffff) - 0x0040_0000
}

/// ggml's `make_qkx2_quants` for `n` values, `nmax` levels, weighted squared error (no
/// `use_mad`): levels `l` into `levels`, returns `(scale, min)` with `x ≈ scale·l − min`. A
/// grid of `nstep + 1` scales from `(rmin + nmax)/(max − min)` in steps of `rdelta`, each
/// refined by weighted least squares; the best error wins.
fn make_qkx2_quants(
    x: &[f32],
    weights: &[f32],
    nmax: i32,
    levels: &mut [u8],
    (rmin, rdelta, nstep): (f32, f32, i32),
) -> (f32, f32) {
    let n = x.len();
    let (mut min, mut max) = (x[0], x[0]);
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        let w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        levels.iter_mut().for_each(|l| *l = 0);
        return (0.0, -min);
    }
    let nmax_f = nmax as f32;
    let mut iscale = nmax_f / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0f32;
    for i in 0..n {
        let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
        levels[i] = l as u8;
        let diff = scale * l as f32 + min - x[i];
        best_error += weights[i] * (diff * diff);
    }
    let mut aux = [0u8; 32];
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmax_f) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0f32, 0f32, 0f32);
        for i in 0..n {
            let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
            aux[i] = l as u8;
            let (w, l) = (weights[i], l as f32);
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * x[i];
        }
        let det = sum_w * sum_l2 - sum_l * sum_l;
        if det > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0f32;
            for i in 0..n {
                let diff = this_scale * aux[i] as f32 + this_min - x[i];
                cur_error += weights[i] * (diff * diff);
            }
            if cur_error < best_error {
                levels[..n].copy_from_slice(&aux[..n]);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// Q4_K: a super-block of 256 values in 8 pieces of 32, each with a 6-bit scale and minimum
/// (relative to the super-block's f16 `d` and `dmin`), values as 4-bit levels.
fn q4_k(x: &[f32], out: &mut Vec<u8>) {
    let mut levels = [0u8; 256];
    let (mut scales, mut mins) = ([0f32; 8], [0f32; 8]);
    let mut weights = [0f32; 32];
    let (mut max_scale, mut max_min) = (0f32, 0f32);
    for j in 0..8 {
        let piece = &x[32 * j..32 * j + 32];
        let sum_x2 = piece.iter().fold(0f32, |s, v| s + v * v);
        let av_x = (sum_x2 / 32.0).sqrt();
        for (w, v) in weights.iter_mut().zip(piece) {
            *w = av_x + v.abs();
        }
        let (scale, min) = make_qkx2_quants(
            piece,
            &weights,
            15,
            &mut levels[32 * j..32 * j + 32],
            (-1.0, 0.1, 20),
        );
        (scales[j], mins[j]) = (scale, min);
        if scale > max_scale {
            max_scale = scale;
        }
        if min > max_min {
            max_min = min;
        }
    }
    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let mut packed = [0u8; 12];
    for j in 0..8 {
        let ls = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        let lm = (nearest_int(inv_min * mins[j]) as u8).min(63);
        if j < 4 {
            packed[j] = ls;
            packed[j + 4] = lm;
        } else {
            packed[j + 4] = (ls & 0xF) | ((lm & 0xF) << 4);
            packed[j - 4] |= (ls >> 4) << 6;
            packed[j] |= (lm >> 4) << 6;
        }
    }
    let d = f16::from_f32(max_scale / 63.0);
    let dmin = f16::from_f32(max_min / 63.0);
    for j in 0..8 {
        let (sc, m) = crate::ggml::scale_min_k4(&packed, j);
        let dj = d.to_f32() * sc as f32;
        if dj == 0.0 {
            continue;
        }
        let dm = dmin.to_f32() * m as f32;
        for i in 0..32 {
            levels[32 * j + i] = nearest_int((x[32 * j + i] + dm) / dj).clamp(0, 15) as u8;
        }
    }
    out.extend(d.to_le_bytes());
    out.extend(dmin.to_le_bytes());
    out.extend(packed);
    for j in (0..256).step_by(64) {
        out.extend((0..32).map(|l| levels[j + l] | (levels[j + l + 32] << 4)));
    }
}

/// ggml's `GROUP_MAX_EPS`: a group whose largest magnitude is below it is all zeros.
const GROUP_MAX_EPS: f32 = 1e-15;

/// ggml's `make_qx_quants` with `rmse_type` 1 (squared values as weights, no importance
/// matrix): levels `l + nmax` (`l` in `-nmax..nmax`) into `levels`, returns the scale. The
/// scale `max / -nmax` is refined by weighted least squares, then 18 nearby ones are tried.
fn make_qx_quants(x: &[f32], nmax: i32, levels: &mut [i8]) -> f32 {
    let (mut max, mut amax) = (0f32, 0f32);
    for &v in x {
        if v.abs() > amax {
            (amax, max) = (v.abs(), v);
        }
    }
    if amax < GROUP_MAX_EPS {
        levels.fill(0);
        return 0.0;
    }
    let level = |iscale: f32, v: f32| nearest_int(iscale * v).clamp(-nmax, nmax - 1);
    let sums = |iscale: f32| {
        let (mut sumlx, mut suml2) = (0f32, 0f32);
        for &v in x {
            let (l, w) = (level(iscale, v) as f32, v * v);
            sumlx += w * v * l;
            suml2 += w * l * l;
        }
        (sumlx, suml2)
    };
    let set = |iscale: f32, levels: &mut [i8]| {
        for (q, &v) in levels.iter_mut().zip(x) {
            *q = (level(iscale, v) + nmax) as i8;
        }
    };
    let iscale = -(nmax as f32) / max;
    set(iscale, levels);
    let (sumlx, suml2) = sums(iscale);
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in (-9..=9).filter(|&is| is != 0) {
        let iscale = -(nmax as f32 + 0.1 * is as f32) / max;
        let (sumlx, suml2) = sums(iscale);
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            set(iscale, levels);
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// Q6_K: a super-block of 256 values in 16 pieces of 16, each with an 8-bit signed scale
/// (relative to the super-block's f16 `d`), values as 6-bit levels (low 4 bits in `ql`, high 2
/// in `qh`, interleaved as ggml packs them).
fn q6_k(x: &[f32], out: &mut Vec<u8>) {
    let mut levels = [0i8; 256];
    let mut scales = [0f32; 16];
    let (mut max_scale, mut max_abs_scale) = (0f32, 0f32);
    for (ib, s) in scales.iter_mut().enumerate() {
        *s = make_qx_quants(
            &x[16 * ib..16 * ib + 16],
            32,
            &mut levels[16 * ib..16 * ib + 16],
        );
        if s.abs() > max_abs_scale {
            (max_abs_scale, max_scale) = (s.abs(), *s);
        }
    }
    if max_abs_scale < GROUP_MAX_EPS {
        out.extend([0u8; 210]);
        return;
    }
    let iscale = -128.0 / max_scale;
    let d = f16::from_f32(1.0 / iscale);
    let sc: [i8; 16] = std::array::from_fn(|ib| nearest_int(iscale * scales[ib]).min(127) as i8);
    for j in 0..16 {
        let dj = d.to_f32() * sc[j] as f32;
        if dj == 0.0 {
            continue;
        }
        for i in 16 * j..16 * j + 16 {
            levels[i] = (nearest_int(x[i] / dj).clamp(-32, 31) + 32) as i8;
        }
    }
    let (mut ql, mut qh) = ([0u8; 128], [0u8; 64]);
    for half in 0..2 {
        let (j, ql, qh) = (128 * half, &mut ql[64 * half..], &mut qh[32 * half..]);
        for l in 0..32 {
            let q = |o: usize| levels[j + l + o] as u8;
            ql[l] = (q(0) & 0xF) | ((q(64) & 0xF) << 4);
            ql[l + 32] = (q(32) & 0xF) | ((q(96) & 0xF) << 4);
            qh[l] = (q(0) >> 4) | ((q(32) >> 4) << 2) | ((q(64) >> 4) << 4) | ((q(96) >> 4) << 6);
        }
    }
    out.extend(ql);
    out.extend(qh);
    out.extend(sc.map(|s| s as u8));
    out.extend(d.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s % 20001) as f32 / 10000.0 - 1.0
            })
            .collect()
    }

    /// Each type's values come back within its step (the reference's own error bound): Q8_0
    /// half a step of max/127, Q4_0/Q5_0 a step of max/8 or max/16 (the largest level is
    /// clipped), each plus the f16 rounding of the scale (max·2⁻¹¹); Q4_K's error, root mean
    /// square, below uniform 16-level rounding of the range.
    #[test]
    fn round_trips_within_a_step() {
        let x = values(1024, 7);
        for (t, bound) in [(Q8_0, 0.5 / 127.0), (Q4_0, 1.0 / 8.0), (Q5_0, 1.0 / 16.0)] {
            let back = crate::ggml::dequantize(t, &quantize(t, &x).unwrap(), "t", "t").unwrap();
            for (b, (xs, ys)) in x.chunks(32).zip(back.chunks(32)).enumerate() {
                let amax = xs.iter().fold(0f32, |m, v| m.max(v.abs()));
                for (a, y) in xs.iter().zip(ys) {
                    assert!(
                        (a - y).abs() <= amax * (bound + 1.0 / 2048.0),
                        "{}: block {b}: {a} → {y}",
                        t.name()
                    );
                }
            }
        }
        let back = crate::ggml::dequantize(Q4_K, &quantize(Q4_K, &x).unwrap(), "t", "t").unwrap();
        let rms = (x
            .iter()
            .zip(&back)
            .map(|(a, b)| (a - b) * (a - b))
            .sum::<f32>()
            / x.len() as f32)
            .sqrt();
        // Uniform values in [-1, 1]: 16 levels over a range of ~2 per piece.
        assert!(rms < 2.0 / 15.0 / 3.0f32.sqrt(), "Q4_K rms error {rms}");
    }

    #[test]
    fn zeros_and_constants_survive() {
        for t in [Q8_0, Q4_0, Q5_0, Q4_K] {
            for c in [0.0f32, 0.25, -3.0] {
                let x = vec![c; 256];
                let back = crate::ggml::dequantize(t, &quantize(t, &x).unwrap(), "t", "t").unwrap();
                for y in back {
                    assert!((y - c).abs() <= c.abs() / 100.0, "{}: {c} → {y}", t.name());
                }
            }
        }
    }

    #[test]
    fn fallbacks_follow_llama_cpp() {
        assert_eq!(Quant::Q4K.for_row(896), Some(Q5_0));
        assert_eq!(Quant::Q4K.for_row(4864), Some(Q4_K));
        assert_eq!(Quant::Q4K.for_row(512), Some(Q4_K));
        assert_eq!(Quant::Q8_0.for_row(48), None);
        // The head (or a tied embedding table) wider, as llama-quantize keeps it.
        assert_eq!(
            Quant::Q4_0.for_weight("lm_head.weight", 512, false),
            Some(Q6_K)
        );
        assert_eq!(
            Quant::Q4K.for_weight("lm_head.weight", 896, false),
            Some(Q8_0)
        );
        assert_eq!(
            Quant::Q8_0.for_weight("lm_head.weight", 512, false),
            Some(Q8_0)
        );
        let embed = "model.embed_tokens.weight";
        assert_eq!(Quant::Q4_0.for_weight(embed, 512, false), Some(Q4_0));
        assert_eq!(Quant::Q4_0.for_weight(embed, 512, true), Some(Q6_K));
        assert_eq!(Quant::parse("Q4_K"), Some(Quant::Q4K));
        assert!(quantize(Q8_0, &[1.0; 33]).is_err());
    }
}

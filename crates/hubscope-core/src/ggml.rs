//! ggml's tensor types as values: a tensor's bytes in a GGUF file (F32, F16, BF16 and the block
//! quantizations Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K–Q6_K) dequantized to f32, value for value
//! as llama.cpp's `dequantize_row_*` and gguf-py's `gguf.quants.dequantize` compute them (the
//! same f32 products in the same order, so the results are bit-identical).

use half::f16;

use crate::error::{Error, Result};
use crate::gguf::GgmlType;

/// The types hubscope reads, by ggml's numbering.
const F32: u32 = 0;
const F16: u32 = 1;
const Q4_0: u32 = 2;
const Q4_1: u32 = 3;
const Q5_0: u32 = 6;
const Q5_1: u32 = 7;
const Q8_0: u32 = 8;
const Q2_K: u32 = 10;
const Q3_K: u32 = 11;
const Q4_K: u32 = 12;
const Q5_K: u32 = 13;
const Q6_K: u32 = 14;
const BF16: u32 = 30;

/// Whether hubscope can dequantize tensors of type `t`.
pub fn readable(t: GgmlType) -> bool {
    matches!(
        t.0,
        F32 | F16 | BF16 | Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 | Q2_K | Q3_K | Q4_K | Q5_K | Q6_K
    )
}

fn half(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

/// Ok when hubscope can dequantize tensors of type `t`; otherwise the error naming the tensor.
pub fn check_readable(t: GgmlType, file: &str, tensor: &str) -> Result<()> {
    if readable(t) {
        return Ok(());
    }
    Err(Error::GgufTensor {
        file: file.to_string(),
        tensor: tensor.to_string(),
        message: format!(
            "tensors of type {} are not supported (hubscope reads F32, F16, BF16, Q8_0, Q4_0, \
             Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K and Q6_K)",
            t.name()
        ),
    })
}

/// `bytes` of type `t` (whole blocks) as f32 values; `file` and `tensor` name it in errors.
pub fn dequantize(t: GgmlType, bytes: &[u8], file: &str, tensor: &str) -> Result<Vec<f32>> {
    let bad = |message: String| Error::GgufTensor {
        file: file.to_string(),
        tensor: tensor.to_string(),
        message,
    };
    check_readable(t, file, tensor)?;
    let (block_values, block_bytes) = t.block().expect("a readable type has a block size");
    let (block_values, block_bytes) = (block_values as usize, block_bytes as usize);
    if bytes.len() % block_bytes != 0 {
        return Err(bad(format!(
            "{} bytes are not whole {} blocks of {block_bytes} bytes",
            bytes.len(),
            t.name()
        )));
    }
    let mut out = vec![0f32; bytes.len() / block_bytes * block_values];
    let blocks = bytes
        .chunks_exact(block_bytes)
        .zip(out.chunks_exact_mut(block_values));
    match t.0 {
        F32 => blocks.for_each(|(b, y)| y[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        F16 => blocks.for_each(|(b, y)| y[0] = half(b, 0)),
        BF16 => blocks.for_each(|(b, y)| {
            y[0] = f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16)
        }),
        Q4_0 => blocks.for_each(|(b, y)| q4_0(b, y)),
        Q4_1 => blocks.for_each(|(b, y)| q4_1(b, y)),
        Q5_0 => blocks.for_each(|(b, y)| q5_0(b, y)),
        Q5_1 => blocks.for_each(|(b, y)| q5_1(b, y)),
        Q8_0 => blocks.for_each(|(b, y)| q8_0(b, y)),
        Q2_K => blocks.for_each(|(b, y)| q2_k(b, y)),
        Q3_K => blocks.for_each(|(b, y)| q3_k(b, y)),
        Q4_K => blocks.for_each(|(b, y)| q4_k(b, y)),
        Q5_K => blocks.for_each(|(b, y)| q5_k(b, y)),
        Q6_K => blocks.for_each(|(b, y)| q6_k(b, y)),
        _ => unreachable!("checked by readable"),
    }
    Ok(out)
}

/// `d`, then 16 bytes: value `l` in the low nibble of byte `l`, value `16 + l` in its high one.
fn q4_0(b: &[u8], y: &mut [f32]) {
    let d = half(b, 0);
    for (l, &q) in b[2..18].iter().enumerate() {
        y[l] = d * ((q & 0xF) as i32 - 8) as f32;
        y[l + 16] = d * ((q >> 4) as i32 - 8) as f32;
    }
}

/// `d`, `m`, then nibbles as in Q4_0: `d·q + m`.
fn q4_1(b: &[u8], y: &mut [f32]) {
    let (d, m) = (half(b, 0), half(b, 2));
    for (l, &q) in b[4..20].iter().enumerate() {
        y[l] = d * (q & 0xF) as f32 + m;
        y[l + 16] = d * (q >> 4) as f32 + m;
    }
}

/// The fifth bits of a Q5 block: bit `i` of a little-endian u32 for value `i`.
fn fifth_bits(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn q5_0(b: &[u8], y: &mut [f32]) {
    let d = half(b, 0);
    let qh = fifth_bits(&b[2..6]);
    for (l, &q) in b[6..22].iter().enumerate() {
        let lo = (q & 0xF) as u32 | ((qh >> l) & 1) << 4;
        let hi = (q >> 4) as u32 | ((qh >> (l + 16)) & 1) << 4;
        y[l] = d * (lo as i32 - 16) as f32;
        y[l + 16] = d * (hi as i32 - 16) as f32;
    }
}

fn q5_1(b: &[u8], y: &mut [f32]) {
    let (d, m) = (half(b, 0), half(b, 2));
    let qh = fifth_bits(&b[4..8]);
    for (l, &q) in b[8..24].iter().enumerate() {
        let lo = (q & 0xF) as u32 | ((qh >> l) & 1) << 4;
        let hi = (q >> 4) as u32 | ((qh >> (l + 16)) & 1) << 4;
        y[l] = d * lo as f32 + m;
        y[l + 16] = d * hi as f32 + m;
    }
}

fn q8_0(b: &[u8], y: &mut [f32]) {
    let d = half(b, 0);
    for (l, &q) in b[2..34].iter().enumerate() {
        y[l] = q as i8 as f32 * d;
    }
}

/// 16 scale bytes (scale low nibble, min high nibble, per 16 values), 64 bytes of 2-bit values,
/// `d`, `dmin`. Value `128h + 32j + l` is bits `2j` of byte `32h + l`.
fn q2_k(b: &[u8], y: &mut [f32]) {
    let (scales, qs) = (&b[0..16], &b[16..80]);
    let (d, dmin) = (half(b, 80), half(b, 82));
    for h in 0..2 {
        for j in 0..4 {
            for l in 0..32 {
                let i = 128 * h + 32 * j + l;
                let sc = scales[i / 16];
                let dl = d * (sc & 0xF) as f32;
                let ml = dmin * (sc >> 4) as f32;
                let q = (qs[32 * h + l] >> (2 * j)) & 3;
                y[i] = dl * q as f32 - ml;
            }
        }
    }
}

/// 32 bytes of high-bit masks, 64 bytes of 2-bit values, 12 bytes of 6-bit signed scales, `d`.
fn q3_k(b: &[u8], y: &mut [f32]) {
    let (hmask, qs, sc) = (&b[0..32], &b[32..96], &b[96..108]);
    let d = half(b, 108);
    let scale = |k: usize| -> f32 {
        let low = if k < 8 { sc[k] & 0xF } else { sc[k - 8] >> 4 };
        let high = (sc[8 + k % 4] >> (2 * (k / 4))) & 3;
        ((low | high << 4) as i8 - 32) as f32
    };
    for h in 0..2 {
        for j in 0..4 {
            for l in 0..32 {
                let i = 128 * h + 32 * j + l;
                let low = ((qs[32 * h + l] >> (2 * j)) & 3) as i8;
                // The high bit *clear* subtracts 4.
                let high = (((hmask[l] >> (i / 32)) & 1) ^ 1) as i8;
                let dl = d * scale(i / 16);
                y[i] = dl * (low - (high << 2)) as f32;
            }
        }
    }
}

/// Q4_K's and Q5_K's 8 (scale, min) pairs of 6 bits packed in 12 bytes.
pub fn scale_min_k4(s: &[u8], j: usize) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        (
            (s[j + 4] & 0xF) | ((s[j - 4] >> 2) & 0x30),
            (s[j + 4] >> 4) | ((s[j] >> 2) & 0x30),
        )
    }
}

/// `d`, `dmin`, 12 scale bytes, 128 bytes: value `64c + 32s + l` is nibble `s` of byte `32c + l`.
fn q4_k(b: &[u8], y: &mut [f32]) {
    let (d, dmin) = (half(b, 0), half(b, 2));
    let (scales, qs) = (&b[4..16], &b[16..144]);
    for c in 0..4 {
        for s in 0..2 {
            let (sc, m) = scale_min_k4(scales, 2 * c + s);
            let (dl, ml) = (d * sc as f32, dmin * m as f32);
            for l in 0..32 {
                let q = (qs[32 * c + l] >> (4 * s)) & 0xF;
                y[64 * c + 32 * s + l] = dl * q as f32 - ml;
            }
        }
    }
}

/// Q4_K plus 32 bytes of fifth bits: value `32k + l` takes bit `k` of byte `l`.
fn q5_k(b: &[u8], y: &mut [f32]) {
    let (d, dmin) = (half(b, 0), half(b, 2));
    let (scales, qh, qs) = (&b[4..16], &b[16..48], &b[48..176]);
    for c in 0..4 {
        for s in 0..2 {
            let k = 2 * c + s;
            let (sc, m) = scale_min_k4(scales, k);
            let (dl, ml) = (d * sc as f32, dmin * m as f32);
            for l in 0..32 {
                let q = ((qs[32 * c + l] >> (4 * s)) & 0xF) | ((qh[l] >> k) & 1) << 4;
                y[32 * k + l] = dl * q as f32 - ml;
            }
        }
    }
}

/// 128 bytes of low nibbles, 64 bytes of 2-bit highs, 16 signed scales, `d`. Value
/// `128h + 32j + l`: nibble `j / 2` of byte `64h + 32(j % 2) + l`, bits `2j` of byte `32h + l`.
fn q6_k(b: &[u8], y: &mut [f32]) {
    let (ql, qh, scales) = (&b[0..128], &b[128..192], &b[192..208]);
    let d = half(b, 208);
    for h in 0..2 {
        for j in 0..4 {
            for l in 0..32 {
                let i = 128 * h + 32 * j + l;
                let low = (ql[64 * h + 32 * (j % 2) + l] >> (4 * (j / 2))) & 0xF;
                let high = (qh[32 * h + l] >> (2 * j)) & 3;
                let q = (low | high << 4) as i8 - 32;
                let dl = d * scales[i / 16] as i8 as f32;
                y[i] = dl * q as f32;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f16b(x: f32) -> [u8; 2] {
        f16::from_f32(x).to_le_bytes()
    }

    #[test]
    fn q8_0_is_scale_times_value() {
        let mut b = f16b(0.5).to_vec();
        b.extend((0..32).map(|i| (i as i8 - 16) as u8));
        let y = dequantize(GgmlType(Q8_0), &b, "f", "t").unwrap();
        assert_eq!(y[0], -8.0);
        assert_eq!(y[31], 7.5);
    }

    #[test]
    fn q4_0_nibbles_low_then_high() {
        let mut b = f16b(2.0).to_vec();
        b.extend([0x91u8; 16]); // low 1, high 9
        let y = dequantize(GgmlType(Q4_0), &b, "f", "t").unwrap();
        assert_eq!(y[0], -14.0);
        assert_eq!(y[16], 2.0);
    }

    #[test]
    fn partial_blocks_and_unknown_types_are_errors() {
        let e = dequantize(GgmlType(Q8_0), &[0; 33], "f", "w").unwrap_err();
        assert!(e.to_string().contains("not whole Q8_0 blocks"), "{e}");
        let e = dequantize(GgmlType(16), &[0; 66], "f", "w").unwrap_err();
        assert!(e.to_string().contains("IQ2_XXS are not supported"), "{e}");
    }
}

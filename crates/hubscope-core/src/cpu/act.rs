//! The gated activation of an MLP, `act(gate) · up` for SiLU (SwiGLU) and tanh-GELU (GeGLU),
//! in one pass over f32 values split across threads, with an exponential the compiler
//! vectorizes (Cephes' `expf`: `2ⁿ · eʳ`, `|r| ≤ ln 2 / 2`, a degree-7 polynomial; about
//! 1 ulp). burn's CPU device computes the same with a scalar, branching `exp` per element and
//! one pass per operation, on one thread — between two matrix products that use every thread.
//!
//! Each value depends on its own `gate` and `up` only, so a row's result does not depend on
//! the other rows in the batch.

use crate::config::Activation;

use super::par::{Out, for_each, threads};

/// `act(gate[i]) · up[i]` for every `i`.
pub fn gated(gate: &[f32], up: &[f32], act: Activation) -> Vec<f32> {
    assert_eq!(gate.len(), up.len(), "gate and up have one shape");
    let len = gate.len();
    let mut y = vec![0.0f32; len];
    let out = Out::new(&mut y);
    let blocks = if len < 1 << 14 { 1 } else { threads() * 2 };
    let per = len.div_ceil(blocks).next_multiple_of(16).max(16);
    let starts: Vec<usize> = (0..len).step_by(per).collect();
    let run = best();
    for_each(&starts, |start| {
        let end = (start + per).min(len);
        // SAFETY: tasks write disjoint ranges of `y`, which outlives them; `run` comes from
        // `best` (the CPU has its features).
        let y = unsafe { std::slice::from_raw_parts_mut(out.get().add(start), end - start) };
        unsafe { run(&gate[start..end], &up[start..end], y, act) };
    });
    y
}

/// One block: `y[i] = act(g[i]) · u[i]`.
///
/// # Safety
/// The CPU has the function's target features.
type Block = unsafe fn(&[f32], &[f32], &mut [f32], Activation);

/// The loop compiled for the widest vectors this CPU has.
fn best() -> Block {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx512f") {
            return x86::avx512;
        }
        if has!("avx2") && has!("fma") {
            return x86::avx2;
        }
    }
    portable
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Activation, block};

    /// # Safety
    /// The CPU has AVX-512F.
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub unsafe fn avx512(g: &[f32], u: &[f32], y: &mut [f32], act: Activation) {
        block(g, u, y, act)
    }

    /// # Safety
    /// The CPU has AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn avx2(g: &[f32], u: &[f32], y: &mut [f32], act: Activation) {
        block(g, u, y, act)
    }
}

/// # Safety
/// Always safe (the signature of `Block`).
unsafe fn portable(g: &[f32], u: &[f32], y: &mut [f32], act: Activation) {
    block(g, u, y, act)
}

#[inline(always)]
fn block(g: &[f32], u: &[f32], y: &mut [f32], act: Activation) {
    match act {
        Activation::Silu => {
            for ((y, &g), &u) in y.iter_mut().zip(g).zip(u) {
                *y = silu(g) * u;
            }
        }
        Activation::GeluTanh => {
            for ((y, &g), &u) in y.iter_mut().zip(g).zip(u) {
                *y = gelu_tanh(g) * u;
            }
        }
    }
}

/// `x · sigmoid(x)` = `x / (1 + e⁻ˣ)`.
#[inline(always)]
fn silu(x: f32) -> f32 {
    x / (1.0 + exp(-x))
}

/// `x/2 · (1 + tanh(t))` with `t = √(2/π) · (x + 0.044715 x³)`, computed as the equal
/// `x / (1 + e⁻²ᵗ)` (no cancellation where `tanh(t)` nears −1).
#[inline(always)]
fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    let t = SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x);
    x / (1.0 + exp(-2.0 * t))
}

/// `eˣ` for `x` clamped to the range where the result is a normal f32 (below it: about
/// 2⁻¹²⁶, above it: about 2.4·10³⁸; NaN stays NaN), written without branches or calls so
/// that a loop of it vectorizes.
#[inline(always)]
fn exp(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    // ln 2 in two parts (Cody–Waite), so that `x − n·ln 2` is exact for |n| ≤ 127.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.336_55, 88.376_26);
    let n = (x * LOG2_E + 0.5).floor();
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    e * scale
}

#[cfg(test)]
mod tests {
    use super::{Activation, best, exp, gated, portable};

    /// Values over the range an MLP's gate takes and beyond (±100), and the edges.
    fn inputs() -> Vec<f32> {
        let mut v: Vec<f32> = (-200_000..=200_000).map(|i| i as f32 * 5e-4).collect();
        v.extend([
            0.0, -0.0, 1e-30, -1e-30, 88.0, -88.0, 89.0, -89.0, 1e4, -1e4,
        ]);
        v
    }

    #[test]
    fn exp_is_within_an_ulp_of_f64() {
        for x in inputs().into_iter().filter(|x| x.abs() <= 87.0) {
            let want = (x as f64).exp();
            let got = exp(x) as f64;
            let rel = ((got - want) / want).abs();
            assert!(rel <= f32::EPSILON as f64, "exp({x}) = {got}, want {want}");
        }
        assert!(exp(f32::NAN).is_nan());
        let tiny = exp(f32::NEG_INFINITY);
        assert!(tiny > 0.0 && tiny < 1.2e-38, "{tiny}");
        assert!(exp(f32::INFINITY) > 2e38 && exp(f32::INFINITY).is_finite());
    }

    /// Both activations against their definitions in f64, through every compiled loop and
    /// the threaded split.
    #[test]
    fn gated_activations_equal_their_definitions() {
        let g = inputs();
        let u: Vec<f32> = (0..g.len()).map(|i| 1.0 - (i % 7) as f32 * 0.25).collect();
        for act in [Activation::Silu, Activation::GeluTanh] {
            // The value in f64, and the argument of the exponential (whose rounding in f32
            // the exponential amplifies by its size).
            let want: Vec<(f64, f64)> = g
                .iter()
                .zip(&u)
                .map(|(&x, &u)| {
                    let x = x as f64;
                    let (a, arg) = match act {
                        Activation::Silu => (x / (1.0 + (-x).exp()), 0.0),
                        Activation::GeluTanh => {
                            let t =
                                (2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x);
                            // 0.5·x·(1 + tanh t), in the form that keeps f64's precision where
                            // tanh t rounds to −1.
                            (x / (1.0 + (-2.0 * t).exp()), 2.0 * t)
                        }
                    };
                    (a * u as f64, arg)
                })
                .collect();
            let mut alone = vec![0.0; g.len()];
            // SAFETY: `portable` needs no CPU feature; `best` returns one this CPU has.
            unsafe { portable(&g, &u, &mut alone, act) };
            let mut widest = vec![0.0; g.len()];
            unsafe { best()(&g, &u, &mut widest, act) };
            let threaded = gated(&g, &u, act);
            // The same operations in the same order whatever the vector width or the split.
            assert_eq!(alone, widest, "{act:?}: widest loop");
            assert_eq!(alone, threaded, "{act:?}: threaded");
            for (i, (&got, &(want, arg))) in alone.iter().zip(&want).enumerate() {
                // A few ulp of the result (more where the exponential's argument is large),
                // and an absolute floor where the exact result is below f32's normal range
                // (the exponential's argument clamped).
                let tol = (8.0 + 2.0 * arg.abs()) * f32::EPSILON as f64 * want.abs() + 1e-30;
                assert!(
                    (got as f64 - want).abs() <= tol,
                    "{act:?}: g {} u {}: {got}, want {want}",
                    g[i],
                    u[i]
                );
            }
        }
    }
}

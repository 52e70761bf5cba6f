//! hubscope's own CPU kernels, used where burn's general ones cost more than they must. On
//! burn's CPU device (Flex) a linear layer over a few rows — a decode step, or a batch of
//! decode steps of the chat server — is a matrix–vector-like product that burn's GEMM pays for
//! by packing the whole weight matrix on every call; `x_wt` reads each weight row once
//! instead, and reads f16/bf16 weights as they are (burn's bf16 matmul widens the whole
//! weight matrix to f32 on every call). Between those products, `gated` computes an MLP's
//! `act(gate) · up` in one vectorized pass on every thread (burn's is a scalar pass per
//! operation on one thread), and `decode_attention` a decode step's attention for every
//! sequence of a batch in one call. The same kernels run in WebAssembly (the page's CPU
//! device, SIMD128, one thread). Everything else (long prompts, other devices, tensors
//! tracked by autodiff) stays with burn.

mod act;
mod attn;
mod blocks;
mod q8dot;
pub use blocks::{BlockMatrix, Blocks, keeps};
pub(crate) mod par;
pub use par::on_pool;
mod x_wt;

use std::sync::atomic::{AtomicBool, Ordering};

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::tensor::activation::{gelu_approximate, silu};
use burn::tensor::{DType, Tensor, TensorData};
use half::{bf16, f16};

use crate::config::Activation;
pub use attn::Heads;
use x_wt::{Weight, x_wt};

/// At most this many rows of `x` take hubscope's kernel (decode steps, batches of them, chat
/// prompts); more take burn's GEMM, whose packed panels win for long prompts (the two are
/// about equally fast at 128 rows on this project's 2-core AVX-512 machine; measured in
/// docs/BENCHMARKS.md).
const FEW_ROWS: usize = 128;

static OWN_KERNELS: AtomicBool = AtomicBool::new(true);

/// Use hubscope's kernels where they apply (the default), or burn's everywhere (`false`: for
/// benchmarks that compare the two in one process).
pub fn use_own_kernels(on: bool) {
    OWN_KERNELS.store(on, Ordering::Relaxed);
}

/// Up to this many rows multiply by a weight's blocks directly (decode steps, small batches);
/// more decode the whole matrix to f32 once and take the f32 products (prompts: the decoding
/// is paid once for all rows, and the products run at f32 speed).
const BLOCK_ROWS: usize = 16;

/// `x · Wᵀ` for a weight kept in ggml blocks: hubscope's block kernels for a few f32 rows on the
/// Flex device; otherwise (prompts, autodiff, other dtypes) the blocks decoded once onto `x`'s
/// device and the dense products.
pub fn matmul_blocks(x: Tensor<2>, w: &BlockMatrix) -> Tensor<2> {
    let [rows, _] = x.dims();
    if rows <= BLOCK_ROWS && x.dtype() == DType::F32 {
        if let Some(xs) = contiguous(&x) {
            if let Some(xs) = xs.as_slice::<f32>() {
                let y = blocks::x_wt_blocks(xs, w, rows);
                return Tensor::from_primitive::<Flex>(FlexTensor::from_data(TensorData::new(
                    y,
                    [rows, w.rows],
                )));
            }
        }
    }
    let dense = Tensor::<2>::from_data(
        TensorData::new(blocks::dequantize_parallel(w), [w.rows, w.cols]),
        (&x.device(), DType::F32),
    );
    let dtype = x.dtype();
    matmul_t(x, dense.cast(dtype))
}

/// `x · wᵀ` for `x: [rows, k]` and `w: [n, k]` (a linear layer's weight as stored). A
/// weight of a narrower type than `x` (`--dtype stored`: f16/bf16 weights, f32 activations)
/// is read as it is by hubscope's kernel, and widened for burn's matmul otherwise.
pub fn matmul_t(x: Tensor<2>, w: Tensor<2>) -> Tensor<2> {
    if OWN_KERNELS.load(Ordering::Relaxed) && x.dims()[0] <= FEW_ROWS {
        let y = if x.dtype() == w.dtype() {
            few_rows(&x, &w)
        } else {
            wide_rows(&x, &w)
        };
        if let Some(y) = y {
            return y;
        }
    }
    let dtype = x.dtype();
    x.matmul(w.cast(dtype).t())
}

/// `act(gate) · up` for tensors of one shape: SiLU (SwiGLU) or tanh-GELU (GeGLU).
pub fn gated<const D: usize>(gate: Tensor<D>, up: Tensor<D>, act: Activation) -> Tensor<D> {
    if OWN_KERNELS.load(Ordering::Relaxed) {
        if let Some(y) = gated_f32(&gate, &up, act) {
            return y;
        }
    }
    let gate = match act {
        Activation::Silu => silu(gate),
        Activation::GeluTanh => gelu_approximate(gate),
    };
    gate * up
}

/// `gated` on the Flex device for f32 tensors autodiff does not track; `None` otherwise
/// (half precision stays with burn, which rounds `act(gate)` before the product as
/// transformers does).
fn gated_f32<const D: usize>(
    gate: &Tensor<D>,
    up: &Tensor<D>,
    act: Activation,
) -> Option<Tensor<D>> {
    if gate.dtype() != DType::F32 || up.dtype() != DType::F32 || gate.dims() != up.dims() {
        return None;
    }
    let (g, u) = (contiguous(gate)?, contiguous(up)?);
    let y = act::gated(g.as_slice::<f32>()?, u.as_slice::<f32>()?, act);
    let y = TensorData::new(y, gate.dims());
    Some(Tensor::from_primitive::<Flex>(FlexTensor::from_data(y)))
}

/// Attention of a decode step, `q: [rows, heads, 1, head_dim]` (rotated), row `i` against
/// `held[i]`, the keys and values its cache holds (`[1, kv_heads, len, head_dim]` views, the
/// step's own appended): `softmax(scale · q·Kᵀ) · V` as `[rows, heads, 1, head_dim]`, on the
/// Flex device for f32 tensors autodiff does not track; `None` otherwise. No mask: the caller
/// passes only what every query may see.
pub fn decode_attention(
    q: &Tensor<4>,
    held: &[(Tensor<4>, Tensor<4>)],
    heads: Heads,
) -> Option<Tensor<4>> {
    let [rows, h, seq, hd] = q.dims();
    if !OWN_KERNELS.load(Ordering::Relaxed)
        || seq != 1
        || rows != held.len()
        || q.dtype() != DType::F32
        || h != heads.heads
        || hd != heads.head_dim
    {
        return None;
    }
    let qf = contiguous(q)?;
    let prims = held
        .iter()
        .map(|(k, v)| {
            let [b, kvh, _, d] = k.dims();
            (b == 1 && kvh == heads.kv_heads && d == hd && v.dims() == k.dims()).then_some(())?;
            let k = k.clone().try_into_primitive::<Flex>().ok()?;
            let v = v.clone().try_into_primitive::<Flex>().ok()?;
            Some((k, v))
        })
        .collect::<Option<Vec<_>>>()?;
    let cached = prims
        .iter()
        .map(|(k, v)| {
            let len = k.layout().shape()[2];
            let head_stride = rows_view(k, hd)?;
            (rows_view(v, hd)? == head_stride).then_some(())?;
            Some(attn::Cached {
                k: k.storage::<f32>().get(k.layout().start_offset()..)?,
                v: v.storage::<f32>().get(v.layout().start_offset()..)?,
                head_stride,
                len,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    let y = attn::decode(qf.as_slice::<f32>()?, &cached, heads);
    let y = TensorData::new(y, [rows, h, 1, hd]);
    Some(Tensor::from_primitive::<Flex>(FlexTensor::from_data(y)))
}

/// The distance between kv heads of a `[1, kv_heads, len, head_dim]` f32 view whose
/// positions are consecutive rows of `head_dim` (a prefix of a cache buffer); `None` for
/// any other layout, or one reaching past its storage.
fn rows_view(t: &FlexTensor, hd: usize) -> Option<usize> {
    let layout = t.layout();
    let (shape, strides) = (layout.shape(), layout.strides());
    if t.dtype() != DType::F32 || strides[3] != 1 || strides[2] != hd as isize || strides[1] < 0 {
        return None;
    }
    let head_stride = strides[1] as usize;
    let end = layout.start_offset() + (shape[1] - 1) * head_stride + shape[2] * hd;
    (head_stride >= shape[2] * hd && end <= t.storage::<f32>().len()).then_some(head_stride)
}

/// The kernel on the Flex device for f32, f16 and bf16 tensors autodiff does not track;
/// `None` otherwise. Half-precision rows are widened to f32, summed in f32 and rounded back
/// once (the weights are widened as the kernel loads them).
fn few_rows(x: &Tensor<2>, w: &Tensor<2>) -> Option<Tensor<2>> {
    let [rows, k] = x.dims();
    let n = w.dims()[0];
    let xf = contiguous(x)?;
    let wf = w.clone().try_into_primitive::<Flex>().ok()?;
    let y = match x.dtype() {
        DType::F32 => TensorData::new(
            x_wt(xf.as_slice::<f32>()?, wf.as_slice::<f32>()?, rows, k, n),
            [rows, n],
        ),
        DType::F16 => TensorData::new(
            half_rows(
                xf.as_slice::<f16>()?,
                wf.as_slice::<f16>()?,
                rows,
                k,
                n,
                f16::from_f32,
            ),
            [rows, n],
        ),
        DType::BF16 => TensorData::new(
            half_rows(
                xf.as_slice::<bf16>()?,
                wf.as_slice::<bf16>()?,
                rows,
                k,
                n,
                bf16::from_f32,
            ),
            [rows, n],
        ),
        _ => return None,
    };
    Some(Tensor::from_primitive::<Flex>(FlexTensor::from_data(y)))
}

/// The kernel for f32 `x` and f16/bf16 `w` (f32 products, f32 result); `None` otherwise.
fn wide_rows(x: &Tensor<2>, w: &Tensor<2>) -> Option<Tensor<2>> {
    if x.dtype() != DType::F32 {
        return None;
    }
    let [rows, k] = x.dims();
    let n = w.dims()[0];
    let xf = contiguous(x)?;
    let wf = w.clone().try_into_primitive::<Flex>().ok()?;
    let xs = xf.as_slice::<f32>()?;
    let y = match w.dtype() {
        DType::F16 => x_wt(xs, wf.as_slice::<f16>()?, rows, k, n),
        DType::BF16 => x_wt(xs, wf.as_slice::<bf16>()?, rows, k, n),
        _ => return None,
    };
    let y = TensorData::new(y, [rows, n]);
    Some(Tensor::from_primitive::<Flex>(FlexTensor::from_data(y)))
}

/// `t` as a contiguous tensor of burn's Flex device (copied only where it is a strided view);
/// `None` on another device or under autodiff.
fn contiguous<const D: usize>(t: &Tensor<D>) -> Option<FlexTensor> {
    let f = t.clone().try_into_primitive::<Flex>().ok()?;
    Some(if f.is_contiguous() {
        f
    } else {
        f.to_contiguous()
    })
}

/// `x · wᵀ` for half-precision `x` and `w`: `x` widened to f32, summed in f32, rounded once.
fn half_rows<H: Weight>(
    x: &[H],
    w: &[H],
    rows: usize,
    k: usize,
    n: usize,
    round: fn(f32) -> H,
) -> Vec<H> {
    let x: Vec<f32> = x.iter().map(|v| v.to_f32()).collect();
    x_wt(&x, w, rows, k, n).into_iter().map(round).collect()
}

/// Deterministic values in [−0.5, 0.5) for the kernels' tests.
#[cfg(test)]
fn test_values(len: usize, seed: u64) -> Vec<f32> {
    (0..len as u64)
        .map(|i| {
            let h = (i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed;
            ((h >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        })
        .collect()
}

"""Quantization references from llama.cpp's own C: ggml-quants.c of the PyPI llama-cpp-python
0.3.36 sdist, compiled by scripts/make-fixtures.sh with gcc (-O2, no -march: plain SSE2 f32
arithmetic, no fused multiply-adds) into a shared library, called here through ctypes.

    make_quant_refs.py OUT_DIR LIBGGML_QUANTS

OUT_DIR/quant-refs.safetensors: `input` (f32, [rows, 512]: seeded normal rows at several
scales, rows of zeros, of one constant (positive and negative), one outlier among small values,
values near f16's smallest normal, and alternating signs), and for each of Q8_0, Q4_0, Q5_0,
Q4_K and Q6_K the bytes `quantize_row_<type>_ref` (what llama-quantize runs without an importance matrix)
writes for all of `input` (u8, one row of blocks after another).
"""

import ctypes
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

OUT = Path(sys.argv[1])
lib = ctypes.CDLL(sys.argv[2])
rng = np.random.default_rng(11)
COLS = 512

rows = [rng.standard_normal(COLS) * s for s in (1.0, 0.02, 37.0, 1e-3)]
rows += [rng.uniform(-1, 1, COLS), rng.uniform(0.1, 0.9, COLS)]
rows += [np.zeros(COLS), np.full(COLS, 0.25), np.full(COLS, -3.0)]
outlier = rng.standard_normal(COLS) * 0.01
outlier[77] = 40.0
outlier[300] = -55.0
rows.append(outlier)
rows.append(rng.standard_normal(COLS) * 6.2e-5)
rows.append(np.where(np.arange(COLS) % 2 == 0, 1.0, -1.0) * rng.uniform(0.5, 1.5, COLS))
# Rows whose 32-value pieces are all of one sign (the K-quants' minimum at zero and not).
rows.append(np.abs(rng.standard_normal(COLS)))
rows.append(-np.abs(rng.standard_normal(COLS)) - 0.5)
x = np.ascontiguousarray(np.stack(rows).astype(np.float32))

SIZES = {"Q8_0": (32, 34), "Q4_0": (32, 18), "Q5_0": (32, 22), "Q4_K": (256, 144), "Q6_K": (256, 210)}
tensors = {"input": x}
for name, (block, size) in SIZES.items():
    out = np.zeros(x.size // block * size, dtype=np.uint8)
    fn = getattr(lib, f"quantize_row_{name[0].lower()}{name[1:]}_ref")  # q8_0 … q4_K
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    fn.restype = None
    fn(x.ctypes.data, out.ctypes.data, x.size)
    tensors[name] = out
OUT.mkdir(parents=True, exist_ok=True)
save_file(tensors, str(OUT / "quant-refs.safetensors"))

"""Test vectors for alignlab's GGUF dequantisers, computed independently by the `gguf` PyPI
package (llama.cpp's own Python reader): one block of random bytes per type, with its scale
fields set to ordinary half-precision values, and what `gguf.quants.dequantize` makes of it.

    pip install gguf numpy && python tools/quant_vectors.py

Prints Rust constants for `src/io/gguf_quant.rs`'s tests (the values there were made this way,
gguf 0.17 / numpy 2).
"""

import gguf
import numpy as np
from gguf import GGMLQuantizationType as T

rng = np.random.default_rng(12)
half = lambda v: np.float16(v).tobytes()


def block(kind: T) -> bytes:
    _, size = gguf.GGML_QUANT_SIZES[kind]
    raw = bytearray(rng.integers(0, 256, size, dtype=np.uint8).tobytes())
    if kind in (T.Q8_0, T.Q4_0):
        raw[0:2] = half(0.0123)
    elif kind in (T.Q4_K, T.Q5_K):
        raw[0:2] = half(0.0371)  # d
        raw[2:4] = half(0.0157)  # dmin
    elif kind == T.Q6_K:
        raw[size - 2:size] = half(0.0093)  # d is last
    return bytes(raw)


for kind in (T.Q8_0, T.Q4_0, T.Q4_K, T.Q5_K, T.Q6_K):
    raw = block(kind)
    values = gguf.quants.dequantize(np.frombuffer(raw, dtype=np.uint8), kind).astype(np.float64)
    picks = [0, 1, 2, 15, 16, 17, 31] + ([32, 33, 63, 64, 65, 100, 127, 128, 129, 191, 192, 200, 255] if len(values) > 32 else [])
    print(f"// {kind.name}: {len(values)} values")
    print(f"const {kind.name}_BLOCK: &str = \"{raw.hex()}\";")
    print(f"const {kind.name}_PICKS: &[(usize, f64)] = &[" + ", ".join(f"({i}, {values[i]:.7e})" for i in picks) + "];")
    print(f"const {kind.name}_SUM: f64 = {values.sum():.9e};")
    print(f"const {kind.name}_SUM_SQUARES: f64 = {(values**2).sum():.9e};")

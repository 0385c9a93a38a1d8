//! Attention for inference on CPU backends: one pass per (row, head) over the keys a query may
//! see, the heads spread over the CPU's threads, with a vectorisable exp. burn-flex's attention
//! op computes the whole square of scores for each head in turn on one thread with a scalar
//! exp and masks half of it afterwards; in scoring 32 × 256 tokens of stories260K it took 55% of
//! the time (its loop and its expf), and it left the second core idle.
//!
//! Forward only, on host memory: alignlab's model hands it a CPU backend's tensors as slices
//! (a copy each way) when no gradient is recorded.

/// Which keys each query sees, on the host.
pub enum HostMask {
    /// Query t sees keys 0..=t + (S − T).
    Causal,
    /// `true` = hidden, [B, T, S] (the model's [B, 1, T, S] mask without its head axis).
    Explicit(Vec<bool>),
}

/// Shapes of one attention call.
#[derive(Debug, Clone, Copy)]
pub struct Dims {
    pub batch: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub queries: usize,
    pub keys: usize,
    pub head_dim: usize,
}

/// How a tensor of shape [batch, heads, positions, head_dim] lies in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// In that order: each head's positions together (the KV cache's order).
    HeadMajor,
    /// [batch, positions, heads, head_dim]: each position's heads together, the order the
    /// projections write. Reading it here spares the caller a strided copy to head-major.
    TokenMajor,
}

impl Layout {
    /// Where element (row, head, position, 0) starts.
    fn offset(self, [row, head, position]: [usize; 3], heads: usize, positions: usize) -> usize {
        match self {
            Layout::HeadMajor => (row * heads + head) * positions + position,
            Layout::TokenMajor => (row * positions + position) * heads + head,
        }
    }

    /// One head of one row, [positions, head_dim], borrowed where it is contiguous.
    fn head<'a>(
        self,
        x: &'a [f32],
        [row, head]: [usize; 2],
        [heads, positions, head_dim]: [usize; 3],
    ) -> std::borrow::Cow<'a, [f32]> {
        let start = |position| self.offset([row, head, position], heads, positions) * head_dim;
        match self {
            Layout::HeadMajor => x[start(0)..start(0) + positions * head_dim].into(),
            Layout::TokenMajor => {
                let mut gathered = Vec::with_capacity(positions * head_dim);
                for position in 0..positions {
                    gathered.extend_from_slice(&x[start(position)..start(position) + head_dim]);
                }
                gathered.into()
            }
        }
    }
}

/// The layouts of one attention call's tensors.
#[derive(Debug, Clone, Copy)]
pub struct Layouts {
    pub query: Layout,
    /// The keys' and the values'.
    pub key_value: Layout,
    pub output: Layout,
}

/// softmax(q·kᵀ/√hd + mask)·v: `q` [B, H, T, hd], `k` and `v` [B, KV, S, hd] → [B, H, T, hd]
/// (query head h reads key/value head h / (H / KV)), each laid out as `layouts` says.
pub fn attend(
    d: Dims,
    layouts: Layouts,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mask: &HostMask,
) -> Vec<f32> {
    let head_len = d.queries * d.head_dim;
    let mut out = vec![0.0f32; d.batch * d.heads * head_len];
    let one_head = |index: usize, out: &mut [f32]| {
        let (row, head) = (index / d.heads, index % d.heads);
        let kv_head = head / (d.heads / d.kv_heads);
        let query_shape = [d.heads, d.queries, d.head_dim];
        let key_shape = [d.kv_heads, d.keys, d.head_dim];
        let q = layouts.query.head(q, [row, head], query_shape);
        let k = layouts.key_value.head(k, [row, kv_head], key_shape);
        let v = layouts.key_value.head(v, [row, kv_head], key_shape);
        head_attention(d, row, &q, &k, &v, mask, out);
    };
    for_each_head(&mut out, head_len, one_head);
    match layouts.output {
        Layout::HeadMajor => out,
        Layout::TokenMajor => token_major(&out, d),
    }
}

/// [B, H, T, hd] → [B, T, H, hd].
fn token_major(out: &[f32], d: Dims) -> Vec<f32> {
    let hd = d.head_dim;
    let mut swapped = vec![0.0f32; out.len()];
    for (index, head) in out.chunks_exact(d.queries * hd).enumerate() {
        let (row, h) = (index / d.heads, index % d.heads);
        for (t, values) in head.chunks_exact(hd).enumerate() {
            let start = Layout::TokenMajor.offset([row, h, t], d.heads, d.queries) * hd;
            swapped[start..start + hd].copy_from_slice(values);
        }
    }
    swapped
}

#[cfg(not(target_arch = "wasm32"))]
fn for_each_head(out: &mut [f32], head_len: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    use rayon::prelude::*;
    out.par_chunks_mut(head_len)
        .enumerate()
        .for_each(|(index, out)| f(index, out));
}

/// The page's module has no threads.
#[cfg(target_arch = "wasm32")]
fn for_each_head(out: &mut [f32], head_len: usize, f: impl Fn(usize, &mut [f32])) {
    for (index, out) in out.chunks_mut(head_len).enumerate() {
        f(index, out);
    }
}

/// One head of one row: `q` [T, hd], `k` and `v` [S, hd], into `out` [T, hd]. Compiled twice:
/// for the build's baseline (SSE2 on x86-64: four lanes) and, where the CPU has it, for AVX2
/// (eight lanes). Both add in the same order (the running sums below have a fixed number of
/// lanes), so they give the same bits.
fn head_attention(
    d: Dims,
    row: usize,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mask: &HostMask,
    out: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { head_attention_avx2(d, row, q, k, v, mask, out) };
    }
    head_attention_body(d, row, q, k, v, mask, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn head_attention_avx2(
    d: Dims,
    row: usize,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mask: &HostMask,
    out: &mut [f32],
) {
    head_attention_body(d, row, q, k, v, mask, out)
}

#[inline(always)]
fn head_attention_body(
    d: Dims,
    row: usize,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mask: &HostMask,
    out: &mut [f32],
) {
    let hd = d.head_dim;
    let scale = 1.0 / (hd as f32).sqrt();
    // Keys and values transposed to [hd, S]: a query's scores are then hd passes of a
    // multiply-add over contiguous keys, and each output element one dot product over
    // contiguous values, both of which vectorise.
    let transposed = |x: &[f32]| {
        let mut t = vec![0.0f32; hd * d.keys];
        for (j, row) in x.chunks_exact(hd).enumerate() {
            for (i, &x) in row.iter().enumerate() {
                t[i * d.keys + j] = x;
            }
        }
        t
    };
    let (keys_t, values_t) = (transposed(k), transposed(v));
    let mut scores = vec![0.0f32; d.keys];
    for t in 0..d.queries {
        let seen = match mask {
            HostMask::Causal => t + 1 + d.keys - d.queries,
            HostMask::Explicit(_) => d.keys,
        };
        let scores = &mut scores[..seen];
        scores.fill(0.0);
        for (i, &qi) in q[t * hd..(t + 1) * hd].iter().enumerate() {
            let qi = qi * scale;
            for (s, &kx) in scores
                .iter_mut()
                .zip(&keys_t[i * d.keys..i * d.keys + seen])
            {
                *s += qi * kx;
            }
        }
        if let HostMask::Explicit(hidden) = mask {
            let base = (row * d.queries + t) * d.keys;
            for (s, &h) in scores.iter_mut().zip(&hidden[base..base + seen]) {
                if h {
                    *s = f32::NEG_INFINITY;
                }
            }
        }
        let max = max_of(scores);
        let out = &mut out[t * hd..(t + 1) * hd];
        out.fill(0.0);
        if max == f32::NEG_INFINITY {
            continue; // every key hidden (a left pad's own query): its output is never read
        }
        scores.iter_mut().for_each(|s| *s = exp(*s - max));
        let inv = 1.0 / sum_of(scores);
        for (i, o) in out.iter_mut().enumerate() {
            *o = dot(scores, &values_t[i * d.keys..i * d.keys + seen]) * inv;
        }
    }
}

/// The largest element, in eight independent running maxima (one would be a chain of dependent
/// comparisons, a quarter of this kernel's time when it was). Plain comparisons, not `f32::max`
/// (which orders NaN), so that the lanes vectorise.
#[inline(always)]
pub(crate) fn max_of(a: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let chunks = a.chunks_exact(8);
    let tail = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m });
    for chunk in chunks {
        for lane in 0..8 {
            if chunk[lane] > lanes[lane] {
                lanes[lane] = chunk[lane];
            }
        }
    }
    lanes.iter().fold(tail, |m, &x| if x > m { x } else { m })
}

/// Σ a in eight independent running sums.
#[inline(always)]
pub(crate) fn sum_of(a: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let chunks = a.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().sum();
    for chunk in chunks {
        for lane in 0..8 {
            lanes[lane] += chunk[lane];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// Σ a·b in eight independent running sums, which the compiler keeps in vector registers (one
/// running sum would be a chain of dependent additions).
#[inline(always)]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a8
        .remainder()
        .iter()
        .zip(b8.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a8.zip(b8) {
        for lane in 0..8 {
            lanes[lane] += x[lane] * y[lane];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// e^x for x ≤ 0 to within 2 ulp, in operations the compiler vectorises (libm's `expf` is a
/// call per element): x = n·ln 2 + r with |r| ≤ ln 2 / 2, e^r by its degree-7 Taylor
/// polynomial, 2^n put into the exponent bits. Below −87 (and at −∞) it is 0.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    // Adding and subtracting 1.5·2²³ rounds to the nearest integer (|x·log₂e| < 2²²) without
    // `round`, which is a libm call on x86-64's baseline.
    // The rounded sum's low mantissa bits are then n itself, read without a float-to-int
    // conversion (Rust's `as` saturates, and its checks stop vectorisation).
    const ROUND: f32 = 12_582_912.0;
    let x = if x > -87.0 { x } else { -87.0 };
    let shifted = x * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    let n_bits = shifted.to_bits().wrapping_sub(ROUND.to_bits());
    // ln 2 in two parts (Cody–Waite) so that n·ln 2 is subtracted without rounding error.
    let r = x - n * 0.693_145_75 - n * 1.428_606_8e-6;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0
                        + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    let two_n = f32::from_bits(n_bits.wrapping_add(127) << 23);
    let e = p * two_n;
    if x <= -87.0 {
        0.0
    } else {
        e
    }
}

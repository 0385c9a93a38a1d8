//! Dequantisation of the GGUF block types people download (llama.cpp's `ggml-quants.c`
//! layouts): Q8_0, Q4_0, and the K-quants Q4_K, Q5_K, Q6_K. Each block stores its own scale(s)
//! as half floats beside packed integers; values are widened to f32 at load.

use half::f16;

/// A quantised block type: how many values a block holds and how many bytes it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockType {
    Q8_0,
    Q4_0,
    Q4K,
    Q5K,
    Q6K,
}

/// Values per K-quant super-block.
const QK_K: usize = 256;

impl BlockType {
    /// The GGML type id's block type, if it is one we read.
    pub fn from_type_id(type_id: u32) -> Option<Self> {
        match type_id {
            8 => Some(Self::Q8_0),
            2 => Some(Self::Q4_0),
            12 => Some(Self::Q4K),
            13 => Some(Self::Q5K),
            14 => Some(Self::Q6K),
            _ => None,
        }
    }

    pub fn values_per_block(self) -> usize {
        match self {
            Self::Q8_0 | Self::Q4_0 => 32,
            Self::Q4K | Self::Q5K | Self::Q6K => QK_K,
        }
    }

    pub fn bytes_per_block(self) -> usize {
        match self {
            Self::Q8_0 => 2 + 32,
            Self::Q4_0 => 2 + 16,
            Self::Q4K => 2 + 2 + 12 + QK_K / 2,
            Self::Q5K => 2 + 2 + 12 + QK_K / 8 + QK_K / 2,
            Self::Q6K => QK_K / 2 + QK_K / 4 + QK_K / 16 + 2,
        }
    }

    /// Dequantises whole blocks: `bytes.len()` must be a multiple of the block size.
    pub fn dequantize(self, bytes: &[u8]) -> Vec<f32> {
        let mut out =
            Vec::with_capacity(bytes.len() / self.bytes_per_block() * self.values_per_block());
        for block in bytes.chunks_exact(self.bytes_per_block()) {
            match self {
                Self::Q8_0 => q8_0(block, &mut out),
                Self::Q4_0 => q4_0(block, &mut out),
                Self::Q4K => q4_k(block, &mut out),
                Self::Q5K => q5_k(block, &mut out),
                Self::Q6K => q6_k(block, &mut out),
            }
        }
        out
    }
}

fn half_at(bytes: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32()
}

/// d: f16, then 32 signed bytes; x = d·q.
fn q8_0(block: &[u8], out: &mut Vec<f32>) {
    let d = half_at(block, 0);
    out.extend(block[2..34].iter().map(|&q| d * q as i8 as f32));
}

/// d: f16, then 16 bytes of two 4-bit values each (low nibbles are values 0–15, high nibbles
/// 16–31); x = d·(q − 8).
fn q4_0(block: &[u8], out: &mut Vec<f32>) {
    let d = half_at(block, 0);
    let qs = &block[2..18];
    out.extend(qs.iter().map(|&q| d * ((q & 0x0F) as f32 - 8.0)));
    out.extend(qs.iter().map(|&q| d * ((q >> 4) as f32 - 8.0)));
}

/// The 6-bit scale and minimum of sub-block `j` of a K-quant's 12 packed scale bytes.
fn scale_min_k4(j: usize, scales: &[u8]) -> (f32, f32) {
    let (scale, min) = if j < 4 {
        (scales[j] & 63, scales[j + 4] & 63)
    } else {
        (
            (scales[j + 4] & 0x0F) | ((scales[j - 4] >> 6) << 4),
            (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4),
        )
    };
    (scale as f32, min as f32)
}

/// d, dmin: f16; 12 bytes of 6-bit scales and minimums for 8 sub-blocks of 32; 128 bytes of
/// 4-bit values. x = d·scale·q − dmin·min.
fn q4_k(block: &[u8], out: &mut Vec<f32>) {
    let (d, dmin) = (half_at(block, 0), half_at(block, 2));
    let scales = &block[4..16];
    let qs = &block[16..16 + QK_K / 2];
    for (chunk, q) in qs.chunks_exact(32).enumerate() {
        let (scale_low, min_low) = scale_min_k4(2 * chunk, scales);
        let (scale_high, min_high) = scale_min_k4(2 * chunk + 1, scales);
        out.extend(
            q.iter()
                .map(|&v| d * scale_low * (v & 0x0F) as f32 - dmin * min_low),
        );
        out.extend(
            q.iter()
                .map(|&v| d * scale_high * (v >> 4) as f32 - dmin * min_high),
        );
    }
}

/// As Q4_K with a fifth bit per value from 32 bytes of high bits.
fn q5_k(block: &[u8], out: &mut Vec<f32>) {
    let (d, dmin) = (half_at(block, 0), half_at(block, 2));
    let scales = &block[4..16];
    let high_bits = &block[16..16 + QK_K / 8];
    let qs = &block[16 + QK_K / 8..16 + QK_K / 8 + QK_K / 2];
    for (chunk, q) in qs.chunks_exact(32).enumerate() {
        let (scale_low, min_low) = scale_min_k4(2 * chunk, scales);
        let (scale_high, min_high) = scale_min_k4(2 * chunk + 1, scales);
        let (bit_low, bit_high) = (1u8 << (2 * chunk), 1u8 << (2 * chunk + 1));
        let fifth = |l: usize, bit: u8| if high_bits[l] & bit != 0 { 16.0 } else { 0.0 };
        out.extend(q.iter().enumerate().map(|(l, &v)| {
            d * scale_low * ((v & 0x0F) as f32 + fifth(l, bit_low)) - dmin * min_low
        }));
        out.extend(q.iter().enumerate().map(|(l, &v)| {
            d * scale_high * ((v >> 4) as f32 + fifth(l, bit_high)) - dmin * min_high
        }));
    }
}

/// 128 bytes of low 4 bits, 64 bytes of high 2 bits, 16 signed 8-bit scales (one per 16
/// values), d: f16 last. x = d·scale·(q − 32).
fn q6_k(block: &[u8], out: &mut Vec<f32>) {
    let low = &block[..QK_K / 2];
    let high = &block[QK_K / 2..QK_K / 2 + QK_K / 4];
    let scales = &block[QK_K / 2 + QK_K / 4..QK_K / 2 + QK_K / 4 + QK_K / 16];
    let d = half_at(block, QK_K / 2 + QK_K / 4 + QK_K / 16);
    let start = out.len();
    out.resize(start + QK_K, 0.0);
    let values = &mut out[start..];
    for half_block in 0..2 {
        let (ql, qh) = (&low[64 * half_block..], &high[32 * half_block..]);
        let sc = &scales[8 * half_block..];
        let y = &mut values[128 * half_block..];
        for l in 0..32 {
            let is = l / 16;
            let q = [
                (ql[l] & 0x0F) | ((qh[l] & 3) << 4),
                (ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4),
                (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4),
                (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4),
            ];
            for (part, &q) in q.iter().enumerate() {
                let scale = sc[is + 2 * part] as i8 as f32;
                y[l + 32 * part] = d * scale * (q as f32 - 32.0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Vectors from the `gguf` PyPI package's own dequantiser (`tools/quant_vectors.py`): one
    //! block of random bytes per type, and picked values, sum and sum of squares of its output.
    use super::*;

    // Q8_0: 32 values
    const Q8_0_BLOCK: &str = "4c22d99c1c083640a89615f99e665ef272c07d10fc4c773093821133b80ae62dc044";
    const Q8_0_PICKS: &[(usize, f64)] = &[
        (0, -4.7964478e-01),
        (1, -1.2298584e+00),
        (2, 3.4436035e-01),
        (15, -7.8710938e-01),
        (16, 1.5373230e+00),
        (17, 1.9677734e-01),
        (31, 8.3630371e-01),
    ];
    const Q8_0_SUM: f64 = 1.758697510e+00;
    const Q8_0_SUM_SQUARES: f64 = 2.578492226e+01;
    // Q4_0: 32 values
    const Q4_0_BLOCK: &str = "4c2292597067937b4ac0043b9b0f98f30a55";
    const Q4_0_PICKS: &[(usize, f64)] = &[
        (0, -7.3791504e-02),
        (1, 1.2298584e-02),
        (2, -9.8388672e-02),
        (15, -3.6895752e-02),
        (16, 1.2298584e-02),
        (17, -3.6895752e-02),
        (31, -3.6895752e-02),
    ];
    const Q4_0_SUM: f64 = -5.780334473e-01;
    const Q4_0_SUM_SQUARES: f64 = 9.846711438e-02;
    // Q4_K: 256 values
    const Q4_K_BLOCK: &str = "c0280524a6d7751d109feb28f78774e5481add509270aedb302f49c9ba45b9007ae80d79c0869d8ad427c877e79a5a1bdafa2fb80f560942f04bdf59ecb2b96af418554ca82f20744d7683d67974d877d68c8ebd08bc71ed20e7ea3776d23e425114e28ea6921930a65885b00d93a6ab0e55bdad749a55f25d058e6c62553decf1b5aef9611058e14b8da14d699d7910";
    const Q4_K_PICKS: &[(usize, f64)] = &[
        (0, 1.1030029e+01),
        (1, 1.3850342e+01),
        (2, 1.8080811e+01),
        (15, -2.5122070e-01),
        (16, 1.3850342e+01),
        (17, 1.1030029e+01),
        (31, 1.5260498e+01),
        (32, 2.9273224e+00),
        (33, 3.6677551e-01),
        (63, 3.6677551e-01),
        (64, 1.8992813e+01),
        (65, 1.8992813e+01),
        (100, -6.2805176e-01),
        (127, 6.9051514e+00),
        (128, 8.4480743e+00),
        (129, 1.7131668e+01),
        (191, 1.9782104e+01),
        (192, 9.5270538e+00),
        (200, 8.7848663e+00),
        (255, -3.4271240e-02),
    ];
    const Q4_K_SUM: f64 = 2.230569336e+03;
    const Q4_K_SUM_SQUARES: f64 = 3.380469832e+04;
    // Q5_K: 256 values
    const Q5_K_BLOCK: &str = "c02805243651cbef752bfa54e89d34a619e5342bad481edff69020d925247968c9dbeec851f02938e0da24f8421600cbcb81e3d06ee060a9def1650c741062c7d2b90ab67c538b33b53b7ddb1de06422d72f1c6612ef7cc34cea4ec6aab52d052d97b940e1e212f249d057903f1e9522d792c557e2d3a09949beb400c00b446b30c9874040c9ea52eda4b1a17842952b0a2b2dead12ac7c7af1a92a689481eea18d88e159c5097ba088305e38a43ac99";
    const Q5_K_PICKS: &[(usize, f64)] = &[
        (0, 5.3273300e+01),
        (1, 3.3234238e+01),
        (2, 5.1795502e+00),
        (15, 1.3195175e+01),
        (16, 3.5238144e+01),
        (17, 4.9265488e+01),
        (31, 3.5238144e+01),
        (32, 6.8951569e+00),
        (33, 4.3717194e+00),
        (63, 1.0680313e+01),
        (64, 1.9467468e+00),
        (65, 1.1743622e+01),
        (100, 2.9336365e+01),
        (127, 3.1080505e+01),
        (128, 6.3570862e+00),
        (129, 1.2271118e-01),
        (191, 2.0110321e+00),
        (192, 1.8496109e+01),
        (200, 5.9019547e+01),
        (255, 4.9689423e+01),
    ];
    const Q5_K_SUM: f64 = 4.684745117e+03;
    const Q5_K_SUM_SQUARES: f64 = 1.641033049e+05;
    // Q6_K: 256 values
    const Q6_K_BLOCK: &str = "f363898b41d721b64fef3fb9581a3d894cb6b388397aea8e7f03bdb9cd1cf5e79514dfd0371f5b48575e4de09102e3382dabb4a71d826cf2d66cb6f8311870f1beba17cc9ef2da79ee4a951d7ec9ffcc530a99d260a145beabf4e891c11a03f3fedec25abb81ea1434827ff74da1ede5c8e4fdaed11d088036e461f5a043ef72aaa30df4c582cfaf9389a7f9cc6cd19da4f55f512ad8c06f45f28a9d82ff854a655c22201f8f2debf3dbd4cb92919dd1d9698877a30d3b1a638d4ee927888b679ff9b521ff526ec37d0b145e88080ae1c320";
    const Q6_K_PICKS: &[(usize, f64)] = &[
        (0, -2.7063675e+00),
        (1, -1.7140327e+01),
        (2, 6.3148575e+00),
        (15, 6.3148575e+00),
        (16, 1.3020325e+00),
        (17, 6.5101624e-01),
        (31, -4.5571136e-01),
        (32, -3.4875870e+00),
        (33, 1.9530487e+01),
        (63, 3.0690765e-01),
        (64, -1.3950348e-01),
        (65, -5.5801392e-02),
        (100, 1.9437485e+01),
        (127, 5.6731415e-01),
        (128, -2.3250580e+00),
        (129, -2.5575638e+01),
        (191, -1.2239105e+01),
        (192, -1.2276306e+01),
        (200, -3.3480835e+01),
        (255, 2.5947647e+00),
    ];
    const Q6_K_SUM: f64 = 1.653581238e+02;
    const Q6_K_SUM_SQUARES: f64 = 3.267356825e+04;

    fn check(kind: BlockType, hex: &str, picks: &[(usize, f64)], sum: f64, sum_squares: f64) {
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        assert_eq!(bytes.len(), kind.bytes_per_block(), "{kind:?}");
        let values = kind.dequantize(&bytes);
        assert_eq!(values.len(), kind.values_per_block());
        for &(index, want) in picks {
            let got = values[index] as f64;
            assert!(
                (got - want).abs() <= 1e-6 * (1.0 + want.abs()),
                "{kind:?}[{index}]: {got} vs {want}"
            );
        }
        let got_sum: f64 = values.iter().map(|&v| v as f64).sum();
        let got_squares: f64 = values.iter().map(|&v| (v as f64).powi(2)).sum();
        assert!(
            (got_sum - sum).abs() <= 1e-5 * (1.0 + sum.abs()),
            "{kind:?} sum {got_sum} vs {sum}"
        );
        assert!(
            (got_squares - sum_squares).abs() <= 1e-5 * (1.0 + sum_squares),
            "{kind:?} sum of squares {got_squares} vs {sum_squares}"
        );
    }

    #[test]
    fn blocks_dequantize_as_the_gguf_package_does() {
        check(
            BlockType::Q8_0,
            Q8_0_BLOCK,
            Q8_0_PICKS,
            Q8_0_SUM,
            Q8_0_SUM_SQUARES,
        );
        check(
            BlockType::Q4_0,
            Q4_0_BLOCK,
            Q4_0_PICKS,
            Q4_0_SUM,
            Q4_0_SUM_SQUARES,
        );
        check(
            BlockType::Q4K,
            Q4_K_BLOCK,
            Q4_K_PICKS,
            Q4_K_SUM,
            Q4_K_SUM_SQUARES,
        );
        check(
            BlockType::Q5K,
            Q5_K_BLOCK,
            Q5_K_PICKS,
            Q5_K_SUM,
            Q5_K_SUM_SQUARES,
        );
        check(
            BlockType::Q6K,
            Q6_K_BLOCK,
            Q6_K_PICKS,
            Q6_K_SUM,
            Q6_K_SUM_SQUARES,
        );
    }
}

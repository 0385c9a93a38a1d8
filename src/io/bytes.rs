//! A bounds-checked little-endian reader over a byte slice: the one place binary formats are
//! decoded, so that no header field can make us read past the end or allocate unchecked sizes.

use crate::error::{Error, Result};

pub struct ByteReader<'a> {
    bytes: &'a [u8],
    pos: usize,
    source_name: &'a str,
}

impl<'a> ByteReader<'a> {
    pub fn new(bytes: &'a [u8], source_name: &'a str) -> Self {
        Self {
            bytes,
            pos: 0,
            source_name,
        }
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    pub fn error(&self, message: impl Into<String>) -> Error {
        Error::format(self.source_name, message)
    }

    /// Takes `len` bytes; `what` names the field in the error if the file ends first.
    pub fn take(&mut self, len: usize, what: &str) -> Result<&'a [u8]> {
        if len > self.remaining() {
            return Err(self.error(format!(
                "truncated: {what} needs {len} bytes at offset {}, but only {} remain",
                self.pos,
                self.remaining()
            )));
        }
        let slice = &self.bytes[self.pos..self.pos + len];
        self.pos += len;
        Ok(slice)
    }

    pub fn seek(&mut self, pos: usize, what: &str) -> Result<()> {
        if pos > self.bytes.len() {
            return Err(self.error(format!(
                "{what} at offset {pos} lies beyond the end of the file ({} bytes)",
                self.bytes.len()
            )));
        }
        self.pos = pos;
        Ok(())
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    pub fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.array::<1>(what)?[0])
    }
    pub fn u16(&mut self, what: &str) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }
    pub fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    pub fn i32(&mut self, what: &str) -> Result<i32> {
        Ok(i32::from_le_bytes(self.array(what)?))
    }
    pub fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    pub fn f32(&mut self, what: &str) -> Result<f32> {
        Ok(f32::from_le_bytes(self.array(what)?))
    }
    pub fn f64(&mut self, what: &str) -> Result<f64> {
        Ok(f64::from_le_bytes(self.array(what)?))
    }

    /// Reads `count` little-endian f32 values, checking the size before allocating.
    pub fn f32s(&mut self, count: usize, what: &str) -> Result<Vec<f32>> {
        let len = count
            .checked_mul(4)
            .ok_or_else(|| self.error(format!("{what}: element count {count} overflows")))?;
        let raw = self.take(len, what)?;
        Ok(raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    /// Reads `count` little-endian IEEE half-precision values as f32.
    pub fn f16s(&mut self, count: usize, what: &str) -> Result<Vec<f32>> {
        let len = count
            .checked_mul(2)
            .ok_or_else(|| self.error(format!("{what}: element count {count} overflows")))?;
        let raw = self.take(len, what)?;
        Ok(raw
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_read_names_the_field_and_offset() {
        let bytes = [1u8, 2, 3];
        let mut reader = ByteReader::new(&bytes, "x.bin");
        assert_eq!(reader.u16("magic").unwrap(), 0x0201);
        let message = reader.u32("version").unwrap_err().to_string();
        assert!(message.contains("x.bin"), "{message}");
        assert!(message.contains("version"), "{message}");
        assert!(message.contains("offset 2"), "{message}");
    }

    #[test]
    fn huge_counts_fail_before_allocating() {
        let bytes = [0u8; 8];
        let mut reader = ByteReader::new(&bytes, "x.bin");
        assert!(reader.f32s(usize::MAX / 2, "weights").is_err());
        assert!(reader.f32s(1 << 40, "weights").is_err());
    }
}

//! Reading kernel bytes safely: a bounds-checked view of one record, for
//! the record framing (record.rs) and each kind's decoder (kinds/). Kernel
//! bytes are untrusted input: nothing here can panic or read past a record.

/// Every record starts with `struct rec_hdr`: kind, size, seq.
pub const HDR_SIZE: usize = 8;
/// Task names (`TASK_COMM_LEN`), NUL included.
pub const COMM_LEN: usize = 16;

/// One record's bytes, exactly its declared size.
pub struct Fields<'a> {
    bytes: &'a [u8],
}

impl<'a> Fields<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Fields { bytes }
    }
    /// The record's declared size in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
    pub fn u16(&self, at: usize) -> u16 {
        u16::from_ne_bytes(self.array(at))
    }
    pub fn u32(&self, at: usize) -> u32 {
        u32::from_ne_bytes(self.array(at))
    }
    pub fn u64(&self, at: usize) -> u64 {
        u64::from_ne_bytes(self.array(at))
    }
    /// Decoders only pass offsets inside the minimum size they checked;
    /// anything else reads as zeros rather than panicking.
    fn array<const N: usize>(&self, at: usize) -> [u8; N] {
        self.bytes
            .get(at..at.saturating_add(N))
            .and_then(|s| s.try_into().ok())
            .unwrap_or([0; N])
    }
    /// `len` bytes at `at`, or none when they run past the record.
    pub fn slice(&self, at: usize, len: usize) -> &'a [u8] {
        self.bytes.get(at..at.saturating_add(len)).unwrap_or(&[])
    }
    /// A C string field: bytes up to the first NUL.
    pub fn c_bytes(&self, at: usize, len: usize) -> Vec<u8> {
        let raw = self.slice(at, len);
        let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
        raw[..end].to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_past_the_end_as_zeros() {
        let f = Fields::new(&[1, 0, 0, 0, b'a', b'b', 0, b'c']);
        assert_eq!(f.u32(0), u32::from_ne_bytes([1, 0, 0, 0]));
        assert_eq!(f.u64(4), 0, "runs past the record");
        assert_eq!(f.u32(usize::MAX), 0);
        assert_eq!(f.c_bytes(4, 4), b"ab");
        assert_eq!(f.c_bytes(4, 100), b"");
        assert!(f.slice(6, 3).is_empty());
    }
}

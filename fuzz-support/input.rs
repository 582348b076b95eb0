//! Splits a fuzz input into typed fields, with no dependency (so the stable replay test and the
//! libFuzzer target read a corpus file the same way). Reading past the end yields zeros and
//! empty slices, never a panic.
#![allow(dead_code)]

/// A cursor over the fuzzer's bytes.
pub(crate) struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    /// A cursor at the start of `data`.
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    /// Whether every byte has been read.
    pub(crate) fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The next `n` bytes (fewer at the end).
    pub(crate) fn take(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (head, tail) = self.data.split_at(n);
        self.data = tail;
        head
    }

    /// One byte (0 at the end).
    pub(crate) fn u8(&mut self) -> u8 {
        self.take(1).first().copied().unwrap_or(0)
    }

    /// The next `N` bytes, zero-filled past the end.
    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut b = [0u8; N];
        let t = self.take(N);
        b[..t.len()].copy_from_slice(t);
        b
    }

    /// Little-endian `u16`.
    pub(crate) fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.array())
    }

    /// Little-endian `u32`.
    pub(crate) fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.array())
    }

    /// Little-endian `u64`.
    pub(crate) fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.array())
    }

    /// Little-endian `i64`.
    pub(crate) fn i64(&mut self) -> i64 {
        self.u64() as i64
    }

    /// One bit.
    pub(crate) fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }

    /// A length byte (at most `max`), then that many bytes.
    pub(crate) fn bytes(&mut self, max: usize) -> &'a [u8] {
        let n = usize::from(self.u8()) % (max + 1);
        self.take(n)
    }

    /// [`Input::bytes`] as text (invalid UTF-8 replaced).
    pub(crate) fn str(&mut self, max: usize) -> String {
        String::from_utf8_lossy(self.bytes(max)).into_owned()
    }

    /// Everything not read yet.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        self.take(self.data.len())
    }
}

//! Byte buffers for messages, which may be hundreds of megabytes: sized
//! exactly once (no regrowth copies), and failing cleanly rather than
//! aborting when memory is short.
//!
//! (Asking the kernel for transparent huge pages for large buffers was
//! tried and dropped: once memory is fragmented, the compaction it
//! triggers stalls far longer than the page faults it saves.)

use std::io;

/// An empty buffer with room for exactly `n` bytes.
pub fn with_capacity(n: usize) -> io::Result<Vec<u8>> {
    let mut v = Vec::new();
    reserve(&mut v, n)?;
    Ok(v)
}

/// Make room for `n` more bytes in `v`.
pub fn reserve(v: &mut Vec<u8>, n: usize) -> io::Result<()> {
    v.try_reserve_exact(n)
        .map_err(|_| io::Error::new(io::ErrorKind::OutOfMemory, "message too large for memory"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_exactly_and_refuses_the_impossible() {
        let v = super::with_capacity(10 << 20).unwrap();
        assert_eq!(v.capacity(), 10 << 20);
        assert!(super::with_capacity(usize::MAX / 2).is_err());
    }
}

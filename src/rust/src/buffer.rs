//! Byte buffers for messages, which may be hundreds of megabytes: sized
//! exactly once (no regrowth copies), failing cleanly rather than aborting
//! when memory is short, and backed by huge pages where the kernel offers
//! them, so filling a large buffer does not fault in 4 KiB at a time.

use std::io;

/// Buffers from this size on ask for transparent huge pages.
const HUGE_FROM: usize = 4 << 20;

/// An empty buffer with room for exactly `n` bytes.
pub fn with_capacity(n: usize) -> io::Result<Vec<u8>> {
    let mut v = Vec::new();
    reserve(&mut v, n)?;
    Ok(v)
}

/// Make room for `n` more bytes in `v`.
pub fn reserve(v: &mut Vec<u8>, n: usize) -> io::Result<()> {
    v.try_reserve_exact(n)
        .map_err(|_| io::Error::new(io::ErrorKind::OutOfMemory, "message too large for memory"))?;
    if v.capacity() >= HUGE_FROM {
        advise_huge(v);
    }
    Ok(())
}

#[cfg(target_os = "linux")]
fn advise_huge(v: &mut Vec<u8>) {
    const HUGE: usize = 2 << 20;
    let start = v.as_mut_ptr() as usize;
    let end = start + v.capacity();
    let aligned = (start + HUGE - 1) & !(HUGE - 1);
    if aligned < end {
        unsafe {
            libc::madvise(
                aligned as *mut libc::c_void,
                end - aligned,
                libc::MADV_HUGEPAGE,
            );
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge(_: &mut Vec<u8>) {}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_exactly_and_refuses_the_impossible() {
        let v = super::with_capacity(10 << 20).unwrap();
        assert_eq!(v.capacity(), 10 << 20);
        assert!(super::with_capacity(usize::MAX / 2).is_err());
    }
}

//! Memory for messages, which may be hundreds of megabytes: byte buffers
//! sized exactly once (no regrowth copies) that fail cleanly rather than
//! abort when memory is short, and [`VectorBuffer`]s, memory laid out so
//! that the R side can adopt it as an R vector without a copy.
//!
//! (Asking the kernel for transparent huge pages for large buffers was
//! tried and dropped: once memory is fragmented, the compaction it
//! triggers stalls far longer than the page faults it saves.)

use std::io;
use std::sync::OnceLock;

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

/// Bytes R keeps in front of the data of a vector it makes from memory we
/// give it. Measured by the R side at start-up.
static HEADER: OnceLock<usize> = OnceLock::new();

/// Record R's header size (once; later calls are ignored).
pub fn set_vector_header(bytes: usize) {
    let _ = HEADER.set(bytes);
}

/// Elements above which R makes a long vector. R cannot adopt memory for
/// those (its custom allocator leaves no room for their longer header), so
/// their buffers are plain memory that the R side copies.
const SHORT_LEN_MAX: u64 = i32::MAX as u64;

/// Memory for the data of one vector, with room in front for R's header
/// when R can adopt it.
pub struct VectorBuffer {
    block: *mut u8,
    offset: usize,
    data_len: usize,
}

// SAFETY: the block is plain memory, owned by whichever thread holds the
// buffer.
unsafe impl Send for VectorBuffer {}

impl std::fmt::Debug for VectorBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VectorBuffer({} bytes)", self.data_len)
    }
}

/// `n` rounded up to whole 8-byte units (R allocates vectors in those).
fn round8(n: usize) -> Option<usize> {
    n.div_ceil(8).checked_mul(8)
}

impl VectorBuffer {
    /// A buffer for `data_len` bytes of data of an `elements`-long vector,
    /// or `None` if R's header size is not known or memory is short.
    pub fn new(data_len: usize, elements: u64) -> Option<VectorBuffer> {
        let header = *HEADER.get()?;
        let offset = if elements > SHORT_LEN_MAX { 0 } else { header };
        let size = offset.checked_add(round8(data_len)?)?;
        // SAFETY: malloc with a non-zero size; a null return is handled.
        let block = unsafe { libc::malloc(size.max(1)) } as *mut u8;
        if block.is_null() {
            return None;
        }
        prefault(block, size);
        Some(VectorBuffer {
            block,
            offset,
            data_len,
        })
    }

    pub fn data_mut(&mut self) -> &mut [u8] {
        // SAFETY: the block holds `block_size()` bytes, and
        // the buffer owns it exclusively.
        unsafe { std::slice::from_raw_parts_mut(self.block.add(self.offset), self.data_len) }
    }

    pub fn data_len(&self) -> usize {
        self.data_len
    }

    pub fn data(&self) -> &[u8] {
        // SAFETY: as in `data_mut`.
        unsafe { std::slice::from_raw_parts(self.block.add(self.offset), self.data_len) }
    }

    /// Whether R can take over this block as a vector's memory.
    pub fn adoptable(&self) -> bool {
        self.offset > 0
    }

    /// The size a custom allocator is asked for when R adopts this block.
    pub fn block_size(&self) -> usize {
        self.offset + round8(self.data_len).expect("checked when made")
    }

    /// The start of the block, for handing it to R.
    pub fn block_ptr(&self) -> *mut u8 {
        self.block
    }

    /// Give up ownership of the block (to R, which frees it with `free`).
    pub fn into_block(self) -> *mut u8 {
        let block = self.block;
        std::mem::forget(self);
        block
    }
}

impl Drop for VectorBuffer {
    fn drop(&mut self) {
        // SAFETY: the block came from malloc and is still owned here.
        unsafe { libc::free(self.block as *mut libc::c_void) };
    }
}

/// Have the kernel map a large block's pages in one call, rather than
/// taking one page fault per 4 KiB as the socket data is copied in (tens of
/// thousands for 100 MB, each costly on a virtual machine). Best effort.
fn prefault(block: *mut u8, size: usize) {
    const MADV_POPULATE_WRITE: libc::c_int = 23;
    const PAGE: usize = 4096;
    if size < (1 << 20) {
        return;
    }
    let start = (block as usize).div_ceil(PAGE) * PAGE;
    let end = (block as usize + size) / PAGE * PAGE;
    if end > start {
        // SAFETY: the range lies inside the block just allocated; madvise
        // only changes how its pages are mapped.
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, MADV_POPULATE_WRITE) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_exactly_and_refuses_the_impossible() {
        let v = with_capacity(10 << 20).unwrap();
        assert_eq!(v.capacity(), 10 << 20);
        assert!(with_capacity(usize::MAX / 2).is_err());
    }

    #[test]
    fn vector_buffers_leave_room_for_the_header() {
        set_vector_header(48);
        let header = *HEADER.get().unwrap();
        let mut b = VectorBuffer::new(10, 10).unwrap();
        assert_eq!(b.data_mut().len(), 10);
        assert_eq!(b.block_size(), header + 16);
        assert!(b.adoptable());
        // a long vector's buffer is plain memory, for R to copy
        let long = VectorBuffer::new(16, (i32::MAX as u64) + 1).unwrap();
        assert!(!long.adoptable());
        assert!(VectorBuffer::new(usize::MAX - 4, 1).is_none());
    }
}

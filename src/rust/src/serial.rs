//! R serialization straight into and out of Rust byte buffers, through R's
//! stream API in native binary format: no intermediate raw vector, one copy
//! each way. Must run on R's main thread.

use crate::rapi::*;
use extendr_ffi::{
    R_NilValue, R_Serialize, R_Unserialize, R_inpstream_st, R_inpstream_t, R_outpstream_st,
    R_outpstream_t, R_pstream_format_t, Rf_xlength, SEXP, SEXPTYPE, TYPEOF, VECTOR_ELT,
};
use std::mem::MaybeUninit;
use std::os::raw::{c_int, c_void};

/// Serialization format version 3 (R >= 3.5): keeps ALTREP compact forms.
const VERSION: c_int = 3;

unsafe extern "C" fn out_char(stream: R_outpstream_t, c: c_int) {
    let buf = &mut *((*stream).data as *mut Vec<u8>);
    buf.push(c as u8);
}

unsafe extern "C" fn out_bytes(stream: R_outpstream_t, p: *mut c_void, n: c_int) {
    let buf = &mut *((*stream).data as *mut Vec<u8>);
    buf.extend_from_slice(std::slice::from_raw_parts(p as *const u8, n as usize));
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

unsafe extern "C" fn in_char(stream: R_inpstream_t) -> c_int {
    let r = &mut *((*stream).data as *mut Reader);
    if r.pos >= r.bytes.len() {
        Rf_error(c"mirai: serialized data ended early".as_ptr());
    }
    r.pos += 1;
    r.bytes[r.pos - 1] as c_int
}

unsafe extern "C" fn in_bytes(stream: R_inpstream_t, p: *mut c_void, n: c_int) {
    let r = &mut *((*stream).data as *mut Reader);
    let n = n as usize;
    if r.bytes.len() - r.pos < n {
        Rf_error(c"mirai: serialized data ended early".as_ptr());
    }
    std::ptr::copy_nonoverlapping(r.bytes.as_ptr().add(r.pos), p as *mut u8, n);
    r.pos += n;
}

/// A rough size of `x` once serialized, looking into lists a few levels
/// deep, so the buffer for a large vector (even inside a task's argument
/// lists) is sized once instead of regrown by copying.
unsafe fn size_hint(x: SEXP, depth: u32) -> usize {
    let n = Rf_xlength(x) as usize;
    let per = match TYPEOF(x) {
        SEXPTYPE::REALSXP => 8,
        SEXPTYPE::INTSXP | SEXPTYPE::LGLSXP => 4,
        SEXPTYPE::CPLXSXP => 16,
        SEXPTYPE::RAWSXP => 1,
        SEXPTYPE::VECSXP if depth > 0 => {
            return 64
                + (0..n.min(64))
                    .map(|i| size_hint(VECTOR_ELT(x, i as isize), depth - 1))
                    .sum::<usize>();
        }
        _ => 0,
    };
    64 + per * n
}

/// Append the serialization of `x` to `buf` (which may already hold a frame
/// header). An R error during serialization is returned as its message.
pub fn serialize_into(x: SEXP, buf: &mut Vec<u8>) -> Result<(), String> {
    crate::buffer::reserve(buf, unsafe { size_hint(x, 3) }).map_err(|e| e.to_string())?;
    let data = buf as *mut Vec<u8> as *mut c_void;
    r_protect(&mut || unsafe {
        let mut stream = MaybeUninit::<R_outpstream_st>::uninit();
        R_InitOutPStream(
            stream.as_mut_ptr(),
            data,
            R_pstream_format_t::R_pstream_binary_format,
            VERSION,
            Some(out_char),
            Some(out_bytes),
            None,
            R_NilValue,
        );
        R_Serialize(x, stream.as_mut_ptr());
    })
    .map_err(|e| format!("serialization failed: {e}"))
}

/// Above this size a buffer is handed over as it is rather than copied.
const COPY_LIMIT: usize = 1 << 16;

thread_local! {
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Fill a reusable buffer with `fill`, then return its bytes in an
/// allocation of exactly their size: a queued task holds no slack, and
/// serializing many small tasks churns no reallocations.
pub fn with_scratch(
    fill: impl FnOnce(&mut Vec<u8>) -> Result<(), String>,
) -> Result<Vec<u8>, String> {
    SCRATCH.with(|s| {
        let mut buf = s.borrow_mut();
        buf.clear();
        let res = fill(&mut buf);
        let out = if buf.len() <= COPY_LIMIT {
            buf.as_slice().to_vec()
        } else {
            std::mem::take(&mut *buf)
        };
        if buf.capacity() > COPY_LIMIT {
            *buf = Vec::new();
        }
        res.map(|_| out)
    })
}

/// Rebuild the R object serialized in `bytes`. Malformed input, or an
/// object needing a package that is not installed here, gives an error
/// message, never a crash. The result is unprotected: protect it before
/// the next allocation.
pub fn unserialize(bytes: &[u8]) -> Result<SEXP, String> {
    if bytes.is_empty() {
        return Err("unserialization failed: no data".into());
    }
    let mut reader = Reader { bytes, pos: 0 };
    let data = &mut reader as *mut Reader as *mut c_void;
    let mut out = unsafe { R_NilValue };
    r_protect(&mut || unsafe {
        let mut stream = MaybeUninit::<R_inpstream_st>::uninit();
        R_InitInPStream(
            stream.as_mut_ptr(),
            data,
            R_pstream_format_t::R_pstream_any_format,
            Some(in_char),
            Some(in_bytes),
            None,
            R_NilValue,
        );
        out = R_Unserialize(stream.as_mut_ptr());
    })
    .map_err(|e| format!("unserialization failed: {e}"))?;
    Ok(out)
}

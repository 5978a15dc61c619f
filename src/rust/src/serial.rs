//! R serialization straight into and out of Rust byte buffers, through R's
//! stream API in native binary format: no intermediate raw vector, one copy
//! each way. Must run on R's main thread.

use crate::rapi::*;
use extendr_ffi::{
    R_NilValue, R_Serialize, R_Unserialize, R_inpstream_st, R_inpstream_t, R_outpstream_st,
    R_outpstream_t, R_pstream_format_t, Rf_isString, Rf_xlength, TYPEOF, R_CHAR,
    SEXP, SEXPTYPE, STRING_ELT, VECTOR_ELT,
};
use std::ffi::CStr;
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

/// Marks that the error handler ran; returns the condition to the caller.
unsafe extern "C" fn on_error(cond: SEXP, failed: *mut c_void) -> SEXP {
    *(failed as *mut bool) = true;
    cond
}

/// The message of an R condition object, for Rust-side error reporting.
unsafe fn condition_message(cond: SEXP) -> String {
    if TYPEOF(cond) == SEXPTYPE::VECSXP && Rf_xlength(cond) > 0 {
        let msg = VECTOR_ELT(cond, 0);
        if Rf_isString(msg) != extendr_ffi::Rboolean::FALSE && Rf_xlength(msg) > 0 {
            return CStr::from_ptr(R_CHAR(STRING_ELT(msg, 0)))
                .to_string_lossy()
                .into_owned();
        }
    }
    "unknown error".into()
}

/// A rough size of `x` once serialized, to size the buffer once.
unsafe fn size_hint(x: SEXP) -> usize {
    let per = match TYPEOF(x) {
        SEXPTYPE::REALSXP => 8,
        SEXPTYPE::INTSXP | SEXPTYPE::LGLSXP => 4,
        SEXPTYPE::CPLXSXP => 16,
        SEXPTYPE::RAWSXP => 1,
        _ => 0,
    };
    64 + per * Rf_xlength(x) as usize
}

struct SerializeCall {
    x: SEXP,
    buf: *mut Vec<u8>,
}

unsafe extern "C" fn serialize_body(data: *mut c_void) -> SEXP {
    let call = &*(data as *const SerializeCall);
    let mut stream = MaybeUninit::<R_outpstream_st>::uninit();
    R_InitOutPStream(
        stream.as_mut_ptr(),
        call.buf as *mut c_void,
        R_pstream_format_t::R_pstream_binary_format,
        VERSION,
        Some(out_char),
        Some(out_bytes),
        None,
        R_NilValue,
    );
    R_Serialize(call.x, stream.as_mut_ptr());
    R_NilValue
}

/// Append the serialization of `x` to `buf` (which may already hold a frame
/// header). An R error during serialization is returned as its message.
pub fn serialize_into(x: SEXP, buf: &mut Vec<u8>) -> Result<(), String> {
    unsafe {
        buf.reserve(size_hint(x));
        let mut call = SerializeCall {
            x,
            buf: buf as *mut Vec<u8>,
        };
        let mut failed = false;
        let res = R_tryCatchError(
            Some(serialize_body),
            &mut call as *mut _ as *mut c_void,
            Some(on_error),
            &mut failed as *mut bool as *mut c_void,
        );
        if failed {
            Err(format!("serialization failed: {}", condition_message(res)))
        } else {
            Ok(())
        }
    }
}

unsafe extern "C" fn unserialize_body(data: *mut c_void) -> SEXP {
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
    R_Unserialize(stream.as_mut_ptr())
}

/// Rebuild the R object serialized in `bytes`. Malformed input gives an
/// error message, never a crash. The result is unprotected: protect it
/// before the next allocation.
pub fn unserialize(bytes: &[u8]) -> Result<SEXP, String> {
    if bytes.is_empty() {
        return Err("unserialization failed: no data".into());
    }
    unsafe {
        let mut reader = Reader { bytes, pos: 0 };
        let mut failed = false;
        let res = R_tryCatchError(
            Some(unserialize_body),
            &mut reader as *mut Reader as *mut c_void,
            Some(on_error),
            &mut failed as *mut bool as *mut c_void,
        );
        if failed {
            Err(format!("unserialization failed: {}", condition_message(res)))
        } else {
            Ok(res)
        }
    }
}

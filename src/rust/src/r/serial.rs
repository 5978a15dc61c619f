//! R serialization straight into and out of Rust byte buffers, through R's
//! stream API in native binary format: no intermediate raw vector, one copy
//! each way. Both run under [`protect`], so an R error inside (malformed
//! input, a package missing here, memory) comes back as a message. Must
//! run on R's main thread.

use super::api::{R_InitInPStream, R_InitOutPStream};
use super::refhooks::{is_hooked, HookedFailure, Hooks};
use super::unwind::{protect, protect_strict, RFailure};
use extendr_ffi::{
    R_NilValue, R_Serialize, R_Unserialize, R_inpstream_st, R_inpstream_t, R_outpstream_st,
    R_outpstream_t, R_pstream_format_t, Rf_error, Rf_xlength, SEXP, SEXPTYPE, TYPEOF, VECTOR_ELT,
};
use std::mem::MaybeUninit;
use std::os::raw::{c_int, c_void};

/// Serialization format version 3 (R >= 3.5): keeps ALTREP compact forms.
pub(super) const VERSION: c_int = 3;

/// Where R's serializer writes: the buffer, and whether it ran out of
/// memory (the rest of the output is then dropped, and the caller errs).
pub(super) struct Writer<'a> {
    pub(super) buf: &'a mut Vec<u8>,
    pub(super) out_of_memory: bool,
}

pub(super) unsafe extern "C" fn out_char(stream: R_outpstream_t, c: c_int) {
    let byte = [c as u8];
    out_bytes(stream, byte.as_ptr() as *mut c_void, 1);
}

/// R's serializer writes its output through here; running out of memory
/// is noted, never an abort or an R error.
pub(super) unsafe extern "C" fn out_bytes(stream: R_outpstream_t, p: *mut c_void, n: c_int) {
    // SAFETY: `data` is the writer `serialize_into` passed; R gives `n`
    // readable bytes at `p`.
    let w = &mut *((*stream).data as *mut Writer);
    let n = n as usize;
    if w.out_of_memory {
        return;
    }
    if w.buf.capacity() - w.buf.len() < n {
        let grow = n.max(w.buf.len() / 2);
        if w.buf.try_reserve(grow).is_err() {
            w.out_of_memory = true;
            return;
        }
    }
    w.buf
        .extend_from_slice(std::slice::from_raw_parts(p as *const u8, n));
}

pub(super) struct Reader<'a> {
    pub(super) bytes: &'a [u8],
    pub(super) pos: usize,
}

pub(super) unsafe extern "C" fn in_char(stream: R_inpstream_t) -> c_int {
    // SAFETY: `data` is the reader `unserialize` passed.
    let r = &mut *((*stream).data as *mut Reader);
    if r.pos >= r.bytes.len() {
        Rf_error(c"mirai: serialized data ended early".as_ptr());
    }
    r.pos += 1;
    r.bytes[r.pos - 1] as c_int
}

pub(super) unsafe extern "C" fn in_bytes(stream: R_inpstream_t, p: *mut c_void, n: c_int) {
    // SAFETY: `data` is the reader `unserialize` passed; R gives room for
    // `n` bytes at `p`.
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
pub(super) unsafe fn size_hint(x: SEXP, depth: u32) -> usize {
    if super::api::ALTREP(x) != 0 {
        return 64; // compact forms serialize small, whatever their length
    }
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
/// header), without serialization hooks (see [`serialize_with`]). R's
/// serializer then runs R code only for ALTREP classes, and fails only when memory is short:
/// it is called directly, with nothing borrowed or locked meanwhile, so
/// even an R error escaping it leaves nothing behind but memory.
pub fn serialize_into(x: SEXP, buf: &mut Vec<u8>) -> Result<(), RFailure> {
    // SAFETY: R's thread; `x` is protected by the caller.
    let hint = unsafe { size_hint(x, 3) };
    crate::buffer::reserve(buf, hint)
        .map_err(|_| RFailure::Error("not enough memory to serialize the data".into()))?;
    let mut writer = Writer {
        buf,
        out_of_memory: false,
    };
    // SAFETY: R's thread; the stream lives on this frame and writes into
    // `writer` until R_Serialize returns.
    unsafe {
        let mut stream = MaybeUninit::<R_outpstream_st>::uninit();
        R_InitOutPStream(
            stream.as_mut_ptr(),
            &mut writer as *mut Writer as *mut c_void,
            R_pstream_format_t::R_pstream_binary_format,
            VERSION,
            Some(out_char),
            Some(out_bytes),
            None,
            R_NilValue,
        );
        R_Serialize(x, stream.as_mut_ptr());
    }
    match writer.out_of_memory {
        true => Err(RFailure::Error(
            "not enough memory to serialize the data".into(),
        )),
        false => Ok(()),
    }
}

/// How serializing with a configuration failed: in one of its functions
/// (`hook`), or otherwise.
#[derive(Debug)]
pub struct SerialFailure {
    pub failure: RFailure,
    pub hook: bool,
}

impl From<SerialFailure> for RFailure {
    fn from(f: SerialFailure) -> RFailure {
        f.failure
    }
}

/// [`serialize_into`], with the serialization configuration `hooks` if
/// there is one (see `refhooks`).
pub fn serialize_with(
    x: SEXP,
    buf: &mut Vec<u8>,
    hooks: Option<Hooks>,
) -> Result<(), SerialFailure> {
    let Some(hooks) = hooks else {
        return serialize_into(x, buf).map_err(|failure| SerialFailure {
            failure,
            hook: false,
        });
    };
    super::refhooks::serialize_hooked(x, buf, hooks).map_err(|f| match f {
        HookedFailure::Hook(failure) => SerialFailure {
            failure,
            hook: true,
        },
        HookedFailure::Serializer(failure) => SerialFailure {
            failure,
            hook: false,
        },
    })
}

/// [`unserialize`], for data that may have been serialized with a
/// configuration: `hooks` must then be that configuration. Such data is
/// read in one pass, with R reporting a missing package's namespace as a
/// warning (a second pass would run the configured functions again).
pub fn unserialize_with(bytes: &[u8], hooks: Option<Hooks>) -> Result<SEXP, RFailure> {
    if !is_hooked(bytes) {
        return unserialize(bytes);
    }
    let Some(hooks) = hooks else {
        return Err(RFailure::Error(
            "the data was serialized with a serialization configuration (serial_config()) not set here"
                .into(),
        ));
    };
    let _report = ReportMissingNamespaces::on();
    super::refhooks::unserialize_hooked(bytes, hooks)
}

/// Above this size a buffer is handed over as it is rather than copied.
const COPY_LIMIT: usize = 1 << 16;

thread_local! {
    static SCRATCH: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Fill a reusable buffer with `fill`, then return its bytes in an
/// allocation of exactly their size: a queued task holds no slack, and
/// serializing many small tasks churns no reallocations. The buffer is
/// taken out while `fill` runs (it calls R), so nothing is left borrowed
/// whatever R does.
pub fn with_scratch<E>(fill: impl FnOnce(&mut Vec<u8>) -> Result<(), E>) -> Result<Vec<u8>, E> {
    let mut buf = SCRATCH.with(|s| s.take());
    buf.clear();
    let res = fill(&mut buf);
    let out = if buf.len() <= COPY_LIMIT {
        let out = buf.as_slice().to_vec();
        if buf.capacity() <= COPY_LIMIT {
            SCRATCH.with(|s| s.set(buf));
        }
        out
    } else {
        buf
    };
    res.map(|_| out)
}

/// Rebuild the R object serialized in `bytes`. Malformed input, or an
/// object needing a package that is not installed here, gives an error
/// message, never a crash: R itself would replace a missing package's
/// namespace by the global environment (warning only when told to) and
/// return a wrong object. Other warnings are let through (the data is read
/// again, with namespaces already loaded). The result is unprotected:
/// protect it before the next allocation.
pub fn unserialize(bytes: &[u8]) -> Result<SEXP, RFailure> {
    if bytes.is_empty() {
        return Err(RFailure::Error("no data".into()));
    }
    if super::plain_data::is_plain_data(bytes) {
        // SAFETY: R's thread; plain data runs no R code and fails only
        // for memory, with nothing borrowed meanwhile (see plain_data).
        return Ok(unsafe { read_unprotected(bytes) });
    }
    let strict = {
        let _report = ReportMissingNamespaces::on();
        read(bytes, true)
    };
    match strict {
        Err(RFailure::Warning(w)) if w.contains("is not available") => Err(RFailure::Error(w)),
        Err(RFailure::Warning(_)) => read(bytes, false),
        other => other,
    }
}

/// R_Unserialize with no handlers.
///
/// # Safety
/// R's thread; an R error in it unwinds through the caller, so `bytes`
/// must be plain data or the call run under `protect`.
unsafe fn read_unprotected(bytes: &[u8]) -> SEXP {
    let mut reader = Reader { bytes, pos: 0 };
    let mut stream = MaybeUninit::<R_inpstream_st>::uninit();
    R_InitInPStream(
        stream.as_mut_ptr(),
        &mut reader as *mut Reader as *mut c_void,
        R_pstream_format_t::R_pstream_any_format,
        Some(in_char),
        Some(in_bytes),
        None,
        R_NilValue,
    );
    R_Unserialize(stream.as_mut_ptr())
}

fn read(bytes: &[u8], strict: bool) -> Result<SEXP, RFailure> {
    // SAFETY: R's thread; an R error inside unwinds to `protect`'s handler,
    // not through this frame's callers.
    let body = || unsafe { read_unprotected(bytes) };
    match strict {
        true => protect_strict(body),
        false => protect(body),
    }
}

/// Asks R to warn when unserialization replaces a namespace it cannot load
/// (R's `_R_NO_REPORT_MISSING_NAMESPACES_`), unless the user has set that
/// variable; put back as it was when dropped.
struct ReportMissingNamespaces(bool);

const REPORT_VAR: &std::ffi::CStr = c"_R_NO_REPORT_MISSING_NAMESPACES_";

impl ReportMissingNamespaces {
    fn on() -> ReportMissingNamespaces {
        // SAFETY: R's thread, which is where R reads its environment; the
        // variable names and values are C strings. (R code does the same
        // with Sys.setenv() while other threads run.)
        unsafe {
            if !libc::getenv(REPORT_VAR.as_ptr()).is_null() {
                return ReportMissingNamespaces(false);
            }
            libc::setenv(REPORT_VAR.as_ptr(), c"false".as_ptr(), 0);
        }
        ReportMissingNamespaces(true)
    }
}

impl Drop for ReportMissingNamespaces {
    fn drop(&mut self) {
        if self.0 {
            // SAFETY: as in `on`.
            unsafe { libc::unsetenv(REPORT_VAR.as_ptr()) };
        }
    }
}

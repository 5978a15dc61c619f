//! Custom serialization of reference objects (`serial_config()`), through
//! R's persistent-reference hooks.
//!
//! R's serializer offers every reference object it meets (external
//! pointers, weak references, environments other than the global, base,
//! empty, namespace and package ones) to the output hook. For the first
//! configured class the object inherits, the hook calls that class's
//! `sfunc`, which must return a raw vector; R then writes in the object's
//! place only the name the hook returns. The raw vectors are kept aside
//! and appended after R's stream, so a hooked value is:
//!
//! ```text
//! +-------+----------------+----------+-----------+--------------------------------------+
//! | MAGIC | stream len u64 | R stream | count u32 | count x (class u32, len u64, bytes)  |
//! +-------+----------------+----------+-----------+--------------------------------------+
//! ```
//!
//! where each name is the decimal index of its entry. MAGIC starts with a
//! zero byte, which no R stream does. Reading, the input hook gets the
//! name back and gives the entry's bytes to the class's `ufunc`
//! (evaluated in the global environment) for the object.
//!
//! The hooks never let an R error or interrupt unwind through them: the R
//! functions run under [`protect`]; a failure is recorded, the later hooks
//! do nothing, R finishes the stream as usual and the caller gets the
//! failure. The hook state lives on the caller's frame, reached through an
//! external pointer passed as the hook's data.

use super::api::{R_InitInPStream, R_InitOutPStream};
use super::api::{Rf_eval, Rf_inherits, Rf_lang2};
use super::serial::{in_bytes, in_char, out_bytes, out_char, size_hint, Reader, Writer, VERSION};
use super::unwind::{protect, RFailure};
use extendr_ffi::{
    R_ExternalPtrAddr, R_GlobalEnv, R_MakeExternalPtr, R_NilValue, R_Serialize, R_Unserialize,
    R_inpstream_st, R_outpstream_st, R_pstream_format_t, Rf_allocVector, Rf_mkCharLenCE,
    Rf_protect, Rf_unprotect, Rf_xlength, RAW, R_CHAR, SET_STRING_ELT, SEXP, SEXPTYPE, STRING_ELT,
    TYPEOF, VECTOR_ELT,
};
use std::mem::MaybeUninit;
use std::os::raw::c_void;

const MAGIC: [u8; 4] = [0, b'M', b'r', b'H'];
const HEAD_LEN: usize = MAGIC.len() + 8;
const ENTRY_HEAD_LEN: usize = 12;

/// A serialization configuration: R's `list(class, sfunc, ufunc)` as
/// `serial_config()` makes it. Kept alive by whoever holds the list (a
/// host handle, a mirai, the daemon's preserved copy).
#[derive(Clone, Copy)]
pub struct Hooks {
    classes: SEXP,
    sfuncs: SEXP,
    ufuncs: SEXP,
    n: usize,
}

impl Hooks {
    /// The configuration in `x`, if it is one with at least one class.
    ///
    /// # Safety
    /// R's thread; `x` protected for as long as the result is used.
    pub unsafe fn from_config(x: SEXP) -> Option<Hooks> {
        if TYPEOF(x) != SEXPTYPE::VECSXP || Rf_xlength(x) != 3 {
            return None;
        }
        let (classes, sfuncs, ufuncs) = (VECTOR_ELT(x, 0), VECTOR_ELT(x, 1), VECTOR_ELT(x, 2));
        let n = Rf_xlength(classes);
        let ok = TYPEOF(classes) == SEXPTYPE::STRSXP
            && TYPEOF(sfuncs) == SEXPTYPE::VECSXP
            && TYPEOF(ufuncs) == SEXPTYPE::VECSXP
            && Rf_xlength(sfuncs) == n
            && Rf_xlength(ufuncs) == n
            && n > 0;
        ok.then_some(Hooks {
            classes,
            sfuncs,
            ufuncs,
            n: n as usize,
        })
    }

    /// The first configured class `x` inherits.
    unsafe fn class_of(&self, x: SEXP) -> Option<usize> {
        (0..self.n).find(|&i| {
            Rf_inherits(x, R_CHAR(STRING_ELT(self.classes, i as isize)))
                != extendr_ffi::Rboolean::FALSE
        })
    }

    unsafe fn class_name(&self, i: usize) -> String {
        std::ffi::CStr::from_ptr(R_CHAR(STRING_ELT(self.classes, i as isize)))
            .to_string_lossy()
            .into_owned()
    }
}

/// Whether `bytes` were written by [`serialize_hooked`].
pub fn is_hooked(bytes: &[u8]) -> bool {
    bytes.starts_with(&MAGIC)
}

/// How a hooked serialization failed.
pub enum HookedFailure {
    /// A configured function failed, or `sfunc` returned no raw vector.
    Hook(RFailure),
    /// R's serializer itself failed (memory).
    Serializer(RFailure),
}

struct OutState {
    hooks: Hooks,
    /// The entries that follow R's stream, and how many.
    entries: Vec<u8>,
    count: u32,
    failure: Option<RFailure>,
}

/// Write `n` in decimal into `buf`; the digits.
fn decimal(mut n: u32, buf: &mut [u8; 10]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[at..];
        }
    }
}

unsafe extern "C" fn out_hook(x: SEXP, data: SEXP) -> SEXP {
    // SAFETY: `data` is the pointer to the `OutState` of
    // `serialize_hooked`, alive while R_Serialize runs; nothing else
    // touches it meanwhile.
    let st = &mut *(R_ExternalPtrAddr(data) as *mut OutState);
    if st.failure.is_some() {
        return R_NilValue;
    }
    let Some(class) = st.hooks.class_of(x) else {
        return R_NilValue; // serialized as R does
    };
    let f = VECTOR_ELT(st.hooks.sfuncs, class as isize);
    let value = protect(|| {
        let call = Rf_protect(Rf_lang2(f, x));
        let v = Rf_eval(call, R_GlobalEnv);
        Rf_unprotect(1);
        v
    });
    let raw = match value {
        Ok(v) if TYPEOF(v) == SEXPTYPE::RAWSXP => v,
        Ok(_) => {
            st.failure = Some(RFailure::Error(format!(
                "Serialization function for `{}` did not return a raw vector",
                st.hooks.class_name(class)
            )));
            return R_NilValue;
        }
        Err(e) => {
            st.failure = Some(e);
            return R_NilValue;
        }
    };
    // copied before anything else allocates: `raw` is unprotected
    let n = Rf_xlength(raw) as usize;
    if st.entries.try_reserve(ENTRY_HEAD_LEN + n).is_err() {
        st.failure = Some(RFailure::Error(
            "not enough memory to serialize the data".into(),
        ));
        return R_NilValue;
    }
    st.entries.extend_from_slice(&(class as u32).to_le_bytes());
    st.entries.extend_from_slice(&(n as u64).to_le_bytes());
    if n > 0 {
        st.entries
            .extend_from_slice(std::slice::from_raw_parts(RAW(raw), n));
    }
    let index = st.count;
    st.count += 1;
    let mut digits = [0u8; 10];
    let digits = decimal(index, &mut digits);
    let (ptr, len) = (digits.as_ptr(), digits.len() as i32);
    let name = protect(|| {
        let s = Rf_protect(Rf_allocVector(SEXPTYPE::STRSXP, 1));
        SET_STRING_ELT(
            s,
            0,
            Rf_mkCharLenCE(ptr as *const _, len, extendr_ffi::cetype_t::CE_NATIVE),
        );
        Rf_unprotect(1);
        s
    });
    match name {
        Ok(s) => s,
        Err(e) => {
            st.failure = Some(e);
            R_NilValue
        }
    }
}

/// Append the serialization of `x` with `hooks` to `buf` (in the layout
/// of the module docs). R's thread; `x` protected by the caller.
pub fn serialize_hooked(x: SEXP, buf: &mut Vec<u8>, hooks: Hooks) -> Result<(), HookedFailure> {
    let memory = || RFailure::Error("not enough memory to serialize the data".into());
    let start = buf.len();
    // SAFETY: R's thread; `x` is protected by the caller.
    let hint = unsafe { size_hint(x, 3) };
    crate::buffer::reserve(buf, HEAD_LEN + hint)
        .map_err(|_| HookedFailure::Serializer(memory()))?;
    buf.extend_from_slice(&MAGIC);
    buf.extend_from_slice(&[0u8; 8]);
    let mut state = OutState {
        hooks,
        entries: Vec::new(),
        count: 0,
        failure: None,
    };
    let mut writer = Writer {
        buf,
        out_of_memory: false,
    };
    let (w, s) = (
        &mut writer as *mut Writer as *mut c_void,
        &mut state as *mut OutState as *mut c_void,
    );
    // SAFETY: R's thread; the stream writes into `writer` and the hook
    // reaches `state` through the pointer, both alive on this frame until
    // R_Serialize returns; an R error in the serializer unwinds to
    // `protect`, past frames that own nothing.
    let done = protect(|| unsafe {
        let data = Rf_protect(R_MakeExternalPtr(s, R_NilValue, R_NilValue));
        let mut stream = MaybeUninit::<R_outpstream_st>::uninit();
        R_InitOutPStream(
            stream.as_mut_ptr(),
            w,
            R_pstream_format_t::R_pstream_binary_format,
            VERSION,
            Some(out_char),
            Some(out_bytes),
            Some(out_hook),
            data,
        );
        R_Serialize(x, stream.as_mut_ptr());
        Rf_unprotect(1);
        R_NilValue
    });
    let out_of_memory = writer.out_of_memory;
    if let Some(f) = state.failure {
        return Err(HookedFailure::Hook(f));
    }
    done.map_err(HookedFailure::Serializer)?;
    if out_of_memory {
        return Err(HookedFailure::Serializer(memory()));
    }
    let len = (buf.len() - start - HEAD_LEN) as u64;
    buf[start + MAGIC.len()..start + HEAD_LEN].copy_from_slice(&len.to_le_bytes());
    crate::buffer::reserve(buf, 4 + state.entries.len())
        .map_err(|_| HookedFailure::Serializer(memory()))?;
    buf.extend_from_slice(&state.count.to_le_bytes());
    buf.extend_from_slice(&state.entries);
    Ok(())
}

/// The entries after R's stream: each one's class index and bytes.
type Entries<'a> = Vec<(u32, &'a [u8])>;

/// R's stream and the entries of a hooked value, checked against its
/// length; `None` if malformed.
fn split(bytes: &[u8]) -> Option<(&[u8], Entries<'_>)> {
    let head = bytes.get(..HEAD_LEN)?;
    if head[..MAGIC.len()] != MAGIC {
        return None;
    }
    let len = usize::try_from(u64::from_le_bytes(head[MAGIC.len()..].try_into().ok()?)).ok()?;
    let end = HEAD_LEN.checked_add(len)?;
    let stream = bytes.get(HEAD_LEN..end)?;
    let mut rest = bytes.get(end..)?;
    let count = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    rest = &rest[4..];
    // each entry takes at least its head: a count beyond that is a lie
    if count > rest.len() / ENTRY_HEAD_LEN {
        return None;
    }
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        let h = rest.get(..ENTRY_HEAD_LEN)?;
        let class = u32::from_le_bytes(h[..4].try_into().ok()?);
        let n = usize::try_from(u64::from_le_bytes(h[4..].try_into().ok()?)).ok()?;
        let data = rest.get(ENTRY_HEAD_LEN..ENTRY_HEAD_LEN.checked_add(n)?)?;
        entries.push((class, data));
        rest = &rest[ENTRY_HEAD_LEN + n..];
    }
    rest.is_empty().then_some((stream, entries))
}

struct InState<'a> {
    hooks: Hooks,
    entries: Entries<'a>,
    failure: Option<RFailure>,
}

impl InState<'_> {
    /// The class and bytes of the entry a persistent name refers to.
    unsafe fn entry(&self, names: SEXP) -> Option<(usize, &[u8])> {
        if TYPEOF(names) != SEXPTYPE::STRSXP || Rf_xlength(names) != 1 {
            return None;
        }
        let name = std::ffi::CStr::from_ptr(R_CHAR(STRING_ELT(names, 0)));
        let index: usize = name.to_str().ok()?.parse().ok()?;
        let &(class, data) = self.entries.get(index)?;
        ((class as usize) < self.hooks.n).then_some((class as usize, data))
    }
}

unsafe extern "C" fn in_hook(names: SEXP, data: SEXP) -> SEXP {
    // SAFETY: `data` is the pointer to the `InState` of
    // `unserialize_hooked`, alive while R_Unserialize runs.
    let st = &mut *(R_ExternalPtrAddr(data) as *mut InState);
    if st.failure.is_some() {
        return R_NilValue;
    }
    let Some((class, bytes)) = st.entry(names) else {
        st.failure = Some(RFailure::Error("malformed serialized data".into()));
        return R_NilValue;
    };
    let f = VECTOR_ELT(st.hooks.ufuncs, class as isize);
    let value = protect(|| {
        let raw = Rf_protect(Rf_allocVector(SEXPTYPE::RAWSXP, bytes.len() as isize));
        if !bytes.is_empty() {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), RAW(raw), bytes.len());
        }
        let call = Rf_protect(Rf_lang2(f, raw));
        let v = Rf_eval(call, R_GlobalEnv);
        Rf_unprotect(2);
        v
    });
    match value {
        Ok(v) => v,
        Err(e) => {
            st.failure = Some(e);
            R_NilValue
        }
    }
}

/// Rebuild the value `bytes` (written by [`serialize_hooked`]) with
/// `hooks`. The result is unprotected.
pub fn unserialize_hooked(bytes: &[u8], hooks: Hooks) -> Result<SEXP, RFailure> {
    let (stream, entries) =
        split(bytes).ok_or_else(|| RFailure::Error("malformed serialized data".into()))?;
    let mut state = InState {
        hooks,
        entries,
        failure: None,
    };
    let mut reader = Reader {
        bytes: stream,
        pos: 0,
    };
    let (r, s) = (
        &mut reader as *mut Reader as *mut c_void,
        &mut state as *mut InState as *mut c_void,
    );
    // SAFETY: as in `serialize_hooked`, reading from `reader`.
    let value = protect(|| unsafe {
        let data = Rf_protect(R_MakeExternalPtr(s, R_NilValue, R_NilValue));
        let mut stream = MaybeUninit::<R_inpstream_st>::uninit();
        R_InitInPStream(
            stream.as_mut_ptr(),
            r,
            R_pstream_format_t::R_pstream_any_format,
            Some(in_char),
            Some(in_bytes),
            Some(in_hook),
            data,
        );
        let v = R_Unserialize(stream.as_mut_ptr());
        Rf_unprotect(1);
        v
    });
    match state.failure {
        Some(f) => Err(f),
        None => value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hooked(stream: &[u8], entries: &[(u32, &[u8])]) -> Vec<u8> {
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&(stream.len() as u64).to_le_bytes());
        b.extend_from_slice(stream);
        b.extend_from_slice(&(entries.len() as u32).to_le_bytes());
        for (class, data) in entries {
            b.extend_from_slice(&class.to_le_bytes());
            b.extend_from_slice(&(data.len() as u64).to_le_bytes());
            b.extend_from_slice(data);
        }
        b
    }

    #[test]
    fn hooked_values_split_into_stream_and_entries() {
        let b = hooked(b"B\n stream", &[(0, b"abc"), (2, b"")]);
        assert!(is_hooked(&b));
        let (stream, entries) = split(&b).unwrap();
        assert_eq!(stream, b"B\n stream");
        assert_eq!(entries, vec![(0, &b"abc"[..]), (2, &b""[..])]);
        assert!(!is_hooked(b"B\n\x03\x00"));
    }

    #[test]
    fn malformed_hooked_values_are_refused_without_panic() {
        let b = hooked(b"stream", &[(1, b"data")]);
        for n in 0..b.len() {
            assert!(split(&b[..n]).is_none(), "accepted a cut at {n}");
        }
        let mut long = b.clone();
        long.push(0);
        assert!(split(&long).is_none());
        let mut lying = b.clone();
        lying[4..12].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(split(&lying).is_none());
        let mut many = b.clone();
        let at = HEAD_LEN + 6;
        many[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(split(&many).is_none());
        let mut big_entry = b;
        big_entry[at + 8..at + 16].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(split(&big_entry).is_none());
    }

    #[test]
    fn decimal_names() {
        let mut buf = [0u8; 10];
        assert_eq!(decimal(0, &mut buf), b"0");
        assert_eq!(decimal(407, &mut buf), b"407");
        assert_eq!(decimal(u32::MAX, &mut buf), b"4294967295");
    }
}

//! A daemon's check, after every task, that R's options are as they were.
//!
//! `options(x = v)` replaces the value in `.Options` (a pairlist) in place,
//! and adding or removing an option changes its length, so comparing each
//! element's value object and name by identity against a snapshot taken as
//! `as.list(.Options)` (which shares the value objects, keeping them alive)
//! answers "unchanged?" without copying or comparing any values.

use crate::rapi::Rf_findVar;
use extendr_ffi::{
    R_BaseEnv, R_NamesSymbol, Rf_getAttrib, Rf_install, Rf_xlength, CAR, CDR, PRINTNAME, SEXP,
    SEXPTYPE, STRING_ELT, TAG, TYPEOF, VECTOR_ELT,
};

/// Whether `.Options` still holds exactly the values of `snapshot`.
pub fn options_unchanged(snapshot: SEXP) -> bool {
    unsafe {
        if TYPEOF(snapshot) != SEXPTYPE::VECSXP {
            return false;
        }
        let names = Rf_getAttrib(snapshot, R_NamesSymbol);
        let n = Rf_xlength(snapshot);
        let mut opt = Rf_findVar(Rf_install(c".Options".as_ptr()), R_BaseEnv);
        let mut i = 0;
        while TYPEOF(opt) == SEXPTYPE::LISTSXP {
            if i >= n
                || CAR(opt) != VECTOR_ELT(snapshot, i)
                || PRINTNAME(TAG(opt)) != STRING_ELT(names, i)
            {
                return false;
            }
            opt = CDR(opt);
            i += 1;
        }
        i == n
    }
}

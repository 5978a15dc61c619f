//! The R object behind a mirai: an environment holding the aio handle as
//! `.aio` and an active binding `data` that reads it, of class "mirai" with
//! an integer "id" attribute. Built here in one call because it is made
//! once per task.

use crate::rapi::{R_MakeActiveBinding, Rf_mkString, Rf_shallow_duplicate, SET_CLOENV};
use extendr_ffi::{
    R_EmptyEnv, R_NewEnv, R_PreserveObject, Rf_ScalarInteger, Rf_defineVar, Rf_install, Rf_protect,
    Rf_setAttrib, Rf_unprotect, SEXP,
};
use std::cell::Cell;

thread_local! {
    /// The binding function (set once from R) and the shared class vector.
    static TEMPLATE: Cell<Option<(SEXP, SEXP)>> = const { Cell::new(None) };
}

/// Remember the closure used as each mirai's `data` binding; its body
/// reads `.aio` from its environment, which each copy gets set to.
pub fn set_binding_template(f: SEXP) {
    unsafe {
        R_PreserveObject(f);
        let class = Rf_mkString(c"mirai".as_ptr());
        R_PreserveObject(class);
        TEMPLATE.with(|t| t.set(Some((f, class))));
    }
}

/// A new mirai around an aio handle (returned unprotected).
pub fn new_mirai(handle: SEXP, id: i32) -> Result<SEXP, String> {
    let (template, class) = TEMPLATE
        .with(|t| t.get())
        .ok_or("mirai is not initialised (package not loaded?)")?;
    unsafe {
        let env = Rf_protect(R_NewEnv(R_EmptyEnv, 0, 0));
        Rf_defineVar(Rf_install(c".aio".as_ptr()), handle, env);
        let f = Rf_protect(Rf_shallow_duplicate(template));
        SET_CLOENV(f, env);
        R_MakeActiveBinding(Rf_install(c"data".as_ptr()), f, env);
        Rf_setAttrib(env, Rf_install(c"id".as_ptr()), Rf_ScalarInteger(id));
        Rf_setAttrib(env, Rf_install(c"class".as_ptr()), class);
        Rf_unprotect(2);
        Ok(env)
    }
}

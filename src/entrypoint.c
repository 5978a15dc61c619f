/* Registration shim: R looks for R_init_<pkg>; the extendr module
 * (`extendr_module! { mod mirai; ... }`) generates R_init_mirai_extendr,
 * which registers the .Call routines and disables dynamic symbol lookup. */
#include <R.h>
#include <Rinternals.h>
#include <R_ext/Rdynload.h>

void R_init_mirai_extendr(DllInfo *dll);

void R_init_mirai(DllInfo *dll) {
  R_init_mirai_extendr(dll);
}

/* Hand R's package initialisation to the Rust module, which registers its .Call routines. */
#include <R_ext/Rdynload.h>

void R_init_parallelly_extendr(DllInfo *dll);

void R_init_parallelly(DllInfo *dll) {
    R_init_parallelly_extendr(dll);
}

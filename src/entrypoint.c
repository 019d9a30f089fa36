/* Hand R's package initialisation to the Rust library, which registers its .Call routines
   (src/rust/src/lib.rs: extendr's and two of its own). */
#include <R_ext/Rdynload.h>

void R_init_parallelly_routines(DllInfo *dll);

void R_init_parallelly(DllInfo *dll) {
    R_init_parallelly_routines(dll);
}

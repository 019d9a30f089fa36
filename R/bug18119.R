# R bug 18119 (R 4.0.0 to 4.1.0): socket connections that a parallel setup opens can
# corrupt each other when the RStudio Console or the tcltk package is in use; the parallel
# setup strategy must then not be used.

r_version_has_bug18119 <- function(force = FALSE) {
  version <- Sys.getenv("R_PARALLELLY_R_VERSION", "")
  version <- if (nzchar(version)) package_version(version) else getRversion()
  version >= "4.0.0" && version < "4.1.1"
}

affected_by_bug18119 <- function(force = FALSE) {
  if (!r_version_has_bug18119(force = force)) return(FALSE)
  rstudio <- identical(Sys.getenv("RSTUDIO"), "1") && !nzchar(Sys.getenv("RSTUDIO_TERM"))
  rstudio || "tcltk" %in% loadedNamespaces()
}

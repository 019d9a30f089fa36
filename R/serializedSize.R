## serializedSize(): the number of bytes serialize() writes for 'obj'.
##
## Binary format version 3, as used for data sent to workers.  The
## serialization is built in memory; the byte count is a double because
## large objects exceed the integer range.
#' Get the size of an object once serialized
#'
#' Returns the number of bytes that [serialize()] produces for an object in binary
#' format version 3, which is what a master and its workers send each other. Use it to
#' estimate how much data a call to a cluster transfers.
#'
#' @param obj Any R object.
#'
#' @return A single non-negative number (a double, since large objects exceed the integer
#' range).
#'
#' @examples
#' serializedSize(1:10)
#' serializedSize(rnorm(1e4))
#' serializedSize(mtcars)
#'
#' @export
serializedSize <- function(obj) {
  as.double(length(serialize(obj, connection = NULL, xdr = FALSE, version = 3L)))
}

## serializedSize(): the number of bytes serialize() writes for 'obj'.
##
## Binary format version 3, as used for data sent to workers.  The
## serialization is built in memory; the byte count is a double because
## large objects exceed the integer range.
serializedSize <- function(obj) {
  as.double(length(serialize(obj, connection = NULL, xdr = FALSE, version = 3L)))
}

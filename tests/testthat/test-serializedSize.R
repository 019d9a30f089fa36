test_that("serializedSize() equals the length of serialize()", {
  objs <- list(NULL, 1L, 1:100, letters, list(a = 1, b = "x"),
               mtcars, function(x) x + 1, quote(a + b), new.env(),
               rnorm(1000), c(NA, TRUE), "\u00e5\u00e4\u00f6")
  for (obj in objs) {
    size <- serializedSize(obj)
    expect_type(size, "double")
    expect_length(size, 1L)
    expect_identical(size, as.double(length(serialize(obj, NULL))))
    expect_identical(size, as.double(length(serialize(obj, NULL, xdr = FALSE))))
  }
})

test_that("serializedSize() grows with the object", {
  expect_gt(serializedSize(1:1e5 + 0), serializedSize(1:10 + 0))
  expect_equal(serializedSize(numeric(1e5)) - serializedSize(numeric(0)), 8e5)
})

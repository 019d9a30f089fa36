library(testthat)
library(parallelly)
test_check("parallelly")

test_that("is_fqdn() requires a dot", {
  is_fqdn <- parallelly:::is_fqdn
  expect_false(is_fqdn("localhost"))
  expect_true(is_fqdn("remote.server.org"))
  expect_true(is_fqdn("remote.server"))
  expect_identical(is_fqdn(c("a", "a.b")), c(FALSE, TRUE))
})

test_that("is_ip_number() accepts IPv4 numbers only", {
  is_ip_number <- parallelly:::is_ip_number
  expect_true(is_ip_number("192.168.1.1"))
  expect_true(is_ip_number("0.0.0.0"))
  expect_true(is_ip_number("255.255.255.255"))
  expect_false(is_ip_number("192.168.1"))
  expect_false(is_ip_number("192.168.1.256"))
  expect_false(is_ip_number("192.168.1.1.1"))
  expect_false(is_ip_number("192.168.1.1."))
  expect_false(is_ip_number("a.168.1.1"))
  expect_false(is_ip_number("a.b.c.d"))
  expect_false(is_ip_number("localhost"))
  expect_identical(is_ip_number(c("1.2.3.4", "x")), c(TRUE, FALSE))
})

test_that("is_localhost() knows localhost, the hostname and its aliases", {
  is_localhost <- parallelly:::is_localhost
  is_localhost(NULL, NULL)
  on.exit(is_localhost(NULL, NULL))

  expect_true(is_localhost("localhost"))
  expect_true(is_localhost("127.0.0.1"))
  expect_true(is_localhost(Sys.info()[["nodename"]]))

  hosts <- tempfile()
  on.exit(unlink(hosts), add = TRUE)
  writeLines(c("# comment line mentioning other",
               "127.0.0.1  localhost",
               "10.0.0.5   myhost.example.org myhost  myalias # main",
               "10.0.0.6   other.example.org other"), hosts)
  expect_true(is_localhost("myalias", hostname = "myhost", pathnames = hosts))
  expect_true(is_localhost("myhost.example.org", hostname = "myhost", pathnames = hosts))
  expect_false(is_localhost("other", hostname = "myhost", pathnames = hosts))
  expect_false(is_localhost("remote.example.org", hostname = "myhost",
                            pathnames = c(hosts, tempfile())))

  ## Answers are cached until the cache is reset
  writeLines("10.0.0.5 myhost", hosts)
  expect_true(is_localhost("myalias", hostname = "myhost", pathnames = hosts))
  expect_null(is_localhost(NULL, NULL))
  expect_false(is_localhost("myalias", hostname = "myhost", pathnames = hosts))
})

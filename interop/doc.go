// Package interop holds the interoperability tests that drive mailtls against
// real third-party peers from Debian packages (swaks, Postfix's smtpd and
// smtp-sink, openssl s_client, testssl.sh). It has no non-test code.
//
// When MAILTLS_INTEROP=1 (set by .ci/run) a missing tool fails the test; on a
// developer's machine without the tools the tests skip.
package interop

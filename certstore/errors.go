package certstore

import (
	"errors"
	"strings"
)

// Sentinel errors for the decisions a caller makes. They are wrapped in an
// *Error that names the file; match them with errors.Is.
var (
	// ErrNoCertificate means a PEM input held no CERTIFICATE block, or a
	// Store has no certificate to offer. Fix the file or the Store's Sources.
	ErrNoCertificate = errors.New("no certificate")
	// ErrNoKey means no private key block was found.
	ErrNoKey = errors.New("no private key")
	// ErrUnsupportedKey means the key is encrypted, of an unknown PEM type,
	// or not RSA, ECDSA or Ed25519. Convert it with openssl to an
	// unencrypted PKCS#8, PKCS#1 or SEC1 key.
	ErrUnsupportedKey = errors.New("unsupported private key")
	// ErrWeakKey means an RSA key shorter than 2048 bits (RFC 9325, Section 4.4).
	ErrWeakKey = errors.New("weak key")
	// ErrKeyMismatch means the private key is not the one whose public half
	// is in the (first) certificate: the key and certificate files do not
	// belong together.
	ErrKeyMismatch = errors.New("private key does not match certificate")
	// ErrExpired means a certificate's notAfter is in the past (RFC 5280,
	// Section 4.1.2.5). Renew it.
	ErrExpired = errors.New("certificate expired")
	// ErrNotYetValid means a certificate's notBefore is in the future (RFC
	// 5280, Section 4.1.2.5); often a clock problem on one of the machines.
	ErrNotYetValid = errors.New("certificate not yet valid")
	// ErrChain means the certificates in the file do not form a chain (each
	// must be signed by the next, RFC 5280 Section 6.1; RFC 8446 Section
	// 4.4.2) or, when roots are configured, the chain does not verify to
	// one of them. Put the leaf first, then its issuer, and so on.
	ErrChain = errors.New("broken certificate chain")
	// ErrInsecureConfig means a TLSOptions value asked for something below
	// the RFC 9325 floor (for example MinVersion TLS 1.1) or is incomplete
	// (client certificates verified without a CA pool).
	ErrInsecureConfig = errors.New("insecure or incomplete TLS options")
)

// Error reports a failure to load or validate one certificate or key. It says
// which file and which step failed; Err wraps one of the sentinels above
// (or an I/O error from package os), so callers use errors.Is and errors.As.
type Error struct {
	// File is the path that was being read or written; for an in-memory
	// Source it is the Source's name; empty for PEM given directly.
	File string
	// Op is the step that failed: "read", "parse", "key", "validity",
	// "chain", "write" or "config".
	Op string
	// Err is the cause.
	Err error
}

// Error returns "certstore: FILE: OP: CAUSE" (FILE left out when empty).
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("certstore: ")
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(": ")
	}
	b.WriteString(e.Op)
	b.WriteString(": ")
	if e.Err != nil {
		b.WriteString(e.Err.Error())
	} else {
		b.WriteString("unknown error")
	}
	return b.String()
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

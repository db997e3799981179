package transport

import (
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/mailtls/mailtls/ndr"
)

// Envelope is the SMTP envelope of one message (RFC 5321 §2.3.1) with the
// extension parameters the library honours and what is known about the
// connection it arrived on. The Server fills it for a Handler; the Connector
// reads it to deliver.
type Envelope struct {
	// ID is a locally unique message identifier (queue id), for logs.
	ID string
	// From is the reverse-path without angle brackets; "" is the null
	// reverse-path (<>) used by DSNs (RFC 5321 §4.5.5).
	From string
	// Recipients in RCPT order.
	Recipients []Recipient

	// RequireTLS is set by MAIL FROM:<…> REQUIRETLS (RFC 8689 §4.1).
	RequireTLS bool
	// TLSRequiredNo is set when the message carries "TLS-Required: No"
	// (RFC 8689 §3, §4.2.2): recipient-side policies (MTA-STS, DANE) are
	// ignored; the administrator's own levels still apply.
	TLSRequiredNo bool
	// SMTPUTF8 is set by MAIL FROM:<…> SMTPUTF8 (RFC 6531 §3.4).
	SMTPUTF8 bool
	// Body is the BODY= parameter (RFC 6152, RFC 3030), "" if absent.
	Body BodyType
	// Size is the SIZE= parameter the client declared (RFC 1870), 0 if none.
	Size int64
	// Return is the DSN RET= parameter (RFC 3461 §4.3).
	Return ndr.Return
	// EnvelopeID is the DSN ENVID= parameter, decoded from xtext
	// (RFC 3461 §4.4).
	EnvelopeID string

	// ClientAddr is the remote address of the submitting client (inbound).
	ClientAddr net.Addr
	// Helo is the EHLO/HELO name the client gave after any STARTTLS.
	Helo string
	// AuthIdentity is the authenticated user name, "" if none (RFC 4954).
	AuthIdentity string
	// TLS describes the connection's TLS; nil for plaintext.
	TLS *TLSInfo
	// ReceivedAt is when the message was accepted.
	ReceivedAt time.Time
}

// BodyType is the value of the BODY parameter of MAIL FROM (RFC 6152 §2,
// RFC 3030 §3): the message's content is 7-bit, 8-bit MIME or binary MIME.
type BodyType string

// The BODY values (RFC 6152 §2, RFC 3030 §3).
const (
	Body7Bit       BodyType = "7BIT"
	Body8BitMIME   BodyType = "8BITMIME"
	BodyBinaryMIME BodyType = "BINARYMIME"
)

// Recipient is one forward-path with its DSN parameters (RFC 3461 §4.1, §4.2).
type Recipient struct {
	// Address without angle brackets.
	Address string
	// Notify is the NOTIFY= parameter (RFC 3461 §4.1); zero when the
	// client gave none, which means FAILURE,DELAY.
	Notify ndr.Notify
	// ORCPT is the ORCPT= parameter decoded from xtext, as
	// "addr-type;address" (e.g. "rfc822;user@example.com"), "" if none.
	ORCPT string
}

// TLSInfo summarises a TLS connection for envelopes, trace headers, logs and
// delivery results. The queue's spool records hold it as JSON: its tags are
// part of that format and keep the names the first records were written
// with.
type TLSInfo struct {
	Version     uint16 `json:"Version"` // tls.VersionTLS13 ...
	CipherSuite uint16 `json:"CipherSuite"`
	// CurveID is the negotiated key exchange group (e.g. X25519MLKEM768).
	CurveID tls.CurveID `json:"CurveID"`
	// ServerName is the SNI the client sent (inbound) or that we sent (outbound).
	ServerName string `json:"ServerName"`
	// PeerSubject is the subject of the peer's leaf certificate, if any.
	PeerSubject string `json:"PeerSubject"`
	// Verified is true when the peer's certificate was verified (outbound:
	// by the policy's rule; inbound: a client certificate against the
	// configured CAs).
	Verified bool `json:"Verified"`
	// Resumed is true for a resumed TLS session.
	Resumed bool `json:"Resumed"`
}

// NewTLSInfo summarises cs. verified is the caller's verdict, since what
// "verified" means depends on the policy applied.
func NewTLSInfo(cs tls.ConnectionState, verified bool) *TLSInfo {
	ti := &TLSInfo{
		Version:     cs.Version,
		CipherSuite: cs.CipherSuite,
		CurveID:     cs.CurveID,
		ServerName:  cs.ServerName,
		Verified:    verified,
		Resumed:     cs.DidResume,
	}
	if len(cs.PeerCertificates) > 0 {
		ti.PeerSubject = cs.PeerCertificates[0].Subject.String()
	}
	return ti
}

// VersionName is the protocol version as Postfix and Received headers spell
// it: "TLSv1.3".
func (t *TLSInfo) VersionName() string {
	switch t.Version {
	case tls.VersionTLS10:
		return "TLSv1"
	case tls.VersionTLS11:
		return "TLSv1.1"
	case tls.VersionTLS12:
		return "TLSv1.2"
	case tls.VersionTLS13:
		return "TLSv1.3"
	}
	return fmt.Sprintf("0x%04x", t.Version)
}

// CipherName is the IANA cipher suite name.
func (t *TLSInfo) CipherName() string {
	if name, ok := cipherNames()[t.CipherSuite]; ok {
		return name
	}
	return tls.CipherSuiteName(t.CipherSuite)
}

// cipherNames maps the suites crypto/tls knows to their names, made once:
// tls.CipherSuiteName builds the list of suites on every call.
var cipherNames = sync.OnceValue(func() map[uint16]string {
	m := make(map[uint16]string)
	for _, list := range [][]*tls.CipherSuite{tls.CipherSuites(), tls.InsecureCipherSuites()} {
		for _, cs := range list {
			m[cs.ID] = cs.Name
		}
	}
	return m
})

// Bits is the symmetric key strength of the cipher suite in bits (the
// "128-bit encryption" of administrators' guides).
func (t *TLSInfo) Bits() int { return CipherBits(t.CipherSuite) }

// CipherBits returns the symmetric key size of suite in bits, 0 if unknown.
func CipherBits(suite uint16) int {
	switch suite {
	case tls.TLS_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256,
		tls.TLS_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_RSA_WITH_AES_128_CBC_SHA, tls.TLS_RSA_WITH_AES_128_CBC_SHA256:
		return 128
	case tls.TLS_AES_256_GCM_SHA384, tls.TLS_CHACHA20_POLY1305_SHA256,
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
		tls.TLS_RSA_WITH_AES_256_GCM_SHA384, tls.TLS_RSA_WITH_AES_256_CBC_SHA:
		return 256
	case tls.TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA, tls.TLS_RSA_WITH_3DES_EDE_CBC_SHA:
		return 112
	case tls.TLS_ECDHE_ECDSA_WITH_RC4_128_SHA, tls.TLS_ECDHE_RSA_WITH_RC4_128_SHA, tls.TLS_RSA_WITH_RC4_128_SHA:
		return 128
	}
	return 0
}

// String renders the summary as in a Received header comment (RFC 5321
// §4.4 leaves the comment free-form; this follows Postfix):
// "using TLSv1.3 with cipher TLS_AES_128_GCM_SHA256 (128/128 bits)".
func (t *TLSInfo) String() string {
	if t == nil {
		return "no TLS"
	}
	b := t.Bits()
	return fmt.Sprintf("using %s with cipher %s (%d/%d bits)", t.VersionName(), t.CipherName(), b, b)
}

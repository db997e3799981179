package policy

// FailureType names a TLS requirement that was not met. Where TLS-RPT
// (RFC 8460 §4.3) defines a result type for the condition, the value is that
// result type, so logs, delivery results, DSNs (package ndr) and TLS-RPT
// reports (package tlsrpt) use the same words. The zero value means no
// failure.
type FailureType string

// TLS failure types.
const (
	// FailureNone: no TLS failure.
	FailureNone FailureType = ""

	// FailureSTARTTLSNotSupported: the server did not offer STARTTLS
	// (RFC 8460 §4.3.1 "starttls-not-supported").
	FailureSTARTTLSNotSupported FailureType = "starttls-not-supported"
	// FailureCertificateHostMismatch: the certificate names do not match
	// (RFC 8460 §4.3.1 "certificate-host-mismatch").
	FailureCertificateHostMismatch FailureType = "certificate-host-mismatch"
	// FailureCertificateExpired: the certificate has expired or is not yet
	// valid (RFC 8460 §4.3.1 "certificate-expired").
	FailureCertificateExpired FailureType = "certificate-expired"
	// FailureCertificateNotTrusted: the chain does not lead to a trusted
	// root (RFC 8460 §4.3.1 "certificate-not-trusted").
	FailureCertificateNotTrusted FailureType = "certificate-not-trusted"
	// FailureValidation: another validation failure (RFC 8460 §4.3.1
	// "validation-failure").
	FailureValidation FailureType = "validation-failure"

	// FailureTLSAInvalid: the certificate matches no TLSA record (RFC 8460
	// §4.3.2.1 "tlsa-invalid", RFC 7672 §2.2).
	FailureTLSAInvalid FailureType = "tlsa-invalid"
	// FailureDNSSECInvalid: DNSSEC validation failed (RFC 8460 §4.3.2.1
	// "dnssec-invalid").
	FailureDNSSECInvalid FailureType = "dnssec-invalid"
	// FailureDANERequired: the policy requires DANE but no usable TLSA
	// records exist (RFC 8460 §4.3.2.1 "dane-required").
	FailureDANERequired FailureType = "dane-required"

	// FailureSTSPolicyFetch: the MTA-STS policy could not be fetched
	// (RFC 8460 §4.3.2.2 "sts-policy-fetch-error").
	FailureSTSPolicyFetch FailureType = "sts-policy-fetch-error"
	// FailureSTSPolicyInvalid: the MTA-STS policy is invalid (RFC 8460
	// §4.3.2.2 "sts-policy-invalid").
	FailureSTSPolicyInvalid FailureType = "sts-policy-invalid"
	// FailureSTSWebPKIInvalid: the MTA-STS policy server's certificate is
	// invalid (RFC 8460 §4.3.2.2 "sts-webpki-invalid").
	FailureSTSWebPKIInvalid FailureType = "sts-webpki-invalid"

	// The failures below are not TLS-RPT result types: they explain a
	// requirement in DSNs and logs.

	// FailureMXNotAllowed: the MX host is not allowed by the policy
	// (RFC 8461 §4.1, "mx" patterns).
	FailureMXNotAllowed FailureType = "mx-not-allowed"
	// FailureHandshake: the TLS handshake failed for a reason other than
	// the certificate.
	FailureHandshake FailureType = "handshake-failure"
	// FailureTLSVersion: the negotiated TLS version is below the minimum.
	FailureTLSVersion FailureType = "tls-version-too-low"
	// FailureWeakCipher: no cipher of the required strength was offered.
	FailureWeakCipher FailureType = "cipher-too-weak"
	// FailureREQUIRETLSNotSupported: the message carries REQUIRETLS and the
	// next hop does not support it (RFC 8689 §4.2.1).
	FailureREQUIRETLSNotSupported FailureType = "requiretls-not-supported"
)

package transport

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestAuthLimitsShared: two listeners of one host (587 and 465, or 25 with
// AUTH) given AuthLimitsFrom count an address's failures together and share
// one bound on concurrent password checks, since bcrypt's CPU is the
// machine's and an attacker can use every port.
func TestAuthLimitsShared(t *testing.T) {
	pki := newSrvPKI(t)
	auth := &countingAuth{}
	a := &Server{Kind: KindSubmission, Authenticator: auth, AuthMaxFailures: 2}
	b := &Server{Kind: KindSubmission, Authenticator: auth, AuthMaxFailures: 50, AuthLimitsFrom: a}
	tsA, tsB := startServer(t, a, pki), startServer(t, b, pki)

	for range 2 {
		d := tlsSessionFrom(t, tsA, "127.6.0.1")
		d.expect("AUTH PLAIN "+b64("\x00alice\x00guess"), "535 5.7.8 ")
	}
	d := tlsSessionFrom(t, tsB, "127.6.0.1")
	d.expect("AUTH PLAIN "+b64("\x00alice\x00wonderland"), "454 4.7.0 Too many failed authentication attempts")
	d = tlsSessionFrom(t, tsB, "127.6.0.2")
	d.expect("AUTH PLAIN "+b64("\x00alice\x00wonderland"), "235 ")
}

// TestAuthSlotsShared: with one password-check slot shared by two
// listeners, a check in progress on one makes the other's AUTH wait, and
// time out with 454 4.7.0.
func TestAuthSlotsShared(t *testing.T) {
	pki := newSrvPKI(t)
	started := make(chan struct{}, 1)
	release := make(chan struct{})
	slow := AuthenticatorFunc(func(ctx context.Context, user, _ string) error {
		if user == "slow" {
			started <- struct{}{}
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
		return nil
	})
	a := &Server{Kind: KindSubmission, Authenticator: slow, AuthMaxConcurrent: 1, AuthQueueTimeout: 300 * time.Millisecond}
	b := &Server{Kind: KindSubmission, Authenticator: slow, AuthMaxConcurrent: 8, AuthLimitsFrom: a}
	tsA, tsB := startServer(t, a, pki), startServer(t, b, pki)

	dA := tlsSessionFrom(t, tsA, "127.7.0.1")
	dA.send("AUTH PLAIN " + b64("\x00slow\x00x") + "\r\n")
	<-started
	dB := tlsSessionFrom(t, tsB, "127.7.0.2")
	start := time.Now()
	if r := dB.cmd("AUTH PLAIN " + b64("\x00fast\x00x")); r != "454 4.7.0 Temporary authentication failure" {
		t.Errorf("AUTH on the second listener while the only slot is busy: %q after %s, want 454 4.7.0", r, time.Since(start))
	}
	close(release)
	if r := dA.read(); !strings.HasPrefix(r, "235 ") {
		t.Errorf("slow AUTH: %q", r)
	}
}

// TestAuthLimitsFromErrors: a chain or a loop of AuthLimitsFrom is a
// configuration error, reported by Serve.
func TestAuthLimitsFromErrors(t *testing.T) {
	pki := newSrvPKI(t)
	a := &Server{Kind: KindSubmission, Authenticator: testTable(t), TLSConfig: pki.serverConfig(), Handler: &recorder{}}
	a.AuthLimitsFrom = a
	if err := a.init(); err == nil || !strings.Contains(err.Error(), "AuthLimitsFrom") {
		t.Errorf("self AuthLimitsFrom: %v", err)
	}
	b := &Server{Kind: KindSubmission, Authenticator: testTable(t), TLSConfig: pki.serverConfig(), Handler: &recorder{}}
	c := &Server{Kind: KindSubmission, Authenticator: testTable(t), TLSConfig: pki.serverConfig(), Handler: &recorder{}, AuthLimitsFrom: b}
	d := &Server{Kind: KindSubmission, Authenticator: testTable(t), TLSConfig: pki.serverConfig(), Handler: &recorder{}, AuthLimitsFrom: c}
	if err := d.init(); err == nil || !strings.Contains(err.Error(), "AuthLimitsFrom") {
		t.Errorf("chained AuthLimitsFrom: %v", err)
	}
}

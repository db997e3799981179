package main

import (
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/policy"
	"github.com/mailtls/mailtls/transport/transporttest"
)

// With -require-tls, MAIL before STARTTLS on the MX port is refused with
// RFC 3207's 530 5.7.0, and nothing is stored.
func TestRequireTLSRefusesPlaintextMail(t *testing.T) {
	tr := startRelay(t, "-require-tls")
	c := tr.dial(t, "smtp")
	err := c.Mail("sender@example.org", nil)
	if err == nil {
		t.Fatal("MAIL in plaintext accepted despite -require-tls")
	}
	if code, ec := smtpCode(t, err); code != 530 || ec != "5.7.0" {
		t.Fatalf("MAIL in plaintext: got %d %s, want 530 5.7.0 (%v)", code, ec, err)
	}
	if files := maildirFiles(t, tr.cfg, "user@localhost", "new"); len(files) != 0 {
		t.Fatalf("mail stored: %v", files)
	}
}

// Without -require-tls the MX port accepts plaintext (RFC 3207 §4), and the
// Received header says so.
func TestPlaintextAllowedByDefaultOnMX(t *testing.T) {
	tr := startRelay(t)
	c := tr.dial(t, "smtp")
	if err := send(c, "sender@example.org", []string{"user@localhost"}, testBody); err != nil {
		t.Fatalf("plaintext delivery: %v", err)
	}
	files := waitMaildir(t, tr, "user@localhost", 1)
	if len(files) != 1 {
		t.Fatalf("want 1 message in new/, got %v", files)
	}
	b, _ := os.ReadFile(files[0])
	if strings.Contains(string(b), "using TLS") {
		t.Fatalf("plaintext message claims TLS:\n%s", b)
	}
}

// A message for a local domain received over STARTTLS reaches new/ (and is
// not left in tmp/), with a Received header recording the TLS version and
// cipher, and the Return-Path of the envelope sender.
func TestLocalDeliveryToMaildirOverTLS(t *testing.T) {
	tr := startRelay(t, "-require-tls")
	c := tr.dialTLS(t, "smtp")
	if err := send(c, "sender@example.org", []string{"User@LocalHost"}, testBody); err != nil {
		t.Fatalf("delivery over STARTTLS: %v", err)
	}
	// The 250 promised durability (the queue); the Maildir copy follows.
	files := waitMaildir(t, tr, "user@localhost", 1)
	if len(files) != 1 {
		t.Fatalf("want 1 message in new/, got %v", files)
	}
	if tmp := maildirFiles(t, tr.cfg, "user@localhost", "tmp"); len(tmp) != 0 {
		t.Fatalf("tmp/ not empty: %v", tmp)
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	msg := string(b)
	if err := contains(msg, "Return-Path: <sender@example.org>\r\n", "Received: from client.test",
		"using TLSv1.3 with cipher TLS_", "by relay.test", "Subject: hello", "Hello over TLS."); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(msg, "Return-Path:") || strings.Index(msg, "Received:") > strings.Index(msg, "Subject:") {
		t.Fatalf("trace headers not on top:\n%s", msg)
	}
	if err := contains(tr.logs.String(), `msg="smtp tls handshake"`, "tls_version=TLSv1.3", `msg="message stored"`); err != nil {
		t.Fatal(err)
	}
}

// -min-tls 1.3 refuses a TLS 1.2 client at the handshake.
func TestMinTLS13RefusesTLS12Client(t *testing.T) {
	tr := startRelay(t, "-min-tls", "1.3")
	cfg := tr.tlsConfig()
	cfg.MaxVersion = tls.VersionTLS12
	if c, err := tr.startTLS("smtp", cfg); err == nil {
		c.Close()
		t.Fatal("TLS 1.2 handshake succeeded against -min-tls 1.3")
	}
	c2 := tr.dialTLS(t, "smtp")
	if cs, ok := c2.TLSConnectionState(); !ok || cs.Version != tls.VersionTLS13 {
		t.Fatalf("TLS 1.3 client: ok=%v version=%x", ok, cs.Version)
	}
}

// No open relay: an unauthenticated client outside -relay-networks cannot
// send to a non-local domain, even over TLS. Each such RCPT is refused with
// "554 5.7.1 Relay access denied" (RFC 5321 §3.6.2) before any of the
// message is sent; local recipients in the same transaction are kept, and
// nothing is queued.
func TestOpenRelayRefused(t *testing.T) {
	tr := startRelay(t, "-require-tls")
	c := tr.dialTLS(t, "smtp")
	if err := c.Mail("spammer@example.org", nil); err != nil {
		t.Fatal(err)
	}
	for _, rcpt := range []string{"victim@example.net", "other@example.com"} {
		err := c.Rcpt(rcpt, nil)
		if err == nil {
			t.Fatalf("open relay: RCPT %s accepted without AUTH", rcpt)
		}
		if code, ec := smtpCode(t, err); code != 554 || ec != "5.7.1" {
			t.Fatalf("RCPT %s: got %d %s, want 554 5.7.1 (%v)", rcpt, code, ec, err)
		}
		if !strings.Contains(err.Error(), "Relay access denied") {
			t.Fatalf("reply text: %v", err)
		}
	}
	// With every recipient refused, no DATA is accepted: nothing of the
	// body is read.
	if _, err := c.Data(); err == nil {
		t.Fatal("DATA accepted with no valid recipient")
	}
	if err := c.Reset(); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("sender@example.org", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("victim@example.net", nil); err == nil {
		t.Fatal("RCPT victim@example.net accepted")
	}
	if err := c.Rcpt("user@localhost", nil); err != nil {
		t.Fatalf("local recipient after a refused one: %v", err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte(testBody)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("local delivery: %v", err)
	}
	if n := len(waitMaildir(t, tr, "user@localhost", 1)); n != 1 {
		t.Fatalf("%d messages in user@localhost's Maildir, want 1", n)
	}
	waitFor(t, "the queue to empty", 5*time.Second, func() bool {
		msgs, qerr := tr.queue.List(t.Context())
		return qerr == nil && len(msgs) == 0
	})
	if err := contains(tr.logs.String(), `msg="message stored"`, "local=1 remote=0"); err != nil {
		t.Fatalf("refused recipients were queued: %v", err)
	}
	waitFor(t, "relay denied log", 5*time.Second, func() bool {
		return strings.Count(tr.logs.String(), `msg="relay denied"`) == 3 && strings.Contains(tr.logs.String(), "stage=rcpt")
	})
}

// A client in -relay-networks may relay without AUTH.
func TestRelayNetworksMayRelay(t *testing.T) {
	tr := startRelay(t, "-require-tls", "-relay-networks", "127.0.0.0/8", "-route", "example.net=127.0.0.1:9")
	c := tr.dialTLS(t, "smtp")
	if err := send(c, "app@localhost", []string{"someone@example.net"}, testBody); err != nil {
		t.Fatalf("relay from 127.0.0.0/8: %v", err)
	}
	msgs, err := tr.queue.List(t.Context())
	if err != nil || len(msgs) != 1 || msgs[0].Recipients[0].Address != "someone@example.net" {
		t.Fatalf("queue: %+v, %v", msgs, err)
	}
}

// Submission requires AUTH before MAIL, and AUTH is not offered or accepted
// before STARTTLS (RFC 4954 §4).
func TestSubmissionAuthOnlyUnderTLS(t *testing.T) {
	users := writeUsers(t, "alice", "s3cret")
	tr := startRelay(t, "-users", users)

	c := tr.dial(t, "submission")
	if ok, _ := c.Extension("AUTH"); ok {
		t.Fatal("AUTH advertised before STARTTLS")
	}
	if err := auth(c, "alice", "s3cret"); err == nil {
		t.Fatal("AUTH accepted in plaintext")
	}

	c = tr.dialTLS(t, "submission")
	if err := c.Mail("alice@localhost", nil); err == nil {
		t.Fatal("MAIL accepted on submission without AUTH")
	} else if code, ec := smtpCode(t, err); code != 530 || ec != "5.7.0" {
		t.Fatalf("MAIL without AUTH: %d %s", code, ec)
	}
	if err := auth(c, "alice", "wrong"); err == nil {
		t.Fatal("wrong password accepted")
	}
	if err := auth(c, "alice", "s3cret"); err != nil {
		t.Fatalf("AUTH PLAIN under TLS: %v", err)
	}
	if err := send(c, "alice@localhost", []string{"bob@localhost"}, testBody); err != nil {
		t.Fatalf("authenticated local submission: %v", err)
	}
	files := waitMaildir(t, tr, "bob@localhost", 1)
	if len(files) != 1 {
		t.Fatalf("bob's new/: %v", files)
	}
	b, _ := os.ReadFile(files[0])
	if err := contains(string(b), "ESMTPSA", "using TLSv1.3"); err != nil {
		t.Fatal(err)
	}
}

// An authenticated client on the implicit-TLS port submits mail for a
// remote domain; it is queued and delivered through -route to a TLS server
// whose certificate is verified under the policy table's "secure" entry.
func TestSubmissionRelayedThroughRouteWithVerifiedTLS(t *testing.T) {
	partner := transporttest.NewServer(t, transporttest.ServerConfig{Cert: transporttest.GoodCert, DSN: true})
	ca := writeFile(t, "ca.pem", string(partner.CA.CertPEM))
	pol := writeFile(t, "tls_policy", fmt.Sprintf("# partner gateway\n[127.0.0.1]:%d secure match=%s\n", partner.Port, partner.Hostname))
	users := writeUsers(t, "alice", "s3cret")
	tr := startRelay(t, "-users", users, "-route", "partner.example=127.0.0.1:"+fmt.Sprint(partner.Port),
		"-policy", pol, "-outbound-ca", ca, "-default-tls", "verify")

	c := tr.dialTLS(t, "submissions")
	if err := auth(c, "alice", "s3cret"); err != nil {
		t.Fatalf("AUTH: %v", err)
	}
	if err := send(c, "alice@localhost", []string{"bob@partner.example"}, testBody); err != nil {
		t.Fatalf("submission: %v", err)
	}
	waitFor(t, "delivery to the partner", 30*time.Second, func() bool { return len(partner.Messages()) == 1 })
	m := partner.Messages()[0]
	if m.Envelope.From != "alice@localhost" || len(m.Envelope.Recipients) != 1 || m.Envelope.Recipients[0].Address != "bob@partner.example" {
		t.Fatalf("envelope at partner: %+v", m.Envelope)
	}
	if m.TLS == nil || m.TLS.Version != tls.VersionTLS13 {
		t.Fatalf("partner received without TLS 1.3: %+v", m.TLS)
	}
	if err := contains(string(m.Data), "Hello over TLS.", "with ESMTPSA"); err != nil {
		t.Fatal(err)
	}
	if got := partner.EHLONames(); len(got) == 0 || got[0] != "relay.test" {
		t.Fatalf("EHLO names at partner: %v", got)
	}
	waitFor(t, "the queue to empty", 30*time.Second, func() bool {
		msgs, err := tr.queue.List(t.Context())
		return err == nil && len(msgs) == 0
	})
	waitFor(t, "the attempt log line", 30*time.Second, func() bool {
		return contains(tr.logs.String(), `msg="delivery attempt"`, "verified=true", "secure") == nil
	})
}

// A route to a server without STARTTLS under "encrypt on-failure=bounce":
// no MAIL FROM crosses in plaintext, and the local sender finds a DSN with
// status 5.7.4 in its Maildir.
func TestTLSFailureBouncesToLocalSender(t *testing.T) {
	dsn, legacy := bounceToAlice(t)
	if err := contains(string(dsn), "Return-Path: <>", "multipart/report", "report-type=delivery-status",
		"Final-Recipient: rfc822; old@legacy.example", "Action: failed", "Status: 5.7.4"); err != nil {
		t.Fatal(err)
	}
	if wire := string(legacy.Seen()); strings.Contains(strings.ToUpper(wire), "MAIL FROM") || strings.Contains(wire, "Hello over TLS") {
		t.Fatalf("plaintext server saw the transaction:\n%s", wire)
	}
	if len(legacy.Messages()) != 0 {
		t.Fatal("plaintext server accepted a message")
	}
}

// bounceToAlice starts a relay (with extra flags) routing legacy.example to
// a plaintext-only server under "encrypt on-failure=bounce", submits a
// message from alice@localhost to it, and returns the DSN that lands in
// alice's Maildir and the legacy server.
func bounceToAlice(t *testing.T, extra ...string) ([]byte, *transporttest.Server) {
	t.Helper()
	legacy := transporttest.NewPlainServer(t)
	pol := writeFile(t, "tls_policy", "legacy.example encrypt on-failure=bounce\n")
	users := writeUsers(t, "alice", "s3cret")
	tr := startRelay(t, append([]string{"-users", users, "-route", "legacy.example=127.0.0.1:" + fmt.Sprint(legacy.Port),
		"-policy", pol}, extra...)...)

	c := tr.dialTLS(t, "submission")
	if err := auth(c, "alice", "s3cret"); err != nil {
		t.Fatalf("AUTH: %v", err)
	}
	if err := send(c, "alice@localhost", []string{"old@legacy.example"}, testBody); err != nil {
		t.Fatalf("submission: %v", err)
	}
	waitFor(t, "the DSN in alice's Maildir", 30*time.Second, func() bool {
		return len(maildirFiles(t, tr.cfg, "alice@localhost", "new")) == 1
	})
	dsn, err := os.ReadFile(maildirFiles(t, tr.cfg, "alice@localhost", "new")[0])
	if err != nil {
		t.Fatal(err)
	}
	return dsn, legacy
}

// Flags are validated with errors that name the flag.
func TestFlagValidation(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-min-tls", "1.1"}, "-min-tls"},
		{[]string{"-default-tls", "paranoid"}, "-default-tls"},
		{[]string{"-on-tls-failure", "explode"}, "-on-tls-failure"},
		{[]string{"-route", "example.com"}, "-route"},
		{[]string{"-route", "example.com=host:notaport"}, "bad port"},
		{[]string{"-relay-networks", "10.0.0.0/33"}, "-relay-networks"},
		{[]string{"-cert", "c.pem"}, "-cert and -key"},
		{[]string{"-hostname", "localhost"}, "not localhost"},
		{[]string{"-smtp", "", "-submission", "", "-submissions", ""}, "nothing to listen on"},
		{[]string{"-ndr-lang", "fr"}, "-ndr-lang"},
		{[]string{"-smarthost-user", "u"}, "-smarthost-password-file"},
		{[]string{"-max-queue-age", "0s"}, "-max-queue-age"},
		{[]string{"extra"}, "unexpected argument"},
	} {
		_, err := parseFlags(tc.args, &syncBuffer{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseFlags(%q) = %v, want an error mentioning %q", tc.args, err, tc.want)
		}
	}
	cfg, err := parseFlags([]string{"-relay-networks", "192.0.2.0/24, 2001:db8::1", "-local-domains", "Example.COM.,localhost"}, &syncBuffer{})
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.RelayNetworks) != 2 || cfg.RelayNetworks[1].Bits() != 128 || !cfg.isLocal("example.com") || cfg.isLocal("example.net") {
		t.Fatalf("parsed: %+v", cfg)
	}
	if cfg.SMTPAddr != "127.0.0.1:2525" || cfg.SubmissionAddr != "127.0.0.1:2587" || cfg.SubmissionsAddr != "127.0.0.1:2465" {
		t.Fatalf("default addresses: %s %s %s", cfg.SMTPAddr, cfg.SubmissionAddr, cfg.SubmissionsAddr)
	}
}

// A bad -users or -policy file stops the relay at start with the file's
// name in the error.
func TestBadFilesRefusedAtStart(t *testing.T) {
	badUsers := writeFile(t, "users", "alice:not-a-hash\n")
	badPolicy := writeFile(t, "tls_policy", "example.com ultra\n")
	for _, args := range [][]string{{"-users", badUsers}, {"-policy", badPolicy}} {
		cfg, err := parseFlags(append([]string{"-data", t.TempDir(), "-hostname", "relay.test",
			"-smtp", "127.0.0.1:0", "-submission", "127.0.0.1:0", "-submissions", "127.0.0.1:0"}, args...), &syncBuffer{})
		if err != nil {
			t.Fatal(err)
		}
		_, err = newRelay(cfg, discardLogger())
		if err == nil || !strings.Contains(err.Error(), args[0]) {
			t.Errorf("%v: got %v, want an error naming %s", args, err, args[0])
		}
	}
}

// -smarthost with credentials: all non-local mail goes to the smarthost,
// which gets AUTH over verified TLS.
func TestSmarthostWithAuthOverTLS(t *testing.T) {
	smart := transporttest.NewServer(t, transporttest.ServerConfig{Hostname: "smtp.provider.example", Cert: transporttest.GoodCert,
		Auth: map[string]string{"relay-account": "provider-pw"}})
	ca := writeFile(t, "ca.pem", string(smart.CA.CertPEM))
	pw := writeFile(t, "smarthost-pw", "provider-pw\n")
	pol := writeFile(t, "tls_policy", fmt.Sprintf("[127.0.0.1]:%d secure match=smtp.provider.example\n", smart.Port))
	tr := startRelay(t, "-require-tls", "-relay-networks", "127.0.0.1/32", "-smarthost", smart.Addr,
		"-smarthost-user", "relay-account", "-smarthost-password-file", pw, "-policy", pol, "-outbound-ca", ca)
	c := tr.dialTLS(t, "smtp")
	if err := send(c, "app@localhost", []string{"someone@anywhere.example"}, testBody); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "delivery to the smarthost", 30*time.Second, func() bool { return len(smart.Messages()) == 1 })
	m := smart.Messages()[0]
	if m.Envelope.AuthIdentity != "relay-account" || m.TLS == nil {
		t.Fatalf("smarthost got auth=%q tls=%v", m.Envelope.AuthIdentity, m.TLS != nil)
	}
}

// A smarthost that offers no STARTTLS never sees the credentials, even
// under -default-tls may: the attempt fails instead of authenticating in
// plaintext.
func TestSmarthostCredentialsNeverInPlaintext(t *testing.T) {
	smart := transporttest.NewPlainServer(t)
	pw := writeFile(t, "smarthost-pw", "provider-pw\n")
	tr := startRelay(t, "-require-tls", "-relay-networks", "127.0.0.1/32", "-smarthost", smart.Addr,
		"-smarthost-user", "relay-account", "-smarthost-password-file", pw, "-default-tls", "may", "-retry", "1h")
	c := tr.dialTLS(t, "smtp")
	if err := send(c, "app@localhost", []string{"someone@anywhere.example"}, testBody); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "an attempt", 30*time.Second, func() bool {
		msgs, err := tr.queue.List(t.Context())
		return err == nil && len(msgs) == 1 && msgs[0].Recipients[0].Attempts >= 1
	})
	wire := string(smart.Seen())
	if strings.Contains(wire, "AUTH") || strings.Contains(wire, base64.StdEncoding.EncodeToString([]byte("\x00relay-account\x00provider-pw"))) ||
		strings.Contains(wire, "provider-pw") {
		t.Fatalf("credentials sent in plaintext:\n%s", wire)
	}
	if len(smart.Messages()) != 0 {
		t.Fatal("message delivered through a smarthost without authenticating")
	}
}

// The sample policy file shipped with the example parses and says what its
// comments claim.
func TestSamplePolicyFile(t *testing.T) {
	cfg, err := parseFlags([]string{"-policy", "testdata/tls_policy.example"}, &syncBuffer{})
	if err != nil {
		t.Fatal(err)
	}
	table, err := policy.LoadTable(cfg.PolicyFile)
	if err != nil {
		t.Fatalf("sample policy: %v", err)
	}
	pol := newOutboundPolicy(cfg, table, nil, nil, discardLogger())
	for domain, want := range map[string]string{
		"partner.example":             "secure",
		"mx1.group.example":           "verify",
		"legacy.example":              "encrypt",
		"elsewhere.example":           "may",
		"[smtp.provider.example]:587": "secure",
	} {
		req, err := pol.Lookup(t.Context(), domain)
		if err != nil || req.Level.String() != want {
			t.Errorf("%s: got %v (%v), want %s", domain, req, err, want)
		}
	}
	req, _ := pol.Lookup(t.Context(), "legacy.example")
	if req.OnFailure != policy.Bounce {
		t.Errorf("legacy.example: on failure %v", req.OnFailure)
	}
}

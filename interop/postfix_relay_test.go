package interop

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/ndr"
	"github.com/mailtls/mailtls/transport/transporttest"
)

// The tests below drive the built examples/relay binary (startRelayProc)
// against Postfix 3.x run from private configuration directories on
// loopback ports: the relay delivers to a TLS-enabled Postfix smtpd; a
// Postfix instance relaying through the relay with smtp_tls_security_level
// = encrypt gets its mail accepted; a smtp-sink without TLS gets nothing
// under an encrypt policy and the sender gets the DSN (RFC 3464).

const relayPassword = "interop-pw-7d1"

// TestPostfixRelayDeliversToTLSSmtpd submits a message to the relay over
// STARTTLS + AUTH on the submission port for example.test, which -route
// sends to a private Postfix smtpd with TLS (certificate from a test CA
// given to the relay with -outbound-ca, policy "secure
// match=mx.example.test" for the next hop). Postfix's maillog shows the
// session from the relay under TLS 1.3, the message queued with the
// Message-ID we sent, and delivered (to its discard transport); the relay
// logs the attempt as delivered over verified TLS 1.3 with the cipher
// Postfix logged.
func TestPostfixRelayDeliversToTLSSmtpd(t *testing.T) {
	pf := startPostfix(t)
	ca := writeCAFile(t, pf.ca.CertPEM)
	pol := filepath.Join(t.TempDir(), "tls_policy")
	if err := os.WriteFile(pol, fmt.Appendf(nil, "[%s]:%s secure match=mx.example.test\n",
		strings.Split(pf.addr, ":")[0], strings.Split(pf.addr, ":")[1]), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startRelayProc(t, "alice", relayPassword, "-route", "example.test="+pf.addr, "-policy", pol,
		"-outbound-ca", ca, "-default-tls", "verify", "-on-tls-failure", "bounce")

	tok := token()
	msgID := tok + "@submit.interop.test"
	msg := "From: alice@localhost\r\nTo: user@example.test\r\nSubject: relay to postfix\r\nMessage-ID: <" + msgID + ">\r\n\r\n" +
		"body " + tok + "\r\n"
	c := relayClient(t, p, p.submission)
	relaySend(t, c, "alice", relayPassword, "alice@localhost", "user@example.test", msg)

	// Postfix names the queue file by the Message-ID it received.
	m, log := pf.waitLogMatch(regexp.MustCompile(`postfix/cleanup\[\d+\]: ([0-9A-F]+): message-id=<` + regexp.QuoteMeta(msgID) + `>`))
	if m == nil {
		t.Fatalf("Postfix never queued the message:\n%s\nrelay log:\n%s", log, p.log.String())
	}
	qid := m[1]
	m, log = pf.waitLogMatch(regexp.MustCompile(regexp.QuoteMeta(qid) + `: to=<user@example\.test>, relay=none, .*status=sent \(([^)]*)\)`))
	if m == nil {
		t.Fatalf("Postfix did not deliver %s:\n%s", qid, log)
	}
	t.Logf("Postfix: %s: to=<user@example.test> status=sent (%s)", qid, m[1])
	if !strings.Contains(log, qid+": from=<alice@localhost>") {
		t.Errorf("Postfix log lacks %s: from=<alice@localhost>:\n%s", qid, log)
	}

	// The smtpd session that queued qid: its lines from "connect from" to
	// "disconnect from", by the smtpd PID that logged "qid: client=".
	// The relay may keep the connection open a little after the 250, so
	// wait for the session's disconnect line.
	sess := smtpdSession(log, qid)
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(sess, "disconnect from") && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		log = pf.log()
		sess = smtpdSession(log, qid)
	}
	if sess == "" {
		t.Fatalf("no smtpd session for %s:\n%s", qid, log)
	}
	tlsRe := regexp.MustCompile(`(Anonymous|Untrusted|Trusted|Verified) TLS connection established from localhost\[127\.0\.0\.1\]: (TLSv1\.[0-3]) with cipher (\S+)`)
	tm := tlsRe.FindStringSubmatch(sess)
	if tm == nil {
		t.Fatalf("the session that queued %s was not under TLS:\n%s", qid, sess)
	}
	t.Logf("Postfix: %s", tm[0])
	if tm[2] != "TLSv1.3" {
		t.Errorf("Postfix logged %s, want TLSv1.3", tm[2])
	}
	dm := regexp.MustCompile(`disconnect from localhost\[127\.0\.0\.1\] (.*)`).FindStringSubmatch(sess)
	// Postfix's smtpd offers PIPELINING and CHUNKING: the relay sends
	// the transaction in one flight ending with BDAT (RFC 3030).
	if dm == nil || !strings.Contains(dm[1], "starttls=1") || !strings.Contains(dm[1], "mail=1") || !strings.Contains(dm[1], "bdat=1") {
		t.Errorf("smtpd session counters: %v\n%s", dm, sess)
	} else {
		t.Logf("Postfix: %s", dm[0])
	}

	// The relay's own account of the attempt agrees with Postfix.
	rm := waitRelayLog(p, regexp.MustCompile(`msg="delivery attempt".* rcpt=user@example\.test .*tls_version=(\S+) cipher=(\S+) verified=(\S+) .*result=(\S+)`), 20*time.Second)
	if rm == nil {
		t.Fatalf("relay logged no delivery attempt:\n%s", p.log.String())
	}
	t.Logf("relay: %s", rm[0])
	if rm[1] != "TLSv1.3" || rm[2] != tm[3] || rm[3] != "true" || rm[4] != "delivered" {
		t.Errorf("relay attempt tls_version=%s cipher=%s verified=%s result=%s; want TLSv1.3, Postfix's cipher %s, true, delivered",
			rm[1], rm[2], rm[3], rm[4], tm[3])
	}
}

// smtpdSession returns the log lines of the smtpd session that received
// queue id qid: the lines of the smtpd process that logged "qid: client="
// from its last "connect from" before that line through the next
// "disconnect from".
func smtpdSession(log, qid string) string {
	lines := strings.Split(log, "\n")
	pidRe := regexp.MustCompile(`postfix/smtpd\[(\d+)\]: `)
	at := -1
	pid := ""
	for i, l := range lines {
		if strings.Contains(l, qid+": client=") {
			if m := pidRe.FindStringSubmatch(l); m != nil {
				at, pid = i, m[1]
			}
			break
		}
	}
	if at < 0 {
		return ""
	}
	tag := "postfix/smtpd[" + pid + "]: "
	start := -1
	for i := at; i >= 0; i-- {
		if strings.Contains(lines[i], tag+"connect from ") {
			start = i
			break
		}
	}
	if start < 0 {
		return ""
	}
	var out []string
	for i := start; i < len(lines); i++ {
		if !strings.Contains(lines[i], tag) {
			continue
		}
		out = append(out, lines[i])
		if strings.Contains(lines[i], tag+"disconnect from ") {
			break
		}
	}
	return strings.Join(out, "\n")
}

// TestPostfixRelayPostfixClientThroughRelay has a private Postfix instance
// with relayhost = [127.0.0.1]:<relay MX port> and smtp_tls_security_level
// = encrypt send a message (submitted with its sendmail -C DIR) to a local
// domain of the relay, which runs with -require-tls. The relay stores it
// in the recipient's Maildir with a Received header recording ESMTPS over
// TLS 1.3 from Postfix's EHLO name; Postfix logs the TLS 1.3 connection to
// the relay and status=sent with the relay's "queued as" id, which is the
// id the relay logged for the stored message.
func TestPostfixRelayPostfixClientThroughRelay(t *testing.T) {
	p := startRelayProc(t, "alice", relayPassword, "-require-tls", "-local-domains", "local.test,localhost")
	pfc := startPostfixClient(t, p.smtp, p.cert)

	tok := token()
	msgID := tok + "@pfclient.example.test"
	msg := "From: pf-sender@example.test\nTo: bob@local.test\nSubject: through the relay\nMessage-ID: <" + msgID + ">\n\n" +
		"body " + tok + "\n"
	postfixSendmail(t, pfc, "pf-sender@example.test", "bob@local.test", msg)

	stored := waitMaildir(t, p, "bob@local.test", tok, 60*time.Second)
	if stored == "" {
		t.Fatalf("message not in bob@local.test's Maildir\npostfix log:\n%s\nrelay log:\n%s", pfc.log(), p.log.String())
	}
	mustContain(t, "stored message", stored, "Return-Path: <pf-sender@example.test>",
		"Received: from pfclient.example.test", "(using TLSv1.3 with cipher TLS_", "with ESMTPS id", "by pfclient.example.test (Postfix", "body "+tok)
	if strings.Contains(stored, "ESMTPSA") {
		t.Errorf("Postfix did not authenticate, yet the Received header says ESMTPSA:\n%s", stored)
	}

	m, log := pfc.waitLogMatch(regexp.MustCompile(`([0-9A-F]+): message-id=<` + regexp.QuoteMeta(msgID) + `>`))
	if m == nil {
		t.Fatalf("Postfix never queued the message:\n%s", log)
	}
	qid := m[1]
	relayPort := strings.Split(p.smtp, ":")[1]
	sent := regexp.MustCompile(regexp.QuoteMeta(qid) + `: to=<bob@local\.test>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:` + relayPort +
		`, .*status=sent \(250 ([^)]*)\)`)
	m, log = pfc.waitLogMatch(sent)
	if m == nil {
		t.Fatalf("Postfix did not log status=sent for %s:\n%s", qid, log)
	}
	t.Logf("Postfix: %s", m[0])
	tm := regexp.MustCompile(`(Anonymous|Untrusted|Trusted|Verified) TLS connection established to 127\.0\.0\.1\[127\.0\.0\.1\]:` + relayPort +
		`: (TLSv1\.[0-3]) with cipher (\S+)`).FindStringSubmatch(log)
	if tm == nil {
		t.Fatalf("Postfix logged no TLS connection to the relay:\n%s", log)
	}
	t.Logf("Postfix: %s", tm[0])
	if tm[2] != "TLSv1.3" || !strings.Contains(stored, "(using TLSv1.3 with cipher "+tm[3]) {
		t.Errorf("Postfix logged %s %s; the relay's Received header disagrees or it is not TLS 1.3:\n%s", tm[2], tm[3], stored)
	}
	// smtp_tls_CAfile holds the relay's certificate, so the chain verdict
	// is "Trusted" (encrypt does not check the name, hence not "Verified").
	if tm[1] != "Trusted" {
		t.Errorf("Postfix's verdict on the relay's certificate is %s, want Trusted", tm[1])
	}
	// The relay's 250 names its id; the relay logged the stored message
	// under that id.
	idm := regexp.MustCompile(`queued as (\S+)`).FindStringSubmatch(m[1])
	if idm == nil {
		t.Fatalf("relay's 250 reply carries no id: %q", m[1])
	}
	if !regexp.MustCompile(`msg="message stored" id=` + regexp.QuoteMeta(idm[1]) + ` from=pf-sender@example\.test local=1`).MatchString(p.log.String()) {
		t.Errorf("relay log has no stored line for id %s:\n%s", idm[1], p.log.String())
	}
}

// TestPostfixRelaySmtpSinkEncryptBounces routes sink.test to Postfix's
// smtp-sink, which offers no STARTTLS, under the policy table entry
// "sink.test encrypt on-failure=bounce". A client in -relay-networks
// relays a message from sender@localhost over STARTTLS on the MX port:
// smtp-sink sees the relay's EHLO and nothing else (no MAIL, no body, no
// dump file), the relay logs one failed attempt with
// tls_failure=starttls-not-supported, and the sender's Maildir receives
// the DSN, which ndr.Parse reads as Action failed, Status 5.7.4 for
// user@sink.test. Control: the same smtp-sink behind a "may" entry
// receives a message, so the observation would have caught a leak.
func TestPostfixRelaySmtpSinkEncryptBounces(t *testing.T) {
	sink := startSmtpSink(t)
	pol := filepath.Join(t.TempDir(), "tls_policy")
	if err := os.WriteFile(pol, []byte("sink.test encrypt on-failure=bounce\nsink-may.test may\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startRelayProc(t, "alice", relayPassword, "-require-tls", "-relay-networks", "127.0.0.0/8",
		"-route", "sink.test="+sink.addr, "-route", "sink-may.test="+sink.addr, "-policy", pol)

	tok := token()
	msg := "From: sender@localhost\r\nTo: user@sink.test\r\nSubject: must not leak\r\nMessage-ID: <" + tok + "@localhost>\r\n\r\n" +
		"secret body " + tok + "\r\n"
	c := relayClient(t, p, p.smtp)
	relaySend(t, c, "", "", "sender@localhost", "user@sink.test", msg)

	dsnText := waitMaildir(t, p, "sender@localhost", tok, 60*time.Second)
	if dsnText == "" {
		t.Fatalf("no DSN in sender@localhost's Maildir\nrelay log:\n%s\nsmtp-sink:\n%s", p.log.String(), sink.output())
	}
	rep, err := ndr.Parse(strings.NewReader(dsnText))
	if err != nil {
		t.Fatalf("ndr.Parse: %v\n%s", err, dsnText)
	}
	if len(rep.Recipients) != 1 {
		t.Fatalf("DSN has %d recipients:\n%s", len(rep.Recipients), dsnText)
	}
	r := rep.Recipients[0]
	t.Logf("DSN: Final-Recipient %s, Action %s, Status %s, Diagnostic %q", r.FinalRecipient, r.Action, r.Status, r.DiagnosticCode)
	if r.Action != ndr.ActionFailed || r.Status != "5.7.4" || !strings.HasSuffix(r.FinalRecipient, "user@sink.test") {
		t.Errorf("DSN recipient %+v, want failed 5.7.4 user@sink.test", r)
	}
	if rep.ReportingMTA != "relay.test" && !strings.HasSuffix(rep.ReportingMTA, "relay.test") {
		t.Errorf("Reporting-MTA %q, want relay.test", rep.ReportingMTA)
	}
	mustContain(t, "DSN", dsnText, "Return-Path: <>", "To: sender@localhost")

	am := waitRelayLog(p, regexp.MustCompile(`msg="delivery attempt".* rcpt=user@sink\.test .*tls_version=(\S+) .*result=(\S+) .*tls_failure=(\S+)`), 10*time.Second)
	if am == nil {
		t.Fatalf("relay logged no failed attempt:\n%s", p.log.String())
	}
	t.Logf("relay: %s", am[0])
	if am[1] != "none" || am[2] != "failed" || am[3] != "starttls-not-supported" {
		t.Errorf("attempt tls_version=%s result=%s tls_failure=%s, want none failed starttls-not-supported", am[1], am[2], am[3])
	}
	if n := strings.Count(p.log.String(), "rcpt=user@sink.test"); n != 1 {
		t.Errorf("%d attempt lines for user@sink.test, want 1 (bounce at once, no retry):\n%s", n, p.log.String())
	}

	// smtp-sink's -v log reaches us through a pipe; wait for the EHLO.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(sink.output(), "EHLO relay.test") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // and for anything after it
	out := sink.output()
	if !strings.Contains(out, "EHLO relay.test") {
		t.Fatalf("smtp-sink never saw the relay's EHLO; the test proves nothing:\n%s", out)
	}
	if strings.Contains(strings.ToUpper(out), "MAIL FROM") || strings.Contains(strings.ToUpper(out), "RCPT TO") || strings.Contains(out, tok) {
		t.Errorf("smtp-sink saw the transaction in plaintext:\n%s", out)
	}
	if files := sink.dumps(t); len(files) != 0 {
		t.Errorf("smtp-sink dumped %d messages", len(files))
	}

	// Control: "may" to the same smtp-sink delivers in plaintext, and
	// both observers see it.
	tok2 := token()
	msg2 := "From: sender@localhost\r\nTo: user@sink-may.test\r\nSubject: may\r\n\r\nplain body " + tok2 + "\r\n"
	c = relayClient(t, p, p.smtp)
	relaySend(t, c, "", "", "sender@localhost", "user@sink-may.test", msg2)
	// smtp-sink creates the dump file before it has written the body:
	// wait for the body, not the file.
	dumped := func() bool {
		files := sink.dumps(t)
		if len(files) != 1 {
			return false
		}
		b, _ := os.ReadFile(files[0])
		return strings.Contains(string(b), tok2)
	}
	deadline = time.Now().Add(30 * time.Second)
	for !dumped() && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if files := sink.dumps(t); len(files) != 1 || !dumped() {
		t.Fatalf("control: smtp-sink dumped %d messages, want 1 holding the body\nsmtp-sink:\n%s\nrelay log:\n%s", len(files), sink.output(), p.log.String())
	}
	if !strings.Contains(strings.ToUpper(sink.output()), "MAIL FROM:<SENDER@LOCALHOST>") {
		t.Errorf("control: smtp-sink -v did not log the MAIL command:\n%s", sink.output())
	}
}

// TestPostfixRelayPostfixClientEncryptEnforced is the control of
// TestPostfixRelayPostfixClientThroughRelay: the same Postfix client
// configuration pointed at smtp-sink, which offers no STARTTLS, defers the
// message ("TLS is required, but was not offered") and sends no MAIL, so
// the TLS Postfix used towards the relay was required by
// smtp_tls_security_level = encrypt, not merely opportunistic.
func TestPostfixRelayPostfixClientEncryptEnforced(t *testing.T) {
	sink := startSmtpSink(t)
	ca := writeCAFile(t, transporttest.MustCA("unused CA").CertPEM)
	pfc := startPostfixClient(t, sink.addr, ca)
	tok := token()
	postfixSendmail(t, pfc, "pf-sender@example.test", "bob@local.test",
		"From: pf-sender@example.test\nTo: bob@local.test\nSubject: control\nMessage-ID: <"+tok+"@pfclient.example.test>\n\nbody "+tok+"\n")
	m, log := pfc.waitLogMatch(regexp.MustCompile(`[0-9A-F]+: to=<bob@local\.test>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:\d+, .*status=deferred \((TLS is required, but was not offered[^)]*)\)`))
	if m == nil {
		t.Fatalf("Postfix did not defer for lack of STARTTLS:\n%s\nsmtp-sink:\n%s", log, sink.output())
	}
	t.Logf("Postfix: %s", m[0])
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(sink.output(), "EHLO pfclient.example.test") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	out := sink.output()
	if !strings.Contains(out, "EHLO pfclient.example.test") {
		t.Fatalf("smtp-sink never saw Postfix's EHLO:\n%s", out)
	}
	if strings.Contains(strings.ToUpper(out), "MAIL FROM") || strings.Contains(out, tok) || len(sink.dumps(t)) != 0 {
		t.Errorf("Postfix sent the transaction in plaintext under encrypt:\n%s", out)
	}
}

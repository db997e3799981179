package interop

import (
	"bytes"
	"context"
	"net"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/foxcpp/go-mockdns"

	"github.com/mailtls/mailtls/policy"
	"github.com/mailtls/mailtls/transport"
	"github.com/mailtls/mailtls/transport/transporttest"
)

const (
	postfixClientName = "client.example.org"
	postfixBodyMarker = "INTEROP-BODY-5c1e"
)

var postfixBody = []byte("From: sender@example.org\r\nTo: user@example.test\r\nSubject: interop\r\n\r\n" +
	postfixBodyMarker + "\r\n")

// TestPostfixSmtpdTLSDelivery delivers under Verify to a real Postfix smtpd
// with TLS, run from a private configuration directory on a loopback port,
// and checks Postfix's own log: a TLS connection was established, the
// message was queued with the id the Connector reported, and delivered
// (to Postfix's discard transport).
func TestPostfixSmtpdTLSDelivery(t *testing.T) {
	pf := startPostfix(t)
	c := postfixConnector(t, pf.addr, policy.Fixed{Level: policy.Verify}, pf.ca)
	res := postfixDeliver(t, c)
	r := res.Recipients[0]
	if r.Status != transport.Delivered {
		t.Fatalf("status %v, reply %v\npostfix log:\n%s", r.Status, r.Reply, pf.log())
	}
	if r.TLS == nil || !r.TLS.Verified || r.TLS.Version < 0x0303 {
		t.Fatalf("TLS = %+v, want verified TLS 1.2+", r.TLS)
	}
	m := regexp.MustCompile(`queued as ([0-9A-Za-z]+)`).FindStringSubmatch(r.Reply.Message)
	if m == nil {
		t.Fatalf("Postfix reply %q carries no queue id", r.Reply.Message)
	}
	qid := m[1]
	log := pf.waitLog(t, qid+": to=<user@example.test>")
	tlsLine := regexp.MustCompile(`(Anonymous|Untrusted|Trusted|Verified) TLS connection established from [^\n]*: (TLSv1\.[23])`).FindStringSubmatch(log)
	if tlsLine == nil {
		t.Fatalf("Postfix did not log a TLS connection:\n%s", log)
	}
	t.Logf("Postfix: %s; queued as %s", tlsLine[0], qid)
	if tlsLine[2] != r.TLS.VersionName() {
		t.Errorf("Postfix logged %s, Connector reported %s", tlsLine[2], r.TLS.VersionName())
	}
	if !strings.Contains(log, qid+": client=") {
		t.Errorf("Postfix log lacks the smtpd line for %s:\n%s", qid, log)
	}
	if !regexp.MustCompile(regexp.QuoteMeta(qid) + `: to=<user@example.test>.*status=sent`).MatchString(log) {
		t.Errorf("Postfix did not deliver %s:\n%s", qid, log)
	}
	if strings.Contains(strings.ToLower(log), "helo=<localhost>") {
		t.Errorf("Connector introduced itself as localhost:\n%s", log)
	}
}

// TestPostfixSmtpSinkEncryptRefused delivers under Encrypt to Postfix's
// smtp-sink, which has no TLS: the result is X.7.4 and neither smtp-sink
// (its -v conversation log and -d dump files) nor a recording proxy in
// front of it sees a MAIL, RCPT or body byte. The same setup under May
// delivers, which shows that the observation would have caught a leak.
func TestPostfixSmtpSinkEncryptRefused(t *testing.T) {
	sink := startSmtpSink(t)
	proxy := transporttest.NewProxy(t, sink.addr, transporttest.Transparent)

	c := postfixConnector(t, proxy.Addr, policy.Fixed{Level: policy.Encrypt}, nil)
	res := postfixDeliver(t, c)
	r := res.Recipients[0]
	if r.Status != transport.Deferred || r.Reply == nil || r.Reply.EnhancedCode.String() != "4.7.4" ||
		r.TLSFailure != policy.FailureSTARTTLSNotSupported {
		t.Fatalf("got %v %v %q, want deferred 4.7.4 starttls-not-supported", r.Status, r.Reply, r.TLSFailure)
	}
	wire := proxy.Seen()
	if !transporttest.Contains(wire, "EHLO "+postfixClientName) {
		t.Fatalf("proxy saw no EHLO; the test proves nothing:\n%s", wire)
	}
	if transporttest.Contains(wire, "MAIL FROM", "RCPT TO", postfixBodyMarker) {
		t.Errorf("transaction sent in plaintext:\n%s", wire)
	}
	time.Sleep(200 * time.Millisecond) // let smtp-sink flush its log
	if out := sink.output(); strings.Contains(strings.ToUpper(out), "MAIL FROM") || strings.Contains(out, postfixBodyMarker) {
		t.Errorf("smtp-sink saw the transaction:\n%s", out)
	}
	if files := sink.dumps(t); len(files) != 0 {
		t.Errorf("smtp-sink dumped %d messages", len(files))
	}

	// Control: opportunistic TLS delivers in plaintext, and both observers
	// see it.
	c = postfixConnector(t, proxy.Addr, policy.Fixed{Level: policy.May}, nil)
	res = postfixDeliver(t, c)
	if res.Recipients[0].Status != transport.Delivered {
		t.Fatalf("may: %v %v\nsmtp-sink:\n%s", res.Recipients[0].Status, res.Recipients[0].Reply, sink.output())
	}
	if !transporttest.Contains(proxy.Seen(), "MAIL FROM", postfixBodyMarker) {
		t.Errorf("control: proxy did not record the plaintext transaction")
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(sink.dumps(t)) == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	files := sink.dumps(t)
	if len(files) != 1 {
		t.Fatalf("control: smtp-sink dumped %d messages, want 1\n%s", len(files), sink.output())
	}
	if b, _ := os.ReadFile(files[0]); !bytes.Contains(b, []byte(postfixBodyMarker)) {
		t.Errorf("control: dump lacks the body:\n%s", b)
	}
}

// postfixConnector delivers user@example.test to addr through fake DNS.
func postfixConnector(t *testing.T, addr string, pol policy.Policy, ca *transporttest.CA) *transport.Connector {
	c := &transport.Connector{
		Hostname: postfixClientName,
		Policy:   pol,
		Resolver: &mockdns.Resolver{Zones: map[string]mockdns.Zone{
			"example.test.":    {MX: []net.MX{{Host: "mx.example.test.", Pref: 10}}},
			"mx.example.test.": {A: []string{"192.0.2.25"}},
		}},
		Dialer:   &transporttest.Dialer{Map: map[string]string{"192.0.2.25:25": addr}},
		Timeouts: transport.ConnectorTimeouts{Connect: 5 * time.Second, Greeting: 20 * time.Second, Command: 20 * time.Second, Data: 20 * time.Second},
	}
	if ca != nil {
		c.RootCAs = ca.Pool
	}
	return c
}

func postfixDeliver(t *testing.T, c *transport.Connector) *transport.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	env := &transport.Envelope{From: "sender@example.org", Recipients: []transport.Recipient{{Address: "user@example.test"}}}
	res, err := c.Deliver(ctx, env, bytes.NewReader(postfixBody), int64(len(postfixBody)))
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// TestPostfixBehindStrippingProxy puts a STARTTLS-stripping proxy between
// the Connector and a real Postfix smtpd that offers TLS. Under Verify the
// attempt ends after EHLO: Postfix logs a session with no MAIL command and
// no TLS, and the proxy saw no transaction.
func TestPostfixBehindStrippingProxy(t *testing.T) {
	pf := startPostfix(t)
	proxy := transporttest.NewStrippingProxy(t, pf.addr)
	c := postfixConnector(t, proxy.Addr, policy.Fixed{Level: policy.Verify}, pf.ca)
	r := postfixDeliver(t, c).Recipients[0]
	if r.Status != transport.Deferred || r.Reply.EnhancedCode.String() != "4.7.4" || r.TLSFailure != policy.FailureSTARTTLSNotSupported {
		t.Fatalf("got %v %v %q", r.Status, r.Reply, r.TLSFailure)
	}
	if w := proxy.Seen(); !transporttest.Contains(w, "EHLO "+postfixClientName) ||
		transporttest.Contains(w, "MAIL FROM", "RCPT TO", postfixBodyMarker) {
		t.Errorf("proxy saw:\n%s", w)
	}
	// The first session is the readiness probe (connect, close); ours is the
	// one with commands.
	log := pf.waitLog(t, " ehlo=")
	all := regexp.MustCompile(`disconnect from \S+ (.*)`).FindAllStringSubmatch(log, -1)
	if len(all) == 0 {
		t.Fatalf("no disconnect line:\n%s", log)
	}
	m := all[len(all)-1]
	t.Logf("Postfix: %s", m[0])
	if strings.Contains(m[1], "mail=") || strings.Contains(m[1], "rcpt=") || strings.Contains(m[1], "data=") {
		t.Errorf("Postfix received a transaction: %s", m[0])
	}
	if !strings.Contains(m[1], "ehlo=1") || !strings.Contains(m[1], "quit=1") {
		t.Errorf("Postfix did not see our EHLO: %s", m[0])
	}
	if strings.Contains(log, "TLS connection established") {
		t.Errorf("a TLS connection was logged through a stripping proxy:\n%s", log)
	}
}

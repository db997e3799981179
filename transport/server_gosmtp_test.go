package transport

import (
	"strings"
	"testing"

	sasl "github.com/emersion/go-sasl"
	smtp "github.com/emersion/go-smtp"

	"github.com/mailtls/mailtls/ndr"
)

// TestGoSMTPClient: go-smtp's client, an SMTP implementation independent
// of this package, delivers through STARTTLS, AUTH PLAIN, the MAIL and RCPT
// parameters (SIZE, SMTPUTF8, REQUIRETLS, RET, ENVID, NOTIFY, ORCPT), the
// bare "<postmaster>" and a dot-stuffed body; it reads the EHLO reply and the queue id as it should.
func TestGoSMTPClient(t *testing.T) {
	ts, _ := authServer(t, KindSubmission, 3)
	c, err := smtp.DialStartTLS(ts.addr, ts.pki.clientConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, ext := range []string{"PIPELINING", "8BITMIME", "CHUNKING", "SMTPUTF8", "REQUIRETLS", "DSN"} {
		if ok, _ := c.Extension(ext); !ok {
			t.Errorf("extension %s not seen", ext)
		}
	}
	if size, ok := c.MaxMessageSize(); !ok || size != DefaultMaxMessageBytes {
		t.Errorf("SIZE %d %v", size, ok)
	}
	if err := c.Auth(sasl.NewPlainClient("", "alice", "wonderland")); err != nil {
		t.Fatalf("AUTH: %v", err)
	}
	err = c.Mail("alice@example.org", &smtp.MailOptions{Size: 50, UTF8: true, RequireTLS: true,
		Return: smtp.DSNReturnHeaders, EnvelopeID: "id=1"})
	if err != nil {
		t.Fatalf("MAIL: %v", err)
	}
	if err := c.Rcpt("postmaster", nil); err != nil { // RFC 5321 §4.5.1, under TLS
		t.Fatalf("RCPT TO:<postmaster>: %v", err)
	}
	err = c.Rcpt("r@example.net", &smtp.RcptOptions{Notify: []smtp.DSNNotify{smtp.DSNNotifyFailure, smtp.DSNNotifyDelayed},
		OriginalRecipientType: smtp.DSNAddressTypeRFC822, OriginalRecipient: "r+x@example.net"})
	if err != nil {
		t.Fatalf("RCPT: %v", err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatalf("DATA: %v", err)
	}
	w.Write([]byte("Subject: go-smtp\r\n\r\n.leading dot\r\n"))
	resp, err := w.CloseWithResponse()
	if err != nil {
		t.Fatalf("end of DATA: %v", err)
	}
	msgs := ts.rec.all()
	if len(msgs) != 1 {
		t.Fatalf("%d messages", len(msgs))
	}
	env := msgs[0].env
	if !strings.Contains(resp.StatusText, env.ID) {
		t.Errorf("reply %q does not name %s", resp.StatusText, env.ID)
	}
	if env.From != "alice@example.org" || env.Size != 50 || !env.SMTPUTF8 || !env.RequireTLS || env.Return != ndr.ReturnHeaders ||
		env.EnvelopeID != "id=1" || env.AuthIdentity != "alice" || len(env.Recipients) != 2 || env.Recipients[0].Address != "postmaster@mx.test" ||
		env.Recipients[1].Notify.String() != "FAILURE,DELAY" || env.Recipients[1].ORCPT != "rfc822;r+x@example.net" {
		t.Errorf("envelope %+v %+v", env, env.Recipients)
	}
	if !strings.HasSuffix(msgs[0].body, "\r\nSubject: go-smtp\r\n\r\n.leading dot\r\n") {
		t.Errorf("body %q", msgs[0].body)
	}
	if err := c.Quit(); err != nil {
		t.Errorf("QUIT: %v", err)
	}
}

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	smtp "github.com/emersion/go-smtp"
	"golang.org/x/crypto/bcrypt"

	"github.com/mailtls/mailtls/ndr"
)

// writeUsersN writes a -users file with one bcrypt line per user, all with
// password pass.
func writeUsersN(t *testing.T, pass string, users ...string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, u := range users {
		b.WriteString(u + ":" + string(h) + "\n")
	}
	return writeFile(t, "users", b.String())
}

// waitMaildir waits until addr's Maildir new/ holds at least n messages and
// returns them. Local delivery runs from the queue, after the 250.
func waitMaildir(t *testing.T, tr *testRelay, addr string, n int) []string {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d message(s) in %s's Maildir", n, addr), 20*time.Second, func() bool {
		return len(maildirFiles(t, tr.cfg, addr, "new")) >= n
	})
	return maildirFiles(t, tr.cfg, addr, "new")
}

// One recipient whose Maildir cannot be written does not fail the message
// for the others (Postfix's per-recipient results): three local recipients,
// the middle one's Maildir is broken (a file where its directory should
// be). The client, which retries on 4xx as any client does, gets 250 at
// once; alice and carol get exactly one copy each; bob is retried by the
// queue and, once the (short) queue lifetime is over, reported to the
// sender in a "failed" DSN. Nothing is lost and nothing is duplicated.
func TestLocalDeliveryPerRecipient(t *testing.T) {
	users := writeUsersN(t, "pw", "sender", "alice", "bob", "carol")
	tr := startRelay(t, "-users", users, "-retry", "100ms", "-max-queue-age", "2s")
	broken := filepath.Join(tr.cfg.DataDir, "mail", "bob@localhost")
	if err := os.WriteFile(broken, []byte("not a Maildir"), 0o600); err != nil {
		t.Fatal(err)
	}
	to := []string{"alice@localhost", "bob@localhost", "carol@localhost"}
	var err error
	for try := 1; try <= 3; try++ {
		c := tr.dial(t, "smtp")
		if err = send(c, "sender@localhost", to, testBody); err == nil {
			break
		}
		if code, _ := smtpCode(t, err); code >= 500 {
			t.Fatalf("try %d: permanent refusal %v", try, err)
		}
		c.Quit()
	}
	if err != nil {
		t.Errorf("the client got a temporary failure 3 times: %v", err)
	}
	copies := func() {
		t.Helper()
		for _, a := range []string{"alice@localhost", "carol@localhost"} {
			if got := maildirFiles(t, tr.cfg, a, "new"); len(got) != 1 {
				t.Errorf("%s has %d copies, want exactly 1", a, len(got))
			}
		}
	}
	time.Sleep(500 * time.Millisecond)
	copies()
	waitDSNs(t, tr, "sender@localhost", 1)
	time.Sleep(300 * time.Millisecond) // room for a duplicate to show
	copies()
	reps, _ := waitDSNs(t, tr, "sender@localhost", 1)
	if len(reps) != 1 || len(reps[0].Recipients) != 1 {
		t.Fatalf("want 1 report about 1 recipient, got %+v", reps)
	}
	rr := reps[0].Recipients[0]
	if rr.FinalRecipient != "bob@localhost" || rr.Action != ndr.ActionFailed || !strings.HasPrefix(rr.Status, "5.") {
		t.Fatalf("report: %+v, want bob@localhost failed 5.x.x", rr)
	}
	if n := strings.Count(tr.logs.String(), "rcpt=bob@localhost"); n < 2 {
		t.Errorf("bob was tried %d times, want retries", n)
	}
}

// The same broken Maildir, repaired while the queue retries: bob then gets
// his one copy, and alice and carol still have one each.
func TestLocalDeliveryPerRecipientRepaired(t *testing.T) {
	users := writeUsersN(t, "pw", "sender", "alice", "bob", "carol")
	tr := startRelay(t, "-users", users, "-retry", "100ms")
	broken := filepath.Join(tr.cfg.DataDir, "mail", "bob@localhost")
	if err := os.WriteFile(broken, []byte("not a Maildir"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := tr.dial(t, "smtp")
	if err := send(c, "sender@localhost", []string{"alice@localhost", "bob@localhost", "carol@localhost"}, testBody); err != nil {
		t.Fatalf("DATA: %v, want 250", err)
	}
	waitFor(t, "two failed attempts for bob", 10*time.Second, func() bool {
		return strings.Count(tr.logs.String(), `msg="maildir delivery failed"`) >= 2
	})
	if err := os.Remove(broken); err != nil {
		t.Fatal(err)
	}
	waitMaildir(t, tr, "bob@localhost", 1)
	waitFor(t, "the queue to empty", 5*time.Second, func() bool {
		msgs, err := tr.queue.List(t.Context())
		return err == nil && len(msgs) == 0
	})
	for _, a := range []string{"alice@localhost", "bob@localhost", "carol@localhost"} {
		if got := maildirFiles(t, tr.cfg, a, "new"); len(got) != 1 {
			t.Errorf("%s has %d copies, want exactly 1", a, len(got))
		}
	}
	if got := maildirFiles(t, tr.cfg, "sender@localhost", "new"); len(got) != 0 {
		t.Errorf("sender got %d reports; nothing failed for good", len(got))
	}
}

// The local recipient table (Postfix local_recipient_maps): the -users
// logins in every local domain, ASCII case folded, and postmaster (RFC 5321
// §4.5.1) are accepted at RCPT; anyone else in a local domain gets
// "550 5.1.1 ... User unknown in local recipient table" before DATA.
func TestLocalRecipientTable(t *testing.T) {
	users := writeUsersN(t, "pw", "alice")
	tr := startRelay(t, "-users", users, "-local-domains", "localhost,example.test", "-recipients", writeFile(t, "none", ""))
	c := tr.dial(t, "smtp")
	if err := c.Mail("someone@example.org", nil); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"alice@localhost", "ALICE@example.test", "postmaster", "Postmaster@localhost", "postmaster@example.test", "postmaster@relay.test"} {
		if err := c.Rcpt(a, nil); err != nil {
			t.Errorf("RCPT TO:<%s>: %v, want 250", a, err)
		}
	}
	for _, a := range []string{"nobody@localhost", "bob@example.test", "alice.x@localhost", strings.Repeat("a", 300) + "@localhost"} {
		err := c.Rcpt(a, nil)
		if err == nil {
			t.Errorf("RCPT TO:<%s> accepted, want 550 5.1.1", a)
			continue
		}
		code, ec := smtpCode(t, err)
		want := "<" + a + ">: Recipient address rejected: User unknown in local recipient table"
		if se := err.(*smtp.SMTPError); code != 550 || ec != "5.1.1" || se.Message != want {
			t.Errorf("RCPT TO:<%s>: %d %s %q, want 550 5.1.1 %q", a, code, ec, se.Message, want)
		}
	}
	if entries, _ := os.ReadDir(filepath.Join(tr.cfg.DataDir, "mail")); len(entries) != 0 {
		t.Errorf("Maildirs created for refused recipients: %v", entries)
	}
}

// -recipients adds addresses (or bare local parts, valid in every local
// domain) to the table; a line it cannot read stops the start with its
// line number.
func TestRecipientsFlag(t *testing.T) {
	file := writeFile(t, "recipients", "# lists\nlist@localhost\nsales\n\n")
	tr := startRelay(t, "-recipients", file, "-local-domains", "localhost,example.test")
	c := tr.dial(t, "smtp")
	if err := c.Mail("someone@example.org", nil); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"list@localhost", "sales@localhost", "Sales@example.test"} {
		if err := c.Rcpt(a, nil); err != nil {
			t.Errorf("RCPT TO:<%s>: %v", a, err)
		}
	}
	if err := c.Rcpt("list@example.test", nil); err == nil {
		t.Error("list@example.test accepted; only list@localhost is listed")
	}

	bad := writeFile(t, "recipients", "ok\nlist@elsewhere.example\n")
	_, err := newRelay(mustParse(t, "-recipients", bad), discardLogger())
	if err == nil || !strings.Contains(err.Error(), "line 2") || !strings.Contains(err.Error(), "-recipients") {
		t.Fatalf("bad -recipients file: %v, want an error naming -recipients and line 2", err)
	}
}

func mustParse(t *testing.T, args ...string) *Config {
	t.Helper()
	base := []string{"-data", t.TempDir(), "-hostname", "relay.test",
		"-smtp", "127.0.0.1:0", "-submission", "", "-submissions", ""}
	cfg, err := parseFlags(append(base, args...), &syncBuffer{})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// With -dkim-*, the "delivered" report of a local delivery (NOTIFY=SUCCESS)
// is DKIM-signed like every other report the relay originates, and the
// signature in the sender's Maildir copy verifies.
func TestLocalDeliveredDSNDKIMSigned(t *testing.T) {
	keyFile, opts := dsnDKIMKey(t)
	users := writeUsersN(t, "pw", "sender", "user")
	tr := startRelay(t, "-users", users, "-dkim-domain", "relay.test", "-dkim-selector", "dsn", "-dkim-key", keyFile)
	c := tr.dial(t, "smtp")
	sendDSN(t, c, "sender@localhost", nil,
		[]dsnRcpt{{addr: "user@localhost", notify: []smtp.DSNNotify{smtp.DSNNotifySuccess}}}, dsnBody)
	reps, raws := waitDSNs(t, tr, "sender@localhost", 1)
	if reps[0].Recipients[0].Action != ndr.ActionDelivered {
		t.Fatalf("not a delivered report: %+v", reps[0].Recipients)
	}
	vs, err := dkim.VerifyWithOptions(strings.NewReader(raws[0]), opts)
	if err != nil || len(vs) != 1 || vs[0].Err != nil || vs[0].Domain != "relay.test" {
		t.Fatalf("delivered report not signed or not verifying: %v %+v\n%.600s", err, vs, raws[0])
	}
}

// Backscatter: an unauthenticated client of the MX listener names a third
// party as the sender and asks NOTIFY=SUCCESS for a local recipient. The
// message is delivered, but no "delivered" report goes to that third party.
// The same request from a local sender, and from an authenticated client
// with a foreign sender, is still honoured.
func TestNoSuccessBackscatter(t *testing.T) {
	// The submitting user's login is its (foreign) address, so a check
	// binding MAIL FROM to the login lets it through.
	users := writeUsersN(t, "pw", "alice@remote.example", "user")
	tr := startRelay(t, "-users", users, "-route", "remote.example=127.0.0.1:9")
	success := []smtp.DSNNotify{smtp.DSNNotifySuccess, smtp.DSNNotifyFailure}

	c := tr.dial(t, "smtp")
	sendDSN(t, c, "victim@remote.example", nil, []dsnRcpt{{addr: "user@localhost", notify: success}}, dsnBody)
	waitMaildir(t, tr, "user@localhost", 1)

	// Controls: a local sender on the MX listener, and an authenticated
	// client with a foreign sender.
	sendDSN(t, c, "alice@localhost", nil, []dsnRcpt{{addr: "user@localhost", notify: success}}, dsnBody)
	waitDSNs(t, tr, "alice@localhost", 1)
	s := tr.dialTLS(t, "submission")
	if err := auth(s, "alice@remote.example", "pw"); err != nil {
		t.Fatal(err)
	}
	sendDSN(t, s, "alice@remote.example", nil, []dsnRcpt{{addr: "user@localhost", notify: success}}, dsnBody)
	waitFor(t, "the report to the authenticated sender", 10*time.Second, func() bool {
		return reportQueuedTo(tr.logs.String(), "alice@remote.example")
	})
	if reportQueuedTo(tr.logs.String(), "victim@remote.example") {
		t.Fatalf("a success report was queued to the unauthenticated foreign sender:\n%s", tr.logs.String())
	}
	if got := maildirFiles(t, tr.cfg, "user@localhost", "new"); len(got) != 3 {
		t.Fatalf("user has %d messages, want 3", len(got))
	}
}

// reportQueuedTo reports whether the log records a report queued to addr.
func reportQueuedTo(logs, addr string) bool {
	for l := range strings.SplitSeq(logs, "\n") {
		if strings.Contains(l, "report queued") && strings.Contains(l, " to="+addr) {
			return true
		}
	}
	return false
}

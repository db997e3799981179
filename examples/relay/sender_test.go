package main

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/mailtls/mailtls/transport/queue"
)

// TestSenderLoginCheck: on both submission listeners an authenticated user
// may use as MAIL FROM only an address it owns: alice gets 553 5.7.1 for
// bob@example.org and 250 for her own alice@example.org (the default table:
// login@each local domain); a -sender-logins file adds addresses; and
// -sender-login-check=false accepts any sender.
func TestSenderLoginCheck(t *testing.T) {
	users := writeUsersN(t, "pw", "alice", "bob")
	tr := startRelay(t, "-users", users, "-local-domains", "example.org")
	for _, l := range []string{"submission", "submissions"} {
		c := tr.dialTLS(t, l)
		if err := auth(c, "alice", "pw"); err != nil {
			t.Fatal(err)
		}
		err := c.Mail("bob@example.org", nil)
		if code, ec := smtpCode(t, err); code != 553 || ec != "5.7.1" || !strings.Contains(err.Error(), "not owned by user alice") {
			t.Errorf("%s: alice as bob@example.org: %v, want 553 5.7.1 not owned", l, err)
		}
		if err := send(c, "Alice@Example.org", []string{"bob@example.org"}, testBody); err != nil {
			t.Errorf("%s: alice as her own address: %v", l, err)
		}
		if err := c.Reset(); err != nil {
			t.Fatal(err)
		}
		if err := c.Mail("alice@relay.test", nil); err != nil { // -hostname is local too
			t.Errorf("%s: alice as alice@relay.test: %v", l, err)
		}
	}
	if !strings.Contains(tr.logs.String(), "sender refused") || !strings.Contains(tr.logs.String(), "not owned") {
		t.Errorf("no log line for the refusal")
	}

	// The MX listener does not bind senders: an unauthenticated client
	// there may send as anyone to a local recipient.
	c := tr.dialTLS(t, "smtp")
	if err := send(c, "bob@example.org", []string{"alice@example.org"}, testBody); err != nil {
		t.Errorf("MX listener: %v", err)
	}

	table := writeFile(t, "senders", "sales@example.org alice\n@partner.example alice,bob\n")
	tr = startRelay(t, "-users", users, "-local-domains", "example.org", "-sender-logins", table)
	c = tr.dialTLS(t, "submission")
	if err := auth(c, "alice", "pw"); err != nil {
		t.Fatal(err)
	}
	for from, ok := range map[string]bool{"sales@example.org": true, "x@partner.example": true, "bob@example.org": false} {
		err := c.Mail(from, nil)
		if (err == nil) != ok {
			t.Errorf("-sender-logins: alice as %s: %v, want accepted %v", from, err, ok)
		}
		c.Reset()
	}

	tr = startRelay(t, "-users", users, "-local-domains", "example.org", "-sender-login-check=false")
	c = tr.dialTLS(t, "submissions")
	if err := auth(c, "alice", "pw"); err != nil {
		t.Fatal(err)
	}
	if err := send(c, "bob@example.org", []string{"bob@example.org"}, testBody); err != nil {
		t.Errorf("-sender-login-check=false: alice as bob@example.org: %v", err)
	}
}

// TestSenderLoginCheckMXAuth: the MX listener offers AUTH too (the limits
// are shared); a user who logs in there is bound to the login as on the
// submission listeners, or the check would be bypassed by submitting on
// port 25. Unauthenticated mail on the MX listener is not bound.
func TestSenderLoginCheckMXAuth(t *testing.T) {
	users := writeUsersN(t, "pw", "alice", "bob")
	tr := startRelay(t, "-users", users, "-local-domains", "example.org")
	c := tr.dialTLS(t, "smtp")
	if err := auth(c, "alice", "pw"); err != nil {
		t.Fatal(err)
	}
	err := c.Mail("bob@example.org", nil)
	if code, ec := smtpCode(t, err); code != 553 || ec != "5.7.1" {
		t.Errorf("MX listener, logged in as alice, MAIL FROM bob@example.org: %v, want 553 5.7.1", err)
	}
	c.Reset()
	if err := send(c, "alice@example.org", []string{"bob@example.org"}, testBody); err != nil {
		t.Errorf("MX listener, alice as herself: %v", err)
	}
	c = tr.dialTLS(t, "smtp")
	if err := send(c, "bob@example.org", []string{"alice@example.org"}, testBody); err != nil {
		t.Errorf("MX listener, no AUTH: %v", err)
	}
}

// TestQueueMinFreeAtMail: with -queue-minfree above the real free space of
// the data directory's file system, MAIL gets 452 4.3.1 over a real TLS
// session on the MX and submission listeners, before any recipient or
// data, and nothing is queued.
func TestQueueMinFreeAtMail(t *testing.T) {
	free, err := queue.DiskFree(t.TempDir())
	if err != nil {
		t.Skip(err)
	}
	users := writeUsersN(t, "pw", "alice")
	tr := startRelay(t, "-users", users, "-queue-minfree", fmt.Sprint(free+1<<40))
	for _, l := range []string{"smtp", "submission"} {
		c := tr.dialTLS(t, l)
		if l != "smtp" {
			if err := auth(c, "alice", "pw"); err != nil {
				t.Fatal(err)
			}
		}
		err := c.Mail("alice@localhost", nil)
		if code, ec := smtpCode(t, err); code != 452 || ec != "4.3.1" || !strings.Contains(err.Error(), "Insufficient system storage") {
			t.Errorf("%s: MAIL with the spool short of space: %v, want 452 4.3.1", l, err)
		}
	}
	if msgs, err := tr.queue.List(context.Background()); err != nil || len(msgs) != 0 {
		t.Errorf("queue after refused MAILs: %d messages, %v", len(msgs), err)
	}
	// A floor that is met accepts.
	tr = startRelay(t, "-queue-minfree", "1")
	if err := send(tr.dialTLS(t, "smtp"), "x@example.net", []string{"user@localhost"}, testBody); err != nil {
		t.Errorf("-queue-minfree 1: %v", err)
	}
}

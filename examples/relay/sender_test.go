package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailtls/mailtls/transport"
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
	if !strings.Contains(tr.logs.String(), "sender login mismatch") {
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

func TestSenderLoginsDefault(t *testing.T) {
	cfg := &Config{Hostname: "Relay.Test", LocalDomains: []string{"example.org", "relay.test"}}
	m, err := senderLogins(cfg, []string{"alice", "Alice", "carol@elsewhere.example", "we ird"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		login, from string
		ok          bool
	}{
		{"alice", "alice@example.org", true},
		{"alice", "ALICE@relay.test", true},
		{"Alice", "alice@example.org", true},
		{"alice", "alice@other.example", false},
		{"alice", "bob@example.org", false},
		{"alice", "", true},
		{"carol@elsewhere.example", "carol@elsewhere.example", true},
		{"carol@elsewhere.example", "carol@example.org", false},
		{"we ird", "we ird@example.org", false},
	} {
		if got := m.Owns(tc.login, tc.from); got != tc.ok {
			t.Errorf("default table: %q owns %q = %v, want %v", tc.login, tc.from, got, tc.ok)
		}
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

// fakeQueue is an enqueuer and SenderChecker that answers CheckSender with
// err.
type fakeQueue struct{ err error }

func (fakeQueue) Enqueue(context.Context, *transport.Envelope, io.Reader) (string, error) {
	return "", errors.New("not used")
}
func (f fakeQueue) CheckSender(context.Context, *transport.Envelope) error { return f.err }

// TestInboundCheckSenderSpace: the relay refuses MAIL when the queue does,
// and on its own when the Maildir root is short of space, even if the
// queue is not; -queue-minfree < 0 turns its own check off.
func TestInboundCheckSenderSpace(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "mail"), 0o700); err != nil {
		t.Fatal(err)
	}
	free, err := queue.DiskFree(dir)
	if err != nil {
		t.Skip(err)
	}
	full := queue.CheckFreeSpace(0, 1, 0)
	for _, tc := range []struct {
		name     string
		queueErr error
		minFree  int64
		size     int64
		want     error
	}{
		{"room everywhere", nil, 1, 0, nil},
		{"default floor", nil, 0, 0, nil},
		{"queue short", full, 1, 0, queue.ErrInsufficientStorage},
		{"Maildir root short", nil, free + 1<<40, 0, queue.ErrInsufficientStorage},
		{"SIZE= does not fit the Maildir root", nil, 1, free + 1<<40, queue.ErrInsufficientStorage},
		{"own check off", nil, -1, free + 1<<40, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &inbound{cfg: &Config{DataDir: dir, QueueMinFree: tc.minFree, Limits: &transport.Server{MaxMessageBytes: 1 << 20}}, queue: fakeQueue{tc.queueErr}, log: discardLogger()}
			err := h.CheckSender(context.Background(), &transport.Envelope{From: "a@example.org", Size: tc.size})
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("CheckSender = %v, want %v", err, tc.want)
			}
		})
	}
}

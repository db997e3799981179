package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	smtp "github.com/emersion/go-smtp"

	"github.com/mailtls/mailtls/transport"
	"github.com/mailtls/mailtls/transport/queue"
	"github.com/mailtls/mailtls/transport/queue/admin"
	"github.com/mailtls/mailtls/transport/transporttest"
)

// queueCmd runs "relay queue -data DIR args..." in-process and returns its
// exit status, stdout and stderr.
func (tr *testRelay) queueCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := queueMain(t.Context(), append([]string{"-data", tr.cfg.DataDir}, args...), &out, &errOut)
	return code, out.String(), errOut.String()
}

// mustQueueCmd is queueCmd that fails the test unless the command succeeds.
func (tr *testRelay) mustQueueCmd(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errOut := tr.queueCmd(t, args...)
	if code != 0 {
		t.Fatalf("relay queue %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

func (tr *testRelay) message(t *testing.T, id string) *queue.Message {
	t.Helper()
	m, err := tr.queue.Get(t.Context(), id)
	if err != nil {
		t.Fatalf("queue: %v", err)
	}
	return m
}

// inAnHour matches the next attempt of a recipient deferred under
// "-retry 1h" moments ago.
var inAnHour = regexp.MustCompile(`\bin (1h|59m[0-9]+s)\b`)

// closedPort returns a loopback port nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

// "relay queue" against a running relay: one message to a destination
// that refuses connections, one to a TLS partner that defers at RCPT
// until the test lets it accept. Each command's table and JSON output is
// checked, and its effect on the queue: retry moves NextAttempt (an
// attempt is made at once), hold keeps a message from a partner that
// accepts, release delivers it, remove deletes.
func TestQueueCommands(t *testing.T) {
	var down atomic.Bool
	down.Store(true)
	partner := transporttest.NewServer(t, transporttest.ServerConfig{Cert: transporttest.GoodCert,
		Rcpt: func(string) error {
			if down.Load() {
				return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "partner busy"}
			}
			return nil
		}})
	ca := writeFile(t, "ca.pem", string(partner.CA.CertPEM))
	pol := writeFile(t, "tls_policy", fmt.Sprintf("[127.0.0.1]:%d secure match=%s\n", partner.Port, partner.Hostname))
	tr := startRelay(t, "-relay-networks", "127.0.0.0/8", "-retry", "1h", "-policy", pol, "-outbound-ca", ca,
		"-route", "partner.example=127.0.0.1:"+fmt.Sprint(partner.Port),
		"-route", "dead.example=127.0.0.1:"+fmt.Sprint(closedPort(t)))

	fi, err := os.Stat(filepath.Join(tr.cfg.DataDir, "admin.sock"))
	if err != nil || fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin socket: %v, %v", fi, err)
	}
	if code, out, _ := tr.queueCmd(t, "list"); code != 0 || out != "The queue is empty.\n" {
		t.Fatalf("list of an empty queue: %d %q", code, out)
	}

	c := tr.dialTLS(t, "smtp")
	if err := send(c, "app@localhost", []string{"bob@partner.example"}, testBody); err != nil {
		t.Fatal(err)
	}
	if err := send(c, "app@localhost", []string{"x@dead.example"}, testBody); err != nil {
		t.Fatal(err)
	}
	var idBob, idDead string
	waitFor(t, "both first attempts", 30*time.Second, func() bool {
		msgs, err := tr.queue.List(t.Context())
		if err != nil || len(msgs) != 2 {
			return false
		}
		for _, m := range msgs {
			if m.Recipients[0].Attempts != 1 {
				return false
			}
			if m.Recipients[0].Address == "bob@partner.example" {
				idBob = m.ID
			} else {
				idDead = m.ID
			}
		}
		return true
	})

	// list: a table, and JSON.
	out := tr.mustQueueCmd(t, "list")
	if err := contains(out, "ID ", "NEXT ATTEMPT", idBob, idDead, "<app@localhost>", "bob@partner.example",
		"x@dead.example", "deferred", "451 4.3.2 partner busy",
		"2 message(s), 2 recipient(s): 2 deferred\n"); err != nil {
		t.Fatal(err)
	}
	if !inAnHour.MatchString(out) {
		t.Fatalf("no next attempt in an hour:\n%s", out)
	}
	var listing admin.Listing
	if err := json.Unmarshal([]byte(tr.mustQueueCmd(t, "list", "-json")), &listing); err != nil {
		t.Fatal(err)
	}
	if len(listing.Messages) != 2 || listing.Counts[transport.Deferred] != 2 || listing.Counts[transport.Held] != 0 {
		t.Fatalf("list -json: %+v", listing)
	}

	// show: envelope, state, last TLS result, policy source, next attempt.
	out = tr.mustQueueCmd(t, "show", idBob)
	if err := contains(out, "id:", idBob, "from:", "<app@localhost>", "recipient:", "<bob@partner.example>",
		"state:", "deferred, 1 attempt(s)", "next attempt:", "remote mta:", "127.0.0.1",
		"last error:", "451 4.3.2 partner busy (reply)",
		"last tls:", "TLSv1.3 TLS_", ", verified", "policy:", "static:secure",
		"via:", "client 127.0.0.1:", "helo client.test"); err != nil {
		t.Fatal(err)
	}
	if !inAnHour.MatchString(out) {
		t.Fatalf("no next attempt in an hour:\n%s", out)
	}
	out = tr.mustQueueCmd(t, "show", idDead)
	if err := contains(out, "<x@dead.example>", "last tls:", "none", "found by this relay", "held:", "no"); err != nil {
		t.Fatal(err)
	}
	var shown queue.Message
	if err := json.Unmarshal([]byte(tr.mustQueueCmd(t, "-json", "show", idBob)), &shown); err != nil {
		t.Fatal(err)
	}
	if r := shown.Recipients[0]; shown.ID != idBob || r.State != transport.Deferred || r.TLS == nil || !r.TLS.Verified ||
		r.Policy != "static:secure" || r.NextAttempt.Before(time.Now().Add(50*time.Minute)) {
		t.Fatalf("show -json: %+v, recipient %+v", shown, r)
	}
	if code, _, errOut := tr.queueCmd(t, "show", "nosuch"); code != 1 || !strings.Contains(errOut, "not_found") {
		t.Fatalf("show of an unknown id: %d %q", code, errOut)
	}

	// retry ID: attempted at once, so NextAttempt moves to an hour after
	// the new attempt.
	before := tr.message(t, idDead).Recipients[0]
	if out := tr.mustQueueCmd(t, "retry", idDead); out != "1 message(s) due now\n" {
		t.Fatalf("retry: %q", out)
	}
	waitFor(t, "the retry", 30*time.Second, func() bool { return tr.message(t, idDead).Recipients[0].Attempts == 2 })
	after := tr.message(t, idDead).Recipients[0]
	if !after.NextAttempt.After(before.NextAttempt) || !after.LastAttempt.After(before.LastAttempt) {
		t.Fatalf("retry: next attempt %v → %v", before.NextAttempt, after.NextAttempt)
	}
	if n := tr.message(t, idBob).Recipients[0].Attempts; n != 1 {
		t.Fatalf("retry %s also retried %s (%d attempts)", idDead, idBob, n)
	}
	// retry -domain, with JSON output.
	var change admin.Change
	if err := json.Unmarshal([]byte(tr.mustQueueCmd(t, "retry", "-domain", "partner.example", "-json")), &change); err != nil {
		t.Fatal(err)
	}
	if change.Command != "retry" || change.Domain != "partner.example" || change.Changed != 1 {
		t.Fatalf("retry -domain -json: %+v", change)
	}
	waitFor(t, "the retry of partner.example", 30*time.Second, func() bool {
		return tr.message(t, idBob).Recipients[0].Attempts == 2
	})
	if n := tr.message(t, idDead).Recipients[0].Attempts; n != 2 {
		t.Fatalf("retry -domain partner.example retried %s (%d attempts)", idDead, n)
	}

	// hold: the partner now accepts, retry -all, and only the dead
	// destination is attempted.
	if out := tr.mustQueueCmd(t, "hold", idBob); out != idBob+" held\n" {
		t.Fatalf("hold: %q", out)
	}
	if err := contains(tr.mustQueueCmd(t, "show", idBob), "held (deferred)", "not attempted until"); err != nil {
		t.Fatal(err)
	}
	if err := contains(tr.mustQueueCmd(t, "list"), "held (deferred)", "1 deferred, 1 held"); err != nil {
		t.Fatal(err)
	}
	down.Store(false)
	if out := tr.mustQueueCmd(t, "retry", "-all"); out != "2 message(s) due now\n" {
		t.Fatalf("retry -all: %q", out)
	}
	waitFor(t, "the retry of all", 30*time.Second, func() bool { return tr.message(t, idDead).Recipients[0].Attempts == 3 })
	time.Sleep(200 * time.Millisecond)
	if n := len(partner.Messages()); n != 0 {
		t.Fatalf("a held message reached the partner")
	}
	if n := tr.message(t, idBob).Recipients[0].Attempts; n != 2 {
		t.Fatalf("held message attempted (%d attempts)", n)
	}
	// release: delivered.
	if out := tr.mustQueueCmd(t, "-json", "release", idBob); !strings.Contains(out, `"changed": 1`) {
		t.Fatalf("release -json: %q", out)
	}
	waitFor(t, "delivery after release", 30*time.Second, func() bool { return len(partner.Messages()) == 1 })
	waitFor(t, "the delivered message to leave the queue", 30*time.Second, func() bool {
		_, err := tr.queue.Get(t.Context(), idBob)
		return errors.Is(err, queue.ErrNotFound)
	})

	// remove
	if out := tr.mustQueueCmd(t, "remove", idDead); out != idDead+" removed\n" {
		t.Fatalf("remove: %q", out)
	}
	if _, err := tr.queue.Get(t.Context(), idDead); !errors.Is(err, queue.ErrNotFound) {
		t.Fatalf("after remove: %v", err)
	}
	if code, _, errOut := tr.queueCmd(t, "remove", idDead); code != 1 || !strings.Contains(errOut, "not_found") {
		t.Fatalf("second remove: %d %q", code, errOut)
	}
	if out := tr.mustQueueCmd(t, "list"); out != "The queue is empty.\n" {
		t.Fatalf("list at the end: %q", out)
	}
}

// Usage errors exit 2 without contacting the relay; an unreachable socket
// exits 1 and says which -data was tried.
func TestQueueCommandUsage(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{}, {"frob"}, {"show"}, {"list", "x"}, {"hold", "a", "b"}, {"retry"},
		{"retry", "id", "-all"}, {"retry", "-domain", "d", "-all"}, {"hold", "id", "-all"},
	} {
		var out, errOut bytes.Buffer
		if code := queueMain(context.Background(), append([]string{"-data", dir}, args...), &out, &errOut); code != 2 {
			t.Errorf("relay queue %v: exit %d, want 2\n%s", args, code, errOut.String())
		}
	}
	var out, errOut bytes.Buffer
	if code := queueMain(context.Background(), []string{"-data", dir, "list"}, &out, &errOut); code != 1 ||
		!strings.Contains(errOut.String(), "is the relay running with -data "+dir) {
		t.Errorf("no relay: exit %d %q", code, errOut.String())
	}
}

// A -data path too long for a Unix socket (sun_path holds 108 bytes on
// Linux) costs the admin socket, not the mail service: the relay starts
// and logs why "relay queue" cannot reach it.
func TestAdminSocketPathTooLong(t *testing.T) {
	dir := filepath.Join(t.TempDir(), strings.Repeat("d", 120))
	tr := startRelay(t, "-data", dir)
	if _, err := os.Lstat(filepath.Join(dir, "admin.sock")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("admin socket: %v", err)
	}
	if err := contains(tr.logs.String(), "no admin socket"); err != nil {
		t.Fatal(err)
	}
	c := tr.dial(t, "smtp")
	if err := c.Noop(); err != nil {
		t.Fatalf("relay not serving: %v", err)
	}
}

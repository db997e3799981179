package transport

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const testSenderLogins = `# sender-address-or-@domain  login[,login...]
alice@example.org    alice
Sales@Example.ORG    alice, bob
@example.net         carol,dave
shared@example.org   bob
# a line that starts with white space continues the entry above
  erin
ops@Bücher.example   frank
@example.org         admin
`

func testLogins(t testing.TB) *SenderLogins {
	t.Helper()
	m, err := ParseSenderLogins("senders", strings.NewReader(testSenderLogins))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestSenderLoginsOwns is the decision table of SenderLogins.Owns.
func TestSenderLoginsOwns(t *testing.T) {
	m := testLogins(t)
	for _, c := range []struct {
		login, sender string
		want          bool
	}{
		{"alice", "alice@example.org", true},
		{"alice", "ALICE@EXAMPLE.ORG", true}, // keys are folded, as Postfix's hash tables do
		{"bob", "alice@example.org", false},
		{"alice", "sales@example.org", true},
		{"bob", "sales@example.org", true},
		{"Bob", "sales@example.org", false}, // logins are compared exactly
		{"carol", "sales@example.org", false},
		{"carol", "anyone@example.net", true}, // domain entry
		{"dave", "x@EXAMPLE.NET", true},
		{"alice", "x@example.net", false},
		{"carol", "x@sub.example.net", false}, // a domain entry is that domain only
		{"bob", "shared@example.org", true},
		{"erin", "shared@example.org", true},   // from the continuation line
		{"frank", "ops@bücher.example", true},  // UTF-8 domain folded
		{"alice", "nobody@example.org", false}, // no entry: refused
		{"alice", "alice", false},
		// The most specific entry decides: an address entry is not
		// widened by its domain's entry.
		{"admin", "nobody@example.org", true},
		{"admin", "alice@example.org", false},
		// The login that is itself an address may send as itself.
		{"gina@example.com", "gina@example.com", true},
		{"Gina@Example.com", "gina@EXAMPLE.com", true},
		{"gina@example.com", "gina2@example.com", false},
		{"gina@example.com", "alice@example.org", false},
		// Null reverse-path (RFC 5321 §4.5.5): allowed to any login.
		{"alice", "", true},
		{"nobody", "", true},
		// Not authenticated: Owns answers for a login only.
		{"", "alice@example.org", false},
	} {
		if got := m.Owns(c.login, c.sender); got != c.want {
			t.Errorf("Owns(%q, %q) = %v, want %v", c.login, c.sender, got, c.want)
		}
	}
}

// TestSenderLoginsCheckSender: refusals are Postfix's "553 5.7.1 <addr>:
// Sender address rejected: not owned by user LOGIN", wrapping
// ErrSenderNotOwned; unauthenticated envelopes are not checked.
func TestSenderLoginsCheckSender(t *testing.T) {
	m := testLogins(t)
	ctx := context.Background()
	err := m.CheckSender(ctx, &Envelope{From: "alice@example.org", AuthIdentity: "bob"})
	e, ok := AsError(err)
	if !ok || e.Reply() != "553 5.7.1 <alice@example.org>: Sender address rejected: not owned by user bob" || !errors.Is(err, ErrSenderNotOwned) {
		t.Errorf("refusal %v", err)
	}
	err = m.CheckSender(ctx, &Envelope{From: "a\x00b@example.org", AuthIdentity: "bob\tx"})
	if e, ok := AsError(err); !ok || e.Reply() != "553 5.7.1 <a?b@example.org>: Sender address rejected: not owned by user bob?x" {
		t.Errorf("control characters in the reply: %v", err)
	}
	for _, env := range []*Envelope{
		{From: "alice@example.org", AuthIdentity: "alice"},
		{From: "alice@example.org"}, // not authenticated
		{From: "", AuthIdentity: "bob"},
	} {
		if err := m.CheckSender(ctx, env); err != nil {
			t.Errorf("%+v: %v", env, err)
		}
	}
}

func TestParseSenderLoginsErrors(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"alice@example.org\n", "senders line 1: alice@example.org: no login"},
		{"# c\nalice alice\n", `senders line 2: "alice": want an address or @domain`},
		{"@ alice\n", `senders line 1: "@": want an address or @domain`},
		{"alice@ alice\n", `senders line 1: "alice@": want an address or @domain`},
		{"<a@example.org> a\n", `senders line 1: "<a@example.org>": want an address or @domain`},
		{"a@example.org a\n\nA@EXAMPLE.ORG b\n", `senders line 3: duplicate entry "A@EXAMPLE.ORG" (line 1)`},
		{"  alice\n", "senders line 1: continuation line without an entry"},
		{"a@example.org a\x7fb\n", `senders line 1: login "a\x7fb": empty, or a comma`},
		{"a\x01@example.org a\n", `senders line 1: "a\x01@example.org": want an address or @domain`},
		{"a\xff@example.org a\n", `senders line 1: "a\xff@example.org": want an address or @domain`},
		{"a@example.org " + strings.Repeat("x", 70000) + "\n", "senders line 1: bufio.Scanner: token too long"},
	} {
		_, err := ParseSenderLogins("senders", strings.NewReader(c.in))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: err %v, want %q", c.in, err, c.want)
		}
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "senders")
	if err := os.WriteFile(p, []byte("a@example.org a\nbad\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSenderLogins(p); err == nil || !strings.Contains(err.Error(), p+" line 2") {
		t.Errorf("LoadSenderLogins: %v", err)
	}
	if _, err := LoadSenderLogins(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing file loaded")
	}
	m, err := LoadSenderLogins(writeFile(t, dir, "ok", testSenderLogins))
	if err != nil || m.Len() != 6 {
		t.Errorf("LoadSenderLogins: %v, %v entries", err, m)
	}
}

// TestNewSenderLogins: a table built from entries decides as a parsed one,
// with the same checks.
func TestNewSenderLogins(t *testing.T) {
	m, err := NewSenderLogins(
		SenderLogin{Sender: "Alice@Example.org", Logins: []string{"alice"}},
		SenderLogin{Sender: "@example.net", Logins: []string{"carol", "dave"}},
	)
	if err != nil {
		t.Fatal(err)
	}
	if !m.Owns("alice", "alice@example.org") || !m.Owns("dave", "x@example.net") || m.Owns("alice", "x@example.net") || m.Len() != 2 {
		t.Errorf("decisions of %+v", m.owners)
	}
	for _, c := range []struct {
		entries []SenderLogin
		want    string
	}{
		{[]SenderLogin{{Sender: "alice", Logins: []string{"a"}}}, `entry 1: "alice": want an address or @domain`},
		{[]SenderLogin{{Sender: "a@x", Logins: []string{"a"}}, {Sender: "A@X", Logins: []string{"b"}}}, `entry 2: duplicate entry "A@X"`},
		{[]SenderLogin{{Sender: "a@x"}}, "entry 1: a@x: no login"},
		{[]SenderLogin{{Sender: "a@x", Logins: []string{"a b"}}}, `entry 1: login "a b": empty, or a comma`},
		{[]SenderLogin{{Sender: "a@x", Logins: []string{""}}}, `entry 1: login "": empty`},
	} {
		if _, err := NewSenderLogins(c.entries...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.entries, err, c.want)
		}
	}
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// loginsHandler is a recording Handler whose SenderChecker is a
// SenderLogins, as a submission listener would wire it.
type loginsHandler struct {
	recorder
	logins *SenderLogins
}

func (h *loginsHandler) CheckSender(ctx context.Context, env *Envelope) error {
	return h.logins.CheckSender(ctx, env)
}

// TestSenderLoginsServer: through a submission Server whose Handler checks
// senders with SenderLogins, alice may send as her addresses and <>, not as
// bob's, and nothing reaches the Handler for the refused sender.
func TestSenderLoginsServer(t *testing.T) {
	h := &loginsHandler{logins: testLogins(t)}
	ts := startServer(t, &Server{Kind: KindSubmission, Handler: h, Authenticator: testTable(t)}, newSrvPKI(t))
	d := tlsSessionFrom(t, ts, "127.0.0.1")
	d.expect("AUTH PLAIN "+b64("\x00alice\x00wonderland"), "235 ")
	d.expect("MAIL FROM:<shared@example.org>", "553 5.7.1 <shared@example.org>: Sender address rejected: not owned by user alice")
	d.expect("RCPT TO:<r@example.net>", "503 5.5.1 Missing MAIL FROM")
	if got := d.sendMessage("Sales@example.org", "r@example.net", "Subject: x\r\n\r\nx\r\n"); !strings.HasPrefix(got, "250 ") {
		t.Fatalf("DATA %q", got)
	}
	if got := d.sendMessage("", "r@example.net", "Subject: mdn\r\n\r\nx\r\n"); !strings.HasPrefix(got, "250 ") {
		t.Fatalf("DATA %q", got)
	}
	msgs := h.all()
	if len(msgs) != 2 || msgs[0].env.From != "Sales@example.org" || msgs[1].env.From != "" {
		t.Fatalf("deliveries %+v", msgs)
	}
}

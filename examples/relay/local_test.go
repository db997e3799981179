package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
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

// Distinct addresses never share a Maildir: the five names that all landed
// in "b_b@localhost" get five directories, and whatever the address, the
// Maildir is one directory directly under the root, with a bounded name.
func TestMaildirNamesDistinct(t *testing.T) {
	root := t.TempDir()
	m := &maildirs{root: root, hostname: "relay.test"}
	seen := map[string]string{}
	for _, a := range []string{"b/b@localhost", "b b@localhost", "b_b@localhost", "böb@localhost", "BÖB@localhost"} {
		d, err := m.dir(a)
		if err != nil {
			t.Fatalf("dir(%q): %v", a, err)
		}
		if prev, dup := seen[d]; dup {
			t.Errorf("%q and %q share the Maildir %s", prev, a, d)
		}
		seen[d] = a
	}
	long := strings.Repeat("x", 300)
	for _, a := range []string{"../../etc@localhost", "..@localhost", ".@localhost", "a/../../b@localhost",
		"..", ".", "/", "", "x\x00y@localhost", `..\..@localhost`, "~@localhost", ".hidden@localhost",
		long + "@localhost", long + "1@localhost", strings.Repeat("ö", 200) + "@localhost"} {
		d, err := m.dir(a)
		if err != nil {
			continue // refusing is safe too
		}
		base := filepath.Base(d)
		if filepath.Dir(d) != root || base == "." || base == ".." || strings.HasPrefix(base, ".") || len(base) > 255 {
			t.Errorf("dir(%q) = %q: not one bounded, visible directory under %s", a, d, root)
		}
		if prev, dup := seen[d]; dup {
			t.Errorf("%q and %q share the Maildir %s", prev, a, d)
		}
		seen[d] = a
	}
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

func localTest(d string) bool { return d == "localhost" || d == "example.test" }

func TestParseRecipients(t *testing.T) {
	tab, err := parseRecipients("r", strings.NewReader("# comment\n\n  Sales  \nList@LocalHost.\nböb@example.test\n"), localTest)
	if err != nil {
		t.Fatal(err)
	}
	full := newRecipientTable(localTest, []string{"alice", "carol@example.test", "dave@elsewhere.example"}, tab)
	for addr, want := range map[string]bool{
		"sales@localhost": true, "SALES@example.test": true, "list@localhost": true, "list@example.test": false,
		"böb@example.test": true, "BÖB@example.test": false, "alice@localhost": true, "carol@example.test": true,
		"carol@localhost": false, "dave@elsewhere.example": false, "postmaster@example.test": true, "postmaster": true,
		"sales@elsewhere.example": false, "nobody@localhost": false, "": false,
	} {
		if got := full.has(addr); got != want {
			t.Errorf("has(%q) = %v, want %v", addr, got, want)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"ok\nbad name\n", "r line 2:"},
		{"a@b@localhost\n", "r line 1:"},
		{"\n\nx@elsewhere.example\n", "r line 3: \"x@elsewhere.example\": elsewhere.example is not a local domain"},
		{"@localhost\n", "empty local part"},
		{strings.Repeat("a", 65) + "\n", "longer than 64"},
		{"a\x00b\n", "r line 1: \"a?b\""},
		{"\xff\n", "not UTF-8"},
		{"<a>\n", "special character"},
		{strings.Repeat("a", 5000) + "\n", "r line 1:"},
	} {
		if _, err := parseRecipients("r", strings.NewReader(tc.in), localTest); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseRecipients(%.40q) = %v, want an error with %q", tc.in, err, tc.want)
		}
	}
}

func TestLocalResult(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status string
		code   int
		enh    string
	}{
		{nil, "delivered", 250, "2.0.0"},
		{errNoSuchUser, "failed", 550, "5.1.1"},
		{fmt.Errorf("x: %w", errUnusableAddress), "failed", 550, "5.1.3"},
		{&os.PathError{Op: "write", Path: "/m", Err: syscall.ENOSPC}, "deferred", 452, "4.3.1"},
		{&os.PathError{Op: "mkdir", Path: "/m", Err: syscall.ENOTDIR}, "deferred", 451, "4.3.0"},
		{&os.PathError{Op: "open", Path: "/m", Err: syscall.EACCES}, "deferred", 451, "4.3.0"},
	} {
		st, reply := localResult("a@localhost", tc.err)
		if st.String() != tc.status || reply.Code != tc.code || reply.EnhancedCode.String() != tc.enh {
			t.Errorf("localResult(%v) = %s %d %s, want %s %d %s", tc.err, st, reply.Code, reply.EnhancedCode, tc.status, tc.code, tc.enh)
		}
	}
}

// decodeMailboxName inverts mailboxName for names that were not cut.
func decodeMailboxName(name string) (string, bool) {
	if strings.Contains(name, "~") {
		return "", false
	}
	var b []byte
	for i := 0; i < len(name); i++ {
		if name[i] != '%' {
			b = append(b, name[i])
			continue
		}
		if i+2 >= len(name) {
			return "", false
		}
		var c byte
		if _, err := fmt.Sscanf(name[i+1:i+3], "%02x", &c); err != nil {
			return "", false
		}
		b = append(b, c)
		i += 2
	}
	return string(b), true
}

// FuzzMailboxName: every name is one bounded, visible path element of safe
// characters, and an uncut name decodes back to the folded address (so two
// folded addresses never share an uncut name; cut names carry a hash).
func FuzzMailboxName(f *testing.F) {
	for _, s := range []string{"user@localhost", "b/b@x", "b b@x", "böb@x", "BÖB@x", "..", ".", "", "~@x", "%41@x",
		strings.Repeat("x", 300) + "@localhost", "a@b.", ".hidden@x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, addr string) {
		name := mailboxName(addr)
		if addr == "" {
			if name != "" {
				t.Fatalf("mailboxName(\"\") = %q", name)
			}
			return
		}
		if name == "" || name == "." || name == ".." || name[0] == '.' || len(name) > maxMailboxName {
			t.Fatalf("mailboxName(%q) = %q", addr, name)
		}
		for i := 0; i < len(name); i++ {
			c := name[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || strings.IndexByte("@-_+=.%~", c) >= 0) {
				t.Fatalf("mailboxName(%q) = %q: byte %q", addr, name, c)
			}
		}
		if dec, ok := decodeMailboxName(name); ok && dec != foldAddress(addr) {
			t.Fatalf("mailboxName(%q) = %q decodes to %q, want %q", addr, name, dec, foldAddress(addr))
		} else if !ok && len(name) < maxMailboxName-40 {
			t.Fatalf("mailboxName(%q) = %q: short but not decodable", addr, name)
		}
	})
}

// FuzzParseRecipients: whatever a -recipients file holds, parsing does not
// panic, and every entry it accepts is a printable address in a local
// domain or a bare name.
func FuzzParseRecipients(f *testing.F) {
	f.Add("# comment\nsales\nlist@localhost\n")
	f.Add("x@elsewhere.example\n") // not local
	f.Add("a b\n")                 // white space
	f.Add("\xff\n")                // not UTF-8
	f.Fuzz(func(t *testing.T, in string) {
		tab, err := parseRecipients("f", strings.NewReader(in), localTest)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "f line ") {
				t.Fatalf("error without a line number: %v", err)
			}
			return
		}
		for k := range tab.addrs {
			if printable(k) != k || !localTest(domainOf(k)) {
				t.Fatalf("accepted address %q", k)
			}
		}
		for k := range tab.names {
			if printable(k) != k || strings.Contains(k, "@") || k == "" {
				t.Fatalf("accepted name %q", k)
			}
		}
	})
}

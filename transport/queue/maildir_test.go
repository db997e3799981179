package queue

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/mailtls/mailtls/transport"
)

// Distinct addresses never share a Maildir: the five names that all landed
// in "b_b@localhost" get five directories, and whatever the address, the
// Maildir is one directory directly under the root, with a bounded name.
func TestMaildirNamesDistinct(t *testing.T) {
	root := t.TempDir()
	m := &Maildir{Root: root, Hostname: "relay.test"}
	seen := map[string]string{}
	for _, a := range []string{"b/b@localhost", "b b@localhost", "b_b@localhost", "böb@localhost", "BÖB@localhost"} {
		d, err := m.Dir(a)
		if err != nil {
			t.Fatalf("Dir(%q): %v", a, err)
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
		d, err := m.Dir(a)
		if err != nil {
			continue // refusing is safe too
		}
		base := filepath.Base(d)
		if filepath.Dir(d) != root || base == "." || base == ".." || strings.HasPrefix(base, ".") || len(base) > 255 {
			t.Errorf("Dir(%q) = %q: not one bounded, visible directory under %s", a, d, root)
		}
		if prev, dup := seen[d]; dup {
			t.Errorf("%q and %q share the Maildir %s", prev, a, d)
		}
		seen[d] = a
	}
}

func TestMaildirResult(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status string
		code   int
		enh    string
	}{
		{nil, "delivered", 250, "2.0.0"},
		{transport.NewLocalRecipients(func(string) bool { return true }).Check("a@localhost"), "failed", 550, "5.1.1"},
		{fmt.Errorf("x: %w", errNoMailboxName), "failed", 550, "5.1.3"},
		{&os.PathError{Op: "write", Path: "/m", Err: syscall.ENOSPC}, "deferred", 452, "4.3.1"},
		{&os.PathError{Op: "mkdir", Path: "/m", Err: syscall.ENOTDIR}, "deferred", 451, "4.3.0"},
		{&os.PathError{Op: "open", Path: "/m", Err: syscall.EACCES}, "deferred", 451, "4.3.0"},
	} {
		st, reply := maildirResult(tc.err)
		if st.String() != tc.status || reply.Code != tc.code || reply.EnhancedCode.String() != tc.enh {
			t.Errorf("maildirResult(%v) = %s %d %s, want %s %d %s", tc.err, st, reply.Code, reply.EnhancedCode, tc.status, tc.code, tc.enh)
		}
	}
}

// decodeMailboxName inverts MailboxName for names that were not cut.
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
		name := MailboxName(addr)
		if addr == "" {
			if name != "" {
				t.Fatalf("MailboxName(\"\") = %q", name)
			}
			return
		}
		if name == "" || name == "." || name == ".." || name[0] == '.' || len(name) > MaxMailboxName {
			t.Fatalf("MailboxName(%q) = %q", addr, name)
		}
		for i := 0; i < len(name); i++ {
			c := name[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || strings.IndexByte("@-_+=.%~", c) >= 0) {
				t.Fatalf("MailboxName(%q) = %q: byte %q", addr, name, c)
			}
		}
		if dec, ok := decodeMailboxName(name); ok && dec != transport.FoldAddress(addr) {
			t.Fatalf("MailboxName(%q) = %q decodes to %q, want %q", addr, name, dec, transport.FoldAddress(addr))
		} else if !ok && len(name) < MaxMailboxName-40 {
			t.Fatalf("MailboxName(%q) = %q: short but not decodable", addr, name)
		}
	})
}

package main

import (
	"bufio"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// TestNoSMTPSmuggling backs the Hardening table's end-of-DATA row: over a
// real socket to the MX listener, a body holding "\n.\n", "\r\n.\n" and
// "\n.\r\n" followed by a second MAIL/RCPT/DATA is one message: the
// client gets one 250 for DATA, after the real CRLF "." CRLF, and the
// Maildir holds one message with the would-be commands as body text.
func TestNoSMTPSmuggling(t *testing.T) {
	tr := startRelay(t)
	for _, end := range []string{"\n.\n", "\r\n.\n", "\n.\r\n"} {
		t.Run(strings.NewReplacer("\r", `\r`, "\n", `\n`).Replace(end), func(t *testing.T) {
			before := len(maildirFiles(t, tr.cfg, "user@localhost", "new"))
			conn, err := net.DialTimeout("tcp", tr.Addr("smtp"), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			r := bufio.NewReader(conn)
			reply := func() string {
				t.Helper()
				var last string
				for {
					l, err := r.ReadString('\n')
					if err != nil {
						t.Fatalf("reading reply: %v (so far %q)", err, last)
					}
					if last = l; len(l) < 4 || l[3] != '-' {
						return l
					}
				}
			}
			cmd := func(c, want string) {
				t.Helper()
				conn.Write([]byte(c + "\r\n"))
				if got := reply(); !strings.HasPrefix(got, want) {
					t.Fatalf("%q: %q, want %s", c, got, want)
				}
			}
			reply() // greeting
			cmd("EHLO client.test", "250")
			cmd("MAIL FROM:<a@example.net>", "250")
			cmd("RCPT TO:<user@localhost>", "250")
			cmd("DATA", "354")
			smuggled := "Subject: outer\r\n\r\nhello" + end +
				"MAIL FROM:<evil@example.net>\r\nRCPT TO:<sender@localhost>\r\nDATA\r\nSubject: smuggled\r\n\r\nx\r\n"
			conn.Write([]byte(smuggled + ".\r\n"))
			if got := reply(); !strings.HasPrefix(got, "250 ") {
				t.Fatalf("end of DATA: %q, want 250", got)
			}
			cmd("QUIT", "221")
			files := waitMaildir(t, tr, "user@localhost", before+1)
			time.Sleep(100 * time.Millisecond) // a smuggled second message would be queued by now
			if n := len(maildirFiles(t, tr.cfg, "user@localhost", "new")); n != before+1 {
				t.Fatalf("user@localhost has %d new messages, want %d", n, before+1)
			}
			if got := maildirFiles(t, tr.cfg, "sender@localhost", "new"); len(got) != 0 {
				t.Fatalf("the smuggled message reached sender@localhost: %v", got)
			}
			var found bool
			for _, f := range files {
				b, _ := os.ReadFile(f)
				// A dot at a line start is transparency (RFC 5321
				// §4.5.2) and is removed, so "\r\n.\n" is stored as
				// "\r\n\n"; what matters is that the rest stays body.
				found = found || strings.Contains(string(b), "hello") &&
					strings.Contains(string(b), "\nMAIL FROM:<evil@example.net>\r\nRCPT TO:<sender@localhost>\r\nDATA\r\nSubject: smuggled")
			}
			if !found {
				t.Errorf("no stored message holds the would-be commands as body text")
			}
		})
	}
}

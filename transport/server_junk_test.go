package transport

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailtls/mailtls/policy"
)

// TestJunkCommandLimit: a client that answers the server's replies but
// never advances a transaction (NOOP after NOOP, keeping its slot busy and
// safe from eviction) is answered "421 4.7.0" and closed after
// MaxJunkCommands such commands (Postfix's smtpd_junk_command_limit), in
// plaintext and under TLS; accepted MAIL, RCPT, DATA and BDAT do not count,
// so a long session that sends mail is never cut.
func TestJunkCommandLimit(t *testing.T) {
	for _, mode := range []string{"plaintext", "tls"} {
		t.Run(mode, func(t *testing.T) {
			ts := startServer(t, &Server{MaxJunkCommands: 10, Timeouts: ServerTimeouts{Stress: -1},
				Inbound: policy.Inbound{InsecureAllowPlaintext: true}}, newSrvPKI(t))

			// Mail-sending sessions: 3 messages of 8 recipients, one of
			// them in 12 BDAT chunks, far more than 10 commands in all.
			d := modeDialogue(t, ts, mode)
			for m := range 3 {
				d.expect("MAIL FROM:<a@example.org>", "250 ")
				for r := range 8 {
					d.expect(fmt.Sprintf("RCPT TO:<r%d@example.net>", r), "250 ")
				}
				if m == 1 {
					for range 11 {
						d.expect("BDAT 8\r\nchunk.", "250 ")
					}
					d.expect("BDAT 7 LAST\r\nlast.", "250 ")
					continue
				}
				d.expect("DATA", "354 ")
				d.send("Subject: m\r\n\r\nbody\r\n.\r\n")
				if got := d.read(); !strings.HasPrefix(got, "250 ") {
					t.Fatalf("message %d: %q", m, got)
				}
			}
			if got := d.cmd("NOOP"); !strings.HasPrefix(got, "250 ") {
				t.Fatalf("NOOP after 3 messages: %q", got)
			}

			// A NOOP loop is cut.
			d = modeDialogue(t, ts, mode)
			ok := 0
			var last string
			for range 20 {
				d.send("NOOP\r\n")
				r, err := d.tryRead()
				if err != nil {
					break
				}
				last = r
				if !strings.HasPrefix(r, "250 ") {
					break
				}
				ok++
			}
			if !strings.HasPrefix(last, "421 4.7.0 ") || ok < 5 || ok > 10 {
				t.Errorf("NOOP loop: %d answered 250, then %q; want at most 10, then 421 4.7.0", ok, last)
			}
			d.conn.SetReadDeadline(time.Now().Add(2 * time.Second))
			if _, err := io.ReadAll(d.conn); err != nil && !errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("connection not closed after the 421: %v", err)
			}
			if n := len(ts.rec.all()); n != 3 {
				t.Errorf("%d messages accepted, want 3", n)
			}
		})
	}
}

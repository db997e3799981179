package transport_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/policy"
	"github.com/mailtls/mailtls/transport/transporttest"
)

// The DATA the Connector writes has every bare CR and bare LF of the body
// normalised to CRLF before dot-stuffing (RFC 5321 §2.3.8, §4.5.2;
// Postfix's smtp_forbid_bare_newline = normalize), so that a line ending
// in a bare CR followed by "." can never be read as the end of the data or
// reach the next hop unstuffed. Checked on the exact bytes the server read,
// also where a CR LF pair is split between two reads of the body.
func TestConnectorDataNormalisesBareCRLF(t *testing.T) {
	// io.Copy reads the body in 32 KiB chunks: the CR at the end of the
	// first chunk and the LF at the start of the second are one line end.
	const chunk = 32 << 10
	line := strings.Repeat("y", 76) + "\r\n"
	n := (chunk-1)/len(line) - 1
	head := strings.Repeat(line, n) + strings.Repeat("z", chunk-1-n*len(line))
	long := head + "\r\n" + ".split\r\n"
	tests := []struct {
		name, body, wire string
	}{
		{"bare CR dot bare CR", "a\r.\rb\r\n", "a\r\n..\r\nb\r\n"},
		{"dot CR at line start", ".\rc\r\n", "..\r\nc\r\n"},
		{"bare LF", "d\ne\n.\nf", "d\r\ne\r\n..\r\nf\r\n"},
		{"CR CR LF", "g\r\r\nh\r\n", "g\r\n\r\nh\r\n"},
		{"LF CR", "i\n\rj\r\n", "i\r\n\r\nj\r\n"},
		{"ends in bare CR", "k\r", "k\r\n"},
		{"dot CR LF is stuffed", "l\r\n.\r\nm\r\n", "l\r\n..\r\nm\r\n"},
		{"CRLF split between reads", long, head + "\r\n..split\r\n"},
	}
	for _, tt := range tests {
		// Without pipelining the body goes after DATA, dot-stuffed; with
		// PIPELINING and CHUNKING (the fixture offers both) it goes in one
		// flight after "BDAT n LAST", with the same line ends and no
		// stuffing (RFC 3030 §2).
		for _, pipelined := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/pipelined=%v", tt.name, pipelined), func(t *testing.T) {
				srv := transporttest.NewPlainServer(t)
				e := newEnv(t)
				e.single(srv.Addr)
				c := e.connector(fixed(policy.May), nil)
				c.DisablePipelining = !pipelined
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				res, err := c.Deliver(ctx, envelope("a@example.test"), strings.NewReader(tt.body), int64(len(tt.body)))
				if err != nil {
					t.Fatal(err)
				}
				wantDelivered(t, res.Recipients[0])
				want, from := "DATA\r\n"+tt.wire+".\r\nQUIT", "DATA\r\n"
				if pipelined {
					content := unstuff(tt.wire)
					want, from = fmt.Sprintf("RCPT TO:<a@example.test>\r\nBDAT %d LAST\r\n%sQUIT", len(content), content), "RCPT TO"
				}
				if w := srv.Seen(); !bytes.Contains(w, []byte(want)) {
					i := max(bytes.Index(w, []byte(from)), 0)
					t.Errorf("wire from %s = %q, want %q", from, clipQ(w[i:]), clipQ([]byte(want)))
				}
				// What the server stored: the same lines, unstuffed.
				msgs := srv.Messages()
				if len(msgs) != 1 {
					t.Fatalf("server stored %d messages", len(msgs))
				}
				if got, want := string(msgs[0].Data), unstuff(tt.wire); got != want {
					t.Errorf("stored %q, want %q", clipQ([]byte(got)), clipQ([]byte(want)))
				}
			})
		}
	}
}

// clipQ shortens b for an error message: its head and tail.
func clipQ(b []byte) string {
	if len(b) <= 200 {
		return string(b)
	}
	return fmt.Sprintf("%s…(%d bytes)…%s", b[:100], len(b)-200, b[len(b)-100:])
}

// unstuff removes the dot-stuffing of RFC 5321 §4.5.2 from CRLF lines.
func unstuff(s string) string {
	lines := strings.SplitAfter(s, "\r\n")
	for i, l := range lines {
		lines[i] = strings.TrimPrefix(l, ".")
	}
	return strings.Join(lines, "")
}

package testmsg

import (
	"strings"
	"testing"
)

func TestBody(t *testing.T) {
	// 18: the header alone; 18+78k+1: a cut that would split a CRLF.
	for _, size := range []int{18, 100, 1024, 18 + 78 + 1, 18 + 2*78 + 1, 100 << 10} {
		b := Body("sizes", size)
		if len(b) != size {
			t.Errorf("len(Body(%d)) = %d", size, len(b))
		}
		if !strings.HasPrefix(b, "Subject: sizes\r\n\r\n") || !strings.HasSuffix(b, "\r\n") {
			t.Errorf("Body(%d) = %.40q...: want a Subject header and a final CRLF", size, b)
		}
		for i, l := range strings.Split(strings.TrimSuffix(b, "\r\n"), "\r\n") {
			if strings.ContainsAny(l, "\r\n") || strings.HasPrefix(l, ".") {
				t.Errorf("Body(%d) line %d = %q: bare CR/LF or leading dot", size, i, l)
			}
		}
	}
}

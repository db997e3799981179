package interop

import (
	"encoding/json"
	"testing"
)

// TestTestsslFindingScope classifies findings by what they are about. The
// JSON lines are what testssl.sh 3.2 writes: "engine_problem" comes from
// fileout_insert_warning before any target is known, so its ip is "/"
// (testssl's "$NODE/$NODEIP" with both empty).
func TestTestsslFindingScope(t *testing.T) {
	const host = "127.0.0.1"
	cases := []struct {
		json string
		want findingScope
	}{
		{`{"id":"engine_problem","ip":"/","port":"443","severity":"WARN","finding":"No engine or GOST support via engine with your /usr/bin/openssl"}`, scopeScanner},
		{`{"id":"too_old_openssl","ip":"/","port":"443","severity":"WARN","finding":"Update openssl binaries"}`, scopeScannerUnusable},
		{`{"id":"old_fart","ip":"/","port":"443","severity":"WARN","finding":"Your openssl is an old fart"}`, scopeScannerUnusable},
		{`{"id":"TLS1","ip":"127.0.0.1/127.0.0.1","port":"2525","severity":"OK","finding":"not offered"}`, scopeTarget},
		{`{"id":"service","ip":"localhost/127.0.0.1","port":"2525","severity":"INFO","finding":"SMTP"}`, scopeTarget},
		// A meta-IP finding that is not a known scanner warning is about
		// nobody we know: reject it rather than guess.
		{`{"id":"TLS1","ip":"/","port":"443","severity":"HIGH","finding":"offered"}`, scopeOther},
		{`{"id":"TLS1","ip":"192.0.2.1/192.0.2.1","port":"25","severity":"HIGH","finding":"offered"}`, scopeOther},
		{`{"id":"TLS1","ip":"","port":"25","severity":"HIGH","finding":"offered"}`, scopeTarget},
	}
	for _, c := range cases {
		var f testsslFinding
		if err := json.Unmarshal([]byte(c.json), &f); err != nil {
			t.Fatal(err)
		}
		if got := classifyFinding(f, host); got != c.want {
			t.Errorf("classifyFinding(%s) = %v, want %v", c.json, got, c.want)
		}
	}
}

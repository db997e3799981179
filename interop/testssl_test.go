package interop

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailtls/mailtls/certstore"
	"github.com/mailtls/mailtls/transport"
)

// testsslFinding is one entry of testssl.sh's flat JSON output
// (--jsonfile): one finding per check id.
type testsslFinding struct {
	ID       string `json:"id"`
	IP       string `json:"ip"`
	Port     string `json:"port"`
	Severity string `json:"severity"`
	Finding  string `json:"finding"`
}

// startTLSServer serves kind on a fresh 127.0.0.1 port and returns the
// address. The server's *tls.Config is built by certstore.Store.TLSConfig
// (zero TLSOptions: the RFC 9325 defaults) from a Store holding only cert,
// and its inbound policy is the zero (strict) one, as an application using
// the library gets by default. It is shut down when the test ends.
func startTLSServer(t *testing.T, kind transport.ListenerKind, cert *tls.Certificate) string {
	t.Helper()
	store, err := certstore.New(certstore.Source{Certificate: cert})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := store.TLSConfig(certstore.TLSOptions{})
	if err != nil {
		t.Fatal(err)
	}
	srv := &transport.Server{
		Hostname:  "mx.test",
		Kind:      kind,
		TLSConfig: cfg,
		Handler: transport.HandlerFunc(func(ctx context.Context, env *transport.Envelope, body io.Reader) error {
			_, err := io.Copy(io.Discard, body)
			return err
		}),
		Authenticator: refuseAll{},
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-served; !errors.Is(err, transport.ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return l.Addr().String()
}

// refuseAll is an Authenticator that accepts no credentials; testssl.sh
// never authenticates, but submission listeners need one.
type refuseAll struct{}

func (refuseAll) Authenticate(context.Context, string, string) error { return transport.ErrAuthFailed }

// runTestssl runs testssl.sh against addr (an IP literal on loopback, so no
// name is resolved: --nodns none) with the given check options and returns
// its findings by id. The run is bounded by timeout; on expiry the whole
// process group testssl started (it forks openssl and bash subshells) is
// killed by its PID.
func runTestssl(t *testing.T, bin, addr string, timeout time.Duration, checks ...string) map[string]testsslFinding {
	t.Helper()
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		t.Fatalf("refusing to scan %q: not a loopback IP literal", addr)
	}
	dir := t.TempDir()
	jsonFile := filepath.Join(dir, "findings.json")
	args := append([]string{
		"--quiet", "--warnings", "off", "--color", "0",
		"--nodns", "none", // the target is an IP literal: no DNS at all
		"--connect-timeout", "10", "--openssl-timeout", "10",
		"--jsonfile", jsonFile,
	}, checks...)
	args = append(args, addr)

	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	// testssl.sh reads its tuning from the environment; start from a known
	// one so nothing on the host (a proxy, an OPENSSL override) applies.
	// HEADER_MAXSLEEP bounds testssl's service detection on implicit-TLS
	// ports (an HTTP GET it waits on; default 5 s), which nothing here
	// asserts on.
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "TMPDIR=" + dir, "TERM=dumb", "LC_ALL=C",
		"HEADER_MAXSLEEP=2"}
	start := time.Now()
	out, err := cmd.CombinedOutput()
	t.Logf("testssl %s: %v in %s", strings.Join(args, " "), err, time.Since(start).Round(time.Millisecond))
	if ctx.Err() != nil {
		t.Fatalf("testssl did not finish within %s:\n%s", timeout, out)
	}
	// testssl.sh's exit status is not a verdict (3.0 returns the number of
	// some findings); the JSON file is. A run that produced none failed.
	raw, rerr := os.ReadFile(jsonFile)
	if rerr != nil {
		t.Fatalf("testssl wrote no JSON findings (%v, exit %v):\n%s", rerr, err, out)
	}
	var list []testsslFinding
	if err := json.Unmarshal(raw, &list); err != nil {
		t.Fatalf("parsing testssl JSON: %v\n%s", err, raw)
	}
	found := make(map[string]testsslFinding, len(list))
	ids := make([]string, 0, len(list))
	for _, f := range list {
		switch classifyFinding(f, host) {
		case scopeScanner:
			t.Logf("testssl warning about its own environment, not the server: %s: %s", f.ID, f.Finding)
			continue
		case scopeScannerUnusable:
			t.Fatalf("testssl cannot scan reliably here (%s): %s", f.ID, f.Finding)
		case scopeOther:
			t.Fatalf("testssl reported on %q, not on %s: %+v", f.IP, host, f)
		}
		if _, dup := found[f.ID]; !dup {
			ids = append(ids, f.ID)
		}
		found[f.ID] = f
	}
	sort.Strings(ids)
	var b strings.Builder
	for _, id := range ids {
		f := found[id]
		b.WriteString("  " + id + " [" + f.Severity + "] " + f.Finding + "\n")
	}
	t.Logf("testssl findings against %s:\n%s", addr, b.String())
	if t.Failed() || os.Getenv("MAILTLS_TESTSSL_VERBOSE") == "1" {
		t.Logf("testssl output:\n%s", out)
	}
	return found
}

// findingScope says what a testssl.sh finding is about.
type findingScope int

const (
	scopeTarget          findingScope = iota // the scanned server
	scopeScanner                             // the scanner's own environment, harmless
	scopeScannerUnusable                     // the scanner's own environment, results unreliable
	scopeOther                               // another host, or nothing we can name
)

// testsslClientProblems are the findings testssl.sh writes with
// fileout_insert_warning ("clientProblem" in its pretty JSON) about its own
// OpenSSL, before any target is known, so with the meta IP "/". Only
// engine_problem (no GOST engine, as in Debian's OpenSSL 3) leaves the
// protocol and cipher checks intact.
var testsslClientProblems = map[string]findingScope{
	"engine_problem":  scopeScanner,
	"old_fart":        scopeScannerUnusable,
	"too_old_openssl": scopeScannerUnusable,
}

// classifyFinding places f: a finding with testssl's meta IP "/" ("$NODE/$NODEIP"
// with neither set) is about the scanner when its id is a known client
// problem; a finding naming an IP must name host; anything else is rejected.
func classifyFinding(f testsslFinding, host string) findingScope {
	switch {
	case f.IP == "/":
		if s, ok := testsslClientProblems[f.ID]; ok {
			return s
		}
		return scopeOther
	case f.IP == "":
		return scopeTarget
	case f.IP == host || strings.HasSuffix(f.IP, "/"+host):
		return scopeTarget
	}
	return scopeOther
}

// errorer is the part of *testing.T the checks below use, so that the
// negative control can record what they report instead of failing.
type errorer interface {
	Helper()
	Errorf(format string, args ...any)
}

// problems records what a check reported.
type problems []string

func (*problems) Helper() {}
func (p *problems) Errorf(format string, args ...any) {
	*p = append(*p, fmt.Sprintf(format, args...))
}

// wantFinding checks that finding id exists and that its text starts with
// one of the accepted values.
func wantFinding(t errorer, found map[string]testsslFinding, id string, accepted ...string) {
	t.Helper()
	f, ok := found[id]
	if !ok {
		t.Errorf("testssl reported no finding %q", id)
		return
	}
	for _, a := range accepted {
		if strings.HasPrefix(f.Finding, a) {
			return
		}
	}
	t.Errorf("testssl %s = %q (severity %s), want one of %q", id, f.Finding, f.Severity, accepted)
}

// rsaSelfSigned returns a self-signed RSA-2048 certificate for name, so
// that the RSA-authenticated TLS 1.2 suites (the ones a static-RSA key
// exchange would show up among) are scanned too; certstore's generator
// makes ECDSA only.
func rsaSelfSigned(t *testing.T, name string) *tls.Certificate {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: name},
		DNSNames:              []string{name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// The cipher suites RFC 9325 §4.2 allows a server to offer: TLS 1.3's
// (all AEAD with (EC)DHE, RFC 8446 §B.4) and, for TLS 1.2, ECDHE key
// exchange with an AEAD cipher. Names are IANA's, the last column of
// testssl.sh's cipher_x<hex> findings.
func rfc9325Suite(iana string) bool {
	if strings.HasPrefix(iana, "TLS_AES_") || strings.HasPrefix(iana, "TLS_CHACHA20_POLY1305_") {
		return true
	}
	return strings.HasPrefix(iana, "TLS_ECDHE_") &&
		(strings.Contains(iana, "_GCM_") || strings.Contains(iana, "_CHACHA20_POLY1305_"))
}

// checkProtocols asserts RFC 9325 §3.1.1 / RFC 8996 on testssl's -p
// findings: no SSL 2/3 or TLS 1.0/1.1, TLS 1.2 and 1.3 offered.
func checkProtocols(t errorer, found map[string]testsslFinding) {
	t.Helper()
	for _, id := range []string{"SSLv2", "SSLv3", "TLS1", "TLS1_1"} {
		wantFinding(t, found, id, "not offered")
	}
	wantFinding(t, found, "TLS1_2", "offered")
	wantFinding(t, found, "TLS1_3", "offered") // 3.0.8 says "offered with final"
}

// checkCategories asserts testssl's -s cipher categories: nothing
// without encryption or authentication, no export, LOW (DES, RC2, RC4,
// 64-bit), 3DES/IDEA or obsolete CBC suites; strong (AEAD) suites
// offered. testssl 3.2 renamed some ids; both spellings are accepted.
func checkCategories(t errorer, found map[string]testsslFinding) {
	t.Helper()
	for _, id := range []string{"cipherlist_NULL", "cipherlist_aNULL", "cipherlist_EXPORT", "cipherlist_LOW", "cipherlist_3DES_IDEA"} {
		wantFinding(t, found, id, "not offered")
	}
	wantFinding(t, found, anyID(found, "cipherlist_AVERAGE", "cipherlist_OBSOLETED"), "not offered")
	if _, ok := found["cipherlist_STRONG_NOFS"]; ok { // testssl >= 3.1
		wantFinding(t, found, "cipherlist_STRONG_NOFS", "not offered")
		wantFinding(t, found, "cipherlist_STRONG_FS", "offered")
	} else {
		wantFinding(t, found, "cipherlist_STRONG", "offered")
	}
}

// anyID returns the first of ids testssl reported, or the first id.
func anyID(found map[string]testsslFinding, ids ...string) string {
	for _, id := range ids {
		if _, ok := found[id]; ok {
			return id
		}
	}
	return ids[0]
}

// checkEachCipher asserts on testssl's -e findings (one cipher_x<hex> per
// suite the server accepted, each probed on its own): every suite offered
// is an RFC 9325 §4.2 one with forward secrecy, and the set is exactly
// what the configuration enables for this certificate's key type, so a
// suite missing from the scan also fails.
func checkEachCipher(t errorer, found map[string]testsslFinding, want []string) {
	t.Helper()
	var got []string
	for id, f := range found {
		if !strings.HasPrefix(id, "cipher_x") {
			continue
		}
		fields := strings.Fields(f.Finding)
		if len(fields) == 0 {
			t.Errorf("testssl %s: empty finding", id)
			continue
		}
		iana := fields[len(fields)-1]
		if !rfc9325Suite(iana) {
			t.Errorf("testssl found a suite outside RFC 9325 §4.2 (ECDHE+AEAD or TLS 1.3) offered: %s (%s)", iana, f.Finding)
		}
		if !strings.Contains(f.Finding, "ECDH") {
			t.Errorf("testssl found suite %s offered without an ECDH key exchange: %s", iana, f.Finding)
		}
		got = append(got, iana)
	}
	sort.Strings(got)
	want = slices.Clone(want)
	sort.Strings(want)
	if !slices.Equal(got, want) {
		t.Errorf("testssl found these suites offered:\n  %s\nwant exactly:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// expectedSuites is what the server should accept with a certificate of
// the given signature algorithm: TLS 1.3's three suites plus the
// certstore.CipherSuites() entries authenticated by that key type.
func expectedSuites(auth string) []string {
	want := []string{"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}
	for _, id := range certstore.CipherSuites() {
		if name := tls.CipherSuiteName(id); strings.HasPrefix(name, "TLS_ECDHE_"+auth+"_") {
			want = append(want, name)
		}
	}
	return want
}

// checkFS asserts testssl's -f verdict: forward secrecy offered (RFC 9325
// §4.1, §4.2).
func checkFS(t errorer, found map[string]testsslFinding) {
	t.Helper()
	wantFinding(t, found, anyID(found, "PFS", "FS"), "offered")
	if f, ok := found[anyID(found, "PFS_ciphers", "FS_ciphers")]; ok {
		for _, c := range strings.Fields(f.Finding) {
			if !strings.HasPrefix(c, "TLS_") && !strings.HasPrefix(c, "ECDHE-") {
				t.Errorf("forward-secret suite list holds %q", c)
			}
		}
	}
}

// checkNoScanProblem fails on any finding testssl.sh gives when a check
// could not run (id scanProblem, severity WARN or FATAL), so that a scan
// that broke half-way is not read as "not offered".
func checkNoScanProblem(t errorer, found map[string]testsslFinding) {
	t.Helper()
	for id, f := range found {
		if strings.HasPrefix(id, "scanProblem") || f.Severity == "WARN" || f.Severity == "FATAL" {
			t.Errorf("testssl reported a scan problem: %s [%s] %s", id, f.Severity, f.Finding)
		}
	}
}

// TestTestsslSTARTTLS scans the STARTTLS (RFC 3207) port of an in-process
// transport.Server whose *tls.Config comes from certstore.Store.TLSConfig
// with the zero TLSOptions, once with an ECDSA and once with an RSA
// certificate, with testssl.sh (Debian package testssl.sh): protocols
// (-p), cipher categories (-s), forward secrecy (-f) and every cipher
// probed singly (-e), as RFC 9325 (BCP 195) requires and the certstore
// package documents.
func TestTestsslSTARTTLS(t *testing.T) {
	bin := requireTool(t, "testssl", "testssl.sh")
	ecdsa, err := certstore.GenerateSelfSigned([]string{"mx.test"}, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, auth string
		cert       *tls.Certificate
	}{
		{"ECDSA", "ECDSA", ecdsa},
		{"RSA", "RSA", rsaSelfSigned(t, "mx.test")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := startTLSServer(t, transport.KindMX, tc.cert)
			found := runTestssl(t, bin, addr, testsslTimeout,
				"--starttls", "smtp", "--protocols", "--std", "--fs", "--each-cipher")
			wantFinding(t, found, "service", "smtp")
			checkNoScanProblem(t, found)
			checkProtocols(t, found)
			checkCategories(t, found)
			checkFS(t, found)
			checkEachCipher(t, found, expectedSuites(tc.auth))
		})
	}
}

// TestTestsslSubmissionsImplicitTLS scans the implicit-TLS submission
// listener (RFC 8314 §3, KindSubmissions), where the handshake starts on
// connect: the same protocol versions, cipher categories and offered
// suites as on the STARTTLS port.
func TestTestsslSubmissionsImplicitTLS(t *testing.T) {
	bin := requireTool(t, "testssl", "testssl.sh")
	cert, err := certstore.GenerateSelfSigned([]string{"mx.test"}, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	addr := startTLSServer(t, transport.KindSubmissions, cert)
	found := runTestssl(t, bin, addr, testsslTimeout, "--protocols", "--std", "--each-cipher")
	checkNoScanProblem(t, found)
	checkProtocols(t, found)
	checkCategories(t, found)
	checkEachCipher(t, found, expectedSuites("ECDSA"))
}

// testsslTimeout bounds one testssl.sh run; a run takes 10-20 s on an idle
// 2-core machine.
const testsslTimeout = 150 * time.Second

// TestTestsslNegativeControl shows that the scan and the checks above can
// fail: testssl.sh scans a deliberately weak crypto/tls listener (TLS 1.0
// minimum; CBC, 3DES, RC4 and static-RSA suites) and every check must
// report the weakness by its finding id.
func TestTestsslNegativeControl(t *testing.T) {
	bin := requireTool(t, "testssl", "testssl.sh")
	cfg := &tls.Config{
		Certificates: []tls.Certificate{*rsaSelfSigned(t, "weak.test")},
		MinVersion:   tls.VersionTLS10,
		CipherSuites: []uint16{
			tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, // obsolete CBC
			tls.TLS_RSA_WITH_3DES_EDE_CBC_SHA,      // 3DES, no forward secrecy
			tls.TLS_ECDHE_RSA_WITH_RC4_128_SHA,     // RC4
			tls.TLS_RSA_WITH_AES_128_GCM_SHA256,    // static RSA key exchange
		},
	}
	l, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(30 * time.Second))
				io.Copy(io.Discard, c)
			}()
		}
	}()
	t.Cleanup(func() { l.Close(); <-done })

	found := runTestssl(t, bin, l.Addr().String(), testsslTimeout, "--protocols", "--std", "--each-cipher")
	expect := func(what string, check func(errorer), ids ...string) {
		t.Helper()
		var p problems
		check(&p)
		all := strings.Join(p, "\n")
		for _, id := range ids {
			if !strings.Contains(all, id) {
				t.Errorf("%s did not report %s against the weak server; it reported:\n%s", what, id, all)
			}
		}
		t.Logf("%s reported, as it must:\n  %s", what, strings.Join(p, "\n  "))
	}
	expect("checkProtocols", func(e errorer) { checkProtocols(e, found) }, "TLS1 ", "TLS1_1 ")
	expect("checkCategories", func(e errorer) { checkCategories(e, found) },
		"cipherlist_LOW", "cipherlist_3DES_IDEA", anyID(found, "cipherlist_AVERAGE", "cipherlist_OBSOLETED"))
	expect("checkEachCipher", func(e errorer) { checkEachCipher(e, found, expectedSuites("RSA")) },
		"TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
		"TLS_ECDHE_RSA_WITH_RC4_128_SHA", "TLS_RSA_WITH_AES_128_GCM_SHA256")
}

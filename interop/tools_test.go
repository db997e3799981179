package interop

import (
	"os"
	"os/exec"
	"testing"
)

// requireTool returns the path of a third-party program. In CI
// (MAILTLS_INTEROP=1) a missing tool is a failure, never a skip.
func requireTool(t *testing.T, name string, alternatives ...string) string {
	t.Helper()
	for _, n := range append([]string{name}, alternatives...) {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
		for _, dir := range []string{"/usr/sbin", "/usr/lib/postfix/sbin", "/usr/bin"} {
			p := dir + "/" + n
			if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
				return p
			}
		}
	}
	if os.Getenv("MAILTLS_INTEROP") == "1" {
		t.Fatalf("interop tool %q is not installed; .ci/run must install it", name)
	}
	t.Skipf("interop tool %q not installed (set MAILTLS_INTEROP=1 to make this a failure)", name)
	return ""
}

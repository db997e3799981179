package ndr

import (
	"os"
	"path/filepath"
	"testing"
)

// sharedTestdata returns the folder of shared third-party test data (which
// holds dsn/), read in place and never copied. MAILTLS_TESTDATA names it; if
// set and missing, the test fails. If unset, ../../shared/testdata relative
// to this package is tried, and the test is skipped if it is absent.
func sharedTestdata(t testing.TB) string {
	t.Helper()
	if dir := os.Getenv("MAILTLS_TESTDATA"); dir != "" {
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			t.Fatalf("MAILTLS_TESTDATA=%q is not a folder: %v", dir, err)
		}
		return dir
	}
	dir := filepath.Join("..", "..", "shared", "testdata")
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		t.Skipf("shared test data not found at %s; set MAILTLS_TESTDATA", dir)
	}
	return dir
}

// sampleDSNs lists the third-party DSN samples.
func sampleDSNs(t testing.TB) []string {
	t.Helper()
	dir := filepath.Join(sharedTestdata(t), "dsn")
	files, err := filepath.Glob(filepath.Join(dir, "*.eml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no *.eml samples in %s", dir)
	}
	return files
}

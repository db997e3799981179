package pgstore

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/pgtest"
	"github.com/mailtls/mailtls/policy/mtasts"
)

// TestPolicyCacheShared: a policy one node caches is read, parsed, by
// another node; Put replaces it, Domains lists it, Delete removes it; a
// domain never cached is a miss, not an error.
func TestPolicyCacheShared(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.DB(t)
	a, b := openLease(t, dsn, "a").PolicyCache(), openLease(t, dsn, "b").PolicyCache()
	text := "version: STSv1\r\nmode: enforce\r\nmx: mx.example.net\r\nmax_age: 86400\r\n"
	now := time.Now().UTC().Truncate(time.Second)
	if err := a.Put(ctx, mtasts.Entry{Domain: "example.net", RecordID: "id1", Text: text, Fetched: now, Expires: now.Add(24 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	e, ok, err := b.Get(ctx, "example.net")
	if err != nil || !ok {
		t.Fatalf("b.Get = %v, %v", ok, err)
	}
	if e.RecordID != "id1" || e.Text != text || !e.Expires.Equal(now.Add(24*time.Hour)) || e.Policy.Mode != mtasts.ModeEnforce ||
		!slices.Equal(e.Policy.MX, []string{"mx.example.net"}) {
		t.Fatalf("entry read on b: %+v", e)
	}
	if err := b.Put(ctx, mtasts.Entry{Domain: "example.net", RecordID: "id2", Text: text, Fetched: now, Expires: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if e, _, _ := a.Get(ctx, "example.net"); e.RecordID != "id2" {
		t.Fatalf("a sees record id %q after b's Put", e.RecordID)
	}
	if d, err := a.Domains(ctx); err != nil || !slices.Equal(d, []string{"example.net"}) {
		t.Fatalf("Domains = %v, %v", d, err)
	}
	if _, ok, err := a.Get(ctx, "other.example"); ok || err != nil {
		t.Fatalf("Get of an uncached domain = %v, %v", ok, err)
	}
	if err := a.Delete(ctx, "example.net"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := b.Get(ctx, "example.net"); ok {
		t.Fatal("b still sees the deleted entry")
	}
}

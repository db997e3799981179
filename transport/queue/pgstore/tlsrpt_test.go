package pgstore

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/pgtest"
	"github.com/mailtls/mailtls/policy/tlsrpt"
)

// TestTLSRPTStoreShared: results recorded by two nodes are all given back,
// by time range, to either node (so one report can cover both); Prune
// deletes the older ones; a result without policy domain is refused.
func TestTLSRPTStoreShared(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.DB(t)
	a, b := openLease(t, dsn, "a").TLSRPTStore(), openLease(t, dsn, "b").TLSRPTStore()
	day := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	rec := func(st tlsrpt.Store, at time.Time, mx string) {
		t.Helper()
		r := tlsrpt.Result{Time: at, PolicyDomain: "example.net", PolicyType: tlsrpt.PolicySTS,
			ResultType: tlsrpt.ResultSuccess, ReceivingMXHostname: mx}
		if err := st.Record(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	rec(a, day.Add(time.Hour), "a1")
	rec(b, day.Add(2*time.Hour), "b1")
	rec(b, day.Add(25*time.Hour), "b-next-day")
	var got []string
	if err := a.Results(ctx, day, day.Add(24*time.Hour), func(r tlsrpt.Result) error {
		got = append(got, r.ReceivingMXHostname)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	if !slices.Equal(got, []string{"a1", "b1"}) {
		t.Fatalf("day's results on a: %v", got)
	}
	if err := b.Prune(ctx, day.Add(24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	got = nil
	a.Results(ctx, time.Time{}, day.Add(48*time.Hour), func(r tlsrpt.Result) error {
		got = append(got, r.ReceivingMXHostname)
		return nil
	})
	if !slices.Equal(got, []string{"b-next-day"}) {
		t.Fatalf("after Prune: %v", got)
	}
	if err := a.Record(ctx, tlsrpt.Result{PolicyType: tlsrpt.PolicySTS}); err == nil {
		t.Fatal("a result without policy domain was recorded")
	}
}

// TestReportDaysOnce: of two nodes, only the one that took a day reports
// it; a day given back (a failed report) is taken by the other node; a
// day done is taken by none.
func TestReportDaysOnce(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.DB(t)
	a, b := openLease(t, dsn, "a").ReportDays(), openLease(t, dsn, "b").ReportDays()
	day := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	begin := func(m tlsrpt.DayMarker) bool {
		t.Helper()
		ok, err := m.Begin(ctx, day)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !begin(a) || begin(b) {
		t.Fatal("the first Begin must take the day and the second must not")
	}
	if err := a.Abort(ctx, day); err != nil {
		t.Fatal(err)
	}
	if !begin(b) || begin(a) {
		t.Fatal("after a gave the day back, b must take it and a must not")
	}
	if err := b.Done(ctx, day, 3); err != nil {
		t.Fatal(err)
	}
	if begin(a) || begin(b) {
		t.Fatal("a reported day was taken again")
	}
}

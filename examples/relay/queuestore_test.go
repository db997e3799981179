package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/pgtest"
	"github.com/mailtls/mailtls/transport/queue"
	"github.com/mailtls/mailtls/transport/queue/pgstore"
	"github.com/mailtls/mailtls/transport/transporttest"
)

// Two relays on one -queue database: each accepts mail, and every message
// reaches the partner exactly once; both use the PostgreSQL store, and keep
// their MTA-STS cache, TLS-RPT results and reported days in it.
func TestSharedQueueTwoRelays(t *testing.T) {
	dsn := pgtest.DB(t)
	partner := transporttest.NewServer(t, transporttest.ServerConfig{Cert: transporttest.GoodCert})
	ca := writeFile(t, "ca.pem", string(partner.CA.CertPEM))
	route := "partner.example=127.0.0.1:" + fmt.Sprint(partner.Port)
	var relays []*testRelay
	for range 2 {
		tr := startRelay(t, "-queue", dsn, "-relay-networks", "127.0.0.0/8",
			"-route", route, "-outbound-ca", ca, "-default-tls", "encrypt", "-mta-sts", "-tlsrpt")
		if _, ok := tr.queue.Store.(*pgstore.Store); !ok {
			t.Fatalf("queue store is %T, want *pgstore.Store", tr.queue.Store)
		}
		// The state the relays share lives in the database too.
		pg := tr.queue.Store.(*pgstore.Store)
		if got, want := fmt.Sprintf("%T", tr.mtasts.Cache), fmt.Sprintf("%T", pg.PolicyCache()); got != want {
			t.Errorf("MTA-STS cache %s, want %s", got, want)
		}
		if got, want := fmt.Sprintf("%T", tr.connector.TLSRPT), fmt.Sprintf("%T", pg.TLSRPTStore()); got != want {
			t.Errorf("TLS-RPT store %s, want %s", got, want)
		}
		if tr.reporter == nil || tr.reporter.Days == nil {
			t.Errorf("TLS-RPT reporter without the shared day marker")
		}
		relays = append(relays, tr)
	}
	const n = 10
	for i := range n {
		c := relays[i%2].dialTLS(t, "smtp")
		if err := send(c, "sender@example.org", []string{fmt.Sprintf("r%d@partner.example", i)}, testBody); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	waitFor(t, "delivery to the partner", 30*time.Second, func() bool { return len(partner.Messages()) >= n })
	time.Sleep(500 * time.Millisecond) // a duplicate would arrive by now
	seen := map[string]int{}
	for _, m := range partner.Messages() {
		for _, r := range m.Envelope.Recipients {
			seen[r.Address]++
		}
	}
	for i := range n {
		if a := fmt.Sprintf("r%d@partner.example", i); seen[a] != 1 {
			t.Errorf("%s delivered %d times", a, seen[a])
		}
	}
}

// TestSpoolLayout: a new -data directory gets the log spool; one with a
// dir spool from before keeps it, and -spool log refuses to leave its
// messages behind.
func TestSpoolLayout(t *testing.T) {
	open := func(cfg *Config) (queue.Store, error) {
		st, err := openStore(cfg)
		if err == nil {
			t.Cleanup(func() { st.(interface{ Close() error }).Close() })
		}
		return st, err
	}
	fresh := &Config{DataDir: t.TempDir()}
	if st, err := open(fresh); err != nil {
		t.Fatal(err)
	} else if _, ok := st.(*queue.LogStore); !ok {
		t.Errorf("new data directory: %T, want *queue.LogStore", st)
	}
	old := &Config{DataDir: t.TempDir()}
	ds, err := queue.OpenDirStore(old.path("queue"))
	if err != nil {
		t.Fatal(err)
	}
	msg := &queue.Message{ID: "left", From: "a@example.org", Recipients: []*queue.Recipient{{Address: "b@example.net"}}}
	if err := ds.Create(context.Background(), msg, strings.NewReader("x\r\n")); err != nil {
		t.Fatal(err)
	}
	ds.Close()
	if st, err := open(old); err != nil {
		t.Fatal(err)
	} else if _, ok := st.(*queue.DirStore); !ok {
		t.Errorf("data directory with queue/: %T, want *queue.DirStore", st)
	}
	old.Spool = "log"
	if _, err := open(old); err == nil || !strings.Contains(err.Error(), "still holds 1 messages") {
		t.Errorf("-spool log over a non-empty dir spool: %v", err)
	}
	if _, err := open(&Config{DataDir: t.TempDir(), Spool: "mbox"}); err == nil {
		t.Error("-spool mbox accepted")
	}
}

package pgstore

import (
	"context"
	"crypto/tls"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/pgtest"
	"github.com/mailtls/mailtls/transport"
	"github.com/mailtls/mailtls/transport/queue"
	"github.com/mailtls/mailtls/transport/smtpclient"
	"github.com/mailtls/mailtls/transport/transporttest"
)

// faultServer is a transport.Server whose Handler is a Queue on st.
func faultServer(t *testing.T, st *Store) (addr string, cfg *tls.Config) {
	t.Helper()
	q := &queue.Queue{Store: st, Hostname: "relay.test",
		Deliverer: queue.DeliverFunc(func(context.Context, *transport.Envelope, io.ReaderAt, int64) (*transport.Result, error) {
			return &transport.Result{}, nil
		})}
	ts := transporttest.NewTransportServer(t, &transport.Server{Hostname: "relay.test", Handler: q})
	return ts.Addr, ts.ClientTLSConfig()
}

// sendOne sends one message over STARTTLS and returns the reply to the
// end of its data.
func sendOne(t *testing.T, addr string, cfg *tls.Config) *smtpclient.Reply {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := (&smtpclient.Dialer{Hello: "client.test", TLSConfig: cfg}).Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, cmd := range []string{"MAIL FROM:<a@example.org>", "RCPT TO:<b@example.net>", "DATA"} {
		if _, err := c.Cmd(ctx, 10*time.Second, cmd); err != nil {
			t.Fatal(err)
		}
	}
	r, err := c.Data(ctx, 10*time.Second, strings.NewReader("Subject: x\r\n\r\nx\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// The database going away while the relay runs: the message in
// transmission gets "451 4.3.0" at the end of its data, never 250; once
// the database is back, mail is accepted again. A database whose disk is
// full answers "452 4.3.1".
func TestDatabaseFaults(t *testing.T) {
	cluster := pgtest.Shared(t)
	st := open(t, Options{})
	addr, cfg := faultServer(t, st)
	if r := sendOne(t, addr, cfg); r.Code != 250 {
		t.Fatalf("with the database up: %d %v", r.Code, r.Lines)
	}
	var down *smtpclient.Reply
	if err := cluster.Down(func() { down = sendOne(t, addr, cfg) }); err != nil {
		t.Fatal(err)
	}
	if ec, _ := down.Enhanced(); down.Code != 451 || ec.String() != "4.3.0" {
		t.Errorf("with the database down: %d %v, want 451 4.3.0", down.Code, down.Lines)
	}
	deadline := time.Now().Add(20 * time.Second)
	for r := sendOne(t, addr, cfg); r.Code != 250; r = sendOne(t, addr, cfg) {
		if time.Now().After(deadline) {
			t.Fatalf("after the database came back: %d %v", r.Code, r.Lines)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// ENOSPC on the database host is SQLSTATE 53100 for the inserting
	// statement; a trigger raises exactly that.
	_, err := st.pool.Exec(context.Background(), `
CREATE FUNCTION full_disk() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'could not extend file: No space left on device' USING ERRCODE = 'disk_full'; END $$;
CREATE TRIGGER full_disk BEFORE INSERT ON queue_message FOR EACH ROW EXECUTE FUNCTION full_disk();`)
	if err != nil {
		t.Fatal(err)
	}
	full := sendOne(t, addr, cfg)
	if ec, _ := full.Enhanced(); full.Code != 452 || ec.String() != "4.3.1" {
		t.Errorf("with the database's disk full: %d %v, want 452 4.3.1", full.Code, full.Lines)
	}
}

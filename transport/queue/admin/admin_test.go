package admin

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mailtls/mailtls/transport"
	"github.com/mailtls/mailtls/transport/queue"
)

// deliverer defers every recipient until accept is set, and counts the
// attempts per recipient.
type deliverer struct {
	accept   atomic.Bool
	mu       sync.Mutex
	attempts map[string]int
}

func (d *deliverer) Deliver(_ context.Context, env *transport.Envelope, _ io.ReaderAt, _ int64) (*transport.Result, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	res := &transport.Result{}
	for _, r := range env.Recipients {
		d.attempts[r.Address]++
		rr := transport.RecipientResult{Recipient: r, Status: transport.Deferred,
			Reply:     &transport.Error{Code: 451, EnhancedCode: transport.EnhancedCode{4, 4, 1}, Message: "no answer from mx.example.net"},
			RemoteMTA: transport.RemoteMTA{Host: "mx.example.net", Port: 25}}
		if d.accept.Load() {
			rr.Status, rr.Reply = transport.Delivered, &transport.Error{Code: 250, Message: "OK"}
		}
		res.Recipients = append(res.Recipients, rr)
	}
	return res, nil
}

func (d *deliverer) count(addr string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.attempts[addr]
}

type fixture struct {
	q     *queue.Queue
	store *queue.DirStore
	d     *deliverer
	path  string
	c     *Client
}

// start runs a Queue on a DirStore (retries an hour apart) and a Server
// for it on a Unix socket; both stop when the test ends.
func start(t *testing.T, srv *Server) *fixture {
	t.Helper()
	dir := t.TempDir()
	store, err := queue.OpenDirStore(filepath.Join(dir, "queue"))
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{store: store, d: &deliverer{attempts: map[string]int{}}, path: filepath.Join(dir, "admin.sock")}
	f.q = &queue.Queue{Store: store, Deliverer: f.d, Hostname: "relay.test",
		Backoff: []time.Duration{time.Hour}, PollInterval: 5 * time.Millisecond}
	srv.Queue = f.q
	l, err := Listen(f.path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	qdone, sdone := make(chan error, 1), make(chan error, 1)
	go func() { qdone <- f.q.Run(ctx) }()
	go func() { sdone <- srv.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		for _, c := range []chan error{qdone, sdone} {
			if err := <-c; !errors.Is(err, context.Canceled) {
				t.Errorf("stopped with %v", err)
			}
		}
		store.Close()
	})
	f.c = &Client{Path: f.path, Timeout: 10 * time.Second}
	return f
}

func (f *fixture) enqueue(t *testing.T, rcpts ...string) string {
	t.Helper()
	env := &transport.Envelope{From: "alice@example.org"}
	for _, r := range rcpts {
		env.Recipients = append(env.Recipients, transport.Recipient{Address: r})
	}
	id, err := f.q.Enqueue(context.Background(), env, strings.NewReader("Subject: x\r\n\r\nx\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// Every command, through a real Unix socket, against a running Queue on
// a DirStore: the answer and the effect on the queue.
func TestCommands(t *testing.T) {
	f := start(t, &Server{})
	ctx := context.Background()
	fi, err := os.Stat(f.path)
	if err != nil || fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket %v, %v; want a socket with mode 0600", fi.Mode(), err)
	}
	id1 := f.enqueue(t, "bob@example.net")
	time.Sleep(2 * time.Millisecond) // ids and ages order the listing
	id2 := f.enqueue(t, "carol@other.example")
	waitFor(t, "first attempts", func() bool {
		return f.d.count("bob@example.net") == 1 && f.d.count("carol@other.example") == 1
	})
	waitFor(t, "deferrals recorded", func() bool {
		c, err := f.q.Counts(ctx)
		return err == nil && c[transport.Deferred] == 2
	})

	// list
	resp, err := f.c.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Messages) != 2 || resp.Messages[0].ID != id1 || resp.Messages[1].ID != id2 {
		t.Fatalf("list: %+v", resp.Messages)
	}
	if resp.Counts[transport.Deferred] != 2 || resp.Counts[transport.Held] != 0 || resp.Time.IsZero() {
		t.Fatalf("list counts %v time %v", resp.Counts, resp.Time)
	}

	// show
	m, err := f.c.Show(ctx, id1)
	if err != nil {
		t.Fatal(err)
	}
	r := m.Recipients[0]
	if m.From != "alice@example.org" || r.Address != "bob@example.net" || r.State != transport.Deferred ||
		r.Attempts != 1 || r.LastError.Reply() != "451 4.4.1 no answer from mx.example.net" ||
		r.NextAttempt.Before(time.Now().Add(50*time.Minute)) {
		t.Fatalf("show: %+v, recipient %+v", m, r)
	}
	if _, err := f.c.Show(ctx, "nosuch"); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("show of an unknown id: %v, want not found", err)
	}
	if _, err := f.c.Show(ctx, "../queue/lock"); !errors.Is(err, ErrBadRequest) {
		t.Errorf("show of a path: %v, want bad request", err)
	}

	// retry ID: due now, attempted again, only that message.
	if err := f.c.Retry(ctx, id1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "retry of "+id1, func() bool { return f.d.count("bob@example.net") == 2 })
	// retry -domain, case-insensitive.
	if n, err := f.c.RetryDomain(ctx, "OTHER.example"); err != nil || n != 1 {
		t.Fatalf("retry -domain: %d, %v", n, err)
	}
	waitFor(t, "retry of other.example", func() bool { return f.d.count("carol@other.example") == 2 })
	if n := f.d.count("bob@example.net"); n != 2 {
		t.Fatalf("retry -domain other.example attempted bob %d times", n)
	}
	// retry -all
	waitFor(t, "retries recorded", func() bool {
		c, err := f.q.Counts(ctx)
		return err == nil && c[transport.Deferred] == 2
	})
	if n, err := f.c.RetryAll(ctx); err != nil || n != 2 {
		t.Fatalf("retry -all: %d, %v", n, err)
	}
	waitFor(t, "retry of all", func() bool {
		return f.d.count("bob@example.net") == 3 && f.d.count("carol@other.example") == 3
	})
	if err := f.c.Retry(ctx, "nosuch"); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("retry of an unknown id: %v", err)
	}
	waitFor(t, "retries recorded", func() bool {
		c, err := f.q.Counts(ctx)
		return err == nil && c[transport.Deferred] == 2
	})

	// hold: the destination now accepts, yet a held message is not tried.
	if err := f.c.Hold(ctx, id1); err != nil {
		t.Fatal(err)
	}
	if m, err := f.c.Show(ctx, id1); err != nil || !m.Held {
		t.Fatalf("show after hold: %+v, %v", m, err)
	}
	if resp, err := f.c.List(ctx); err != nil || resp.Counts[transport.Held] != 1 || resp.Counts[transport.Deferred] != 1 {
		t.Fatalf("list after hold: %v, %v", resp.Counts, err)
	}
	f.d.accept.Store(true)
	if n, err := f.c.RetryAll(ctx); err != nil || n != 2 {
		t.Fatalf("retry -all: %d, %v", n, err)
	}
	waitFor(t, id2+" delivered", func() bool {
		_, err := f.q.Get(ctx, id2)
		return errors.Is(err, queue.ErrNotFound)
	})
	time.Sleep(100 * time.Millisecond)
	if n := f.d.count("bob@example.net"); n != 3 {
		t.Fatalf("held message attempted: %d attempts", n)
	}
	// release: delivered.
	if err := f.c.Release(ctx, id1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, id1+" delivered", func() bool {
		_, err := f.c.Show(ctx, id1)
		return errors.Is(err, queue.ErrNotFound)
	})
	if n := f.d.count("bob@example.net"); n != 4 {
		t.Fatalf("bob attempted %d times, want 4", n)
	}
	if err := f.c.Hold(ctx, id1); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("hold of a delivered message: %v", err)
	}

	// remove: gone from the store, without a delivery.
	f.d.accept.Store(false)
	id3 := f.enqueue(t, "dave@example.net")
	waitFor(t, "attempt of "+id3, func() bool { return f.d.count("dave@example.net") == 1 })
	if err := f.c.Remove(ctx, id3); err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.Get(ctx, id3); !errors.Is(err, queue.ErrNotFound) {
		t.Fatalf("store still has %s: %v", id3, err)
	}
	if err := f.c.Remove(ctx, id3); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("second remove: %v", err)
	}
	if resp, err := f.c.List(ctx); err != nil || len(resp.Messages) != 0 {
		t.Fatalf("list at the end: %+v, %v", resp, err)
	}
}

// exchange writes raw lines and reads one response per line.
func exchange(t *testing.T, conn net.Conn, lines ...string) []Response {
	t.Helper()
	br := bufio.NewReader(conn)
	var out []Response
	for _, l := range lines {
		if _, err := io.WriteString(conn, l+"\n"); err != nil {
			t.Fatal(err)
		}
		b, err := br.ReadBytes('\n')
		if err != nil {
			t.Fatalf("after %q: %v", l, err)
		}
		var r Response
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatalf("response %q: %v", b, err)
		}
		out = append(out, r)
	}
	return out
}

// Malformed requests get bad_request and the connection goes on; an
// over-long line ends it.
func TestBadRequests(t *testing.T) {
	f := start(t, &Server{})
	conn, err := net.Dial("unix", f.path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	bad := []string{
		`not json`,
		`{"command":"list","extra":1}`,
		`{"command":"frobnicate"}`,
		`{"command":"show"}`,
		`{"command":"list","id":"x"}`,
		`{"command":"retry"}`,
		`{"command":"retry","id":"x","all":true}`,
		`{"command":"retry","domain":"a b.example"}`,
		`{"command":"retry","domain":"evil\u0000.example"}`,
		`{"command":"hold","id":"a/b"}`,
	}
	for i, r := range exchange(t, conn, bad...) {
		if r.OK || r.Code != CodeBadRequest {
			t.Errorf("%s: %+v, want bad_request", bad[i], r)
		}
	}
	if r := exchange(t, conn, `{"command":"list"}`)[0]; !r.OK {
		t.Fatalf("list after bad requests: %+v", r)
	}
	long := `{"command":"show","id":"` + strings.Repeat("a", MaxRequest) + `"}`
	r := exchange(t, conn, long)[0]
	if r.OK || r.Code != CodeBadRequest || !strings.Contains(r.Error, "longer than") {
		t.Fatalf("over-long request: %+v", r)
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); err == nil {
		t.Fatal("connection still open after an over-long request")
	}
}

// A client that trickles bytes is cut off at the deadline counted from
// its accept; a client beyond MaxConns gets "busy".
func TestHostileClients(t *testing.T) {
	f := start(t, &Server{Timeout: 300 * time.Millisecond, MaxConns: 1})
	conn, err := net.Dial("unix", f.path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	began := time.Now()

	// While the trickler holds the only slot, another client is refused.
	_, err = f.c.List(context.Background())
	if !errors.Is(err, ErrBusy) {
		t.Fatalf("second connection: %v, want busy", err)
	}

	closed := make(chan time.Duration, 1)
	go func() {
		io.Copy(io.Discard, conn)
		closed <- time.Since(began)
	}()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var d time.Duration
trickle:
	for {
		select {
		case d = <-closed:
			break trickle
		case <-tick.C:
			conn.Write([]byte(" ")) // never a newline
			if time.Since(began) > 5*time.Second {
				t.Fatal("trickling client still connected after 5s")
			}
		}
	}
	if d < 250*time.Millisecond || d > 2*time.Second {
		t.Fatalf("trickling client cut off after %v, want about 300ms", d)
	}
	// The slot is free again.
	waitFor(t, "slot freed", func() bool { _, err := f.c.List(context.Background()); return err == nil })
}

// Listen replaces a stale socket but neither a live one nor another file.
func TestListen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "s")
	l, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(path); !errors.Is(err, ErrInUse) {
		t.Errorf("Listen on a live socket: %v, want ErrInUse", err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close() // as a crashed process leaves it
	l, err = Listen(path)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	l.Close()
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket file left after Close: %v", err)
	}
	file := filepath.Join(dir, "f")
	os.WriteFile(file, []byte("keep"), 0o600)
	if _, err := Listen(file); err == nil {
		t.Error("Listen replaced a regular file")
	}
	if b, _ := os.ReadFile(file); string(b) != "keep" {
		t.Error("regular file changed")
	}
}

// flakyListener fails its first Accepts with EMFILE, as a process out of
// file descriptors does (an SMTP connection flood can cause it).
type flakyListener struct {
	net.Listener
	fails atomic.Int32
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if l.fails.Add(-1) >= 0 {
		return nil, &net.OpError{Op: "accept", Net: "unix", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

// A temporary Accept failure (EMFILE) does not stop the server: it
// accepts again after a pause, as net/http does; only a closed listener
// or ctx ends Serve.
func TestAcceptTemporaryError(t *testing.T) {
	f := start(t, &Server{})
	path := filepath.Join(t.TempDir(), "flaky.sock")
	l, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	fl := &flakyListener{Listener: l}
	fl.fails.Store(3)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- (&Server{Queue: f.q}).Serve(ctx, fl) }()
	c := &Client{Path: path, Timeout: 10 * time.Second}
	if _, err := c.List(context.Background()); err != nil {
		t.Errorf("list after temporary accept errors: %v", err)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Serve returned %v, want context.Canceled", err)
	}
}

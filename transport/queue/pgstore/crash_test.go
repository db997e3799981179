package pgstore

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/pgtest"
	"github.com/mailtls/mailtls/internal/syncbuf"
	"github.com/mailtls/mailtls/transport"
	"github.com/mailtls/mailtls/transport/queue"
)

// The cluster crash test runs three nodes, each a child process (this test
// binary, re-executed with MAILTLS_PG_CRASH_CHILD set) with its own Queue
// on one database. Each node accepts mail (Enqueue, then a line in
// accepted.log: the 250) and delivers it through a Deliverer that is the
// "remote side": it appends a line per recipient, with the node's pid and
// the time the delivery began and ended, to delivered.log (O_APPEND,
// fsync) before answering. One recipient of every message fails
// permanently, so each message also makes a DSN, which is delivered the
// same way. The parent kills a random node with SIGKILL every second or two
// and restarts it, ten times, then restarts PostgreSQL itself with
// "pg_ctl restart -m immediate" while the nodes run, then lets the nodes
// drain the queue.
//
//	go test -run TestClusterCrash -v ./transport/queue/pgstore/
const (
	pgCrashEnvMode  = "MAILTLS_PG_CRASH_CHILD" // the DSN
	pgCrashEnvDir   = "MAILTLS_PG_CRASH_DIR"
	pgCrashEnvNode  = "MAILTLS_PG_CRASH_NODE"
	pgCrashEnvSend  = "MAILTLS_PG_CRASH_SEND"  // "1": accept new mail too
	pgCrashEnvSlow  = "MAILTLS_PG_CRASH_SLOW"  // "1": each delivery takes 1.5 s, announced in started.log
	pgCrashEnvLease = "MAILTLS_PG_CRASH_LEASE" // the lease period; 2 s if unset
)

// crashChild is a node: it runs until killed.
func crashChild() {
	dsn, dir, node := os.Getenv(pgCrashEnvMode), os.Getenv(pgCrashEnvDir), os.Getenv(pgCrashEnvNode)
	ctx := context.Background()
	lease, err := time.ParseDuration(os.Getenv(pgCrashEnvLease))
	if err != nil {
		lease = 2 * time.Second
	}
	st, err := Open(ctx, dsn, Options{Node: node + "." + strconv.Itoa(os.Getpid()), Lease: lease})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	logf := func(name, line string) {
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			panic(err)
		}
		f.WriteString(line + "\n")
		f.Sync()
		f.Close()
	}
	pid := os.Getpid()
	deliver := queue.DeliverFunc(func(ctx context.Context, env *transport.Envelope, _ io.ReaderAt, _ int64) (*transport.Result, error) {
		res := &transport.Result{}
		for _, r := range env.Recipients {
			if strings.HasPrefix(r.Address, "bad") {
				res.Recipients = append(res.Recipients, transport.RecipientResult{Recipient: r, Status: transport.Failed,
					Reply: &transport.Error{Code: 550, EnhancedCode: transport.EnhancedCode{5, 1, 1}, Message: "no such user"}})
				continue
			}
			start := time.Now().UnixNano()
			if os.Getenv(pgCrashEnvSlow) == "1" {
				logf("started.log", fmt.Sprintf("%s %s %d", env.ID, r.Address, pid))
				time.Sleep(1500 * time.Millisecond)
			}
			time.Sleep(time.Duration(5+rand.IntN(20)) * time.Millisecond)
			logf("delivered.log", fmt.Sprintf("%s %s %d %d %d", env.ID, r.Address, pid, start, time.Now().UnixNano()))
			res.Recipients = append(res.Recipients, transport.RecipientResult{Recipient: r, Status: transport.Delivered,
				Reply: &transport.Error{Code: 250, EnhancedCode: transport.EnhancedCode{2, 0, 0}, Message: "OK"}})
		}
		return res, nil
	})
	q := &queue.Queue{Store: st, Deliverer: deliver, Hostname: "relay.test", PollInterval: 100 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	go q.Run(ctx)
	if os.Getenv(pgCrashEnvSend) == "1" {
		for i := 0; ; i++ {
			env := &transport.Envelope{From: "sender@example.org", Recipients: []transport.Recipient{
				{Address: fmt.Sprintf("good%d-%d@example.net", pid, i)}, {Address: fmt.Sprintf("bad%d-%d@example.net", pid, i)}}}
			id, err := q.Enqueue(ctx, env, strings.NewReader("Subject: crash\r\n\r\nbody\r\n"))
			if err == nil {
				logf("accepted.log", id+" "+env.Recipients[0].Address)
			}
			time.Sleep(time.Duration(10+rand.IntN(30)) * time.Millisecond)
		}
	}
	select {}
}

type crashNode struct {
	name string
	cmd  *exec.Cmd
}

func startCrashNode(t *testing.T, dsn, dir, name string, send bool, extra ...string) *crashNode {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), pgCrashEnvMode+"="+dsn, pgCrashEnvDir+"="+dir, pgCrashEnvNode+"="+name)
	if send {
		cmd.Env = append(cmd.Env, pgCrashEnvSend+"=1")
	}
	cmd.Env = append(cmd.Env, extra...)
	cmd.Stderr = &syncbuf.Buffer{}
	if os.Getenv("MAILTLS_PG_CRASH_VERBOSE") != "" {
		cmd.Stderr = os.Stderr
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return &crashNode{name: name, cmd: cmd}
}

func (n *crashNode) kill() string {
	n.cmd.Process.Signal(syscall.SIGKILL)
	n.cmd.Wait()
	return strconv.Itoa(n.cmd.Process.Pid)
}

func readLines(t *testing.T, path string) [][]string {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out [][]string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fs := strings.Fields(sc.Text()); len(fs) > 0 {
			out = append(out, fs)
		}
	}
	return out
}

// clusterLease is the nodes' lease in TestClusterCrash: long enough that
// a node starved of CPU on a loaded machine still renews it in time (with
// 2 s, under a load average of 20, leases expired in the middle of
// deliveries), short enough that the nodes killed take over quickly.
var clusterLease = pgCrashEnvLease + "=6s"

func TestClusterCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster crash test skipped in -short mode")
	}
	cluster := pgtest.Shared(t)
	dsn := pgtest.DB(t)
	dir := t.TempDir()
	if _, err := Open(context.Background(), dsn, Options{}); err != nil { // the schema, once
		t.Fatal(err)
	}
	var mu sync.Mutex
	nodes := map[string]*crashNode{}
	for _, name := range []string{"a", "b", "c"} {
		nodes[name] = startCrashNode(t, dsn, dir, name, true, clusterLease)
	}
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, n := range nodes {
			n.kill()
		}
	}()
	names := []string{"a", "b", "c"}
	kills := 0
	killed := map[string]bool{} // pids killed with SIGKILL
	for round := 0; round < 10; round++ {
		time.Sleep(time.Duration(1000+rand.IntN(1000)) * time.Millisecond)
		name := names[rand.IntN(3)]
		mu.Lock()
		killed[nodes[name].kill()] = true
		kills++
		nodes[name] = startCrashNode(t, dsn, dir, name, true, clusterLease)
		mu.Unlock()
	}
	time.Sleep(time.Second)
	if err := cluster.RestartImmediate(); err != nil {
		t.Fatalf("restarting PostgreSQL: %v", err)
	}
	time.Sleep(2 * time.Second)
	// Drain: nodes that only deliver.
	mu.Lock()
	for _, name := range names {
		killed[nodes[name].kill()] = true
		kills++
		nodes[name] = startCrashNode(t, dsn, dir, name, false, clusterLease)
	}
	mu.Unlock()
	accepted := readLines(t, filepath.Join(dir, "accepted.log"))
	want := map[string]bool{}
	for _, f := range accepted {
		want[f[0]+" "+f[1]] = true
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		got := map[string]bool{}
		for _, f := range readLines(t, filepath.Join(dir, "delivered.log")) {
			got[f[0]+" "+f[1]] = true
		}
		missing := 0
		for k := range want {
			if !got[k] {
				missing++
			}
		}
		st, err := Open(context.Background(), dsn, Options{})
		left := -1
		if err == nil {
			msgs, _ := st.List(context.Background())
			left = len(msgs)
			st.Close()
		}
		if missing == 0 && left == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after draining: %d of %d accepted recipients never delivered, %d messages left", missing, len(want), left)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// No recipient (or report) delivered by two nodes at the same time;
	// duplicates counted.
	type span struct {
		pid        string
		start, end int64
	}
	byKey := map[string][]span{}
	for _, f := range readLines(t, filepath.Join(dir, "delivered.log")) {
		s, _ := strconv.ParseInt(f[3], 10, 64)
		e, _ := strconv.ParseInt(f[4], 10, 64)
		byKey[f[0]+" "+f[1]] = append(byKey[f[0]+" "+f[1]], span{f[2], s, e})
	}
	dups, overlaps, reports, reportDups := 0, 0, 0, 0
	for k, spans := range byKey {
		isReport := strings.HasSuffix(k, " sender@example.org")
		if isReport {
			reports++
		}
		if len(spans) > 1 {
			dups += len(spans) - 1
			if isReport {
				reportDups += len(spans) - 1
			}
		}
		sort.Slice(spans, func(i, j int) bool { return spans[i].start < spans[j].start })
		for i := 1; i < len(spans); i++ {
			if spans[i].start < spans[i-1].end {
				overlaps++
				t.Errorf("%s delivered by pids %s and %s at the same time", k, spans[i-1].pid, spans[i].pid)
			}
			// A duplicate is explained only by the window between the
			// remote's 250 and the state write: the earlier delivery's node
			// was killed before it could record it.
			if !killed[spans[i-1].pid] {
				t.Errorf("%s delivered again by pid %s after pid %s, which was not killed", k, spans[i].pid, spans[i-1].pid)
			}
		}
	}
	t.Logf("%d kills (SIGKILL) and a PostgreSQL restart (immediate); %d messages accepted (250), all delivered; %d reports; "+
		"%d duplicate deliveries (%d of reports), each after a delivery by a node killed before recording it; %d overlapping",
		kills, len(accepted), reports, dups, reportDups, overlaps)
	if reports < len(accepted) {
		t.Errorf("%d reports for %d messages with a failed recipient", reports, len(accepted))
	}
}

// TestPausedNodeLosesLease: a node paused with SIGSTOP in the middle of a
// delivery, past its lease, loses the message to another node, which
// delivers it; after SIGCONT the paused node's record of its delivery is
// refused (ErrLeaseLost: its log says so) and it delivers nothing again.
func TestPausedNodeLosesLease(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.DB(t)
	dir := t.TempDir()
	seed, err := Open(ctx, dsn, Options{Node: "seed"})
	if err != nil {
		t.Fatal(err)
	}
	m := &queue.Message{ID: "paused1", From: "sender@example.org", ReceivedAt: time.Now(),
		Recipients: []*queue.Recipient{{Address: "good@example.net", State: transport.Pending}}}
	if err := seed.Create(ctx, m, strings.NewReader("Subject: x\r\n\r\nx\r\n")); err != nil {
		t.Fatal(err)
	}
	seed.Release(ctx, m.ID) // claimable by any node
	seed.Close()

	a := startCrashNode(t, dsn, dir, "a", false, pgCrashEnvSlow+"=1")
	defer a.kill()
	waitFile := func(name string, lines int) {
		waitFor(t, fmt.Sprintf("%d lines in %s", lines, name), 20*time.Second, func() bool {
			return len(readLines(t, filepath.Join(dir, name))) >= lines
		})
	}
	waitFile("started.log", 1) // a is delivering
	a.cmd.Process.Signal(syscall.SIGSTOP)
	time.Sleep(3 * time.Second) // past a's 2 s lease
	b := startCrashNode(t, dsn, dir, "b", false)
	defer b.kill()
	waitFile("delivered.log", 1) // b took the message over and delivered it
	a.cmd.Process.Signal(syscall.SIGCONT)
	time.Sleep(2 * time.Second)
	byPID := map[string]int{}
	for _, f := range readLines(t, filepath.Join(dir, "delivered.log")) {
		byPID[f[2]]++
	}
	apid, bpid := strconv.Itoa(a.cmd.Process.Pid), strconv.Itoa(b.cmd.Process.Pid)
	t.Logf("deliveries by the paused node: %d, by the other: %d", byPID[apid], byPID[bpid])
	if byPID[bpid] != 1 || byPID[apid] > 1 {
		t.Errorf("deliveries %v: want one by %s (b), at most the one in flight by %s (a)", byPID, bpid, apid)
	}
	if log := a.cmd.Stderr.(*syncbuf.Buffer).String(); !strings.Contains(log, "lease lost") {
		t.Errorf("the paused node did not log its lost lease:\n%s", log)
	}
	// b's result is the record: the message is done and gone.
	st, err := Open(ctx, dsn, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Get(ctx, m.ID); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("after b's delivery: Get = %v, want ErrNotFound", err)
	}
}

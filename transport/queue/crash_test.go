package queue

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailtls/mailtls/ndr"
	"github.com/mailtls/mailtls/policy"
	"github.com/mailtls/mailtls/transport"
	"github.com/mailtls/mailtls/transport/transporttest"
)

// The crash test runs the queue in a child process (this test binary,
// re-executed with -test.run=^TestCrashChild$) and kills it with SIGKILL at
// random moments while it accepts and delivers mail. The child's Deliverer
// is the "remote side": it appends one line per accepted recipient to a log
// file (O_APPEND, fsync) before returning its result, so the log survives
// the kill exactly as a remote server's acceptance would. After the rounds a
// last child drains the spool; the parent then checks that every recipient
// of every message whose Enqueue returned was delivered or reported, and
// counts duplicates.
//
//	go test -run TestCrashRecovery -v ./transport/queue/
//
// MAILTLS_CRASH_ROUNDS and MAILTLS_CRASH_MESSAGES change the defaults (10
// rounds of 30 messages).

const (
	crashEnvMode = "MAILTLS_QUEUE_CRASH_CHILD" // "run" or "drain"
	crashEnvDir  = "MAILTLS_QUEUE_CRASH_DIR"
	crashEnvMsgs = "MAILTLS_QUEUE_CRASH_MSGS"
	crashEnvTag  = "MAILTLS_QUEUE_CRASH_TAG"
	crashEnvSMTP = "MAILTLS_QUEUE_CRASH_SMTP" // deliver with a Connector to this address
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// crashEnvStore selects the child's Store: "dir" (DirStore) or "log"
// (LogStore with 16 KiB segments and one sealed segment kept, so that the
// kills also land in segment changes and copies).
const crashEnvStore = "MAILTLS_QUEUE_CRASH_STORE"

// openCrashStore opens the spool of a crash test as kind says.
func openCrashStore(spool, kind string) (interface {
	Store
	Close() error
}, error) {
	if kind == "log" {
		return OpenLogStore(spool, LogStoreOptions{SegmentSize: 16 << 10, MaxSealedSegments: 1})
	}
	return OpenDirStore(spool)
}

func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test skipped in -short mode")
	}
	for _, kind := range []string{"dir", "log"} {
		t.Run(kind, func(t *testing.T) { crashRecovery(t, kind) })
	}
}

func crashRecovery(t *testing.T, kind string) {
	rounds := envInt("MAILTLS_CRASH_ROUNDS", 10)
	perRound := envInt("MAILTLS_CRASH_MESSAGES", 30)
	dir := t.TempDir()
	spool := filepath.Join(dir, "spool")
	killedAt := crashRounds(t, dir, rounds, perRound, crashEnvStore+"="+kind)

	accepted := readLog(t, filepath.Join(dir, "accepted.log"))
	deliveries := readLog(t, filepath.Join(dir, "delivered.log"))
	reportLines := readLog(t, filepath.Join(dir, "reports.log"))

	// A duplicate is expected only across a kill: the same process must
	// never deliver a recipient (or a report) twice.
	samePID := map[string]bool{}
	delivered := map[string]int{} // "msgid rcpt" -> count
	for _, f := range deliveries {
		delivered[f[0]+" "+f[1]]++
		if k := strings.Join(f, " "); samePID[k] {
			t.Errorf("delivered twice by one process: %s", k)
		} else {
			samePID[k] = true
		}
	}
	reported := map[string]int{} // "origid rcpt" -> count of failed reports
	for _, f := range reportLines {
		if f[2] != string(ndr.ActionFailed) {
			t.Errorf("unexpected report: %v", f)
		}
		reported[f[0]+" "+f[1]]++
		if k := strings.Join(f, " "); samePID[k] {
			t.Errorf("reported twice by one process: %s", k)
		} else {
			samePID[k] = true
		}
	}
	var msgs, rcpts, lost, dupDeliveries, dupReports, nDelivered, nReported int
	for _, f := range accepted {
		msgs++
		id := f[0]
		for _, r := range strings.Split(f[1], ",") {
			rcpts++
			k := id + " " + r
			switch {
			case strings.HasPrefix(r, "bad-"):
				if reported[k] == 0 {
					lost++
					t.Errorf("lost: no report for %s", k)
				}
				nReported++
				dupReports += max(reported[k]-1, 0)
				if delivered[k] > 0 {
					t.Errorf("%s delivered although it always fails", k)
				}
			default:
				if delivered[k] == 0 {
					lost++
					t.Errorf("lost: %s never delivered", k)
				}
				nDelivered++
				dupDeliveries += max(delivered[k]-1, 0)
			}
		}
	}
	if msgs < rounds {
		t.Fatalf("only %d messages accepted in %d rounds; the kills came too early", msgs, rounds)
	}
	st, err := openCrashStore(spool, kind)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if left, err := st.List(context.Background()); err != nil || len(left) != 0 {
		t.Errorf("spool not empty after drain: %d messages, %v", len(left), err)
	}
	t.Logf("crash test (%s store): %d rounds (kills after %v), %d messages accepted, %d recipients "+
		"(%d to deliver, %d to report); lost %d; duplicate deliveries %d, duplicate reports %d; "+
		"delivery log lines %d, report log lines %d",
		kind, rounds, killedAt, msgs, rcpts, nDelivered, nReported, lost, dupDeliveries, dupReports,
		len(deliveries), len(reportLines))
}

// crashRounds runs rounds children that are killed at random moments, then
// one that drains the spool, all on the spool under dir. extraEnv is added
// to the children's environment. It returns the kill delays.
func crashRounds(t *testing.T, dir string, rounds, perRound int, extraEnv ...string) []time.Duration {
	t.Helper()
	child := func(mode string, round int) *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashEnvMode+"="+mode, crashEnvDir+"="+dir,
			crashEnvMsgs+"="+strconv.Itoa(perRound), crashEnvTag+"="+strconv.Itoa(round))
		cmd.Env = append(cmd.Env, extraEnv...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		t.Cleanup(func() {
			if t.Failed() && out.Len() > 0 {
				t.Logf("child %s %d output:\n%s", mode, round, lastLines(out.String(), 30))
			}
		})
		return cmd
	}

	killedAt := make([]time.Duration, 0, rounds)
	for round := 0; round < rounds; round++ {
		cmd := child("run", round)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Kill at a different moment each round: during start-up and
		// enqueueing, in the middle of deliveries, or near the end.
		delay := time.Duration(20+rand.IntN(400)) * time.Millisecond
		time.Sleep(delay)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatalf("round %d: kill: %v", round, err)
		}
		err := cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("round %d: child ended before the kill (%v); raise the message count", round, err)
		}
		killedAt = append(killedAt, delay)
	}

	// Drain: a last child runs until the spool is empty.
	cmd := child("drain", rounds)
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("drain child: %v", err)
		}
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		t.Fatal("drain child did not empty the spool in 2 minutes")
	}

	return killedAt
}

// TestCrashRecoverySMTP is TestCrashRecovery with the real path out: the
// child delivers with a transport.Connector over STARTTLS (policy Encrypt)
// to a test SMTP server that lives in this (parent) process, so it outlives
// the kills and counts what it accepted. Recipients bad-* are refused with
// 550 at RCPT, slow-* get a 451 half the time.
//
//	go test -run TestCrashRecoverySMTP -v ./transport/queue/
func TestCrashRecoverySMTP(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test skipped in -short mode")
	}
	rounds := envInt("MAILTLS_CRASH_ROUNDS", 10)
	perRound := envInt("MAILTLS_CRASH_MESSAGES", 30)
	sink := transporttest.NewServer(t, transporttest.ServerConfig{
		Hostname: "mx.sink.test", Cert: transporttest.GoodCert, DSN: true,
		Rcpt: transporttest.MixedRcpt,
	})
	dir := t.TempDir()
	killedAt := crashRounds(t, dir, rounds, perRound, crashEnvSMTP+"="+sink.Addr)

	delivered := map[string]int{} // recipient -> messages accepted for it
	reported := map[string]int{}  // recipient -> failed reports about it
	for _, m := range sink.Messages() {
		if m.TLS == nil {
			t.Errorf("a message reached the sink without TLS")
		}
		if m.Envelope.From != "" {
			for _, r := range m.Envelope.Recipients {
				delivered[r.Address]++
			}
			continue
		}
		rep, err := ndr.Parse(bytes.NewReader(m.Data))
		if err != nil {
			t.Fatalf("report does not parse: %v", err)
		}
		for _, r := range rep.Recipients {
			addr := r.FinalRecipient
			if i := strings.IndexByte(addr, ';'); i >= 0 {
				addr = strings.TrimSpace(addr[i+1:])
			}
			if r.Action != ndr.ActionFailed || !strings.HasPrefix(r.Status, "5.1.1") {
				t.Errorf("unexpected report about %s: %s %s %q", addr, r.Action, r.Status, r.DiagnosticCode)
			}
			reported[addr]++
		}
	}
	var msgs, rcpts, lost, dupDeliveries, dupReports int
	for _, f := range readLog(t, filepath.Join(dir, "accepted.log")) {
		msgs++
		for _, r := range strings.Split(f[1], ",") {
			rcpts++
			n := delivered[r]
			if strings.HasPrefix(r, "bad-") {
				n = reported[r]
				if delivered[r] > 0 {
					t.Errorf("%s delivered although refused", r)
				}
				dupReports += max(n-1, 0)
			} else {
				dupDeliveries += max(n-1, 0)
			}
			if n == 0 {
				lost++
				t.Errorf("lost: %s neither delivered nor reported", r)
			}
		}
	}
	if msgs < rounds {
		t.Fatalf("only %d messages accepted in %d rounds", msgs, rounds)
	}
	t.Logf("crash test over SMTP: %d rounds (kills after %v), %d messages accepted, %d recipients; "+
		"lost %d; duplicate deliveries %d, duplicate reports %d; sink received %d messages",
		rounds, killedAt, msgs, rcpts, lost, dupDeliveries, dupReports, len(sink.Messages()))
}

func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// readLog reads a space-separated log; a torn last line (cut by a kill
// during the write, before its fsync) is ignored.
func readLog(t *testing.T, name string) [][]string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out [][]string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasSuffix(line, " .") {
			continue // torn
		}
		out = append(out, strings.Fields(strings.TrimSuffix(line, " .")))
	}
	return out
}

// appendLine appends a line to a log file and fsyncs it before returning.
func appendLine(name, line string) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(line + " .\n"); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// crashTarget is the child's remote side. Recipients named ok-* are
// accepted, slow-* fail temporarily about half the time, bad-* fail
// permanently (so a failed DSN must reach the sender). A report (null
// reverse-path) is parsed and one line per failed recipient is logged.
type crashTarget struct{ dir string }

func (c crashTarget) Deliver(ctx context.Context, env *transport.Envelope, body io.ReaderAt, size int64) (*transport.Result, error) {
	time.Sleep(time.Duration(rand.IntN(4000)) * time.Microsecond) // the network
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	res := &transport.Result{}
	for _, rc := range env.Recipients {
		rr := transport.RecipientResult{Recipient: rc, RemoteMTA: transport.RemoteMTA{Host: "mx.test"}}
		local := rc.Address[:strings.IndexByte(rc.Address, '@')]
		switch {
		case env.From == "":
			rep, err := ndr.Parse(io.NewSectionReader(body, 0, size))
			if err != nil {
				return nil, fmt.Errorf("report does not parse: %w", err)
			}
			orig := env.ID[:strings.LastIndex(env.ID, ".r")]
			for _, r := range rep.Recipients {
				addr := r.FinalRecipient
				if i := strings.IndexByte(addr, ';'); i >= 0 {
					addr = strings.TrimSpace(addr[i+1:])
				}
				if err := appendLine(filepath.Join(c.dir, "reports.log"), orig+" "+addr+" "+string(r.Action)+" "+strconv.Itoa(os.Getpid())); err != nil {
					return nil, err
				}
			}
			rr.Status = transport.Delivered
		case strings.HasPrefix(local, "bad-"):
			rr.Status = transport.Failed
			rr.Reply = &transport.Error{Code: 550, EnhancedCode: transport.EnhancedCode{5, 1, 1}, Message: "no such user"}
		case strings.HasPrefix(local, "slow-") && rand.IntN(2) == 0:
			rr.Status = transport.Deferred
			rr.Reply = &transport.Error{Code: 451, EnhancedCode: transport.EnhancedCode{4, 3, 0}, Message: "busy"}
		default:
			// The remote's 250: durable on its side before we hear of it.
			if err := appendLine(filepath.Join(c.dir, "delivered.log"), env.ID+" "+rc.Address+" "+strconv.Itoa(os.Getpid())); err != nil {
				return nil, err
			}
			rr.Status = transport.Delivered
		}
		res.Recipients = append(res.Recipients, rr)
	}
	return res, nil
}

// TestCrashChild is the child of TestCrashRecovery; it does nothing unless
// started by it.
func TestCrashChild(t *testing.T) {
	mode := os.Getenv(crashEnvMode)
	if mode == "" {
		t.Skip("run by TestCrashRecovery only")
	}
	dir := os.Getenv(crashEnvDir)
	st, err := openCrashStore(filepath.Join(dir, "spool"), os.Getenv(crashEnvStore))
	if err != nil {
		t.Fatal(err)
	}
	var deliverer Deliverer = crashTarget{dir}
	if addr := os.Getenv(crashEnvSMTP); addr != "" {
		c := &transport.Connector{
			Hostname: "relay.test",
			Routes:   []transport.Route{{Domain: "*", NextHop: addr, Policy: policy.Fixed{Level: policy.Encrypt}}},
			Timeouts: transport.ConnectorTimeouts{Connect: 5 * time.Second, Greeting: 5 * time.Second, Command: 5 * time.Second, Data: 5 * time.Second},
		}
		defer c.Close()
		deliverer = c
	}
	q := &Queue{
		Store:                st,
		Deliverer:            deliverer,
		Hostname:             "relay.test",
		Backoff:              []time.Duration{5 * time.Millisecond, 20 * time.Millisecond},
		Concurrency:          8,
		PerDomainConcurrency: 4,
		PollInterval:         5 * time.Millisecond,
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx) }()

	if mode == "drain" {
		for {
			msgs, err := st.List(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(msgs) == 0 {
				cancel()
				<-done
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	n := envInt(crashEnvMsgs, 30)
	tag := os.Getenv(crashEnvTag)
	for i := 0; i < n; i++ {
		rcpts := []string{
			fmt.Sprintf("ok-%s-%d@a.test", tag, i),
			fmt.Sprintf("slow-%s-%d@b.test", tag, i),
			fmt.Sprintf("bad-%s-%d@c.test", tag, i),
		}
		env := &transport.Envelope{From: fmt.Sprintf("sender-%s-%d@origin.test", tag, i)}
		for _, r := range rcpts {
			env.Recipients = append(env.Recipients, transport.Recipient{Address: r})
		}
		body := fmt.Sprintf("Subject: message %s-%d\r\nMessage-ID: <%s-%d@origin.test>\r\n\r\n%s\r\n",
			tag, i, tag, i, strings.Repeat(strings.Repeat("x", 76)+"\r\n", 26))
		id, err := q.Enqueue(ctx, env, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		// Only now may the client be told 250.
		if err := appendLine(filepath.Join(dir, "accepted.log"), id+" "+strings.Join(rcpts, ",")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(rand.IntN(8)) * time.Millisecond)
	}
	// Keep delivering until killed.
	<-done
}

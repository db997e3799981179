// Package pgtest runs a private PostgreSQL cluster for tests: initdb in a
// temporary directory, as the unprivileged "postgres" system user when the
// tests run as root (PostgreSQL refuses to run as root), listening only on
// a Unix socket in that directory. One cluster serves a whole test binary;
// every test gets its own database.
//
// Use it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
//
// and in a test:
//
//	dsn := pgtest.DB(t) // "postgres:///t3?host=/tmp/pgtest.../&user=postgres"
//
// When PostgreSQL's binaries cannot be found, DB skips the test with the
// reason; with MAILTLS_INTEROP=1 (CI) it fails instead.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Cluster is a running private PostgreSQL server.
type Cluster struct {
	// Dir is the temporary directory holding data/, the socket and the log.
	Dir string
	// Socket is the directory of the Unix socket.
	Socket string
	bin    string
	cred   *syscall.Credential
	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	seq    int
}

var (
	once    sync.Once
	shared  *Cluster
	initErr error
)

// Main runs the tests of m and stops the shared cluster, if one was
// started, by its PID. It returns the exit code for os.Exit.
func Main(m *testing.M) int {
	code := m.Run()
	if shared != nil {
		if err := shared.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "pgtest:", err)
		}
		os.RemoveAll(shared.Dir)
	}
	return code
}

// Shared returns the cluster of this test binary, starting it on first
// use; it skips t (fails it under MAILTLS_INTEROP=1) when PostgreSQL is
// not installed.
func Shared(t testing.TB) *Cluster {
	t.Helper()
	once.Do(func() { shared, initErr = Start() })
	if initErr != nil {
		var nf *notInstalled
		if errors.As(initErr, &nf) && os.Getenv("MAILTLS_INTEROP") != "1" {
			t.Skipf("pgtest: %v (install Debian's postgresql package)", initErr)
		}
		t.Fatalf("pgtest: %v", initErr)
	}
	return shared
}

// DB creates a fresh database in the shared cluster and returns its
// connection string (a postgres:// URL for pgx or libpq).
func DB(t testing.TB) string {
	t.Helper()
	c := Shared(t)
	dsn, err := c.CreateDB(context.Background())
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return dsn
}

type notInstalled struct{ why string }

func (e *notInstalled) Error() string { return e.why }

// binDir finds the newest /usr/lib/postgresql/N/bin with initdb.
func binDir() (string, error) {
	if d := os.Getenv("MAILTLS_PGBIN"); d != "" {
		return d, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return vi > vj
	})
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", &notInstalled{"PostgreSQL not found (no /usr/lib/postgresql/*/bin/initdb, no initdb in PATH)"}
}

// Start initdbs and starts a new cluster in a temporary directory.
func Start() (*Cluster, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "pgtest")
	if err != nil {
		return nil, err
	}
	c := &Cluster{Dir: dir, Socket: dir, bin: bin}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, &notInstalled{"running as root and there is no postgres system user to run PostgreSQL as"}
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		c.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, err
		}
	}
	initdb := c.command("initdb", "-D", c.dataDir(), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-locale", "--no-sync")
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	if err := c.startServer(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Cluster) dataDir() string { return filepath.Join(c.Dir, "data") }

func (c *Cluster) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(c.bin, name), args...)
	cmd.Dir = c.Dir
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: c.cred}
	return cmd
}

// startServer runs the postmaster in the foreground of a child process
// (so its PID is known) and waits until it accepts connections.
func (c *Cluster) startServer() error {
	logf, err := os.OpenFile(filepath.Join(c.Dir, "postgres.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := c.command("postgres", "-D", c.dataDir(), "-k", c.Socket, "-c", "listen_addresses=",
		"-c", "max_connections=300", "-c", "shared_buffers=64MB")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("starting postgres: %w", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(exited) }()
	c.mu.Lock()
	c.cmd, c.exited = cmd, exited
	c.mu.Unlock()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, c.DSN("postgres"))
		cancel()
		if err == nil {
			conn.Close(context.Background())
			return nil
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(filepath.Join(c.Dir, "postgres.log"))
			return fmt.Errorf("postgres exited at start: %s", log)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("postgres not ready after 30s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// DSN returns the connection URL of database db.
func (c *Cluster) DSN(db string) string {
	q := url.Values{"host": {c.Socket}, "user": {"postgres"}}
	return "postgres:///" + db + "?" + q.Encode()
}

// CreateDB creates a new, empty database and returns its URL.
func (c *Cluster) CreateDB(ctx context.Context) (string, error) {
	c.mu.Lock()
	c.seq++
	name := fmt.Sprintf("t%d", c.seq)
	c.mu.Unlock()
	conn, err := pgx.Connect(ctx, c.DSN("postgres"))
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", err
	}
	return c.DSN(name), nil
}

// PID returns the process id of the postmaster.
func (c *Cluster) PID() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cmd.Process.Pid
}

// stop sends sig to the postmaster and waits for it to exit.
func (c *Cluster) stop(sig syscall.Signal) error {
	c.mu.Lock()
	cmd, exited := c.cmd, c.exited
	c.mu.Unlock()
	if cmd == nil {
		return nil
	}
	if err := cmd.Process.Signal(sig); err != nil {
		return err
	}
	select {
	case <-exited:
		return nil
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-exited
		return fmt.Errorf("postgres (pid %d) did not stop in 30s; killed", cmd.Process.Pid)
	}
}

// Stop shuts the cluster down ("fast" shutdown: SIGINT to its PID).
func (c *Cluster) Stop() error { return c.stop(syscall.SIGINT) }

// Down stops the cluster at once (SIGQUIT to the postmaster, as "pg_ctl
// stop -m immediate"), runs f while it is down, and starts it again: the
// database going away under running clients.
func (c *Cluster) Down(f func()) error {
	if err := c.stop(syscall.SIGQUIT); err != nil {
		return err
	}
	f()
	return c.startServer()
}

// RestartImmediate does what "pg_ctl restart -m immediate" does: SIGQUIT
// to the postmaster (no checkpoint, crash recovery at the next start),
// then a new start on the same data directory.
func (c *Cluster) RestartImmediate() error {
	if err := c.stop(syscall.SIGQUIT); err != nil {
		return err
	}
	return c.startServer()
}

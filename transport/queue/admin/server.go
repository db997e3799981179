package admin

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/mailtls/mailtls/transport/queue"
)

// ErrInUse is returned by Listen when a server already answers on the
// socket path.
var ErrInUse = errors.New("admin: socket in use")

// Listen creates the Unix socket path with mode 0600. A socket file left
// by a process that died is replaced; a live socket (ErrInUse) and any
// other kind of file are refused. On Linux the socket file is created
// with mode 0600, whatever the umask; elsewhere the mode is set just
// after the bind. Put the socket in a directory only the owner can enter
// (the relay uses its 0700 data directory), so that nobody else can
// replace it. Closing the listener removes the socket file.
func Listen(path string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("admin: %s exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("%w: %s", ErrInUse, path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("admin: removing stale socket: %w", err)
		}
	}
	// The socket file takes its mode from the socket's, less the umask
	// (Linux): made 0600 before bind, it is never reachable by others,
	// not even before the chmod below, which makes sure elsewhere.
	lc := net.ListenConfig{Control: ownerOnly}
	l, err := lc.Listen(context.Background(), "unix", path)
	if err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	if err := chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("admin: %w", err)
	}
	return l, nil
}

// chmod is os.Chmod; a test replaces it to see the mode the socket had
// before it.
var chmod = os.Chmod

// Server answers Requests for one Queue. Set its fields before Serve.
type Server struct {
	// Queue is the queue commands act on. Required.
	Queue *queue.Queue
	// Timeout bounds a connection from its accept: reads, commands and
	// writes. Zero means DefaultTimeout.
	Timeout time.Duration
	// MaxConns bounds the connections served at once. Zero means
	// DefaultMaxConns.
	MaxConns int
	// Logger receives one line per command that changes the queue and the
	// server's errors. Nil discards.
	Logger *slog.Logger
}

func (s *Server) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

func (s *Server) now() time.Time {
	if s.Queue.Now != nil {
		return s.Queue.Now()
	}
	return time.Now()
}

// Serve accepts connections on l until ctx is done, then closes l, waits
// for the connections being served (whose commands see ctx cancelled) and
// returns ctx.Err(). It returns earlier with the error if l fails.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	if s.Queue == nil {
		return errors.New("admin: Server.Queue is required")
	}
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	maxConns := s.MaxConns
	if maxConns <= 0 {
		maxConns = DefaultMaxConns
	}
	sem := make(chan struct{}, maxConns)
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	var pause time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if temporaryAccept(err) {
				// Out of file descriptors, or a connection aborted before
				// its accept: pause and accept again (as net/http does);
				// the socket stays usable once the cause passes.
				pause = min(max(2*pause, 5*time.Millisecond), time.Second)
				s.logger().Warn("admin socket: accept failed; retrying", "err", err, "pause", pause)
				select {
				case <-time.After(pause):
				case <-ctx.Done():
					return ctx.Err()
				}
				continue
			}
			l.Close()
			return fmt.Errorf("admin: %w", err)
		}
		pause = 0
		select {
		case sem <- struct{}{}:
		default:
			wg.Go(func() {
				c.SetDeadline(time.Now().Add(time.Second))
				writeResponse(c, &Response{Code: CodeBusy, Error: fmt.Sprintf("already serving %d connections", maxConns), Time: s.now()})
				c.Close()
			})
			continue
		}
		wg.Go(func() {
			defer func() { <-sem }()
			s.serveConn(ctx, c, timeout)
		})
	}
}

// serveConn answers requests on c until the client closes it, a request
// is too long, or the connection's deadline passes.
func (s *Server) serveConn(ctx context.Context, c net.Conn, timeout time.Duration) {
	defer c.Close()
	// One deadline from the accept: a client trickling bytes cannot
	// extend it.
	deadline := time.Now().Add(timeout)
	c.SetDeadline(deadline)
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	br := bufio.NewReaderSize(c, MaxRequest)
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			writeResponse(c, &Response{Code: CodeBadRequest, Error: fmt.Sprintf("request longer than %d bytes", MaxRequest), Time: s.now()})
			return
		}
		if err != nil {
			return // EOF, deadline, or a last line without newline
		}
		if err := writeResponse(c, s.do(ctx, line)); err != nil {
			return
		}
	}
}

// temporaryAccept reports whether an Accept error passes by itself: the
// process or the system out of file descriptors, or a connection reset
// before it was accepted.
func temporaryAccept(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) || errors.Is(err, syscall.ENOBUFS) ||
		errors.Is(err, syscall.ENOMEM) || errors.Is(err, syscall.ECONNABORTED)
}

func writeResponse(c net.Conn, r *Response) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = c.Write(append(b, '\n'))
	return err
}

// do decodes and runs one request.
func (s *Server) do(ctx context.Context, line []byte) *Response {
	var req Request
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return s.fail(&Error{Code: CodeBadRequest, Message: "malformed request: " + err.Error()})
	}
	if err := req.validate(); err != nil {
		return s.fail(&Error{Code: CodeBadRequest, Message: err.Error()})
	}
	resp, err := s.run(ctx, &req)
	if req.Command != List && req.Command != Show {
		s.logger().Info("admin command", "command", string(req.Command), "id", req.ID,
			"domain", req.Domain, "all", req.All, "changed", resp.Changed, "err", err)
	}
	if err != nil {
		return s.fail(err)
	}
	resp.OK = true
	resp.Time = s.now()
	return resp
}

// run calls the Queue method for req.
func (s *Server) run(ctx context.Context, req *Request) (*Response, error) {
	q := s.Queue
	resp := &Response{}
	var err error
	switch req.Command {
	case List:
		resp.Messages, err = q.List(ctx)
		if errors.Is(err, queue.ErrCorrupt) {
			resp.Warning, err = err.Error(), nil
		}
		if err == nil {
			// Counted from the listing, so they describe exactly the
			// messages answered.
			resp.Counts = queue.CountStates(resp.Messages)
		}
	case Show:
		resp.Message, err = q.Get(ctx, req.ID)
	case Retry:
		switch {
		case req.All:
			resp.Changed, err = q.RetryAll(ctx)
		case req.Domain != "":
			resp.Changed, err = q.RetryDomain(ctx, req.Domain)
		default:
			err = q.RetryNow(ctx, req.ID)
			resp.Changed = 1
		}
	case Remove:
		err = q.Remove(ctx, req.ID)
		resp.Changed = 1
	case Hold:
		err = q.Hold(ctx, req.ID)
		resp.Changed = 1
	case Release:
		err = q.Release(ctx, req.ID)
		resp.Changed = 1
	}
	if err != nil {
		resp.Changed = 0
	}
	return resp, err
}

// fail turns err into a failed Response.
func (s *Server) fail(err error) *Response {
	resp := &Response{Time: s.now(), Error: err.Error()}
	var ae *Error
	switch {
	case errors.As(err, &ae):
		resp.Code, resp.Error = ae.Code, ae.Message
	case errors.Is(err, queue.ErrNotFound):
		resp.Code = CodeNotFound
	case errors.Is(err, queue.ErrBadID):
		resp.Code = CodeBadRequest
	default:
		resp.Code = CodeInternal
		s.logger().Error("admin command failed", "err", err)
	}
	return resp
}

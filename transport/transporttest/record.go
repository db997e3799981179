package transporttest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"sync"
)

// wiretap records every byte the connections of a listener read, and
// counts the connections.
type wiretap struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	conns int
}

// listener returns l, recording through w.
func (w *wiretap) listener(l net.Listener) net.Listener { return &tappedListener{l, w} }

func (w *wiretap) seen() []byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return bytes.Clone(w.buf.Bytes())
}

func (w *wiretap) connections() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.conns
}

type tappedListener struct {
	net.Listener
	w *wiretap
}

func (l *tappedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.w.mu.Lock()
	l.w.conns++
	l.w.mu.Unlock()
	return &tappedConn{c, l.w}, nil
}

// tappedConn copies everything read into its wiretap.
type tappedConn struct {
	net.Conn
	w *wiretap
}

func (c *tappedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.w.mu.Lock()
		c.w.buf.Write(p[:n])
		c.w.mu.Unlock()
	}
	return n, err
}

// inbox holds the messages a server accepted and wakes those waiting for
// them.
type inbox struct {
	mu      sync.Mutex
	msgs    []*Message
	changed chan struct{} // closed and replaced on each add
}

func (b *inbox) add(m *Message) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.msgs = append(b.msgs, m)
	if b.changed != nil {
		close(b.changed)
		b.changed = nil
	}
}

func (b *inbox) list() []*Message {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]*Message(nil), b.msgs...)
}

// wait returns the messages once there are at least n, or those there are
// and an error when ctx ends first.
func (b *inbox) wait(ctx context.Context, n int) ([]*Message, error) {
	for {
		b.mu.Lock()
		msgs := append([]*Message(nil), b.msgs...)
		if len(msgs) >= n {
			b.mu.Unlock()
			return msgs, nil
		}
		if b.changed == nil {
			b.changed = make(chan struct{})
		}
		ch := b.changed
		b.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return msgs, fmt.Errorf("transporttest: %d of %d messages: %w", len(msgs), n, context.Cause(ctx))
		}
	}
}

// Package syncbuf provides Buffer, a bytes.Buffer safe for concurrent use,
// for tests that hand an io.Writer to code writing from several goroutines
// (a *slog.Logger's handler, a server's error log) and then assert on what
// was written. It implements no RFC.
package syncbuf

import (
	"bytes"
	"sync"
)

// Buffer collects what is written to it. The zero value is an empty buffer
// ready to use. Its methods may be called concurrently; a Buffer must not
// be copied after first use.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p to the buffer. It always returns len(p), nil.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/mailtls/mailtls/transport/queue/admin"
)

// The admin socket: the running relay serves its queue on -data/admin.sock
// (mode 0600, in the 0700 data directory) and "relay queue" talks to it, so
// the tool never edits spool files under a live process.

// setupAdmin opens the admin socket; newRelay calls it last, once nothing
// else can fail. Without the socket the relay still serves mail: a -data
// path too long for a Unix socket (about 100 bytes) or a file in the way
// is logged, and "relay queue" cannot reach this relay.
func (r *Relay) setupAdmin() {
	path := r.cfg.path(admin.SocketName)
	l, err := admin.Listen(path)
	if err != nil {
		r.log.Error("no admin socket: \"relay queue\" cannot reach this relay", "path", path, "error", err)
		return
	}
	r.admin = l
}

// serveAdmin serves the admin socket until ctx is done (Shutdown); the
// listener is closed then, which removes the socket file.
func (r *Relay) serveAdmin(ctx context.Context) {
	if r.admin == nil {
		return
	}
	srv := &admin.Server{Queue: r.queue, Logger: r.log.With("part", "admin")}
	r.wg.Go(func() {
		if err := srv.Serve(ctx, r.admin); err != nil && !errors.Is(err, context.Canceled) {
			r.errc <- fmt.Errorf("admin socket: %w", err)
		}
	})
}

// queueMain runs "relay queue ARGS" against the relay running on -data
// ("relay-data", the relay's own -data default) and returns the exit
// status: 0 done, 1 failed, 2 usage.
func queueMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cli := &admin.CLI{Program: "relay", DataDir: "relay-data", Stdout: stdout, Stderr: stderr}
	return cli.Run(ctx, args)
}

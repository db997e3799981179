package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"time"

	"github.com/mailtls/mailtls/transport/queue"
	"github.com/mailtls/mailtls/transport/queue/pgstore"
)

// openStore opens the queue's store: the spool under -data, or with
// -queue a PostgreSQL database shared with other relays (each relay named
// in leases by -hostname, its process id and a random suffix).
func openStore(cfg *Config) (queue.Store, error) {
	if cfg.QueueDSN == "" {
		st, err := queue.OpenDirStore(cfg.path("queue"))
		if err != nil {
			return nil, fmt.Errorf("-data: queue: %w", err)
		}
		return st, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := pgstore.Open(ctx, cfg.QueueDSN, pgstore.Options{Node: fmt.Sprintf("%s.%d.%s", cfg.Hostname, os.Getpid(), rand.Text()[:8]), Lease: cfg.QueueLease})
	if err != nil {
		return nil, fmt.Errorf("-queue: %w", err)
	}
	return st, nil
}

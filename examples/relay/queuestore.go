package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/mailtls/mailtls/transport/queue"
	"github.com/mailtls/mailtls/transport/queue/pgstore"
)

// openStore opens the queue's store: the spool under -data (-spool), or with
// -queue a PostgreSQL database shared with other relays (each relay named
// in leases by -hostname, its process id and a random suffix).
func openStore(cfg *Config) (queue.Store, error) {
	if cfg.QueueDSN == "" {
		layout := cfg.Spool
		if layout == "" {
			layout = "log"
			if _, err := os.Stat(cfg.path("queue")); err == nil {
				layout = "dir" // drained and kept as it is; -spool log moves on
			}
		}
		switch layout {
		case "log":
			if left, _ := filepath.Glob(cfg.path("queue", "*.msg")); len(left) > 0 {
				return nil, fmt.Errorf("-spool log: %s still holds %d messages of the dir spool; run with -spool dir until it is empty", cfg.path("queue"), len(left))
			}
			st, err := queue.OpenLogStore(cfg.path("log"), queue.LogStoreOptions{})
			if err != nil {
				return nil, fmt.Errorf("-data: log: %w", err)
			}
			return st, nil
		case "dir":
			st, err := queue.OpenDirStore(cfg.path("queue"))
			if err != nil {
				return nil, fmt.Errorf("-data: queue: %w", err)
			}
			return st, nil
		}
		return nil, fmt.Errorf("-spool %q: want log or dir", cfg.Spool)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := pgstore.Open(ctx, cfg.QueueDSN, pgstore.Options{Node: fmt.Sprintf("%s.%d.%s", cfg.Hostname, os.Getpid(), rand.Text()[:8]), Lease: cfg.QueueLease})
	if err != nil {
		return nil, fmt.Errorf("-queue: %w", err)
	}
	return st, nil
}

package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"
	"time"
)

// shutdownGrace bounds the draining shutdown after SIGINT/SIGTERM.
const shutdownGrace = 30 * time.Second

// run is the whole program: parse args, build the relay, serve until ctx
// is cancelled (a signal) or a part fails, then shut down draining. Logs go
// to logOut as slog text.
func run(ctx context.Context, args []string, logOut io.Writer) error {
	cfg, err := parseFlags(args, logOut)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	log := newLogger(cfg, logOut)
	r, err := newRelay(cfg, log)
	if err != nil {
		return err
	}
	r.Start()
	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down", "grace", shutdownGrace)
	case runErr = <-r.Errors():
		log.Error("stopping after a failure", "error", runErr)
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := r.Shutdown(sctx); err != nil {
		log.Warn("shutdown", "error", err)
	}
	log.Info("stopped")
	return runErr
}

func newLogger(cfg *Config, out io.Writer) *slog.Logger {
	var lvl slog.Level
	lvl.UnmarshalText([]byte(cfg.LogLevel))
	return slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: lvl}))
}

package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"
	"os"
)

// run is the whole program: parse args, build the relay, serve until ctx
// is cancelled (SIGTERM, SIGINT) or a part fails, then shut down draining
// for up to -drain-timeout. Each value received on reload (SIGHUP) reloads
// the certificates; a failed reload keeps the previous ones in service.
// Logs go to logOut as slog text, or JSON with -log-format json.
func run(ctx context.Context, args []string, logOut io.Writer, reload <-chan os.Signal) error {
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
wait:
	for {
		select {
		case <-ctx.Done():
			log.Info("shutting down", "drain_timeout", cfg.DrainTimeout)
			break wait
		case runErr = <-r.Errors():
			log.Error("stopping after a failure", "error", runErr)
			break wait
		case sig := <-reload:
			log.Info("reloading certificates", "signal", sig)
			if err := r.ReloadCertificates(); err != nil {
				log.Error("certificate reload failed; the previous certificates stay in service", "error", err)
			}
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), cfg.DrainTimeout)
	defer cancel()
	if err := r.Shutdown(sctx); err != nil {
		log.Warn("shutdown", "error", err)
	}
	log.Info("stopped")
	return runErr
}

// newLogger is the relay's logger: -log-level, and -log-format's slog
// handler (JSON for log collectors, text for people).
func newLogger(cfg *Config, out io.Writer) *slog.Logger {
	var lvl slog.Level
	lvl.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: lvl}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(out, opts))
	}
	return slog.New(slog.NewTextHandler(out, opts))
}

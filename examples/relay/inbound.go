package main

import (
	"fmt"
	"log/slog"

	"github.com/mailtls/mailtls/transport"
	"github.com/mailtls/mailtls/transport/queue"
)

// newHandler builds the Handler of every listener: a transport.RelayHandler
// (local recipients checked at RCPT, relaying only for logins and
// -relay-networks, every message into the queue), which at MAIL FROM
// checks the spool's and the Maildir root's free space (-queue-minfree)
// and, with -sender-login-check, binds an authenticated client's MAIL FROM
// to its login (-sender-logins, or by default each login as itself in the
// local domains): the MX listener offers AUTH too.
func newHandler(cfg *Config, q *queue.Queue, rcpts *transport.LocalRecipients, logins []string, log *slog.Logger) (*transport.RelayHandler, error) {
	h := &transport.RelayHandler{Queue: q, LocalDomain: cfg.isLocalDomain, Recipients: rcpts, RelayNetworks: cfg.RelayNetworks, Logger: log,
		SenderCheckers: []transport.SenderChecker{q, queue.FreeSpace{Dir: cfg.path("mail"), MinFree: cfg.minFree(), Logger: log}}}
	if !cfg.SenderLoginCheck {
		return h, nil
	}
	sl, err := transport.LocalSenderLogins(logins, append([]string{cfg.Hostname}, cfg.LocalDomains...))
	if cfg.SenderLoginsFile != "" {
		if sl, err = transport.LoadSenderLogins(cfg.SenderLoginsFile); err != nil {
			return nil, fmt.Errorf("-sender-logins: %w", err)
		}
	}
	if err != nil {
		return nil, err
	}
	h.SenderCheckers = append(h.SenderCheckers, sl)
	return h, nil
}

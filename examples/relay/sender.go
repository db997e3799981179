package main

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/mailtls/mailtls/transport"
	"github.com/mailtls/mailtls/transport/queue"
)

var (
	_ transport.SenderChecker = (*inbound)(nil)
	_ transport.SenderChecker = submissionHandler{}
)

// CheckSender is asked at MAIL FROM on every listener (transport.
// SenderChecker). It refuses the transaction with "452 4.3.1 Insufficient
// system storage" before the client sends anything, while the queue's spool
// or the Maildir root has less than -queue-minfree plus the MAIL SIZE=
// parameter free (Postfix's queue_minfree; see queue.CheckFreeSpace). Both
// are checked because the queue holds every message and the Maildirs then
// receive the local ones; they are usually the same file system.
func (h *inbound) CheckSender(ctx context.Context, env *transport.Envelope) error {
	if sc, ok := h.queue.(transport.SenderChecker); ok {
		if err := sc.CheckSender(ctx, env); err != nil {
			return err
		}
	}
	minFree := h.cfg.minFree()
	if minFree < 0 {
		return nil
	}
	root := h.cfg.path("mail")
	free, err := queue.DiskFree(root)
	if err != nil {
		h.log.Debug("cannot read the Maildir root's free space", "dir", root, "err", err)
		return nil
	}
	if err := queue.CheckFreeSpace(free, minFree, env.Size); err != nil {
		h.log.Warn("refusing mail: Maildir root short of space", "dir", root, "free", free,
			"min_free", minFree, "size", env.Size, "peer", fmt.Sprint(env.ClientAddr), "from", env.From)
		return err
	}
	return nil
}

// submissionHandler is the Handler of every listener (the MX listener
// offers AUTH too): the inbound Handler, plus the binding of the
// reverse-path to the login (Postfix's reject_sender_login_mismatch with
// smtpd_sender_login_maps): an authenticated user gets "553 5.7.1 ...
// Sender address rejected: not owned by user" for an address it does not
// own; a client that did not authenticate is not bound.
// -sender-login-check=false serves the listeners with the plain inbound
// Handler instead.
type submissionHandler struct {
	*inbound
	logins *transport.SenderLogins
}

// CheckSender makes the space check of inbound.CheckSender first (a full
// spool refuses everybody, as Postfix checks queue_minfree before its
// sender restrictions), then the login check.
func (h submissionHandler) CheckSender(ctx context.Context, env *transport.Envelope) error {
	if err := h.inbound.CheckSender(ctx, env); err != nil {
		return err
	}
	if err := h.logins.CheckSender(ctx, env); err != nil {
		h.log.Warn("sender login mismatch", "peer", fmt.Sprint(env.ClientAddr), "from", env.From,
			"auth", env.AuthIdentity)
		return err
	}
	return nil
}

// senderLogins builds the table of -sender-logins, or, without the flag,
// the default one: each -users login may send as itself when the login is
// an address (a rule of transport.SenderLogins), and a bare login "alice"
// as alice@ each local domain (-local-domains and -hostname, the domains
// where "alice" is a local recipient). logins are the -users names.
func senderLogins(cfg *Config, logins []string) (*transport.SenderLogins, error) {
	if cfg.SenderLoginsFile != "" {
		t, err := transport.LoadSenderLogins(cfg.SenderLoginsFile)
		if err != nil {
			return nil, fmt.Errorf("-sender-logins: %w", err)
		}
		return t, nil
	}
	domains := slices.Clone(cfg.LocalDomains)
	if h := strings.ToLower(cfg.Hostname); !slices.Contains(domains, h) {
		domains = append(domains, h)
	}
	var entries []transport.SenderLogin
	index := map[string]int{} // folded address → entry
	for _, l := range logins {
		if strings.ContainsAny(l, "@ \t\r\n,") {
			continue // an address owns itself; other forms cannot be a local part
		}
		for _, d := range domains {
			k := strings.ToLower(l + "@" + d)
			if i, ok := index[k]; ok {
				entries[i].Logins = append(entries[i].Logins, l)
				continue
			}
			index[k] = len(entries)
			entries = append(entries, transport.SenderLogin{Sender: k, Logins: []string{l}})
		}
	}
	return transport.NewSenderLogins(entries...)
}

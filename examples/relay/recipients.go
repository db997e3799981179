package main

import (
	"fmt"
	"strings"

	"github.com/mailtls/mailtls/transport"
)

// isLocalDomain reports whether domain is delivered here: one of
// -local-domains, or -hostname itself (as Postfix's mydestination includes
// $myhostname), whose postmaster RFC 5321 §4.5.1 requires.
func (c *Config) isLocalDomain(domain string) bool {
	return c.isLocal(domain) || strings.EqualFold(strings.TrimSuffix(domain, "."), c.Hostname)
}

// localRecipients builds the local recipient table (Postfix's
// local_recipient_maps): the -recipients file, the logins of -users, and
// postmaster; other local recipients get 550 5.1.1 at RCPT.
func localRecipients(cfg *Config, logins []string) (*transport.LocalRecipients, error) {
	t := transport.NewLocalRecipients(cfg.isLocalDomain)
	if cfg.RecipientsFile != "" {
		var err error
		if t, err = transport.LoadLocalRecipients(cfg.RecipientsFile, cfg.isLocalDomain); err != nil {
			return nil, fmt.Errorf("-recipients: %w (local domains: -local-domains, -hostname)", err)
		}
	}
	t.Add(logins...)
	return t, nil
}

package main

import (
	"errors"

	"github.com/mailtls/mailtls/policy"
	"github.com/mailtls/mailtls/transport/queue"
)

// publishedPolicies returns the MTA-STS and DANE lookups the flags enable.
func (r *Relay) publishedPolicies() ([]policy.Policy, error) {
	if r.cfg.MTASTS || r.cfg.DANEResolver != "" || r.cfg.TLSRPT {
		return nil, errors.New("-mta-sts, -dane-resolver and -tlsrpt are not available in this build yet")
	}
	return nil, nil
}

// wrapDeliverer adds TLS-RPT recording around d when -tlsrpt is set.
func (r *Relay) wrapDeliverer(d queue.Deliverer) queue.Deliverer { return d }

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/mailtls/mailtls/policy/tlsrpt"
	"github.com/mailtls/mailtls/transport"
)

// reporter sends the daily TLS-RPT aggregate reports (RFC 8460 §4, §5):
// shortly after each UTC midnight it aggregates the previous day's results
// per policy domain, looks up the domain's "_smtp._tls" record, queues the
// report mail for its mailto: destinations and POSTs it to its https: ones.
// A marker file per day under -data/tlsrpt records that the day was
// reported, so a restart neither skips nor repeats a day.
type reporter struct {
	agg      *tlsrpt.Aggregator
	dir      string
	from     string            // header From; the envelope uses the null reverse-path
	submit   string            // TLS-Report-Submitter
	dkim     *dkim.SignOptions // -dkim-*: sign report mail (RFC 8460 §5.3); nil: unsigned
	queue    enqueuer
	resolver tlsrpt.TXTResolver // nil: the system resolver
	http     *http.Client       // nil: http.DefaultClient (verifies certificates)
	log      *slog.Logger
	now      func() time.Time
}

func (r *reporter) markerPath(day time.Time) string {
	return filepath.Join(r.dir, "reported-"+day.UTC().Format("2006-01-02"))
}

// run reports yesterday if not yet done, then every day after midnight UTC
// (plus a few minutes, so late results of the day are in), until ctx ends.
func (r *reporter) run(ctx context.Context) {
	for {
		now := r.now().UTC()
		yesterday := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC).AddDate(0, 0, -1)
		if err := r.reportDay(ctx, yesterday); err != nil && ctx.Err() == nil {
			r.log.Warn("tls-rpt reports not sent", "day", yesterday.Format("2006-01-02"), "error", err)
		}
		next := time.Date(now.Year(), now.Month(), now.Day(), 0, 5, 0, 0, time.UTC).AddDate(0, 0, 1)
		select {
		case <-ctx.Done():
			return
		case <-time.After(next.Sub(now)):
		}
	}
}

// reportDay sends the reports for one UTC day, once.
func (r *reporter) reportDay(ctx context.Context, day time.Time) error {
	if _, err := os.Stat(r.markerPath(day)); err == nil {
		return nil
	}
	reports, err := r.agg.Reports(ctx, day)
	if err != nil {
		return err
	}
	var errs []error
	for _, rep := range reports {
		if err := r.send(ctx, rep); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", rep.PolicyDomain(), err))
		}
	}
	if len(errs) > 0 {
		// Not marked: tried again at the next start or run. RFC 8460 §5.5
		// leaves retries to the sender; a repeated report has a new id.
		return errors.Join(errs...)
	}
	if err := os.MkdirAll(r.dir, 0o700); err != nil {
		return err
	}
	return os.WriteFile(r.markerPath(day), []byte(fmt.Sprintf("%d reports\n", len(reports))), 0o600)
}

// dkimOptions returns the DKIM signing options of -dkim-*, or nil if they
// are not given. BuildMail copies them and adds the header fields RFC 8460
// §5.3 wants signed.
func (c *Config) dkimOptions() *dkim.SignOptions {
	if c.DKIMSigner == nil {
		return nil
	}
	return &dkim.SignOptions{Domain: c.DKIMDomain, Selector: c.DKIMSelector, Signer: c.DKIMSigner}
}

// send delivers one report to the destinations the policy domain publishes.
func (r *reporter) send(ctx context.Context, rep *tlsrpt.Report) error {
	domain := rep.PolicyDomain()
	rec, err := tlsrpt.LookupRecord(ctx, r.resolver, domain)
	if errors.Is(err, tlsrpt.ErrNoRecord) {
		r.log.Info("tls-rpt: domain publishes no report destination", "domain", domain)
		return nil
	}
	if err != nil {
		return err
	}
	if to := rec.MailtoAddresses(); len(to) > 0 {
		msg, err := tlsrpt.BuildMail(rep, tlsrpt.MailOptions{From: r.from, To: to, Submitter: r.submit, DKIM: r.dkim})
		if err != nil {
			return err
		}
		env := &transport.Envelope{
			From:          "",   // null reverse-path: a failed report must not bounce (no loops)
			TLSRequiredNo: true, // the message says "TLS-Required: No" (RFC 8460 §5.3, RFC 8689 §3, §4.2.2)
			ReceivedAt:    r.now(),
		}
		for _, a := range to {
			env.Recipients = append(env.Recipients, transport.Recipient{Address: a})
		}
		id, err := r.queue.Enqueue(ctx, env, bytes.NewReader(msg))
		if err != nil {
			return err
		}
		r.log.Info("tls-rpt report queued", "domain", domain, "report_id", rep.ReportID, "to", to, "queue_id", id)
	}
	for _, u := range rec.HTTPSURLs() {
		req, err := tlsrpt.NewHTTPRequest(ctx, u, rep)
		if err != nil {
			return err
		}
		c := r.http
		if c == nil {
			c = http.DefaultClient
		}
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("POST %s: %s", u, resp.Status)
		}
		r.log.Info("tls-rpt report posted", "domain", domain, "report_id", rep.ReportID, "url", u)
	}
	return nil
}

package tlsrpt

import (
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
)

// Mailer queues one report message for delivery (RFC 8460 §5.3). The
// message is queued with the null reverse-path, so that a failed report
// does not bounce, and as "TLS-Required: No" (RFC 8689 §4.2.2), which the
// message also says in its header: a report about TLS failures must be
// deliverable over the connections that fail. It returns the queue id.
// transport/queue's Queue implements it (Queue.QueueReport).
type Mailer interface {
	QueueReport(ctx context.Context, to []string, msg []byte) (string, error)
}

// Reporter sends the daily aggregate reports (RFC 8460 §4, §5): run it next
// to the queue. Shortly after each UTC midnight it aggregates the previous
// day's results per policy domain ([Aggregator]), looks up the domain's
// "_smtp._tls" record (§3), queues the report mail for its mailto:
// destinations through Mailer (§5.3) and POSTs the report to its https:
// ones (§5.4). A marker file per day under Dir records that the day was
// reported, so a restart neither skips nor repeats a day; a day with a
// failed destination is not marked and is tried again at the next start
// or run (§5.5 leaves retries to the sender; a repeated report has a new
// report-id).
type Reporter struct {
	Aggregator *Aggregator
	Dir        string            // marker files; created when needed
	From       string            // header From of report mail
	Submitter  string            // TLS-Report-Submitter (§5.3)
	DKIM       *dkim.SignOptions // signs report mail (§5.3); nil: unsigned
	Mailer     Mailer            // nil: mailto: destinations fail
	Resolver   TXTResolver       // nil: the system resolver
	HTTPClient *http.Client      // nil: http.DefaultClient (verifies certificates)
	Logger     *slog.Logger      // nil: slog.Default()
	Now        func() time.Time  // nil: time.Now
	// Days, when set, records which days were reported instead of the
	// marker files under Dir: a DayMarker shared by several relays (such
	// as pgstore's, in the queue's database) makes them send one report
	// per policy domain per day between them.
	Days DayMarker
}

// DayMarker records which UTC days have been reported, for a Reporter.
// Begin takes the day for this reporter: it returns false when the day
// was reported, or another reporter is reporting it now. After Begin
// returned true, exactly one of Done (the day's reports went out) or
// Abort (some failed: the day is to be tried again) follows.
type DayMarker interface {
	Begin(ctx context.Context, day time.Time) (bool, error)
	Done(ctx context.Context, day time.Time, reports int) error
	Abort(ctx context.Context, day time.Time) error
}

func (r *Reporter) now() time.Time {
	if r.Now == nil {
		return time.Now()
	}
	return r.Now()
}

func (r *Reporter) logger() *slog.Logger {
	if r.Logger == nil {
		return slog.Default()
	}
	return r.Logger
}

func (r *Reporter) markerPath(day time.Time) string {
	return filepath.Join(r.Dir, "reported-"+day.UTC().Format("2006-01-02"))
}

// Run reports yesterday if not yet done, then each day a few minutes
// after midnight UTC (so that late results of the day are in), until ctx
// is done.
func (r *Reporter) Run(ctx context.Context) {
	for {
		now := r.now().UTC()
		yesterday := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC).AddDate(0, 0, -1)
		if err := r.ReportDay(ctx, yesterday); err != nil && ctx.Err() == nil {
			r.logger().Warn("tls-rpt reports not sent", "day", yesterday.Format("2006-01-02"), "error", err)
		}
		next := time.Date(now.Year(), now.Month(), now.Day(), 0, 5, 0, 0, time.UTC).AddDate(0, 0, 1)
		select {
		case <-ctx.Done():
			return
		case <-time.After(next.Sub(now)):
		}
	}
}

// ReportDay sends the reports for one UTC day, unless its marker (a file,
// or Days) says they were sent or, with Days, another reporter is sending
// them.
func (r *Reporter) ReportDay(ctx context.Context, day time.Time) error {
	if r.Days != nil {
		ok, err := r.Days.Begin(ctx, day)
		if err != nil || !ok {
			return err
		}
		n, err := r.reportDay(ctx, day)
		if err != nil {
			r.Days.Abort(context.WithoutCancel(ctx), day)
			return err
		}
		return r.Days.Done(ctx, day, n)
	}
	if _, err := os.Stat(r.markerPath(day)); err == nil {
		return nil
	}
	n, err := r.reportDay(ctx, day)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(r.Dir, 0o700); err != nil {
		return err
	}
	return os.WriteFile(r.markerPath(day), fmt.Appendf(nil, "%d reports\n", n), 0o600)
}

// reportDay sends the day's reports and returns how many there were.
func (r *Reporter) reportDay(ctx context.Context, day time.Time) (int, error) {
	reports, err := r.Aggregator.Reports(ctx, day)
	if err != nil {
		return 0, err
	}
	var errs []error
	for _, rep := range reports {
		if err := r.send(ctx, rep); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", rep.PolicyDomain(), err))
		}
	}
	if len(errs) > 0 {
		return 0, errors.Join(errs...)
	}
	return len(reports), nil
}

// send delivers one report to the destinations its policy domain
// publishes.
func (r *Reporter) send(ctx context.Context, rep *Report) error {
	domain := rep.PolicyDomain()
	rec, err := LookupRecord(ctx, r.Resolver, domain)
	if errors.Is(err, ErrNoRecord) {
		r.logger().Info("tls-rpt: domain publishes no report destination", "domain", domain)
		return nil
	}
	if err != nil {
		return err
	}
	if to := rec.MailtoAddresses(); len(to) > 0 {
		msg, err := BuildMail(rep, MailOptions{From: r.From, To: to, Submitter: r.Submitter, DKIM: r.DKIM})
		if err != nil {
			return err
		}
		if r.Mailer == nil {
			return errors.New("tlsrpt: no Mailer for mailto: destinations")
		}
		id, err := r.Mailer.QueueReport(ctx, to, msg)
		if err != nil {
			return err
		}
		r.logger().Info("tls-rpt report queued", "domain", domain, "report_id", rep.ReportID, "to", to, "queue_id", id)
	}
	for _, u := range rec.HTTPSURLs() {
		req, err := NewHTTPRequest(ctx, u, rep)
		if err != nil {
			return err
		}
		c := r.HTTPClient
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
		r.logger().Info("tls-rpt report posted", "domain", domain, "report_id", rep.ReportID, "url", u)
	}
	return nil
}

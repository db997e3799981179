package tlsrpt

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-msgauth/dkim"
)

// Media types of RFC 8460 §6.
const (
	MediaTypeGzip = "application/tlsrpt+gzip"
	MediaTypeJSON = "application/tlsrpt+json"
)

// MailOptions describe the report message BuildMail writes.
type MailOptions struct {
	// From is the sender address, e.g. "noreply-tlsrpt@sender.example".
	// Required.
	From string
	// To are the recipients, normally Record.MailtoAddresses(). Required.
	To []string
	// Submitter is the sending domain ("TLS-Report-Submitter", §5.3, and
	// the first part of the §5.1 file name). Required.
	Submitter string
	// Date is the Date field. Zero means now.
	Date time.Time
	// MessageID is the Message-ID without angle brackets. Empty means a
	// random one at Submitter.
	MessageID string
	// DKIM, if not nil, makes BuildMail sign the message (RFC 6376) with
	// go-msgauth, as RFC 8460 §5.3 requires of the reporting
	// organization. Its Domain, Selector and Signer must be set (otherwise
	// BuildMail returns an error, never an unsigned message). If its
	// HeaderKeys is nil, SignedHeaders are signed; if it is set, any of
	// SignedHeaders it lacks are added, so that the signature always covers
	// TLS-Report-Domain and TLS-Report-Submitter (§5.3). The options are
	// copied, not modified. Nil (the zero value) means unsigned: the host
	// must then sign the message itself before it leaves.
	DKIM *dkim.SignOptions
}

// SignedHeaders are the header fields BuildMail's DKIM signature covers
// (its "h=" tag, RFC 6376 §3.5): the originator and destination fields, the
// report's identifying fields, the TLS-Report-Domain and
// TLS-Report-Submitter fields RFC 8460 §5.3 asks the signature to cover,
// and the MIME structure. It is a function so callers cannot change a
// shared list.
func SignedHeaders() []string {
	return []string{
		"From", "To", "Subject", "Date", "Message-ID",
		"TLS-Report-Domain", "TLS-Report-Submitter", "TLS-Required",
		"Auto-Submitted", "MIME-Version", "Content-Type",
	}
}

// BuildMail returns the report message for "mailto:" destinations (RFC 8460
// §5.3), ready for the host's queue: a "multipart/report;
// report-type=tlsrpt" message with a text/plain part for humans and the
// gzip-compressed report as an application/tlsrpt+gzip attachment named per
// §5.1; Subject "Report Domain: <domain> Submitter: <submitter> Report-ID:
// <report-id>"; TLS-Report-Domain and TLS-Report-Submitter fields; and
// "TLS-Required: No" (RFC 8689 §3, §4.2.2) so that a TLS problem — the very thing
// being reported — cannot stop the report.
//
// With o.DKIM set the message is DKIM-signed (RFC 6376) and starts with the
// DKIM-Signature field, whose "h=" tag lists SignedHeaders; the body hash
// covers the whole MIME body, report attachment included. Without it the
// message is unsigned, and §5.3 leaves signing to the host.
func BuildMail(r *Report, o MailOptions) ([]byte, error) {
	if o.From == "" || len(o.To) == 0 || o.Submitter == "" {
		return nil, errors.New("tlsrpt: BuildMail needs From, To and Submitter")
	}
	if err := r.Validate(true); err != nil {
		return nil, err
	}
	domain := r.PolicyDomain()
	for _, s := range append([]string{domain, o.Submitter, r.ReportID}, o.To...) {
		if strings.ContainsAny(s, "\r\n") {
			return nil, errors.New("tlsrpt: line break in a header value")
		}
	}
	gz, err := r.Gzip()
	if err != nil {
		return nil, err
	}
	from, err := mail.ParseAddress(o.From)
	if err != nil {
		return nil, fmt.Errorf("tlsrpt: From: %w", err)
	}
	var to []*mail.Address
	for _, a := range o.To {
		addr, err := mail.ParseAddress(a)
		if err != nil {
			return nil, fmt.Errorf("tlsrpt: To %q: %w", a, err)
		}
		to = append(to, addr)
	}
	date := o.Date
	if date.IsZero() {
		date = time.Now()
	}
	msgID := o.MessageID
	if msgID == "" {
		var b [12]byte
		rand.Read(b[:])
		msgID = hex.EncodeToString(b[:]) + "@" + o.Submitter
	}

	var h mail.Header
	h.SetAddressList("From", []*mail.Address{from})
	h.SetAddressList("To", to)
	h.SetDate(date)
	h.SetMessageID(msgID)
	h.SetSubject(fmt.Sprintf("Report Domain: %s Submitter: %s Report-ID: <%s>", domain, o.Submitter, r.ReportID))
	// AddRaw keeps the RFC's spelling of the field names (Set would write
	// "Tls-Report-Domain"; names are case-insensitive, but not every reader
	// is careful).
	h.AddRaw([]byte("TLS-Report-Domain: " + domain + "\r\n"))
	h.AddRaw([]byte("TLS-Report-Submitter: " + o.Submitter + "\r\n"))
	h.AddRaw([]byte("TLS-Required: No\r\n"))
	h.Set("Auto-Submitted", "auto-generated")
	h.SetContentType("multipart/report", map[string]string{"report-type": "tlsrpt"})

	var buf bytes.Buffer
	w, err := message.CreateWriter(&buf, h.Header)
	if err != nil {
		return nil, err
	}
	var th message.Header
	th.SetContentType("text/plain", map[string]string{"charset": "utf-8"})
	th.Set("Content-Transfer-Encoding", "quoted-printable")
	tw, err := w.CreatePart(th)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(tw, "This is an aggregate TLS report (RFC 8460) from %s.\r\n\r\n", r.OrganizationName)
	fmt.Fprintf(tw, "Policy domain: %s\r\nSubmitter: %s\r\nReport-ID: %s\r\nPeriod: %s to %s\r\n",
		domain, o.Submitter, r.ReportID,
		r.DateRange.Start.UTC().Format(time.RFC3339), r.DateRange.End.UTC().Format(time.RFC3339))
	for _, p := range r.Policies {
		fmt.Fprintf(tw, "Policy %s: %d successful, %d failed sessions\r\n",
			p.Policy.Type, p.Summary.TotalSuccessfulSessionCount, p.Summary.TotalFailureSessionCount)
	}
	fmt.Fprintf(tw, "\r\nYou receive this because the _smtp._tls TXT record of %s names this address.\r\n", domain)
	if err := tw.Close(); err != nil {
		return nil, err
	}

	filename := r.Filename(o.Submitter, "")
	var ah message.Header
	ah.SetContentType(MediaTypeGzip, map[string]string{"name": filename})
	ah.SetContentDisposition("attachment", map[string]string{"filename": filename})
	ah.Set("Content-Transfer-Encoding", "base64")
	aw, err := w.CreatePart(ah)
	if err != nil {
		return nil, err
	}
	if _, err := aw.Write(gz); err != nil {
		return nil, err
	}
	if err := aw.Close(); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	if o.DKIM == nil {
		return buf.Bytes(), nil
	}
	return signMail(buf.Bytes(), o.DKIM)
}

// signMail DKIM-signs msg (RFC 6376 §5) with a copy of opts whose
// HeaderKeys include SignedHeaders (RFC 8460 §5.3).
func signMail(msg []byte, opts *dkim.SignOptions) ([]byte, error) {
	if opts.Domain == "" || opts.Selector == "" || opts.Signer == nil {
		return nil, errors.New("tlsrpt: DKIM signing needs Domain, Selector and Signer")
	}
	o := *opts
	keys := append([]string(nil), o.HeaderKeys...)
	for _, want := range SignedHeaders() {
		found := false
		for _, k := range keys {
			if strings.EqualFold(k, want) {
				found = true
				break
			}
		}
		if !found {
			keys = append(keys, want)
		}
	}
	o.HeaderKeys = keys
	var signed bytes.Buffer
	if err := dkim.Sign(&signed, bytes.NewReader(msg), &o); err != nil {
		return nil, fmt.Errorf("tlsrpt: DKIM signing: %w", err)
	}
	return signed.Bytes(), nil
}

// NewHTTPRequest builds the POST of the gzip-compressed report to an
// "https:" rua destination (RFC 8460 §5.4), with Content-Type
// application/tlsrpt+gzip. It does not send it: the host sends it with an
// HTTP client that verifies the server certificate, and treats any 2xx
// response as delivered.
func NewHTTPRequest(ctx context.Context, rawURL string, r *Report) (*http.Request, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("tlsrpt: %q is not an https URL", rawURL)
	}
	if err := r.Validate(true); err != nil {
		return nil, err
	}
	gz, err := r.Gzip()
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rawURL, bytes.NewReader(gz))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", MediaTypeGzip)
	return req, nil
}

// MaxMailSize bounds a report message read by ParseReportMail, 30 MiB.
const MaxMailSize = 30 << 20

// Limits on the MIME structure ParseReportMail walks, against hostile input
// (RFC 2046 §5.1 sets no bound on nesting). Every level of multipart
// nesting adds a reader all the data below it passes through, so the work
// is about depth × size; with these limits it is at most maxMailDepth
// passes over MaxMailSize bytes. A report mail (RFC 8460 §5.3) is a
// multipart/report holding the report at depth 1 among a few parts, so the
// limits, the same as package ndr's, leave ample room for reports wrapped
// by forwarding or list software.
const (
	// maxMailDepth is the deepest nesting level visited; the top-level
	// entity is level 0.
	maxMailDepth = 8
	// maxMailParts is the most entities visited, the top-level one
	// included.
	maxMailParts = 200
)

// ErrNoReportInMail: the message has no application/tlsrpt+gzip or
// application/tlsrpt+json part.
var ErrNoReportInMail = errors.New("tlsrpt: no report in message")

// ParseReportMail reads a report message (RFC 8460 §5.3), at most
// MaxMailSize bytes, and parses the first application/tlsrpt+gzip or
// application/tlsrpt+json part with ParseReport. The message need not be
// multipart/report: a report found anywhere in the MIME tree is accepted,
// parts being searched depth first in their order in the message. A
// message whose multipart nesting goes deeper than 8 levels, or that has
// more than 200 MIME parts before the report, is refused with an error
// wrapping ErrReportSyntax, so that hostile nesting cannot make the search
// expensive.
func ParseReportMail(r io.Reader) (*Report, error) {
	lr := &io.LimitedReader{R: r, N: MaxMailSize + 1}
	ent, err := message.Read(lr)
	if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
		return nil, fmt.Errorf("%w: %v", ErrReportSyntax, err)
	}
	var w mailWalker
	walkErr := w.walk(ent, 0)
	if lr.N <= 0 {
		return nil, fmt.Errorf("%w: message larger than %d bytes", ErrReportSyntax, MaxMailSize)
	}
	if walkErr != nil && walkErr != errStopWalk {
		return nil, fmt.Errorf("%w: %v", ErrReportSyntax, walkErr)
	}
	if w.rep == nil && w.perr == nil {
		return nil, ErrNoReportInMail
	}
	return w.rep, w.perr
}

var errStopWalk = errors.New("stop")

// mailWalker searches a MIME tree for the report part, within
// maxMailDepth and maxMailParts.
type mailWalker struct {
	parts int
	rep   *Report
	perr  error
}

// walk visits e, at nesting level depth, then its parts in order. It
// returns errStopWalk once a report part has been parsed (the outcome is
// in w.rep and w.perr), an error when a limit is passed or the MIME
// structure cannot be read, and nil when the subtree holds no report.
func (w *mailWalker) walk(e *message.Entity, depth int) error {
	w.parts++
	if depth > maxMailDepth {
		return fmt.Errorf("MIME parts nested deeper than %d levels", maxMailDepth)
	}
	if w.parts > maxMailParts {
		return fmt.Errorf("more than %d MIME parts", maxMailParts)
	}
	mt, _, _ := e.Header.ContentType()
	switch strings.ToLower(mt) {
	case MediaTypeGzip, MediaTypeJSON:
		w.rep, w.perr = ParseReport(e.Body)
		return errStopWalk
	}
	mr := e.MultipartReader()
	if mr == nil {
		return nil
	}
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			// As go-message's Entity.Walk did: a part in an unknown
			// charset or transfer encoding ends the search with an
			// error, like any other unreadable part.
			return err
		}
		if err := w.walk(part, depth+1); err != nil {
			return err
		}
	}
}

package ndr

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"mime"
	"net/mail"
	"regexp"
	"strings"
	"time"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"
)

// DefaultMaxParseSize is the input limit of Parse and of a zero Parser.
const DefaultMaxParseSize = 16 << 20

// Limits on the MIME structure Parse walks, against hostile input.
const (
	maxParseDepth = 8
	maxParseParts = 200
)

// Parser reads delivery status notifications. The zero value is ready to
// use.
type Parser struct {
	// MaxSize is the largest message Parse reads; a larger one gives
	// ErrTooLarge. Zero means DefaultMaxParseSize. Parse holds a few copies
	// of the message in memory, so memory use is bounded by a small multiple
	// of MaxSize.
	MaxSize int64
}

// Parse reads a delivery status notification with a zero Parser.
func Parse(r io.Reader) (*Report, error) {
	var p Parser
	return p.Parse(r)
}

// Parse reads a delivery status notification (RFC 3464, RFC 6522, RFC 6533)
// from r: the report's header (To becomes Sender), the message/delivery-status
// or message/global-delivery-status part, and the returned original if any
// (which sets Original and Return). It accepts reports of other MTAs: the
// part may be nested in other multiparts, field names are matched without
// regard to case, lines may end in CRLF or LF, optional fields may be
// missing, and a MIME structure go-message cannot read is searched for the
// part's header line instead.
//
// It returns ErrTooLarge for input beyond MaxSize, and ErrNoDeliveryStatus
// when no per-recipient group is found.
func (p *Parser) Parse(r io.Reader) (*Report, error) {
	max := p.MaxSize
	if max <= 0 {
		max = DefaultMaxParseSize
	}
	data, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > max {
		return nil, ErrTooLarge
	}
	rep := &Report{}
	w := &walker{rep: rep}
	if e, err := message.Read(bytes.NewReader(data)); e != nil && (err == nil || message.IsUnknownCharset(err) || message.IsUnknownEncoding(err)) {
		w.topHeader(e.Header.Header)
		w.walk(e, 0)
	} else {
		// The top-level header itself is malformed: read what we can.
		h, _ := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(data)))
		w.topHeader(h)
	}
	if len(rep.Recipients) == 0 {
		if body := rawDeliveryStatus(data); body != nil {
			w.status(body, false)
		}
	}
	if len(rep.Recipients) == 0 {
		return nil, ErrNoDeliveryStatus
	}
	if rep.OriginalMessageID == "" && w.origHeader != nil {
		rep.OriginalMessageID = headerValue(w.origHeader, "Message-Id")
	}
	return rep, nil
}

type walker struct {
	rep        *Report
	parts      int
	seenStatus bool
	seenText   bool
	origHeader []byte
}

func (w *walker) topHeader(h textproto.Header) {
	rep := w.rep
	mh := mail.Header{}
	for f := h.Fields(); f.Next(); {
		mh[f.Key()] = append(mh[f.Key()], f.Value())
	}
	if list, err := mh.AddressList("To"); err == nil && len(list) > 0 {
		rep.Sender = list[0].Address
	} else {
		rep.Sender = strings.Trim(strings.TrimSpace(h.Get("To")), "<>")
	}
	if list, err := mh.AddressList("From"); err == nil && len(list) > 0 {
		rep.From = list[0].Address
	}
	rep.Subject = decodeHeader(h.Get("Subject"))
	if d, err := parseDate(h.Get("Date")); err == nil {
		rep.Date = d
	}
	rep.MessageID = strings.TrimSpace(h.Get("Message-Id"))
	if id := firstMsgID(h.Get("In-Reply-To")); id != "" {
		rep.OriginalMessageID = id
	}
}

func (w *walker) walk(e *message.Entity, depth int) {
	w.parts++
	if depth > maxParseDepth || w.parts > maxParseParts {
		return
	}
	mt, _, _ := e.Header.ContentType()
	mt = strings.ToLower(mt)
	if mr := e.MultipartReader(); mr != nil {
		for {
			part, err := mr.NextPart()
			if part == nil || (err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err)) {
				return
			}
			w.walk(part, depth+1)
			if w.parts > maxParseParts {
				return
			}
		}
	}
	switch mt {
	case "message/delivery-status", "message/global-delivery-status":
		if w.seenStatus {
			return
		}
		body, err := io.ReadAll(e.Body)
		if err != nil && len(body) == 0 {
			return
		}
		w.status(body, mt == "message/global-delivery-status")
		w.seenStatus = len(w.rep.Recipients) > 0
	case "text/plain":
		if !w.seenText {
			w.seenText = true
			if lang := e.Header.Get("Content-Language"); lang != "" {
				w.rep.Language = normalizeLanguage(lang)
			}
		}
	case "message/rfc822", "message/global", "text/rfc822-headers", "message/global-headers", "message/rfc822-headers":
		if w.rep.Original != nil {
			return
		}
		body, err := io.ReadAll(e.Body)
		if err != nil && len(body) == 0 {
			return
		}
		w.rep.Original = bytes.NewReader(body)
		w.rep.Return = ReturnHeaders
		if mt == "message/rfc822" || mt == "message/global" {
			w.rep.Return = ReturnFull
		}
		if strings.HasPrefix(mt, "message/global") {
			w.rep.SMTPUTF8 = true
		}
		if o, err := readOriginal(bytes.NewReader(body), false, 0); err == nil {
			w.origHeader = o.header
		}
	}
}

// status merges a parsed delivery-status body into the report.
func (w *walker) status(body []byte, global bool) {
	ds, err := ParseDeliveryStatus(body)
	if err != nil {
		return
	}
	rep := w.rep
	rep.ReportingMTA = ds.ReportingMTA
	rep.OriginalEnvelopeID = ds.OriginalEnvelopeID
	rep.ReceivedFromMTA = ds.ReceivedFromMTA
	rep.ArrivalDate = ds.ArrivalDate
	rep.Recipients = ds.Recipients
	if rep.Sender == "" {
		rep.Sender = ds.Sender
	}
	if global {
		rep.SMTPUTF8 = true
	}
}

// rawContentType finds a delivery-status part's Content-Type line when the
// MIME structure cannot be read.
var rawContentType = regexp.MustCompile(`(?im)^content-type:[ \t]*message/(global-)?delivery-status`)

// rawDeliveryStatus returns the body of the first delivery-status part found
// by its Content-Type line: from the end of that part's header to the next
// line starting with "--" (a boundary) or the end of the input.
func rawDeliveryStatus(data []byte) []byte {
	loc := rawContentType.FindIndex(data)
	if loc == nil {
		return nil
	}
	rest := data[loc[1]:]
	// Skip the rest of the part header: up to the first empty line.
	lines := splitLines(rest)
	i := 1
	for i < len(lines) && len(bytes.TrimSpace(lines[i])) != 0 {
		i++
	}
	var body bytes.Buffer
	for i++; i < len(lines); i++ {
		if bytes.HasPrefix(lines[i], []byte("--")) {
			break
		}
		body.Write(lines[i])
		body.WriteByte('\n')
	}
	return body.Bytes()
}

func splitLines(b []byte) [][]byte {
	b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
	return bytes.Split(b, []byte("\n"))
}

// field is one unfolded "Name: value" of a delivery-status group.
type field struct{ name, value string }

// maxParsedField bounds one unfolded field value read by readGroups, in
// octets: twice the diagnostic text Build writes (maxDiagnostic), so that
// our own reports read back whole, while a Diagnostic-Code folded over
// megabytes of lines does not become a megabyte of Recipient text.
const maxParsedField = 2 * maxDiagnostic

// readGroups splits a delivery-status body into groups of fields (RFC 3464
// §2.1): groups are separated by empty (or blank) lines, a line starting
// with white space continues the previous field, and a line without a
// colon is skipped. Unfolding joins the trimmed lines of a field with one
// space (RFC 5322 §2.2.3); a value longer than maxParsedField is cut by
// capText.
//
// The value of the field being read is unfolded into one buffer, so that
// the cost is linear in the length of the body however many lines a field
// is folded over.
func readGroups(body []byte) [][]field {
	var groups [][]field
	var cur []field
	var val strings.Builder // the value of cur's last field, so far
	// end sets the value of cur's last field.
	end := func() {
		if len(cur) > 0 {
			cur[len(cur)-1].value = capText(val.String(), maxParsedField)
			val.Reset()
		}
	}
	// add unfolds a trimmed line into val, after a space unless it is the
	// field's first; past maxParsedField octets capText cuts anyway.
	add := func(p []byte, first bool) {
		if !first {
			if val.Len() > maxParsedField {
				return
			}
			val.WriteByte(' ')
		}
		val.Write(p[:min(len(p), maxParsedField+1-val.Len())])
	}
	flush := func() {
		end()
		if len(cur) > 0 {
			groups = append(groups, cur)
			cur = nil
		}
	}
	for _, line := range splitLines(body) {
		line = bytes.TrimRight(line, "\r")
		if len(bytes.TrimSpace(line)) == 0 {
			flush()
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			if len(cur) > 0 {
				add(bytes.TrimSpace(line), false)
			}
			continue
		}
		i := bytes.IndexByte(line, ':')
		if i <= 0 {
			continue
		}
		name := strings.ToLower(string(bytes.TrimSpace(line[:i])))
		if strings.ContainsAny(name, " \t") {
			continue
		}
		end()
		cur = append(cur, field{name: name})
		add(bytes.TrimSpace(line[i+1:]), true)
	}
	flush()
	return groups
}

// ParseDeliveryStatus parses the body of a message/delivery-status part
// (RFC 3464 §2.1) into the per-message fields and Recipients of a Report.
// It is tolerant: per-message fields are recognized wherever they appear, a
// repeated per-recipient field in one group starts a new recipient, dates
// that cannot be read are left zero, and unknown fields are ignored. An
// unfolded field value longer than 8 KiB is cut there and ends in
// " [truncated]". It returns ErrNoDeliveryStatus if no per-recipient field
// is found.
func ParseDeliveryStatus(body []byte) (*Report, error) {
	rep := &Report{}
	for _, g := range readGroups(body) {
		var cur *Recipient
		seen := map[string]bool{}
		for _, f := range g {
			switch f.name {
			case "reporting-mta":
				setOnce(&rep.ReportingMTA, mtaName(f.value))
				continue
			case "original-envelope-id":
				setOnce(&rep.OriginalEnvelopeID, f.value)
				continue
			case "received-from-mta":
				setOnce(&rep.ReceivedFromMTA, mtaName(f.value))
				continue
			case "arrival-date":
				if d, err := parseDate(f.value); err == nil && rep.ArrivalDate.IsZero() {
					rep.ArrivalDate = d
				}
				continue
			case "x-postfix-sender":
				setOnce(&rep.Sender, address(f.value))
				continue
			case "original-recipient", "final-recipient", "action", "status", "remote-mta",
				"diagnostic-code", "last-attempt-date", "final-log-id", "will-retry-until":
			default:
				continue
			}
			if cur == nil || seen[f.name] {
				rep.Recipients = append(rep.Recipients, Recipient{})
				cur = &rep.Recipients[len(rep.Recipients)-1]
				seen = map[string]bool{}
			}
			seen[f.name] = true
			switch f.name {
			case "original-recipient":
				t, v := splitTyped(f.value)
				if t == "" {
					t = "rfc822"
				}
				cur.OriginalRecipient = t + ";" + strings.Trim(v, "<>")
			case "final-recipient":
				t, v := splitTyped(f.value)
				switch strings.ToLower(t) {
				case "", "rfc822", "utf-8":
					cur.FinalRecipient = strings.Trim(v, "<> ")
				default:
					cur.FinalRecipient = t + "; " + v
				}
			case "action":
				a := strings.ToLower(f.value)
				if i := strings.IndexAny(a, " \t("); i >= 0 {
					a = a[:i]
				}
				cur.Action = Action(a)
			case "status":
				cur.Status = statusCode(f.value)
			case "remote-mta":
				cur.RemoteMTA = mtaName(f.value)
			case "diagnostic-code":
				t, v := splitTyped(f.value)
				cur.DiagnosticType, cur.DiagnosticCode = t, v
			case "last-attempt-date":
				cur.LastAttemptDate, _ = parseDate(f.value)
			case "final-log-id":
				cur.FinalLogID = f.value
			case "will-retry-until":
				cur.WillRetryUntil, _ = parseDate(f.value)
			}
			// Pointers into rep.Recipients stay valid: append happens only
			// when cur is replaced.
		}
	}
	if len(rep.Recipients) == 0 {
		return nil, ErrNoDeliveryStatus
	}
	for i := range rep.Recipients {
		inferMissing(&rep.Recipients[i])
	}
	return rep, nil
}

var replyRE = regexp.MustCompile(`^([245])\d\d[ -]`)

// inferMissing fills required fields some MTAs omit, from the fields they
// did write: Final-Recipient from Original-Recipient, and Status from the
// enhanced code in Diagnostic-Code or, failing that, from the class of its
// SMTP reply code (RFC 3463 §2 classes, §3.1 X.0.0: "550 ..." gives
// "5.0.0").
func inferMissing(rc *Recipient) {
	if rc.FinalRecipient == "" && rc.OriginalRecipient != "" {
		_, v := splitTyped(rc.OriginalRecipient)
		rc.FinalRecipient = v
	}
	if _, _, _, ok := ParseStatus(rc.Status); !ok && rc.DiagnosticCode != "" {
		if m := statusRE.FindString(rc.DiagnosticCode); m != "" {
			rc.Status = m
		} else if m := replyRE.FindStringSubmatch(rc.DiagnosticCode); m != nil {
			rc.Status = m[1] + ".0.0"
		}
	}
}

func setOnce(dst *string, v string) {
	if *dst == "" {
		*dst = v
	}
}

// splitTyped splits "type; value" (RFC 3464 §2.1.2). Without a valid type
// (an atom before the first ";"), the type is empty and value is all of s.
func splitTyped(s string) (typ, value string) {
	i := strings.IndexByte(s, ';')
	if i <= 0 {
		return "", strings.TrimSpace(s)
	}
	t := strings.TrimSpace(s[:i])
	if t == "" || strings.ContainsAny(t, " \t<>@\"") {
		return "", strings.TrimSpace(s)
	}
	return t, strings.TrimSpace(s[i+1:])
}

// mtaName returns the host of "dns; host", or "type; value" for other types.
func mtaName(s string) string {
	t, v := splitTyped(s)
	if t == "" || strings.EqualFold(t, "dns") {
		return v
	}
	return t + "; " + v
}

func address(s string) string {
	_, v := splitTyped(s)
	return strings.Trim(v, "<> ")
}

var statusRE = regexp.MustCompile(`\b[245]\.\d{1,3}\.\d{1,3}\b`)

// statusCode extracts the enhanced status code from a Status field value,
// which some MTAs follow with a comment ("5.0.0 (permanent failure)").
func statusCode(v string) string {
	first := v
	if i := strings.IndexAny(first, " \t("); i >= 0 {
		first = first[:i]
	}
	if _, _, _, ok := ParseStatus(first); ok {
		return first
	}
	if m := statusRE.FindString(v); m != "" {
		return m
	}
	return strings.TrimSpace(first)
}

// parseDate reads an RFC 5322 date-time, tolerating the variants seen in
// real reports.
func parseDate(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if t, err := mail.ParseDate(s); err == nil {
		return t, nil
	}
	// Drop a trailing comment such as "(UTC)" or "(JST)".
	if i := strings.IndexByte(s, '('); i > 0 {
		if t, err := mail.ParseDate(strings.TrimSpace(s[:i])); err == nil {
			return t, nil
		}
	}
	for _, layout := range []string{
		"Mon, 2 Jan 2006 15:04:05 -0700 (MST)",
		"Mon, 2 Jan 2006 15:04:05 MST",
		"Mon Jan 2 15:04:05 2006",
		"2 Jan 2006 15:04:05 -0700",
		time.RFC3339,
	} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, errors.New("ndr: unreadable date")
}

// headerValue returns the value of the named field in a raw header block.
func headerValue(hdr []byte, name string) string {
	h, _ := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(append(append([]byte(nil), hdr...), "\r\n"...))))
	return strings.TrimSpace(h.Get(name))
}

var msgIDRE = regexp.MustCompile(`<[^<>\s]+>`)

func firstMsgID(s string) string {
	return msgIDRE.FindString(s)
}

func decodeHeader(s string) string {
	// RFC 2047 words in UTF-8, US-ASCII and ISO-8859-1 are decoded; other
	// charsets leave the value as it is.
	var dec mime.WordDecoder
	out, err := dec.DecodeHeader(s)
	if err != nil {
		return s
	}
	return out
}

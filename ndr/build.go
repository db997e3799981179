package ndr

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"mime"
	"strconv"
	"strings"
	"unicode/utf8"
)

// dateLayout is the RFC 5322 §3.3 date-time format used in headers and in
// the delivery-status fields (RFC 3464 §2.1.1).
const dateLayout = "Mon, 02 Jan 2006 15:04:05 -0700"

func (r *Report) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalidReport}, args...)...)
	}
	if strings.TrimSpace(r.ReportingMTA) == "" || reportingHost(r.ReportingMTA) == "" {
		return bad("ReportingMTA is empty (RFC 3464 §2.2.2)")
	}
	if r.Boundary != "" && !validBoundary(r.Boundary) {
		return bad("Boundary %q is not an RFC 2046 §5.1.1 boundary", r.Boundary)
	}
	if IsNullSender(r.Sender) {
		return bad("Sender is null; no report may be sent (RFC 3461 §6.1, RFC 5321 §4.5.5)")
	}
	if len(r.Recipients) == 0 {
		return bad("no recipients (RFC 3464 §2.1)")
	}
	for i, rc := range r.Recipients {
		if strings.TrimSpace(rc.FinalRecipient) == "" {
			return bad("recipient %d: FinalRecipient is empty (RFC 3464 §2.3.2)", i)
		}
		if !rc.Action.Valid() {
			return bad("recipient %d: Action %q (RFC 3464 §2.3.3)", i, rc.Action)
		}
		if _, _, _, ok := ParseStatus(rc.Status); !ok {
			return bad("recipient %d: Status %q (RFC 3463 §2)", i, rc.Status)
		}
	}
	return nil
}

func (r *Report) build(buf *bytes.Buffer) error {
	if err := r.validate(); err != nil {
		return err
	}
	now := r.now()
	date := r.Date
	if date.IsZero() {
		date = now
	}
	host := reportingHost(r.ReportingMTA)
	msgID := oneLine(r.MessageID)
	if msgID == "" {
		h, err := r.randomHex(8)
		if err != nil {
			return err
		}
		msgID = now.UTC().Format("20060102150405") + "." + h + "@" + host
	}
	msgID = angle(msgID)
	boundary := r.Boundary
	if boundary == "" {
		h, err := r.randomHex(12)
		if err != nil {
			return err
		}
		boundary = "=_ndr_" + h
	}

	var orig *original
	if r.Original != nil {
		maxBody := r.MaxReturnSize
		if maxBody == 0 {
			maxBody = DefaultMaxReturnSize
		}
		// RFC 3461 §4.3: RET=FULL applies only to a report of a failure
		// for at least one recipient; delay and success reports return
		// the headers only.
		wantFull := r.Return == ReturnFull && !r.RequireTLS && maxBody > 0 && r.has(ActionFailed)
		var err error
		if orig, err = readOriginal(r.Original, wantFull, maxBody); err != nil {
			return err
		}
		if r.Return == ReturnFull && !r.RequireTLS && maxBody < 0 && r.has(ActionFailed) {
			orig.tooLarge = true
		}
	}
	origID := oneLine(r.OriginalMessageID)
	if origID == "" && orig != nil {
		// The original's header is untrusted: keep only its first msg-id
		// (RFC 5322 §3.6.4), so that a bare CR or other junk in it cannot
		// reach the report's own header.
		origID = headerMsgID(orig.messageID)
	}

	status := r.deliveryStatus()
	global := r.SMTPUTF8 || !isASCII(status)
	lang := normalizeLanguage(r.Language)
	human := r.humanText(lang, host, orig)

	parts := [][]byte{[]byte(human), status}
	if orig != nil {
		parts = append(parts, orig.header, orig.body)
	}
	for _, p := range parts {
		if bytes.Contains(p, []byte("--"+boundary)) {
			return fmt.Errorf("%w: boundary %q occurs in the content", ErrInvalidReport, boundary)
		}
	}

	// Top-level header (RFC 5322 §3.6, RFC 3834 §5, RFC 6522 §3).
	from := oneLine(r.From)
	if from == "" {
		from = "Mail Delivery System <MAILER-DAEMON@" + host + ">"
	} else {
		from = angle(from)
	}
	writeField(buf, "From", from)
	writeField(buf, "To", angle(printableAddr(r.Sender)))
	writeField(buf, "Subject", encodeWord(r.subject(lang)))
	writeField(buf, "Date", date.Format(dateLayout))
	writeField(buf, "Message-ID", msgID)
	if origID != "" {
		writeField(buf, "In-Reply-To", angle(origID))
		writeField(buf, "References", angle(origID))
	}
	writeField(buf, "Auto-Submitted", "auto-replied")
	writeField(buf, "MIME-Version", "1.0")
	writeField(buf, "Content-Type", mime.FormatMediaType("multipart/report",
		map[string]string{"report-type": "delivery-status", "boundary": boundary}))
	buf.WriteString("\r\n")
	buf.WriteString("This is a MIME-formatted delivery status notification (RFC 3464).\r\n")

	// Part 1: human-readable (RFC 6522 §3 item 1).
	buf.WriteString("\r\n--" + boundary + "\r\n")
	buf.WriteString("Content-Description: Notification\r\n")
	buf.WriteString("Content-Language: " + lang + "\r\n")
	// 7bit needs ASCII lines of at most 998 octets (RFC 2045 §2.7); a
	// long word from caller data (a reply without spaces) can exceed it.
	if isASCII([]byte(human)) && !hasLongLine([]byte(human), maxLine) {
		buf.WriteString("Content-Type: text/plain; charset=us-ascii\r\n")
		buf.WriteString("Content-Transfer-Encoding: 7bit\r\n\r\n")
		buf.WriteString(human)
	} else {
		buf.WriteString("Content-Type: text/plain; charset=utf-8\r\n")
		buf.WriteString("Content-Transfer-Encoding: base64\r\n\r\n")
		writeBase64(buf, []byte(human))
	}

	// Part 2: machine-readable (RFC 3464 §2, RFC 6533 §3).
	buf.WriteString("\r\n--" + boundary + "\r\n")
	buf.WriteString("Content-Description: Delivery report\r\n")
	if global {
		buf.WriteString("Content-Type: message/global-delivery-status\r\n")
		buf.WriteString("Content-Transfer-Encoding: 8bit\r\n\r\n")
	} else {
		buf.WriteString("Content-Type: message/delivery-status\r\n\r\n")
	}
	buf.Write(status)

	// Part 3: the returned original (RFC 6522 §3 item 3).
	if orig != nil {
		buf.WriteString("\r\n--" + boundary + "\r\n")
		content := orig.header
		if orig.full {
			buf.WriteString("Content-Description: Undelivered message\r\n")
			if global {
				buf.WriteString("Content-Type: message/global\r\n")
			} else {
				buf.WriteString("Content-Type: message/rfc822\r\n")
			}
			content = append(append(append([]byte(nil), orig.header...), "\r\n"...), orig.body...)
		} else {
			buf.WriteString("Content-Description: Undelivered message headers\r\n")
			if global {
				buf.WriteString("Content-Type: message/global-headers\r\n")
			} else {
				buf.WriteString("Content-Type: text/rfc822-headers\r\n")
			}
		}
		switch {
		case !orig.full && hasLongLine(content, maxLine):
			// A header line too long for 8bit: text/rfc822-headers and
			// message/global-headers may be base64 (message/rfc822 may
			// not, which is why readOriginal never returns such an
			// original in full).
			buf.WriteString("Content-Transfer-Encoding: base64\r\n\r\n")
			writeBase64(buf, content)
			content = nil
		case !isASCII(content):
			buf.WriteString("Content-Transfer-Encoding: 8bit\r\n\r\n")
		default:
			buf.WriteString("\r\n")
		}
		buf.Write(content)
		if len(content) > 0 && !bytes.HasSuffix(content, []byte("\r\n")) {
			buf.WriteString("\r\n")
		}
	}
	buf.WriteString("\r\n--" + boundary + "--\r\n")
	return nil
}

// reportingHost returns the host name of ReportingMTA, without a "type;"
// prefix; it names the report's From and Message-ID.
func reportingHost(mta string) string {
	host := oneLine(mta)
	if i := strings.LastIndex(host, ";"); i >= 0 { // "type; name"
		host = strings.TrimSpace(host[i+1:])
	}
	return host
}

// validBoundary reports whether b is a multipart boundary by the grammar
// of RFC 2046 §5.1.1: 1 to 70 characters from bchars, not ending in a space.
func validBoundary(b string) bool {
	if len(b) == 0 || len(b) > 70 || b[len(b)-1] == ' ' {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || strings.IndexByte("'()+_,-./:=? ", c) >= 0) {
			return false
		}
	}
	return true
}

// deliveryStatus renders the message/delivery-status body (RFC 3464 §2.1):
// the per-message fields, then one group per recipient, each group
// preceded by an empty line.
func (r *Report) deliveryStatus() []byte {
	var b bytes.Buffer
	if r.OriginalEnvelopeID != "" {
		writeField(&b, "Original-Envelope-Id", printableAddr(r.OriginalEnvelopeID))
	}
	writeField(&b, "Reporting-MTA", typed("dns", r.ReportingMTA))
	if r.ReceivedFromMTA != "" {
		writeField(&b, "Received-From-MTA", typed("dns", r.ReceivedFromMTA))
	}
	if !r.ArrivalDate.IsZero() {
		writeField(&b, "Arrival-Date", r.ArrivalDate.Format(dateLayout))
	}
	for _, rc := range r.Recipients {
		b.WriteString("\r\n")
		if rc.OriginalRecipient != "" {
			// RFC 3464 §2.3.1: address-type ";" generic-address; a
			// value given without its type is an rfc822 address, as
			// Parse reads it.
			writeField(&b, "Original-Recipient", typed("rfc822", printableAddr(rc.OriginalRecipient)))
		}
		final := strings.Trim(printableAddr(rc.FinalRecipient), "<>")
		addrType := "rfc822"
		if r.SMTPUTF8 || !isASCII([]byte(final)) {
			addrType = "utf-8" // RFC 6533 §3
		}
		writeField(&b, "Final-Recipient", typed(addrType, final))
		writeField(&b, "Action", string(rc.Action))
		writeField(&b, "Status", strings.TrimSpace(rc.Status))
		if rc.RemoteMTA != "" {
			writeField(&b, "Remote-MTA", typed("dns", rc.RemoteMTA))
		}
		if rc.DiagnosticCode != "" {
			t := rc.DiagnosticType
			if t == "" {
				t = "smtp"
			}
			var lines []string
			for _, l := range strings.FieldsFunc(rc.DiagnosticCode, func(c rune) bool { return c == '\r' || c == '\n' }) {
				if l = oneLine(l); l != "" {
					lines = append(lines, l)
				}
			}
			writeField(&b, "Diagnostic-Code", oneLine(t)+"; "+capText(strings.Join(lines, "\n"), maxDiagnostic))
		}
		if !rc.LastAttemptDate.IsZero() {
			writeField(&b, "Last-Attempt-Date", rc.LastAttemptDate.Format(dateLayout))
		}
		if rc.FinalLogID != "" {
			writeField(&b, "Final-Log-Id", oneLine(rc.FinalLogID))
		}
		if !rc.WillRetryUntil.IsZero() && rc.Action == ActionDelayed {
			writeField(&b, "Will-Retry-Until", rc.WillRetryUntil.Format(dateLayout))
		}
	}
	return b.Bytes()
}

// typed renders "type; value" unless value already carries a type.
func typed(t, value string) string {
	value = oneLine(value)
	if strings.Contains(value, ";") {
		return typedRaw(value)
	}
	return t + "; " + value
}

// typedRaw normalizes "type;value" to "type; value".
func typedRaw(v string) string {
	v = oneLine(v)
	i := strings.Index(v, ";")
	if i < 0 {
		return v
	}
	return strings.TrimSpace(v[:i]) + "; " + strings.TrimSpace(v[i+1:])
}

// writeField writes "Name: value" folded at spaces to lines of at most 78
// characters where possible (RFC 5322 §2.2.3); a "\n" in value forces a
// fold, and the line after it must not be empty.
//
// A word longer than maxWord is split, at a UTF-8 character boundary, so
// that no line exceeds the 998 octets of RFC 5322 §2.1.1; unfolding then
// shows a space inside it. Within a run of spaces, those that would take a
// line past 78 characters are dropped: the fold before the next word
// separates it anyway, and a long run can neither make one line grow past
// 998 octets nor become a line of white space only, which RFC 5322 §3.2.2
// forbids and which would end a group of RFC 3464 §2.1 fields.
//
// The value is written straight to b, so the cost is linear in its length;
// callers bound the length of text from remote servers (see capText).
func writeField(b *bytes.Buffer, name, value string) {
	const width, maxWord = 78, 900
	b.WriteString(name)
	b.WriteByte(':')
	n := len(name) + 1 // length of the line being written
	blank := false     // the line is a continuation with no word yet
	fold := func(w string) {
		b.WriteString("\r\n ")
		b.WriteString(w)
		n, blank = 1+len(w), w == ""
	}
	first := true
	for seg := range strings.SplitSeq(value, "\n") {
		start := true // the next word is the first of seg
		for w := range strings.SplitSeq(seg, " ") {
			for {
				chunk := w
				if len(chunk) > maxWord {
					chunk = w[:wordCut(w, maxWord)]
				}
				w = w[len(chunk):]
				switch {
				case start && !first:
					// forced fold between lines of a multi-line value
					fold(chunk)
				case chunk == "" && n+1 > width:
					// drop a space of a run that has reached the width
				case chunk != "" && n+1+len(chunk) > width && n > len(name)+1 && !blank:
					fold(chunk)
				default:
					b.WriteByte(' ')
					b.WriteString(chunk)
					n += 1 + len(chunk)
					blank = blank && chunk == ""
				}
				start = false
				if w == "" {
					break
				}
			}
		}
		first = false
	}
	b.WriteString("\r\n")
}

// wordCut returns where to split a word longer than max: at max, or before
// the UTF-8 character max falls in, so that each piece stays valid UTF-8
// when the word was. It never returns 0.
func wordCut(w string, max int) int {
	for i := max; i > 0 && i > max-utf8.UTFMax; i-- {
		if utf8.RuneStart(w[i]) {
			return i
		}
	}
	return max
}

// maxDiagnostic bounds the diagnostic text one report carries, in octets,
// in its Diagnostic-Code field and again in its human-readable part: eight
// reply lines of the 512 octets RFC 5321 §4.5.3.1.5 allows, more than a
// real server's reply needs. The SMTP client reads replies of up to 1 MiB,
// and that much text from a remote server should not become a field of a
// report sent to our own user.
const maxDiagnostic = 4 << 10

// truncatedMark ends text cut by capText, so that the cut is visible.
const truncatedMark = " [truncated]"

// capText returns s if it has at most max octets, or else its first max
// octets, cut at a UTF-8 character boundary, followed by truncatedMark.
func capText(s string, max int) string {
	if len(s) <= max {
		return s
	}
	return s[:wordCut(s, max)] + truncatedMark
}

// oneLine makes caller text safe for one header field or line of the
// report, and trims it: line breaks and tabs become spaces, so that a value
// cannot inject header fields; every other control character (C0, DEL, C1
// U+0080 to U+009F) and each byte of invalid UTF-8 becomes '?'.
//
// Replacing rather than encoding follows Postfix's printable(): text from
// the envelope (addresses, ENVID, the client's HELO name) or from a remote
// server reaches header fields and the human-readable part, where no
// control character belongs (RFC 5322 §3.2.5 text without CTLs, RFC 6532
// §3.2), and where RFC 3464 §2 defines no escape for one in an rfc822
// address. A '?' keeps the report ASCII when the junk was, cannot be
// mistaken for a delimiter (';', '\\' or '+' could), and the original bytes
// stay in the queue's records and logs. The Server already refuses such
// addresses (501 5.1.3, 501 5.1.7); this covers every other caller.
func oneLine(s string) string {
	return strings.TrimSpace(printable(s, true))
}

// printableAddr is oneLine for an address or identifier: there, tabs and
// line breaks are junk like any other control character and become '?'.
func printableAddr(s string) string {
	return strings.TrimSpace(printable(s, false))
}

// printable maps control characters and invalid UTF-8 to '?'; with
// spaces, CR, LF and tab become ' ' instead.
func printable(s string, spaces bool) string {
	clean := utf8.ValidString(s)
	for _, c := range s {
		if !clean || isControl(c) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		c, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case spaces && (c == '\r' || c == '\n' || c == '\t'):
			b.WriteByte(' ')
		case isControl(c) || (c == utf8.RuneError && n == 1):
			b.WriteByte('?')
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// isControl reports a C0 control, DEL or a C1 control.
func isControl(c rune) bool {
	return c < 0x20 || c == 0x7f || (c >= 0x80 && c <= 0x9f)
}

// headerMsgID returns the first "<id>" in v, or v itself when it is one
// word without angle brackets, or "" (RFC 5322 §3.6.4).
func headerMsgID(v string) string {
	v = oneLine(v)
	if m := firstMsgID(v); m != "" {
		return m
	}
	if v != "" && !strings.ContainsAny(v, " \t<>") {
		return v
	}
	return ""
}

// angle returns "<s>" for an address or message ID given with or without
// angle brackets; a value with a display name is returned unchanged.
func angle(s string) string {
	s = strings.TrimSpace(s)
	if strings.HasSuffix(s, ">") && strings.Contains(s, "<") {
		return s
	}
	return "<" + s + ">"
}

func encodeWord(s string) string {
	if isASCII([]byte(s)) {
		return oneLine(s)
	}
	return mime.BEncoding.Encode("utf-8", oneLine(s))
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}

// maxLine is the longest line, without its CRLF, that 7bit and 8bit
// content may have (RFC 5322 §2.1.1, RFC 2045 §2.7 and §2.8).
const maxLine = 998

// hasLongLine reports whether a line of b (ended by LF or CRLF) is longer
// than max octets.
func hasLongLine(b []byte, max int) bool {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			i = len(b)
		}
		if len(bytes.TrimSuffix(b[:i], []byte("\r"))) > max {
			return true
		}
		b = b[min(i+1, len(b)):]
	}
	return false
}

func writeBase64(b *bytes.Buffer, data []byte) {
	enc := base64.StdEncoding.EncodeToString(data)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n")
}

// subject picks the localized subject from the worst action reported.
func (r *Report) subject(lang string) string {
	if s := oneLine(r.Subject); s != "" {
		return s
	}
	t := textsFor(lang)
	switch {
	case r.has(ActionFailed):
		return t.subjectFailed
	case r.has(ActionDelayed):
		return t.subjectDelayed
	}
	return t.subjectSuccess
}

func (r *Report) has(a Action) bool {
	for _, rc := range r.Recipients {
		if rc.Action == a {
			return true
		}
	}
	return false
}

// humanText writes the human-readable part (RFC 6522 §3 item 1) in lang.
func (r *Report) humanText(lang, host string, orig *original) string {
	t := textsFor(lang)
	var b strings.Builder
	para := func(s string) {
		b.WriteString(wrap(s, lang, "", "", 72))
		b.WriteString("\r\n")
	}
	para(fmt.Sprintf(t.intro, host))
	if r.has(ActionFailed) {
		para(t.failed)
	}
	if r.has(ActionDelayed) {
		para(t.delayed)
	}
	if r.has(ActionDelivered) || r.has(ActionRelayed) || r.has(ActionExpanded) {
		para(t.success)
	}
	for _, rc := range r.Recipients {
		addr := strings.Trim(printableAddr(rc.FinalRecipient), "<>")
		b.WriteString("<" + addr + ">: " + t.action[rc.Action] + "\r\n")
		var why string
		if rc.Reason != nil && rc.Action != ActionDelivered {
			why = rc.Reason.Explain(lang)
		} else {
			why = Explain(rc.Status, "", lang)
		}
		b.WriteString(wrap(why, lang, "    ", "    ", 72))
		status := strings.TrimSpace(rc.Status)
		detail := func(label, value string) {
			b.WriteString(wrap(label+": "+value, lang, "    ", "      ", 72))
		}
		if lang == "ja" {
			detail(t.status, status+"（"+StatusTextLang(status, lang)+"）")
		} else {
			detail(t.status, status+" ("+StatusTextLang(status, lang)+")")
		}
		if rc.RemoteMTA != "" {
			detail(t.remote, oneLine(rc.RemoteMTA))
		}
		if rc.DiagnosticCode != "" {
			// RFC 3464 §2.3.6: only an "smtp" diagnostic is the remote
			// server's reply; any other type is the reporting MTA's own.
			label := t.reply
			if typ := strings.TrimSpace(rc.DiagnosticType); typ != "" && !strings.EqualFold(typ, "smtp") {
				label = t.localDiag
			}
			detail(label, capText(strings.Join(strings.Fields(oneLine(rc.DiagnosticCode)), " "), maxDiagnostic))
		}
		if !rc.LastAttemptDate.IsZero() {
			detail(t.lastAttempt, rc.LastAttemptDate.Format(dateLayout))
		}
		if !rc.WillRetryUntil.IsZero() && rc.Action == ActionDelayed {
			detail(t.retryUntil, rc.WillRetryUntil.Format(dateLayout))
		}
		b.WriteString("\r\n")
	}
	switch {
	case orig == nil:
	case r.RequireTLS:
		para(t.requireTLS)
	case orig.tooLarge:
		max := r.MaxReturnSize
		if max == 0 {
			max = DefaultMaxReturnSize
		}
		if max < 0 {
			para(t.bodyNotReturned)
		} else {
			para(fmt.Sprintf(t.tooLarge, strconv.FormatInt(max, 10)))
		}
	case orig.longLines:
		para(t.bodyNotReturned)
	case orig.full:
		para(t.fullAttached)
	default:
		para(t.headersAttached)
	}
	para(t.closing)
	return strings.TrimSuffix(b.String(), "\r\n")
}

// wrap breaks s into CRLF-terminated lines of at most width characters
// where possible, the first starting with indent and the others with cont.
// Japanese text has no spaces to break at and is left as one line, with
// any line break in it (from caller data such as Reason.Detail) made a
// space, as in English.
func wrap(s, lang, indent, cont string, width int) string {
	if lang == "ja" {
		return indent + strings.Join(strings.Fields(s), " ") + "\r\n"
	}
	var b strings.Builder
	line, empty := indent, true
	for _, w := range strings.Fields(s) {
		if !empty && len(line)+1+len(w) > width {
			b.WriteString(line + "\r\n")
			line, empty = cont, true
		}
		if !empty {
			line += " "
		}
		line += w
		empty = false
	}
	b.WriteString(line + "\r\n")
	return b.String()
}

// texts holds the localized strings of the human-readable part.
type texts struct {
	intro, failed, delayed, success                string
	action                                         map[Action]string
	status, remote, reply, lastAttempt, retryUntil string
	localDiag                                      string
	requireTLS, tooLarge, bodyNotReturned          string
	headersAttached, fullAttached, closing         string
	subjectFailed, subjectDelayed, subjectSuccess  string
}

var textsEN = texts{
	intro:   "This is the mail system at host %s.",
	failed:  "Your message could not be delivered to one or more recipients.",
	delayed: "Your message has not yet been delivered to one or more recipients. The mail system will keep trying; you do not need to send it again now.",
	success: "As you requested, this is a report on the successful delivery of your message.",
	action: map[Action]string{
		ActionFailed:    "delivery failed",
		ActionDelayed:   "delivery delayed, still trying",
		ActionDelivered: "delivered",
		ActionRelayed:   "relayed to a system that does not send delivery reports",
		ActionExpanded:  "delivered and forwarded to further addresses",
	},
	status:          "Status",
	remote:          "Remote server",
	reply:           "Server reply",
	localDiag:       "Found by this mail system",
	lastAttempt:     "Last attempt",
	retryUntil:      "Will retry until",
	requireTLS:      "Your message was sent with REQUIRETLS (RFC 8689), so this report includes only its headers and not its content: the report itself may travel without TLS, and the content was meant to travel only over TLS.",
	tooLarge:        "Your message was too large to return in full (more than %s bytes), so only its headers are attached.",
	bodyNotReturned: "Only the headers of your message are attached.",
	headersAttached: "The headers of your message are attached.",
	fullAttached:    "Your message is attached.",
	closing:         "A machine-readable report (RFC 3464) is attached for your mail software. If you need help, please contact your mail administrator and include this report.",
	subjectFailed:   "Undelivered Mail Returned to Sender",
	subjectDelayed:  "Delayed Mail (still being retried)",
	subjectSuccess:  "Successful Mail Delivery Report",
}

var textsJA = texts{
	intro:   "このメールは %s のメールシステムから自動送信されています。",
	failed:  "お送りいただいたメッセージは、以下の宛先に配送できませんでした。",
	delayed: "お送りいただいたメッセージは、以下の宛先にまだ配送されていません。配送は引き続き自動的に再試行されますので、今すぐ再送信する必要はありません。",
	success: "ご依頼に従い、お送りいただいたメッセージの配送結果をお知らせします。",
	action: map[Action]string{
		ActionFailed:    "配送失敗",
		ActionDelayed:   "配送遅延（再試行中）",
		ActionDelivered: "配送完了",
		ActionRelayed:   "配送通知に対応していないシステムへ中継しました",
		ActionExpanded:  "配送完了（さらに別の宛先へ転送されました）",
	},
	status:          "状態コード",
	remote:          "相手先サーバー",
	reply:           "サーバーの応答",
	localDiag:       "当システムでの検出内容",
	lastAttempt:     "最終試行日時",
	retryUntil:      "再試行の期限",
	requireTLS:      "お送りいただいたメッセージには REQUIRETLS（RFC 8689）が指定されていたため、この通知には本文を含めず、ヘッダーのみを添付しています。本文は TLS で保護された経路でのみ送られるべきものですが、この通知自体は TLS なしで届く可能性があるためです。",
	tooLarge:        "お送りいただいたメッセージは大きすぎるため（%s バイト超）、ヘッダーのみを添付しています。",
	bodyNotReturned: "お送りいただいたメッセージのヘッダーのみを添付しています。",
	headersAttached: "お送りいただいたメッセージのヘッダーを添付しています。",
	fullAttached:    "お送りいただいたメッセージを添付しています。",
	closing:         "メールソフト向けの機械可読な配送状態通知（RFC 3464）を添付しています。ご不明な点は、この通知を添えてメール管理者にお問い合わせください。",
	subjectFailed:   "メールを配送できませんでした (Undelivered Mail)",
	subjectDelayed:  "メールの配送が遅れています (Delayed Mail)",
	subjectSuccess:  "メールの配送結果のお知らせ (Delivery Report)",
}

func textsFor(lang string) *texts {
	if lang == "ja" {
		return &textsJA
	}
	return &textsEN
}

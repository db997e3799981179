package interop

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestPostfixBareCRLineEndsData: Postfix's smtp client sends a message line
// that ends in a bare CR as that line, CR included, then CRLF; a message
// whose last line is such a line thus ends "text\r\r\n.\r\n", which
// go-smtp alone never takes for the end of data (the client waited for a
// reply, then retried for days), and a dot-stuffed line right after such a
// line kept its stuffing dot. Postfix relays one over STARTTLS to the
// relay's MX port: Postfix logs status=sent, and the relay stores the
// lines with their bare CRs and the dot line un-stuffed.
func TestPostfixBareCRLineEndsData(t *testing.T) {
	p := startRelayProc(t, "alice", relayPassword, "-require-tls", "-local-domains", "local.test,localhost")
	pfc := startPostfixClient(t, p.smtp, p.cert)

	tok := token()
	msgID := tok + "@pfclient.example.test"
	// sendmail takes LF line ends; with sendmail_fix_line_endings = never
	// (read by each sendmail run) it keeps a CR before the LF as part of
	// the line, so "\r\n" below is a line that ends in a bare CR; and
	// cleanup_replace_stray_cr_lf = no (read by the cleanup process the
	// first message starts) keeps it, where Postfix 3.7.9 and later would
	// make it a space.
	mainCF, err := os.OpenFile(filepath.Join(pfc.Dir(), "main.cf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = mainCF.WriteString("\nsendmail_fix_line_endings = never\ncleanup_replace_stray_cr_lf = no\n")
	if cerr := mainCF.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	msg := "From: pf-sender@example.test\nTo: bob@local.test\nSubject: bare CR\nMessage-ID: <" + msgID + ">\n\n" +
		"body " + tok + "\n" +
		"this line ends in a bare CR\r\n" +
		".a line starting with a dot\n" +
		"the last line ends in a bare CR too\r\n"
	postfixSendmail(t, pfc, "pf-sender@example.test", "bob@local.test", msg)

	stored := waitMaildir(t, p, "bob@local.test", tok, 60*time.Second)
	if stored == "" {
		t.Fatalf("message not in bob@local.test's Maildir\npostfix log:\n%s\nrelay log:\n%s", pfc.log(), p.log.String())
	}
	want := "body " + tok + "\r\nthis line ends in a bare CR\r\r\n.a line starting with a dot\r\nthe last line ends in a bare CR too\r\r\n"
	if !strings.HasSuffix(stored, want) {
		i := strings.Index(stored, "body "+tok)
		t.Errorf("stored body %q, want %q", stored[max(i, 0):], want)
	}
	sent := regexp.MustCompile(`to=<bob@local\.test>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:\d+, .*status=sent \(250 `)
	if m, log := pfc.waitLogMatch(sent); m == nil {
		t.Fatalf("Postfix did not log status=sent:\n%s", log)
	}
}

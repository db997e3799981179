package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	smtp "github.com/emersion/go-smtp"

	"github.com/mailtls/mailtls/ndr"
)

// dsnRcpt is one RCPT TO with its DSN parameters.
type dsnRcpt struct {
	addr   string
	notify []smtp.DSNNotify
	orcpt  string // ORCPT address (rfc822 type), "" for none
}

// sendDSN runs one transaction with the DSN parameters of RFC 3461 §4.
func sendDSN(t *testing.T, c *smtp.Client, from string, mail *smtp.MailOptions, rcpts []dsnRcpt, body string) {
	t.Helper()
	if err := c.Mail(from, mail); err != nil {
		t.Fatalf("MAIL FROM:<%s>: %v", from, err)
	}
	for _, r := range rcpts {
		opts := &smtp.RcptOptions{Notify: r.notify}
		if r.orcpt != "" {
			opts.OriginalRecipientType = smtp.DSNAddressTypeRFC822
			opts.OriginalRecipient = r.orcpt
		}
		if err := c.Rcpt(r.addr, opts); err != nil {
			t.Fatalf("RCPT TO:<%s>: %v", r.addr, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		t.Fatalf("DATA: %v", err)
	}
	if _, err := io.WriteString(w, body); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("end of DATA: %v", err)
	}
}

// waitDSNs waits until addr's Maildir holds n messages that ndr.Parse reads
// as reports, and returns them parsed with their raw text.
func waitDSNs(t *testing.T, tr *testRelay, addr string, n int) ([]*ndr.Report, []string) {
	t.Helper()
	var reps []*ndr.Report
	var raws []string
	waitFor(t, "DSN in "+addr+"'s Maildir", 10*time.Second, func() bool {
		reps, raws = nil, nil
		for _, f := range maildirFiles(t, tr.cfg, addr, "new") {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			rep, err := ndr.Parse(strings.NewReader(string(b)))
			if err != nil {
				continue
			}
			reps, raws = append(reps, rep), append(raws, string(b))
		}
		return len(reps) >= n
	})
	return reps, raws
}

const dsnBody = "From: sender@localhost\r\nTo: user@localhost\r\nSubject: please confirm\r\n" +
	"Message-ID: <confirm-1@client.test>\r\n\r\nSECRET-BODY-LINE\r\n"

// NOTIFY=SUCCESS to a local recipient from a local sender: the relay is the
// final-delivery MTA, so the sender's Maildir gets one "delivered" report
// (RFC 3461 §5.2.3, §6.2) with Status 2.0.0, the Final-Recipient, the
// Original-Recipient from ORCPT and the ENVID. It arrives with a null
// reverse-path, and RET=FULL still returns the headers only (RFC 3461 §4.3:
// not a failure report).
func TestLocalDeliveredDSN(t *testing.T) {
	tr := startRelay(t)
	c := tr.dial(t, "smtp")
	sendDSN(t, c, "sender@localhost", &smtp.MailOptions{Return: smtp.DSNReturnFull, EnvelopeID: "env-42"},
		[]dsnRcpt{{addr: "user@localhost", notify: []smtp.DSNNotify{smtp.DSNNotifySuccess}, orcpt: "orig-user@localhost"}},
		dsnBody)

	if got := waitMaildir(t, tr, "user@localhost", 1); len(got) != 1 {
		t.Fatalf("recipient's Maildir: want 1 message, got %v", got)
	}
	reps, raws := waitDSNs(t, tr, "sender@localhost", 1)
	if len(reps) != 1 {
		t.Fatalf("want 1 DSN, got %d", len(reps))
	}
	rep, raw := reps[0], raws[0]
	if len(rep.Recipients) != 1 {
		t.Fatalf("want 1 recipient group, got %+v", rep.Recipients)
	}
	rr := rep.Recipients[0]
	if rr.Action != ndr.ActionDelivered || rr.Status != "2.0.0" {
		t.Fatalf("Action %q Status %q, want delivered 2.0.0", rr.Action, rr.Status)
	}
	if rr.FinalRecipient != "user@localhost" {
		t.Fatalf("Final-Recipient %q, want user@localhost", rr.FinalRecipient)
	}
	if !strings.EqualFold(rr.OriginalRecipient, "rfc822;orig-user@localhost") {
		t.Fatalf("Original-Recipient %q, want rfc822;orig-user@localhost", rr.OriginalRecipient)
	}
	if rep.OriginalEnvelopeID != "env-42" {
		t.Fatalf("Original-Envelope-Id %q, want env-42", rep.OriginalEnvelopeID)
	}
	if !strings.EqualFold(rep.Sender, "sender@localhost") {
		t.Fatalf("report addressed to %q", rep.Sender)
	}
	if !strings.HasPrefix(raw, "Return-Path: <>\r\n") {
		t.Fatalf("report not delivered with a null reverse-path:\n%.200s", raw)
	}
	if rep.Return != ndr.ReturnHeaders || rep.Original == nil {
		t.Fatalf("RET=FULL success report: Return=%v Original=%v, want the headers only", rep.Return, rep.Original != nil)
	}
	orig, _ := io.ReadAll(rep.Original)
	if !strings.Contains(string(orig), "Subject: please confirm") || strings.Contains(string(orig), "SECRET-BODY-LINE") {
		t.Fatalf("returned part is not the original's header only:\n%s", orig)
	}
	if strings.Contains(raw, "SECRET-BODY-LINE") {
		t.Fatalf("report contains the original body:\n%s", raw)
	}
	if err := contains(raw, "Reporting-MTA: dns; relay.test", "In-Reply-To: <confirm-1@client.test>"); err != nil {
		t.Fatal(err)
	}
}

// Two recipients of one message with NOTIFY=SUCCESS share one report with
// two per-recipient groups; a third recipient of the same message without
// SUCCESS is not in it.
func TestLocalDeliveredDSNOneReportPerMessage(t *testing.T) {
	tr := startRelay(t)
	c := tr.dial(t, "smtp")
	success := []smtp.DSNNotify{smtp.DSNNotifySuccess, smtp.DSNNotifyFailure}
	sendDSN(t, c, "sender@localhost", nil, []dsnRcpt{
		{addr: "alice@localhost", notify: success, orcpt: "alice@localhost"},
		{addr: "carol@localhost", notify: []smtp.DSNNotify{smtp.DSNNotifyFailure}},
		{addr: "bob@localhost", notify: success},
	}, dsnBody)

	waitDSNs(t, tr, "sender@localhost", 1)
	// Give the queue time to deliver a second report if there were one.
	time.Sleep(300 * time.Millisecond)
	reps, _ := waitDSNs(t, tr, "sender@localhost", 1)
	if len(reps) != 1 {
		t.Fatalf("want exactly 1 report, got %d", len(reps))
	}
	got := map[string]ndr.Recipient{}
	for _, r := range reps[0].Recipients {
		got[r.FinalRecipient] = r
	}
	if len(reps[0].Recipients) != 2 || len(got) != 2 {
		t.Fatalf("want 2 recipient groups (alice, bob), got %+v", reps[0].Recipients)
	}
	for _, a := range []string{"alice@localhost", "bob@localhost"} {
		r, ok := got[a]
		if !ok {
			t.Fatalf("no group for %s in %+v", a, reps[0].Recipients)
		}
		if r.Action != ndr.ActionDelivered || r.Status != "2.0.0" {
			t.Fatalf("%s: Action %q Status %q", a, r.Action, r.Status)
		}
	}
	if got["bob@localhost"].OriginalRecipient != "" {
		t.Fatalf("bob gave no ORCPT, report says %q", got["bob@localhost"].OriginalRecipient)
	}
	if n := strings.Count(tr.logs.String(), `msg="report queued"`); n != 1 {
		t.Fatalf("%d reports queued, want 1", n)
	}
}

// No "delivered" report for NOTIFY=FAILURE, for NOTIFY absent (FAILURE,DELAY
// by default, RFC 3461 §4.1), for NOTIFY=NEVER, nor for a null reverse-path
// even with NOTIFY=SUCCESS (RFC 3461 §6.1). Once the four are delivered, a
// control message with NOTIFY=SUCCESS proves the path works and, once its
// report has arrived, that nothing else reached any Maildir.
func TestLocalDeliveredDSNNotRequested(t *testing.T) {
	tr := startRelay(t)
	c := tr.dial(t, "smtp")
	for _, tc := range []struct {
		name, from string
		notify     []smtp.DSNNotify
	}{
		{"notify-failure", "s1@localhost", []smtp.DSNNotify{smtp.DSNNotifyFailure, smtp.DSNNotifyDelayed}},
		{"notify-absent", "s2@localhost", nil},
		{"notify-never", "s3@localhost", []smtp.DSNNotify{smtp.DSNNotifyNever}},
		{"null-sender", "", []smtp.DSNNotify{smtp.DSNNotifySuccess}},
	} {
		sendDSN(t, c, tc.from, nil, []dsnRcpt{{addr: "user@localhost", notify: tc.notify}}, dsnBody)
	}
	if got := waitMaildir(t, tr, "user@localhost", 4); len(got) != 4 {
		t.Fatalf("recipient's Maildir: want 4 messages, got %d", len(got))
	}

	// Control: the same relay does report when asked.
	sendDSN(t, c, "s4@localhost", nil,
		[]dsnRcpt{{addr: "other@localhost", notify: []smtp.DSNNotify{smtp.DSNNotifySuccess}}}, dsnBody)
	waitDSNs(t, tr, "s4@localhost", 1)
	time.Sleep(300 * time.Millisecond)

	entries, err := os.ReadDir(filepath.Join(tr.cfg.DataDir, "mail"))
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, e := range entries {
		n := len(maildirFiles(t, tr.cfg, e.Name(), "new"))
		total += n
		switch e.Name() {
		case "user@localhost", "other@localhost", "s4@localhost":
		default:
			t.Errorf("unexpected Maildir %s with %d messages", e.Name(), n)
		}
	}
	if want := 4 + 1 + 1; total != want {
		t.Fatalf("%d messages in all Maildirs, want %d (4 to user, 1 to other, 1 report to s4)", total, want)
	}
	if n := strings.Count(tr.logs.String(), `msg="report queued"`); n != 1 {
		t.Fatalf("%d reports queued, want only the control's", n)
	}
}

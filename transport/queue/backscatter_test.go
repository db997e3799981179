package queue

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/ndr"
	"github.com/mailtls/mailtls/transport"
)

func TestMayOriginate(t *testing.T) {
	for _, tc := range []struct {
		name string
		a    ndr.Action
		o    Origin
		want bool
	}{
		{"anonymous, local rcpt, foreign sender: no success", ndr.ActionDelivered, Origin{LocalRecipient: true}, false},
		{"anonymous, local rcpt, foreign sender: no delay", ndr.ActionDelayed, Origin{LocalRecipient: true}, false},
		{"anonymous, local rcpt, foreign sender: failure kept", ndr.ActionFailed, Origin{LocalRecipient: true}, true},
		{"anonymous, local rcpt, foreign sender: relayed", ndr.ActionRelayed, Origin{LocalRecipient: true}, true},
		{"anonymous, local rcpt, foreign sender: expanded", ndr.ActionExpanded, Origin{LocalRecipient: true}, true},
		{"anonymous, local rcpt, local sender: success", ndr.ActionDelivered, Origin{LocalRecipient: true, LocalSender: true}, true},
		{"anonymous, local rcpt, local sender: delay", ndr.ActionDelayed, Origin{LocalRecipient: true, LocalSender: true}, true},
		{"authenticated, local rcpt, foreign sender: success", ndr.ActionDelivered, Origin{Trusted: true, LocalRecipient: true}, true},
		{"authenticated, local rcpt, foreign sender: delay", ndr.ActionDelayed, Origin{Trusted: true, LocalRecipient: true}, true},
		{"anonymous, remote rcpt (relay network): delay", ndr.ActionDelayed, Origin{}, true},
		{"anonymous, remote rcpt (relay network): success", ndr.ActionDelivered, Origin{}, true},
	} {
		if got := MayOriginate(tc.a, tc.o); got != tc.want {
			t.Errorf("%s: MayOriginate(%s, %+v) = %v, want %v", tc.name, tc.a, tc.o, got, tc.want)
		}
	}
}

// localHarness is a harness whose queue delivers example.org (local) with
// a second fake, Local, and everything else with the first.
func localHarness(t *testing.T, local, remote script) (*harness, *fakeDeliverer) {
	t.Helper()
	h := newHarness(t, remote)
	lf := newFake(local)
	h.q.Local = lf
	h.q.LocalDomain = func(d string) bool { return d == "example.org" }
	return h, lf
}

// enqueueFrom enqueues testMessage as received over SMTP from 192.0.2.9,
// authenticated as authID ("" for none).
func (h *harness) enqueueFrom(from, authID string, body string, rcpts ...transport.Recipient) string {
	h.t.Helper()
	env := &transport.Envelope{From: from, Recipients: rcpts, AuthIdentity: authID,
		ClientAddr: &net.TCPAddr{IP: net.IPv4(192, 0, 2, 9), Port: 40000}}
	id, err := h.q.Enqueue(context.Background(), env, strings.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	return id
}

// Local recipients go to Local, one result each: a mailbox that fails
// temporarily is retried alone, and the others are delivered once; a
// remote recipient of the same message goes to Deliverer.
func TestQueueLocalPerRecipient(t *testing.T) {
	h, lf := localHarness(t,
		func(rcpt string, n int) transport.RecipientResult {
			if rcpt == "bob@example.org" && n < 3 {
				return tempFail()
			}
			return ok()
		},
		func(string, int) transport.RecipientResult { return ok() })
	h.run()
	h.enqueueFrom("sender@example.net", "", testMessage,
		rcpt("alice@example.org"), rcpt("bob@example.org"), rcpt("carol@example.org"), rcpt("dave@example.net"))
	for round := 0; round < 3; round++ {
		h.settle()
		h.clock.Advance(11 * time.Minute)
	}
	h.waitFor("all delivered", func() bool { return h.queued() == 0 })
	for addr, want := range map[string][2]int{
		"alice@example.org": {1, 1}, "carol@example.org": {1, 1}, "bob@example.org": {3, 1},
	} {
		if a, d := lf.counts(addr); a != want[0] || d != want[1] {
			t.Errorf("%s: %d attempts, %d deliveries by Local; want %v", addr, a, d, want)
		}
	}
	if a, _ := lf.counts("dave@example.net"); a != 0 {
		t.Errorf("Local was given the remote recipient")
	}
	if a, d := h.fake.counts("dave@example.net"); a != 1 || d != 1 {
		t.Errorf("dave@example.net: %d attempts, %d deliveries by Deliverer", a, d)
	}
	for _, a := range []string{"alice@example.org", "bob@example.org"} {
		if n, _ := h.fake.counts(a); n != 0 {
			t.Errorf("Deliverer was given the local recipient %s", a)
		}
	}
}

// The backscatter rule in the queue: for mail received without AUTH, a
// local recipient's success and delay reports go only to senders in a
// local domain; failure reports go to anyone; an authenticated client's
// foreign sender gets all three.
func TestQueueBackscatter(t *testing.T) {
	for _, tc := range []struct {
		name, from, auth string
		result           func() transport.RecipientResult
		wantAction       ndr.Action // "": no report
	}{
		{"anonymous foreign sender, success", "victim@example.net", "", ok, ""},
		{"anonymous foreign sender, failure", "victim@example.net", "", permFail, ndr.ActionFailed},
		{"anonymous local sender, success", "alice@example.org", "", ok, ndr.ActionDelivered},
		{"authenticated foreign sender, success", "alice@example.net", "alice", ok, ndr.ActionDelivered},
		{"anonymous foreign sender, delay", "victim@example.net", "", tempFail, ""},
		{"anonymous local sender, delay", "alice@example.org", "", tempFail, ndr.ActionDelayed},
		{"authenticated foreign sender, delay", "alice@example.net", "alice", tempFail, ndr.ActionDelayed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := func(string, int) transport.RecipientResult { return tc.result() }
			h, lf := localHarness(t, res, res)
			h.run()
			h.enqueueFrom(tc.from, tc.auth, testMessage, rcpt("bob@example.org", "SUCCESS", "FAILURE", "DELAY"))
			h.settle()
			h.clock.Advance(31 * time.Minute) // past DelayWarning
			h.settle()
			var reps []*ndr.Report
			reps = append(reps, h.fake.parsedReports(t)...)
			reps = append(reps, lf.parsedReports(t)...)
			if tc.wantAction == "" {
				if len(reps) != 0 {
					t.Fatalf("report sent to %s: %+v\n%s", tc.from, reps[0].Recipients, h.logs.String())
				}
				return
			}
			if len(reps) != 1 || reps[0].Recipients[0].Action != tc.wantAction || !strings.EqualFold(reps[0].Sender, tc.from) {
				t.Fatalf("want one %s report to %s, got %d: %+v\n%s", tc.wantAction, tc.from, len(reps), reps, h.logs.String())
			}
		})
	}
}

// A success report returns the header only, and no more of it than ndr's
// cap (256 KiB), however large the header a client sent.
func TestQueueSuccessReportHeaderCapped(t *testing.T) {
	h, lf := localHarness(t, func(string, int) transport.RecipientResult { return ok() }, nil)
	h.run()
	var big strings.Builder
	big.WriteString("From: alice@example.org\r\nSubject: big\r\n")
	for big.Len() < 400<<10 {
		big.WriteString("X-Filler: " + strings.Repeat("z", 200) + "\r\n")
	}
	big.WriteString("\r\nBODY-LINE\r\n")
	h.enqueueFrom("alice@example.org", "", big.String(), rcpt("bob@example.org", "SUCCESS"))
	h.waitFor("the report", func() bool { return len(lf.rawReports()) == 1 })
	raw := lf.rawReports()[0]
	if len(raw) > 300<<10 {
		t.Errorf("report of %d bytes for a 400 KiB header", len(raw))
	}
	rep := lf.parsedReports(t)[0]
	orig, err := io.ReadAll(rep.Original)
	if err != nil {
		t.Fatal(err)
	}
	if len(orig) > 256<<10 || len(orig) < 200<<10 || strings.Contains(string(raw), "BODY-LINE") {
		t.Errorf("returned %d bytes (body included: %v), want the header cut at 256 KiB",
			len(orig), strings.Contains(string(raw), "BODY-LINE"))
	}
}

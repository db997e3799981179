package ndr

import (
	"errors"
	"testing"
)

func TestParseNotify(t *testing.T) {
	tests := []struct {
		in      string
		want    Notify
		wantStr string
	}{
		{"", 0, ""},
		{"NEVER", NotifyNever, "NEVER"},
		{"never", NotifyNever, "NEVER"},
		{"SUCCESS", NotifySuccess, "SUCCESS"},
		{"FAILURE,DELAY", NotifyFailure | NotifyDelay, "FAILURE,DELAY"},
		{"delay, success ,Failure", NotifySuccess | NotifyFailure | NotifyDelay, "SUCCESS,FAILURE,DELAY"},
	}
	for _, tt := range tests {
		got, err := ParseNotify(tt.in)
		if err != nil || got != tt.want || got.String() != tt.wantStr {
			t.Errorf("ParseNotify(%q) = %v (%q), %v; want %v (%q)", tt.in, got, got.String(), err, tt.want, tt.wantStr)
		}
	}
	for _, bad := range []string{"NEVER,SUCCESS", "FAILURE,FAILURE", "SOMETIMES", "FAILURE,", ",", "SUCCESS;DELAY"} {
		if _, err := ParseNotify(bad); !errors.Is(err, ErrBadNotify) {
			t.Errorf("ParseNotify(%q) error = %v, want ErrBadNotify", bad, err)
		}
	}
}

func TestShouldReport(t *testing.T) {
	const sender = "alice@example.com"
	all := []Action{ActionFailed, ActionDelayed, ActionDelivered, ActionRelayed, ActionExpanded}
	tests := []struct {
		notify Notify
		yes    []Action // actions that produce a report; the others must not
	}{
		{0, []Action{ActionFailed, ActionDelayed}}, // RFC 3461 §4.1 default
		{NotifyNever, nil},
		{NotifyFailure, []Action{ActionFailed}},
		{NotifyDelay, []Action{ActionDelayed}},
		{NotifySuccess, []Action{ActionDelivered, ActionRelayed, ActionExpanded}},
		{NotifySuccess | NotifyFailure | NotifyDelay, all},
	}
	for _, tt := range tests {
		for _, a := range all {
			want := false
			for _, y := range tt.yes {
				want = want || y == a
			}
			if got := ShouldReport(tt.notify, a, sender); got != want {
				t.Errorf("ShouldReport(%q, %s) = %v, want %v", tt.notify.String(), a, got, want)
			}
			// Never about a message with a null reverse-path.
			for _, null := range []string{"", "<>", " <> "} {
				if ShouldReport(tt.notify, a, null) {
					t.Errorf("ShouldReport(%q, %s, %q) = true for a null sender", tt.notify.String(), a, null)
				}
			}
		}
	}
	if ShouldReport(NotifyFailure, "bogus", sender) {
		t.Error("unknown action reported")
	}
	if !ShouldReport(NotifyFailure, "FAILED", sender) {
		t.Error("action matching must ignore case")
	}
}

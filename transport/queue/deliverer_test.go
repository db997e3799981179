package queue

import (
	"errors"
	"net"
	"testing"

	"github.com/mailtls/mailtls/transport"
)

func TestOutcomes(t *testing.T) {
	env := &transport.Envelope{Recipients: []transport.Recipient{
		{Address: "a@x.example"}, {Address: "b@x.example"}, {Address: "c@x.example"}}}

	// Results out of order and one missing: matched by address; the
	// missing one is deferred, never assumed delivered.
	a, b := ok(), tlsFailure(transport.Failed)
	a.Recipient, b.Recipient = env.Recipients[0], transport.Recipient{Address: "B@X.example"}
	connectedToB := []transport.Attempt{{RemoteMTA: b.RemoteMTA, SourceIP: net.IPv4(127, 0, 0, 1)}}
	outs := outcomes(env, &transport.Result{Recipients: []transport.RecipientResult{b, a}, Attempts: connectedToB}, nil)
	if outs[0].state != transport.Delivered || outs[1].state != transport.Failed || outs[2].state != transport.Deferred {
		t.Fatalf("states = %v %v %v", outs[0].state, outs[1].state, outs[2].state)
	}
	if e := outs[1].err; e.Code != 554 || e.EnhancedCode != "5.7.4" || e.TLSFailure != "starttls-not-supported" ||
		e.RemoteMTA != "mx.legacy.example" || e.Policy != "static" || !e.Local {
		t.Errorf("failed outcome error = %+v", e)
	}
	if outs[0].tls == nil || outs[0].policy != "static:verify" || outs[0].nextHop != "mx.example.net[<nil>]:25" {
		t.Errorf("delivered outcome = %+v", outs[0])
	}
	if e := outs[2].err; e.Code != 451 || e.EnhancedCode != "4.3.0" {
		t.Errorf("missing result error = %+v", e)
	}

	// A call that failed as a whole: a local error defers everyone; a
	// permanent SMTP error fails everyone.
	for _, tc := range []struct {
		err  error
		want transport.Status
		code string
	}{
		{errors.New("transport: Connector.Hostname is required"), transport.Deferred, "4.3.0"},
		{&transport.Error{Code: 554, EnhancedCode: transport.EnhancedCode{5, 7, 30}, Message: "REQUIRETLS"}, transport.Failed, "5.7.30"},
		{&transport.Error{Code: 421, EnhancedCode: transport.EnhancedCode{4, 4, 2}}, transport.Deferred, "4.4.2"},
	} {
		outs := outcomes(env, nil, tc.err)
		for i, o := range outs {
			if o.state != tc.want || o.err.EnhancedCode != tc.code {
				t.Errorf("%v: recipient %d: %s %+v, want %s %s", tc.err, i, o.state, o.err, tc.want, tc.code)
			}
		}
	}
}

package queue

import (
	"context"
	"io"
	"strings"

	"github.com/mailtls/mailtls/policy"
	"github.com/mailtls/mailtls/transport"
)

// Deliverer delivers one envelope to its next hop and returns one result
// per recipient, in envelope order. *transport.Connector implements it.
//
// Deliver must read body only through ReadAt (the queue passes the spooled
// file) and must not keep it after returning. It returns an error only when
// no per-recipient result could be formed; the queue then treats every
// recipient as deferred, or as failed if the error is an *transport.Error
// with a 5xx code.
type Deliverer interface {
	Deliver(ctx context.Context, env *transport.Envelope, body io.ReaderAt, size int64) (*transport.Result, error)
}

// DeliverFunc adapts a function to Deliverer.
type DeliverFunc func(ctx context.Context, env *transport.Envelope, body io.ReaderAt, size int64) (*transport.Result, error)

// Deliver calls f.
func (f DeliverFunc) Deliver(ctx context.Context, env *transport.Envelope, body io.ReaderAt, size int64) (*transport.Result, error) {
	return f(ctx, env, body, size)
}

var _ Deliverer = DeliverFunc(nil)

// outcome is what the queue needs to know about one recipient's attempt.
type outcome struct {
	state      transport.Status // Delivered, Relayed, Failed or Deferred
	err        *LastError
	remoteMTA  string // host name, for reports
	nextHop    string // host[ip]:port, for logs
	tls        *transport.TLSInfo
	policy     string // policy source and level, for logs
	level      string // policy level, for logs
	source     string // policy source, for logs
	tlsFailure policy.FailureType
	// interrupted: the attempt was cut short by shutdown and is not
	// recorded (not charged as an attempt).
	interrupted bool
}

// outcomes maps a Deliver result onto the recipients of env, in order. A
// recipient the result does not mention gets the call's error, or a
// temporary failure if there is none: the queue never guesses success.
func outcomes(env *transport.Envelope, res *transport.Result, err error) []outcome {
	out := make([]outcome, len(env.Recipients))
	var byAddr map[string]*transport.RecipientResult
	if res != nil {
		byAddr = make(map[string]*transport.RecipientResult, len(res.Recipients))
		for i := range res.Recipients {
			rr := &res.Recipients[i]
			k := strings.ToLower(rr.Recipient.Address)
			if _, dup := byAddr[k]; !dup {
				byAddr[k] = rr
			}
		}
	}
	for i, rc := range env.Recipients {
		var rr *transport.RecipientResult
		if res != nil && i < len(res.Recipients) && strings.EqualFold(res.Recipients[i].Recipient.Address, rc.Address) {
			rr = &res.Recipients[i]
		} else if byAddr != nil {
			rr = byAddr[strings.ToLower(rc.Address)]
		}
		if rr == nil {
			out[i] = callFailure(err)
			continue
		}
		o := outcome{
			remoteMTA:  rr.RemoteMTA.Host,
			nextHop:    rr.RemoteMTA.String(),
			tls:        rr.TLS,
			tlsFailure: rr.TLSFailure,
		}
		if rr.Requirement.Source != "" {
			o.policy = string(rr.Requirement.Source) + ":" + rr.Requirement.Level.String()
			o.level, o.source = rr.Requirement.Level.String(), string(rr.Requirement.Source)
		}
		switch rr.Status {
		case transport.Delivered:
			o.state = transport.Delivered
		case transport.Relayed:
			o.state = transport.Relayed
		case transport.Failed:
			o.state = transport.Failed
		default:
			o.state = transport.Deferred
		}
		if o.state == transport.Failed || o.state == transport.Deferred {
			o.err = lastError(rr.Reply, err)
			te := rr.Reply
			if te == nil {
				te, _ = transport.AsError(err)
			}
			o.err.Local = te == nil || te.Local
			if !o.err.Local || connected(res, rr.RemoteMTA) {
				o.err.RemoteMTA = rr.RemoteMTA.Host
			}
			o.err.TLSFailure = rr.TLSFailure
			if rr.Requirement.Source != "" {
				o.err.Policy = rr.Requirement.Source
			}
		}
		out[i] = o
	}
	return out
}

// callFailure is the outcome of a recipient the result says nothing about.
func callFailure(err error) outcome {
	le := lastError(nil, err)
	st := transport.Deferred
	le.Local = true // the queue's own 4.3.0
	if te, ok := transport.AsError(err); ok {
		le.Local = te.Local
		if te.Code >= 500 {
			st = transport.Failed
		}
	}
	return outcome{state: st, err: le}
}

// connected reports whether res records a connection made to m (an
// attempt to its address with a local address, Attempt.SourceIP).
func connected(res *transport.Result, m transport.RemoteMTA) bool {
	if res == nil || m.IP == nil {
		return false
	}
	for _, a := range res.Attempts {
		if a.SourceIP != nil && a.RemoteMTA.IP.Equal(m.IP) && a.RemoteMTA.Port == m.Port &&
			strings.EqualFold(a.RemoteMTA.Host, m.Host) {
			return true
		}
	}
	return false
}

// lastError converts a reply or error. A failure that is not an SMTP reply
// (the Deliverer could not run, the spool could not be read) is a local
// one: 451 4.3.0, "other or undefined mail system status" (RFC 3463 §3.4).
func lastError(te *transport.Error, err error) *LastError {
	if te == nil {
		te, _ = transport.AsError(err)
	}
	if te != nil {
		le := &LastError{Code: te.Code, EnhancedCode: te.EnhancedCode.String(), Message: te.Message}
		if le.Message == "" && te.Err != nil {
			le.Message = te.Err.Error()
		}
		return le
	}
	if err != nil {
		return &LastError{Code: 451, EnhancedCode: "4.3.0", Message: err.Error()}
	}
	return &LastError{Code: 451, EnhancedCode: "4.3.0", Message: "no result for this recipient"}
}

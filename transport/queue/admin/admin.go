// Package admin lets operators control a running queue.Queue from another
// process, over a Unix socket: the server side (Server) runs inside the
// program that runs the queue, the client side (Client) is what a
// command-line tool uses. Nothing here reads or writes spool files: every
// command is a call to a Queue method (List, Get, RetryNow, RetryDomain,
// RetryAll, Remove, Hold, Release), so it is safe under a live queue and
// works with any queue.Store.
//
// # Protocol
//
// A client connects, writes one request per line as a JSON object and
// reads one response per request, also one JSON object on one line
// (newline-delimited JSON). A Request names a Command and its argument:
//
//	{"command":"list"}
//	{"command":"show","id":"ID"}
//	{"command":"retry","id":"ID"}       (also "domain":"D" or "all":true)
//	{"command":"remove","id":"ID"}
//	{"command":"hold","id":"ID"}
//	{"command":"release","id":"ID"}
//
// A Response has "ok" and, on failure, a Code and an error text; on
// success the messages and counts (list), the message (show), or how many
// messages changed (the others). Messages are queue.Message records, the
// spool's own JSON.
//
// # Limits
//
// The socket is created with mode 0600 (Listen), so only its owner (and
// root) can connect; the server still treats a client as hostile: a
// request line longer than MaxRequest ends the connection, a connection
// lives at most Server.Timeout from its accept however slowly it sends,
// and at most Server.MaxConns connections are served at once (the next
// ones get a "busy" response and are closed).
package admin

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/mailtls/mailtls/transport"
	"github.com/mailtls/mailtls/transport/queue"
)

// Limits and defaults.
const (
	// MaxRequest bounds a request line, newline included.
	MaxRequest = 4096
	// MaxResponse bounds a response the Client reads (a listing of a
	// large queue is the biggest).
	MaxResponse = 256 << 20
	// DefaultTimeout is how long a connection may last, on both sides.
	DefaultTimeout = 30 * time.Second
	// DefaultMaxConns bounds the connections a Server serves at once.
	DefaultMaxConns = 4
)

// Command names a request.
type Command string

// Commands.
const (
	// List answers every queued message, oldest first, and the
	// recipient counts by state (queue.Queue.List and Counts).
	List Command = "list"
	// Show answers one message (queue.Queue.Get).
	Show Command = "show"
	// Retry makes the waiting recipients of one message (ID), of every
	// message to one domain (Domain) or of every message (All) due now
	// (queue.Queue.RetryNow, RetryDomain, RetryAll; Postfix's
	// "postqueue -i", "-s", "-f").
	Retry Command = "retry"
	// Remove deletes a message without a report (queue.Queue.Remove;
	// Postfix's "postsuper -d").
	Remove Command = "remove"
	// Hold stops delivery attempts for a message (queue.Queue.Hold;
	// Postfix's "postsuper -h").
	Hold Command = "hold"
	// Release undoes Hold (queue.Queue.Release; Postfix's "postsuper -H").
	Release Command = "release"
)

// Request is one line a client sends.
type Request struct {
	Command Command `json:"command"`
	// ID is the queue id, for show, remove, hold, release and retry.
	ID string `json:"id,omitempty"`
	// Domain selects retry by recipient domain.
	Domain string `json:"domain,omitempty"`
	// All selects retry of every message.
	All bool `json:"all,omitempty"`
}

// Response is one line the server answers.
type Response struct {
	OK bool `json:"ok"`
	// Code and Error say why a request failed.
	Code  Code   `json:"code,omitempty"`
	Error string `json:"error,omitempty"`
	// Messages and Counts answer list; Counts has every transport.Status,
	// transport.Held included (queue.Queue.Counts).
	Messages []*queue.Message         `json:"messages,omitempty"`
	Counts   map[transport.Status]int `json:"counts,omitempty"`
	// Warning reports records the store could not read (queue.ErrCorrupt);
	// the listing holds the others.
	Warning string `json:"warning,omitempty"`
	// Message answers show.
	Message *queue.Message `json:"message,omitempty"`
	// Changed is how many messages retry, remove, hold or release changed.
	Changed int `json:"changed,omitempty"`
	// Time is the queue's clock when the server answered, for computing
	// ages and waits.
	Time time.Time `json:"time"`
}

// Code classifies a failed request.
type Code string

// Failure codes.
const (
	// CodeNotFound: no message with that id (delivered, or removed).
	CodeNotFound Code = "not_found"
	// CodeBadRequest: the request is malformed, too long, or names an
	// unknown command or an invalid id or domain.
	CodeBadRequest Code = "bad_request"
	// CodeBusy: the server already serves Server.MaxConns connections.
	CodeBusy Code = "busy"
	// CodeInternal: the queue failed (the store could not be read or
	// written); Error says how.
	CodeInternal Code = "internal"
)

// ErrBadRequest matches (errors.Is) an *Error with CodeBadRequest.
var ErrBadRequest = errors.New("admin: bad request")

// ErrBusy matches (errors.Is) an *Error with CodeBusy.
var ErrBusy = errors.New("admin: server busy")

// Error is a failure the server answered. errors.Is matches it against
// queue.ErrNotFound, ErrBadRequest and ErrBusy by its Code.
type Error struct {
	Code    Code
	Message string
}

// Error renders the code and the server's text.
// Error renders the code and the server's text.
func (e *Error) Error() string { return "admin: " + string(e.Code) + ": " + e.Message }

// Is reports whether target is the sentinel of e's Code.
func (e *Error) Is(target error) bool {
	switch e.Code {
	case CodeNotFound:
		return target == queue.ErrNotFound
	case CodeBadRequest:
		return target == ErrBadRequest
	case CodeBusy:
		return target == ErrBusy
	}
	return false
}

// validate checks that r has the arguments its command needs and no
// others, and normalizes its domain.
func (r *Request) validate() error {
	args := 0
	for _, set := range []bool{r.ID != "", r.Domain != "", r.All} {
		if set {
			args++
		}
	}
	switch r.Command {
	case List:
		if args != 0 {
			return fmt.Errorf("%s takes no argument", r.Command)
		}
	case Show, Remove, Hold, Release:
		if r.ID == "" || args != 1 {
			return fmt.Errorf("%s takes one id", r.Command)
		}
	case Retry:
		if args != 1 {
			return fmt.Errorf("retry takes one of an id, a domain or all")
		}
	default:
		return fmt.Errorf("unknown command %q", r.Command)
	}
	if r.Domain != "" {
		d, err := checkDomain(r.Domain)
		if err != nil {
			return err
		}
		r.Domain = d
	}
	return nil
}

// checkDomain accepts a domain name (A-labels or U-labels, RFC 5890) and
// returns it in lower case without a trailing dot.
func checkDomain(d string) (string, error) {
	d = strings.TrimSuffix(strings.ToLower(d), ".")
	if d == "" || len(d) > 253 || !utf8.ValidString(d) ||
		strings.IndexFunc(d, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) || r == '@' }) >= 0 {
		return "", fmt.Errorf("invalid domain %q", d)
	}
	return d, nil
}

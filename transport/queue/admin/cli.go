package admin

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/mailtls/mailtls/transport"
	"github.com/mailtls/mailtls/transport/queue"
)

// SocketName is the usual file name of the admin socket in a program's
// data directory; CLI looks for it there unless told otherwise.
const SocketName = "admin.sock"

// CLI is the operator's command line for a queue served on an admin socket
// ("PROGRAM queue list|show|retry|remove|hold|release"): it parses the
// arguments, sends one Request through a Client and prints the Response as
// a table for people or, with -json, as JSON for scripts. Text that came
// from remote servers and clients (reply texts, names) is printed quoted
// when it holds a non-printable character, so that it cannot send control
// sequences to the operator's terminal.
type CLI struct {
	Program string    // the program serving the socket, named in usage and messages ("relay")
	DataDir string    // default of -data, the directory holding the socket
	Socket  string    // the socket's file name under -data; "": SocketName
	Stdout  io.Writer // tables, JSON
	Stderr  io.Writer // usage and errors
}

const queueUsage = `usage: %s queue [-data DIR] [-json] COMMAND
commands:
  list                      every queued message, one line per recipient
  show ID                   the envelope and every recipient's state, last TLS
                            result, policy and next attempt
  retry ID | -domain D | -all
                            make waiting recipients due now
  remove ID                 delete a message without a report
  hold ID                   stop delivery attempts until release
  release ID                let a held message be attempted again
Flags may come before or after the command.
`

// Run runs "PROGRAM queue ARGS" against the program running on -data
// and returns the exit status: 0 done, 1 failed, 2 usage. Flags may come
// before or after the command.
func (c *CLI) Run(ctx context.Context, args []string) int {
	name := c.Program + " queue"
	stdout, stderr := c.Stdout, c.Stderr
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, queueUsage, c.Program)
		fs.PrintDefaults()
	}
	dataDir := fs.String("data", c.DataDir, "the running "+c.Program+"'s data `directory`")
	asJSON := fs.Bool("json", false, "print JSON for scripts instead of a table")
	domain := fs.String("domain", "", "retry: the recipients at this `domain`")
	all := fs.Bool("all", false, "retry: every waiting recipient")
	timeout := fs.Duration("timeout", DefaultTimeout, "give up after this `duration`")
	// Flags may follow the command and the id.
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	usage := func(format string, a ...any) int {
		fmt.Fprintf(stderr, name+": "+format+"\n", a...)
		fs.Usage()
		return 2
	}
	if len(pos) == 0 {
		return usage("no command")
	}
	req := &Request{Command: Command(pos[0])}
	switch req.Command {
	case List:
		if len(pos) != 1 {
			return usage("list takes no argument")
		}
	case Show, Remove, Hold, Release:
		if len(pos) != 2 {
			return usage("%s takes one queue id", req.Command)
		}
		req.ID = pos[1]
	case Retry:
		if len(pos) == 2 {
			req.ID = pos[1]
		}
		req.Domain, req.All = *domain, *all
		if n := len(pos) - 1 + btoi(*domain != "") + btoi(*all); n != 1 {
			return usage("retry takes one of ID, -domain D or -all")
		}
	default:
		return usage("unknown command %q", pos[0])
	}
	if req.Command != Retry && (*domain != "" || *all) {
		return usage("-domain and -all go with retry")
	}
	dir, err := filepath.Abs(*dataDir)
	if err != nil {
		fmt.Fprintln(stderr, name+":", err)
		return 1
	}
	sock := c.Socket
	if sock == "" {
		sock = SocketName
	}
	cl := &Client{Path: filepath.Join(dir, sock), Timeout: *timeout}
	resp, err := cl.Do(ctx, req)
	if err != nil {
		var ae *Error
		if !errors.As(err, &ae) {
			err = fmt.Errorf("%w (is the %s running with -data %s?)", err, c.Program, dir)
		}
		fmt.Fprintln(stderr, name+":", clean(err.Error()))
		return 1
	}
	if resp.Warning != "" {
		fmt.Fprintln(stderr, name+": warning:", clean(resp.Warning))
	}
	if *asJSON {
		err = printQueueJSON(stdout, req, resp)
	} else {
		err = c.printTable(stdout, req, resp)
	}
	if err != nil {
		fmt.Fprintln(stderr, name+":", err)
		return 1
	}
	return 0
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Listing is the JSON that CLI prints for "PROGRAM queue -json list".
type Listing struct {
	Messages []*queue.Message         `json:"messages"`
	Counts   map[transport.Status]int `json:"counts"`
	Warning  string                   `json:"warning,omitempty"`
	Time     time.Time                `json:"time"`
}

// Change is the JSON that CLI prints for retry, remove, hold and release.
type Change struct {
	Command Command `json:"command"`
	ID      string  `json:"id,omitempty"`
	Domain  string  `json:"domain,omitempty"`
	All     bool    `json:"all,omitempty"`
	Changed int     `json:"changed"`
}

func printQueueJSON(w io.Writer, req *Request, resp *Response) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	switch req.Command {
	case List:
		msgs := resp.Messages
		if msgs == nil {
			msgs = []*queue.Message{}
		}
		return enc.Encode(Listing{Messages: msgs, Counts: resp.Counts, Warning: resp.Warning, Time: resp.Time})
	case Show:
		return enc.Encode(resp.Message)
	}
	return enc.Encode(Change{Command: req.Command, ID: req.ID, Domain: req.Domain, All: req.All, Changed: resp.Changed})
}

func (c *CLI) printTable(w io.Writer, req *Request, resp *Response) error {
	now := resp.Time
	switch req.Command {
	case List:
		return printList(w, resp.Messages, resp.Counts, now)
	case Show:
		return c.printShow(w, resp.Message, now)
	case Retry:
		_, err := fmt.Fprintf(w, "%d message(s) due now\n", resp.Changed)
		return err
	}
	past := map[Command]string{Remove: "removed", Hold: "held", Release: "released"}
	_, err := fmt.Fprintf(w, "%s %s\n", req.ID, past[req.Command])
	return err
}

// printList prints one line per recipient, the message's columns on its
// first recipient only, then the counts.
func printList(w io.Writer, msgs []*queue.Message, counts map[transport.Status]int, now time.Time) error {
	if len(msgs) == 0 {
		_, err := fmt.Fprintln(w, "The queue is empty.")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tAGE\tSIZE\tFROM\tRECIPIENT\tSTATE\tTRIES\tNEXT ATTEMPT\tLAST ERROR")
	rcpts := 0
	for _, m := range msgs {
		for i, r := range m.Recipients {
			id, age, size, from := "", "", "", ""
			if i == 0 {
				id, age, size, from = m.ID, roundDur(now.Sub(m.ReceivedAt)), strconv.FormatInt(m.Size, 10), "<"+m.From+">"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", id, age, size, clean(from), clean(r.Address),
				stateOf(m, r), r.Attempts, nextAttempt(m, r, now), clean(ellipsis(r.LastError.Reply(), 60)))
			rcpts++
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var parts []string
	for _, s := range []transport.Status{transport.Pending, transport.Deferred, transport.Held, transport.Delivered, transport.Relayed, transport.Failed} {
		if counts[s] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[s], s))
		}
	}
	_, err := fmt.Fprintf(w, "%d message(s), %d recipient(s): %s\n", len(msgs), rcpts, strings.Join(parts, ", "))
	return err
}

// printShow prints the envelope, then each recipient's state, last TLS
// result, policy and next attempt.
func (c *CLI) printShow(w io.Writer, m *queue.Message, now time.Time) error {
	var b strings.Builder
	line := func(k, v string) { fmt.Fprintf(&b, "%-16s%s\n", k+":", clean(v)) }
	line("id", m.ID)
	line("received", fmt.Sprintf("%s (%s ago)", stamp(m.ReceivedAt), roundDur(now.Sub(m.ReceivedAt))))
	via := labelled("client ", m.ClientAddr, "helo ", m.Helo, "auth ", m.AuthIdentity)
	if t := m.ReceivedTLS; t != nil {
		via = append(via, t.VersionName()+" "+t.CipherName())
		if t.Verified {
			via = append(via, "client certificate verified")
		}
	} else {
		via = append(via, "no TLS")
	}
	via = append(via, labelled("smtp id ", m.ReceivedID)...)
	line("via", strings.Join(via, ", "))
	line("from", "<"+m.From+">")
	line("size", fmt.Sprintf("%d bytes", m.Size))
	var opts []string
	for _, o := range []struct {
		on   bool
		name string
	}{{m.RequireTLS, "REQUIRETLS"}, {m.TLSRequiredNo, "TLS-Required: No"}, {m.SMTPUTF8, "SMTPUTF8"}, {m.Report, "delivery status report"}} {
		if o.on {
			opts = append(opts, o.name)
		}
	}
	opts = append(opts, labelled("BODY=", string(m.BodyType), "RET=", m.Return.String(), "ENVID=", m.EnvelopeID)...)
	if len(opts) == 0 {
		opts = append(opts, "none")
	}
	line("options", strings.Join(opts, ", "))
	if m.Held {
		line("held", fmt.Sprintf("since %s: not attempted until \"%s queue release %s\"", stamp(m.HeldAt), c.Program, m.ID))
	} else {
		line("held", "no")
	}
	for _, r := range m.Recipients {
		b.WriteString("\n")
		line("recipient", "<"+r.Address+">")
		state := fmt.Sprintf("%s, %d attempt(s)", stateOf(m, r), r.Attempts)
		if !r.LastAttempt.IsZero() {
			state += ", last " + stamp(r.LastAttempt)
		}
		if r.Expired {
			state += ", expired"
		}
		line("  state", state)
		line("  next attempt", nextAttempt(m, r, now))
		if r.RemoteMTA != "" {
			line("  remote mta", r.RemoteMTA)
		}
		if r.LastError != nil {
			by := "reply"
			if r.LastError.Local {
				by = "found by this " + c.Program
			}
			line("  last error", r.LastError.Reply()+" ("+by+")")
		}
		if r.Attempts > 0 {
			t := tlsText(r.TLS)
			if r.TLS != nil && r.TLS.PeerSubject != "" {
				t += ", peer " + r.TLS.PeerSubject
			}
			line("  last tls", t)
			if r.LastError != nil && r.LastError.TLSFailure != "" {
				line("  tls failure", string(r.LastError.TLSFailure)+" (RFC 8460)")
			}
			p := r.Policy
			if p == "" {
				p = "none looked up"
			}
			line("  policy", p+" (source:level)")
		}
		if r.ORCPT != "" {
			line("  orcpt", r.ORCPT)
		}
		if r.Notify != 0 {
			line("  notify", r.Notify.String())
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// labelled returns label+value for each pair of kv whose value is not
// empty.
func labelled(kv ...string) []string {
	var out []string
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" {
			out = append(out, kv[i]+kv[i+1])
		}
	}
	return out
}

// stateOf is a recipient's state as operators see it: a waiting recipient
// of a held message is "held".
func stateOf(m *queue.Message, r *queue.Recipient) string {
	if m.Held && !r.State.Final() {
		return transport.Held.String() + " (" + r.State.String() + ")"
	}
	return r.State.String()
}

func nextAttempt(m *queue.Message, r *queue.Recipient, now time.Time) string {
	switch {
	case r.State.Final():
		return "-"
	case m.Held:
		return "held"
	case !r.NextAttempt.After(now):
		return "now"
	}
	return "in " + roundDur(r.NextAttempt.Sub(now))
}

// tlsText summarizes the TLS session of an attempt: "TLSv1.3
// TLS_AES_128_GCM_SHA256, verified", or "none".
func tlsText(t *transport.TLSInfo) string {
	if t == nil {
		return "none (plaintext, or no session established)"
	}
	v := "not verified"
	if t.Verified {
		v = "verified"
	}
	return t.VersionName() + " " + t.CipherName() + ", " + v
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// roundDur renders d to the second without zero tails: "4m59s", "1h",
// "2h5m", "0s".
func roundDur(d time.Duration) string {
	s := max(d, 0).Round(time.Second).String()
	if strings.Contains(s, "m") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.Contains(s, "h") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func ellipsis(s string, n int) string {
	if len([]rune(s)) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}

// clean keeps what the spool holds from remote servers and clients (reply
// texts, names) from sending control sequences to the operator's
// terminal: a string with a non-printable character is printed quoted.
func clean(s string) string {
	if strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) && r != ' ' }) < 0 {
		return s
	}
	return strconv.QuoteToGraphic(s)
}

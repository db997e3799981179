package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/mailtls/mailtls/internal/postfixlab"
)

// postfixBin is where Debian's postfix package installs the command.
const postfixBin = "/usr/sbin/postfix"

// postfixUnavailable says why the postfix target cannot run, or "".
func postfixUnavailable() string {
	if _, err := os.Stat(postfixBin); err != nil {
		return "Postfix is not installed (" + postfixBin + ")"
	}
	if _, err := os.Stat("/usr/lib/postfix/sbin/smtpd"); err != nil {
		return "Postfix's smtpd is not installed"
	}
	if os.Geteuid() != 0 {
		return "starting a private Postfix instance needs root"
	}
	if _, _, err := postfixlab.User(); err != nil {
		return "no postfix user"
	}
	return ""
}

// postfixServer is a private Postfix instance (postfix -c DIR): smtpd on a
// loopback port with STARTTLS required (TLS 1.3, the same certificate as
// the other targets), every message handed to the discard transport.
type postfixServer struct {
	*postfixlab.Instance
	addr, version string
	relays        bool // to a sink (postfix-relay), not to discard(8)
}

// startPostfix writes main.cf and master.cf under a new directory in
// parent, starts the instance and waits until it listens. With sink
// empty it discards every message; otherwise it relays every message to
// sink over STARTTLS with smtp_tls_security_level = verify (the sink's
// certificate, issued to sinkHost, as the only trust anchor), the
// relay target's job.
func startPostfix(ctx context.Context, parent, certFile, keyFile, sink string) (*postfixServer, error) {
	dir, err := os.MkdirTemp(parent, "postfix-")
	if err != nil {
		return nil, err
	}
	// The postfix user must traverse every directory down to the queue.
	if err := postfixlab.MakeTraversable(dir, filepath.Dir(parent)); err != nil {
		return nil, err
	}
	for _, f := range []struct {
		from, to string
		mode     os.FileMode
	}{{certFile, "cert.pem", 0o644}, {keyFile, "key.pem", 0o600}} {
		b, err := os.ReadFile(f.from)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(dir, f.to), b, f.mode); err != nil {
			return nil, err
		}
	}
	addr, err := postfixlab.FreeAddr()
	if err != nil {
		return nil, err
	}

	// Postfix 3.7 defaults otherwise: smtpd with STARTTLS required
	// (encrypt), TLS 1.3 only, mail for load.test to discard(8). The
	// queue file is fsynced before the 250, as Postfix always does.
	mainCF := map[string]string{
		"myhostname":                      hostname,
		"mydomain":                        "load.test",
		"myorigin":                        "load.test",
		"relay_domains":                   "load.test",
		"transport_maps":                  "inline:{load.test=discard:}",
		"default_transport":               "discard",
		"relay_transport":                 "discard",
		"local_transport":                 "discard",
		"smtpd_tls_security_level":        "encrypt",
		"smtpd_tls_protocols":             ">=TLSv1.3",
		"smtpd_tls_mandatory_protocols":   ">=TLSv1.3",
		"smtpd_tls_cert_file":             dir + "/cert.pem",
		"smtpd_tls_key_file":              dir + "/key.pem",
		"smtpd_tls_loglevel":              "0",
		"smtpd_tls_session_cache_timeout": "0",
		"tls_session_ticket_cipher":       "",
	}
	if sink != "" {
		// Postfix's own defaults for the rest (20 connections per
		// destination, as the relay target's queue), with its TLS
		// connection reuse through tlsproxy(8) turned on.
		next := "[" + strings.Replace(sink, ":", "]:", 1)
		for k, v := range map[string]string{
			"transport_maps":                  "inline:{load.test=smtp:" + next + "}",
			"default_transport":               "smtp",
			"relay_transport":                 "smtp",
			"smtp_tls_security_level":         "verify",
			"smtp_tls_policy_maps":            "inline:{ {" + next + " = verify match=" + sinkHost + "} }",
			"smtp_tls_CAfile":                 dir + "/cert.pem",
			"smtp_tls_connection_reuse":       "yes",
			"smtp_tls_loglevel":               "0",
			"smtp_connection_cache_on_demand": "yes",
		} {
			mainCF[k] = v
		}
	}
	inst, err := postfixlab.Start(ctx, postfixlab.Config{Dir: dir, Command: postfixBin, SMTPD: addr, MainCF: mainCF})
	if err != nil {
		return nil, err
	}
	p := &postfixServer{Instance: inst, addr: addr, relays: sink != ""}
	if out, err := exec.Command("/usr/sbin/postconf", "-c", dir, "-h", "mail_version").Output(); err == nil {
		p.version = "mail_version=" + strings.TrimSpace(string(out))
	}
	return p, nil
}

// log returns Postfix's log (maillog_file), at most its last 64 KiB.
func (p *postfixServer) log() string {
	b, _ := p.Log()
	if len(b) > 64<<10 {
		b = b[len(b)-64<<10:]
	}
	return string(b)
}

// delivered counts the messages the log says went to discard(8), or to
// the sink.
func (p *postfixServer) delivered() int64 {
	b, _ := p.Log()
	agent := []byte(" postfix/discard[")
	if p.relays {
		agent = []byte(" postfix/smtp[")
	}
	var n int64
	for _, l := range bytes.Split(b, []byte("\n")) {
		if bytes.Contains(l, agent) && bytes.Contains(l, []byte(" status=sent ")) {
			n++
		}
	}
	return n
}

// waitDelivered waits until the log shows want discarded messages.
func (p *postfixServer) waitDelivered(ctx context.Context, want int64, limit time.Duration) (int64, error) {
	deadline := time.Now().Add(limit)
	for {
		n := p.delivered()
		if n == want {
			return n, nil
		}
		if n > want {
			return n, fmt.Errorf("postfix: its log shows %d messages discarded, %d were sent", n, want)
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return n, fmt.Errorf("postfix: its log shows %d of %d messages discarded\n%s", n, want, p.log())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// stop runs postfix stop and makes sure the master process (by the PID in
// its pid file) is gone, killing it after 10 s.
func (p *postfixServer) stop() error {
	return p.Stop(context.Background())
}

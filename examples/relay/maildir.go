package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mailtls/mailtls/transport"
	"github.com/mailtls/mailtls/transport/queue"
)

// maildirs stores local mail in one Maildir per recipient address under
// root ("root/NAME/{tmp,new,cur}", NAME from mailboxName), in the classic
// Maildir delivery protocol (D. J. Bernstein, maildir(5)): write into
// tmp/, fsync the file, rename it into new/, fsync new/. Only then is the
// message durable.
type maildirs struct {
	root     string
	hostname string
	seq      atomic.Uint64
}

// errUnusableAddress: an address with no Maildir name (empty).
var errUnusableAddress = errors.New("maildir: unusable recipient address")

// dir returns the Maildir of addr, creating it.
func (m *maildirs) dir(addr string) (string, error) {
	name := mailboxName(addr)
	if name == "" {
		return "", fmt.Errorf("%w %q", errUnusableAddress, printable(addr))
	}
	d := filepath.Join(m.root, name)
	for _, sub := range []string{"tmp", "new", "cur"} {
		if err := os.MkdirAll(filepath.Join(d, sub), 0o700); err != nil {
			return "", err
		}
	}
	return d, nil
}

// maxMailboxName bounds the length of a Maildir name, well under the 255
// octets of a file name on common file systems.
const maxMailboxName = 200

// mailboxName is the directory name of addr's Maildir: one path element,
// filesystem-safe, and distinct for distinct addresses after foldAddress
// (the only case rule). Lower-case ASCII letters, digits and "@-_+=." stand
// for themselves (so "user@example.com" is "user@example.com"); every other
// octet, a leading '.', and '%' itself are written %XX (hex, lower case),
// so "b/b", "b b", "b_b", "böb" and "BÖB" give five names, and no name is
// "", "." or "..", hidden, or contains '/'. A name longer than
// maxMailboxName is cut and ends in '~' and 32 hex digits of the SHA-256
// of the folded address; '~' never appears otherwise, so a cut name
// cannot equal an uncut one. It is "" only for "".
func mailboxName(addr string) string {
	a := foldAddress(addr)
	var b strings.Builder
	for i := 0; i < len(a); i++ {
		c := a[i]
		if 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || strings.IndexByte("@-_+=", c) >= 0 || c == '.' && i > 0 {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02x", c)
	}
	name := b.String()
	if len(name) <= maxMailboxName {
		return name
	}
	sum := sha256.Sum256([]byte(a))
	cut := maxMailboxName - 33
	if i := strings.LastIndexByte(name[:cut], '%'); i >= cut-2 {
		cut = i // do not split an escape
	}
	return name[:cut] + "~" + hex.EncodeToString(sum[:16])
}

// uniqueName is a Maildir file name: time, a per-process sequence, the pid,
// random bits, and the host name (maildir(5)).
func (m *maildirs) uniqueName() string {
	var r [6]byte
	rand.Read(r[:])
	now := time.Now()
	host := strings.NewReplacer("/", `\057`, ":", `\072`).Replace(m.hostname)
	return fmt.Sprintf("%d.M%dP%dQ%dR%s.%s", now.Unix(), now.Nanosecond()/1000, os.Getpid(), m.seq.Add(1), hex.EncodeToString(r[:]), host)
}

// deliver writes one message for rcpt: a Return-Path and Delivered-To
// header (RFC 5321 §4.4, the final delivery's trace) followed by body.
// It returns the path in new/ once the file and its directory entry are on
// stable storage.
func (m *maildirs) deliver(rcpt, from string, body io.Reader) (string, error) {
	d, err := m.dir(rcpt)
	if err != nil {
		return "", err
	}
	name := m.uniqueName()
	tmp := filepath.Join(d, "tmp", name)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", err
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := fmt.Fprintf(f, "Return-Path: <%s>\r\nDelivered-To: %s\r\n", from, rcpt); err != nil {
		return "", err
	}
	if _, err := io.Copy(f, body); err != nil {
		return "", err
	}
	if err := f.Sync(); err != nil {
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	final := filepath.Join(d, "new", name)
	if err := os.Rename(tmp, final); err != nil {
		return "", err
	}
	ok = true
	if err := syncDir(filepath.Join(d, "new")); err != nil {
		return "", err
	}
	return final, nil
}

// syncDir makes a rename into dir durable.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// localDelivery is the queue's Local deliverer (queue.Queue.Local): it
// writes each recipient's Maildir and returns one result per recipient, so
// the queue retries or bounces only the recipients whose Maildir failed and
// never writes a delivered one again (Postfix's local(8) per-recipient
// status).
type localDelivery struct {
	mail  *maildirs
	rcpts *recipientTable
	log   *slog.Logger
}

var _ queue.Deliverer = (*localDelivery)(nil)

// Deliver implements queue.Deliverer.
func (d *localDelivery) Deliver(ctx context.Context, env *transport.Envelope, body io.ReaderAt, size int64) (*transport.Result, error) {
	res := &transport.Result{Recipients: make([]transport.RecipientResult, len(env.Recipients))}
	for i, r := range env.Recipients {
		var err error
		path := ""
		switch {
		case ctx.Err() != nil:
			err = ctx.Err()
		case !d.rcpts.has(r.Address):
			err = errNoSuchUser
		default:
			path, err = d.mail.deliver(r.Address, env.From, io.NewSectionReader(body, 0, size))
		}
		rr := &res.Recipients[i]
		rr.Recipient, rr.Time = r, time.Now()
		rr.Status, rr.Reply = localResult(r.Address, err)
		if err != nil {
			d.log.Warn("maildir delivery failed", "id", env.ID, "rcpt", printable(r.Address), "result", rr.Status.String(), "error", err)
		} else {
			d.log.Debug("maildir delivery", "id", env.ID, "rcpt", printable(r.Address), "path", path)
		}
	}
	return res, nil
}

// errNoSuchUser: the recipient left the table after it was accepted.
var errNoSuchUser = errors.New("maildir: no such local recipient")

// localResult maps the outcome of one Maildir delivery onto a per-recipient
// result. A recipient that does not exist (any more) or has no Maildir
// name fails for good (RFC 3463 §3.2: X.1.1 bad mailbox, X.1.3 bad
// syntax); every other failure (a directory that cannot be made or
// written, a full disk) is the local system's and may pass, so the
// recipient is deferred (X.3.0, or X.3.1 "mail system full"), as Postfix
// defers a failed mailbox write.
func localResult(addr string, err error) (transport.Status, *transport.Error) {
	switch {
	case err == nil:
		return transport.Delivered, &transport.Error{Code: 250, EnhancedCode: transport.EnhancedCode{2, 0, 0}, Message: "delivered to Maildir"}
	case errors.Is(err, errNoSuchUser):
		return transport.Failed, errUnknownRecipient(addr)
	case errors.Is(err, errUnusableAddress):
		return transport.Failed, &transport.Error{Code: 550, EnhancedCode: transport.EnhancedCode{5, 1, 3},
			Message: "Recipient address has no mailbox name", Err: err}
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return transport.Deferred, &transport.Error{Code: 452, EnhancedCode: transport.EnhancedCode{4, 3, 1},
			Message: "Insufficient system storage for the Maildir", Err: err}
	default:
		return transport.Deferred, &transport.Error{Code: 451, EnhancedCode: transport.EnhancedCode{4, 3, 0},
			Message: "Maildir delivery failed, will retry", Err: err}
	}
}

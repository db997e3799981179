package queue

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
)

// Maildir is a local Deliverer (Queue.Local): it stores each recipient's
// copy in one Maildir per recipient address under Root
// ("Root/NAME/{tmp,new,cur}", NAME from MailboxName) with the classic
// Maildir delivery protocol (maildir(5)): write into tmp/, fsync the file,
// rename it into new/, fsync new/; only then is the message durable. Each
// copy starts with Return-Path and Delivered-To (RFC 5321 §4.4, the final
// delivery's trace).
//
// It returns one result per recipient, so the queue retries or bounces
// only the recipients whose Maildir failed and never writes a delivered
// one again (Postfix's local(8) per-recipient status). A recipient not in
// Recipients (it left the table after it was accepted) fails with 550
// 5.1.1, one with no mailbox name with 550 5.1.3 (RFC 3463 §3.2); every
// other failure (a directory that cannot be made or written, a full disk)
// is the local system's and may pass, so the recipient is deferred (4.3.0,
// or 4.3.1 "mail system full"), as Postfix defers a failed mailbox write.
type Maildir struct {
	Root       string                     // directory of the Maildirs, created when needed
	Hostname   string                     // this host's name, in file names (maildir(5))
	Recipients *transport.LocalRecipients // the recipients that exist; nil: every one
	Logger     *slog.Logger               // nil: slog.Default()

	seq atomic.Uint64
}

var _ Deliverer = (*Maildir)(nil)

// errNoMailboxName: an address with no Maildir name (empty).
var errNoMailboxName = errors.New("maildir: unusable recipient address")

// Dir returns the Maildir of addr, creating it.
func (m *Maildir) Dir(addr string) (string, error) {
	name := MailboxName(addr)
	if name == "" {
		return "", fmt.Errorf("%w %q", errNoMailboxName, addr)
	}
	d := filepath.Join(m.Root, name)
	for _, sub := range []string{"tmp", "new", "cur"} {
		if err := os.MkdirAll(filepath.Join(d, sub), 0o700); err != nil {
			return "", err
		}
	}
	return d, nil
}

// MaxMailboxName bounds the length of a Maildir name, well under the 255
// octets of a file name on common file systems.
const MaxMailboxName = 200

// MailboxName is the directory name of addr's Maildir: one path element,
// filesystem-safe, and distinct for distinct addresses after
// transport.FoldAddress (the only case rule). Lower-case ASCII letters,
// digits and "@-_+=." stand for themselves (so "user@example.com" is
// "user@example.com"); every other octet, a leading '.', and '%' itself
// are written %XX (hex, lower case), so "b/b", "b b", "b_b", "böb" and
// "BÖB" give five names, and no name is "", "." or "..", hidden, or
// contains '/'. A name longer than MaxMailboxName is cut and ends in '~'
// and 32 hex digits of the SHA-256 of the folded address; '~' never
// appears otherwise, so a cut name cannot equal an uncut one. It is "" only
// for "".
func MailboxName(addr string) string {
	a := transport.FoldAddress(addr)
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
	if len(name) <= MaxMailboxName {
		return name
	}
	sum := sha256.Sum256([]byte(a))
	cut := MaxMailboxName - 33
	if i := strings.LastIndexByte(name[:cut], '%'); i >= cut-2 {
		cut = i // do not split an escape
	}
	return name[:cut] + "~" + hex.EncodeToString(sum[:16])
}

// uniqueName is a Maildir file name: time, a per-process sequence, the pid,
// random bits, and the host name (maildir(5)).
func (m *Maildir) uniqueName() string {
	var r [6]byte
	rand.Read(r[:])
	now := time.Now()
	host := strings.NewReplacer("/", `\057`, ":", `\072`).Replace(m.Hostname)
	return fmt.Sprintf("%d.M%dP%dQ%dR%s.%s", now.Unix(), now.Nanosecond()/1000, os.Getpid(), m.seq.Add(1), hex.EncodeToString(r[:]), host)
}

// Write stores one message for rcpt, with a Return-Path and a
// Delivered-To header before body, and returns its path in new/ once the
// file and its directory entry are on stable storage.
func (m *Maildir) Write(rcpt, from string, body io.Reader) (string, error) {
	d, err := m.Dir(rcpt)
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
	nd, err := os.Open(filepath.Join(d, "new"))
	if err != nil {
		return "", err
	}
	defer nd.Close()
	return final, nd.Sync() // the rename is durable once new/ is synced
}

// Deliver implements Deliverer: one Maildir copy and one result per
// recipient.
func (m *Maildir) Deliver(ctx context.Context, env *transport.Envelope, body io.ReaderAt, size int64) (*transport.Result, error) {
	log := m.Logger
	if log == nil {
		log = slog.Default()
	}
	res := &transport.Result{Recipients: make([]transport.RecipientResult, len(env.Recipients))}
	for i, r := range env.Recipients {
		var err error
		path := ""
		switch {
		case ctx.Err() != nil:
			err = ctx.Err()
		case m.Recipients != nil:
			err = m.Recipients.Check(r.Address)
		}
		if err == nil {
			path, err = m.Write(r.Address, env.From, io.NewSectionReader(body, 0, size))
		}
		rr := &res.Recipients[i]
		rr.Recipient, rr.Time = r, time.Now()
		rr.Status, rr.Reply = maildirResult(err)
		if err != nil {
			log.Warn("maildir delivery failed", "id", env.ID, "rcpt", r.Address, "result", rr.Status.String(), "error", err)
		} else {
			log.Debug("maildir delivery", "id", env.ID, "rcpt", r.Address, "path", path)
		}
	}
	return res, nil
}

// maildirResult maps the outcome of one Maildir delivery onto a
// per-recipient status and reply (see Maildir).
func maildirResult(err error) (transport.Status, *transport.Error) {
	var te *transport.Error
	switch {
	case err == nil:
		return transport.Delivered, &transport.Error{Code: 250, EnhancedCode: transport.EnhancedCode{2, 0, 0}, Message: "delivered to Maildir"}
	case errors.Is(err, transport.ErrUnknownRecipient) && errors.As(err, &te):
		return transport.Failed, te
	case errors.Is(err, errNoMailboxName):
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

package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"
)

// maildirs stores local mail in one Maildir per recipient address under
// root ("root/user@example.com/{tmp,new,cur}"), in the classic Maildir
// delivery protocol (D. J. Bernstein, maildir(5)): write into tmp/, fsync
// the file, rename it into new/, fsync new/. Only then is the message
// durable, and only then may the server answer 250 (RFC 5321 §6.1).
type maildirs struct {
	root     string
	hostname string
	seq      atomic.Uint64
}

// dir returns the Maildir of addr, creating it. The address is lower-cased
// and reduced to characters safe in a file name.
func (m *maildirs) dir(addr string) (string, error) {
	name := safeName(strings.ToLower(addr))
	if name == "" || name == "." || name == ".." {
		return "", fmt.Errorf("maildir: unusable recipient address %q", addr)
	}
	d := filepath.Join(m.root, name)
	for _, sub := range []string{"tmp", "new", "cur"} {
		if err := os.MkdirAll(filepath.Join(d, sub), 0o700); err != nil {
			return "", err
		}
	}
	return d, nil
}

func safeName(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', strings.ContainsRune("@.-_+=", r):
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	return b.String()
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

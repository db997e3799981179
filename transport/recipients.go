package transport

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode/utf8"
)

// LocalRecipients is the table of the local recipients that exist, as
// Postfix's local_recipient_maps: a recipient in a local domain that is
// not in it is refused at RCPT with "550 5.1.1" (Check), so that no mail,
// and no mailbox, is ever made for an address nobody configured.
//
// It always holds postmaster, which RFC 5321 §4.5.1 requires every domain
// to accept. A bare name ("alice", "sales") is valid in every local
// domain; a full address only as written. Keys are folded with
// FoldAddress. Build it with NewLocalRecipients or ParseLocalRecipients and
// Add; it is safe for concurrent lookups once built.
type LocalRecipients struct {
	names map[string]bool // local parts valid in every local domain
	addrs map[string]bool // complete addresses
	local func(domain string) bool
}

// NewLocalRecipients returns a table holding postmaster. local reports
// whether a domain is local (delivered here).
func NewLocalRecipients(local func(domain string) bool) *LocalRecipients {
	return &LocalRecipients{names: map[string]bool{"postmaster": true}, addrs: map[string]bool{}, local: local}
}

// Add adds recipients without checking them (say, the logins of a
// BcryptTable): a bare name is valid in every local domain, an address in
// a local domain as written; an address outside the local domains is
// skipped (a login only). Add must not run concurrently with lookups.
func (t *LocalRecipients) Add(recipients ...string) {
	for _, r := range recipients {
		if at := strings.LastIndexByte(r, '@'); at < 0 {
			t.names[FoldAddress(r)] = true
		} else if t.local(foldDomain(r[at+1:])) {
			t.addrs[FoldAddress(r)] = true
		}
	}
}

// Has reports whether addr, a recipient in a local domain, exists. The
// bare "postmaster" (RFC 5321 §4.1.1.3) exists.
func (t *LocalRecipients) Has(addr string) bool {
	k := FoldAddress(addr)
	at := strings.LastIndexByte(k, '@')
	if at < 0 {
		return k == "postmaster"
	}
	return t.addrs[k] || (t.names[k[:at]] && t.local(k[at+1:]))
}

// ErrUnknownRecipient is wrapped by the error of Check.
var ErrUnknownRecipient = errors.New("transport: no such local recipient")

// Check returns nil if addr exists (Has), else Postfix's refusal for
// local_recipient_maps with RFC 3463 §3.2's X.1.1 "bad destination
// mailbox address": a *Error "550 5.1.1 <addr>: Recipient address
// rejected: User unknown in local recipient table" wrapping
// ErrUnknownRecipient. A RecipientChecker returns it at RCPT; a local
// Deliverer reports it for a recipient that left the table after it was
// accepted.
func (t *LocalRecipients) Check(addr string) error {
	if t.Has(addr) {
		return nil
	}
	return &Error{Code: 550, EnhancedCode: EnhancedCode{5, 1, 1}, Err: ErrUnknownRecipient,
		Message: "<" + printableText(addr) + ">: Recipient address rejected: User unknown in local recipient table"}
}

// FoldAddress is the one case rule for local recipients, for the table
// and for mailbox names: ASCII letters are lower-cased in the local part
// and in the domain, and a trailing dot of the domain is dropped.
// Non-ASCII characters are kept as they are: RFC 5321 §2.4 leaves the
// local part's case to the host, and Unicode case mapping is not applied,
// so "böb" and "BÖB" are two mailboxes (as in Postfix without
// smtputf8_enable's folding).
func FoldAddress(addr string) string {
	if at := strings.LastIndexByte(addr, '@'); at >= 0 {
		addr = addr[:at+1] + strings.TrimSuffix(addr[at+1:], ".")
	}
	b := []byte(addr)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

func foldDomain(d string) string { return strings.ToLower(strings.TrimSuffix(d, ".")) }

// printableText replaces control characters and invalid UTF-8 with '?',
// so that an address can be echoed in a reply line or a log.
func printableText(s string) string {
	return strings.Map(func(r rune) rune {
		if isControl(r) || r == utf8.RuneError {
			return '?'
		}
		return r
	}, s)
}

// ParseLocalRecipients reads a recipients file: one local recipient per
// line, either a full address (list@example.com, in a local domain) or a
// bare name (sales: valid in every local domain). Blank lines and lines
// starting with '#' are ignored. Each line must be printable UTF-8 without
// white space or the specials <>()[],;:\", with a local part of at most 64
// octets (RFC 5321 §4.5.3.1.1) and at most one '@'. Errors name the file
// (name) and line. The table also holds postmaster. Aliases (forwarding
// one address to others) are not supported: each recipient has its own
// mailbox.
func ParseLocalRecipients(name string, r io.Reader, local func(domain string) bool) (*LocalRecipients, error) {
	t := NewLocalRecipients(local)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 4096)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if err := checkLocalRecipient(line, local); err != nil {
			return nil, fmt.Errorf("%s line %d: %q: %v", name, n, printableText(line), err)
		}
		if strings.Contains(line, "@") {
			t.addrs[FoldAddress(line)] = true
		} else {
			t.names[FoldAddress(line)] = true
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s line %d: %v", name, n+1, err)
	}
	return t, nil
}

// checkLocalRecipient validates one line of a recipients file.
func checkLocalRecipient(s string, local func(string) bool) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("not UTF-8")
	}
	if printableText(s) != s || strings.ContainsAny(s, " \t\"\\<>()[],;:") {
		return fmt.Errorf("white space, a control character or a special character (<>()[],;:\\\") is not allowed")
	}
	lp, dom, hasAt := strings.Cut(s, "@")
	switch {
	case lp == "":
		return fmt.Errorf("empty local part")
	case len(lp) > 64:
		return fmt.Errorf("local part longer than 64 octets (RFC 5321 §4.5.3.1.1)")
	case strings.Contains(dom, "@"):
		return fmt.Errorf("more than one '@'")
	case hasAt && !local(foldDomain(dom)):
		return fmt.Errorf("%s is not a local domain", printableText(dom))
	}
	return nil
}

// LoadLocalRecipients reads the recipients file at path
// (ParseLocalRecipients).
func LoadLocalRecipients(path string, local func(domain string) bool) (*LocalRecipients, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParseLocalRecipients(path, f, local)
}

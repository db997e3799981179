package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode/utf8"

	"github.com/mailtls/mailtls/transport"
)

// recipientTable is the local recipient table, as Postfix's
// local_recipient_maps: the local recipients that exist. A recipient in a
// local domain that is not in it is refused at RCPT with "550 5.1.1"
// (inbound.CheckRecipient), so no mail, and no Maildir, is ever made for
// an address nobody configured.
//
// It holds the -users logins, the -recipients file, and postmaster (RFC
// 5321 §4.5.1 requires every domain to accept it). A bare name (a login
// "alice", a file line "sales") is valid in every local domain; a full
// address only as written. Keys are folded with foldAddress.
type recipientTable struct {
	names map[string]bool // local parts valid in every local domain
	addrs map[string]bool // complete addresses
	local func(domain string) bool
}

// newRecipientTable builds the table from bare names or addresses (the
// -users logins; an address outside the local domains is a login only and
// is skipped) and a parsed -recipients file (nil for none).
func newRecipientTable(local func(string) bool, logins []string, file *recipientTable) *recipientTable {
	t := &recipientTable{names: map[string]bool{"postmaster": true}, addrs: map[string]bool{}, local: local}
	for _, l := range logins {
		if at := strings.LastIndexByte(l, '@'); at < 0 {
			t.names[foldAddress(l)] = true
		} else if local(domainOf(l)) {
			t.addrs[foldAddress(l)] = true
		}
	}
	if file != nil {
		for k := range file.names {
			t.names[k] = true
		}
		for k := range file.addrs {
			t.addrs[k] = true
		}
	}
	return t
}

// has reports whether addr, a recipient in a local domain, exists. The
// bare "postmaster" (RFC 5321 §4.1.1.3) exists.
func (t *recipientTable) has(addr string) bool {
	k := foldAddress(addr)
	at := strings.LastIndexByte(k, '@')
	if at < 0 {
		return k == "postmaster"
	}
	return t.addrs[k] || (t.names[k[:at]] && t.local(k[at+1:]))
}

// errUnknownRecipient is the refusal of a local recipient that is not in
// the table: Postfix's text for local_recipient_maps, with RFC 3463 §3.2's
// X.1.1 "bad destination mailbox address".
func errUnknownRecipient(addr string) *transport.Error {
	return &transport.Error{Code: 550, EnhancedCode: transport.EnhancedCode{5, 1, 1},
		Message: "<" + printable(addr) + ">: Recipient address rejected: User unknown in local recipient table"}
}

// printable replaces control characters and invalid UTF-8, so that an
// address can be echoed in a reply line or a log.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == utf8.RuneError {
			return '?'
		}
		return r
	}, s)
}

// foldAddress is the one case rule for local recipients, used for the
// table and for Maildir names: ASCII letters are lower-cased in the local
// part and in the domain, and a trailing dot of the domain is dropped.
// Non-ASCII characters are kept as they are: RFC 5321 §2.4 leaves the local
// part's case to the host, and Unicode case mapping is not applied, so
// "böb" and "BÖB" are two mailboxes (as in Postfix without
// smtputf8_enable's folding).
func foldAddress(addr string) string {
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

// parseRecipients reads a -recipients file: one local recipient per line,
// either a full address (list@example.com, in a local domain) or a bare
// name (sales: valid in every local domain). Blank lines and lines
// starting with '#' are ignored. Errors name the file and line. local
// reports whether a domain is local. Aliases (forwarding one address to
// others) are not supported: each recipient has its own Maildir.
func parseRecipients(name string, r io.Reader, local func(string) bool) (*recipientTable, error) {
	t := &recipientTable{names: map[string]bool{}, addrs: map[string]bool{}, local: local}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 4096)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if err := checkRecipient(line, local); err != nil {
			return nil, fmt.Errorf("%s line %d: %q: %v", name, n, printable(line), err)
		}
		if strings.Contains(line, "@") {
			t.addrs[foldAddress(line)] = true
		} else {
			t.names[foldAddress(line)] = true
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s line %d: %v", name, n+1, err)
	}
	return t, nil
}

// checkRecipient validates one -recipients line: printable UTF-8, no white
// space, a local part of at most 64 octets (RFC 5321 §4.5.3.1.1), at most
// one '@', and a domain that is local.
func checkRecipient(s string, local func(string) bool) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("not UTF-8")
	}
	if printable(s) != s || strings.ContainsAny(s, " \t\"\\<>()[],;:") {
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
	case hasAt && !local(domainOf(s)):
		return fmt.Errorf("%s is not a local domain (-local-domains, -hostname)", printable(dom))
	}
	return nil
}

// loadRecipients reads the -recipients file.
func loadRecipients(path string, local func(string) bool) (*recipientTable, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseRecipients(path, f, local)
}

// isLocalDomain reports whether domain is delivered here: one of
// -local-domains, or -hostname itself (as Postfix's mydestination includes
// $myhostname), whose postmaster RFC 5321 §4.5.1 requires.
func (c *Config) isLocalDomain(domain string) bool {
	return c.isLocal(domain) || strings.EqualFold(strings.TrimSuffix(domain, "."), c.Hostname)
}

// localRecipients builds the table of newRelay: the logins of auth (when
// it is the -users table), the -recipients file, and postmaster.
func localRecipients(cfg *Config, auth transport.Authenticator) (*recipientTable, error) {
	var file *recipientTable
	if cfg.RecipientsFile != "" {
		t, err := loadRecipients(cfg.RecipientsFile, cfg.isLocalDomain)
		if err != nil {
			return nil, fmt.Errorf("-recipients: %w", err)
		}
		file = t
	}
	var logins []string
	if t, ok := auth.(*transport.BcryptTable); ok {
		logins = t.Users()
	}
	return newRecipientTable(cfg.isLocalDomain, logins, file), nil
}

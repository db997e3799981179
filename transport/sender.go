package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode"
)

// ErrSenderNotOwned is wrapped by the *Error SenderLogins.CheckSender
// returns when the authenticated login does not own the reverse-path.
var ErrSenderNotOwned = errors.New("transport: sender address not owned by the authenticated user")

// SenderLogins binds reverse-paths to the logins allowed to use them, as
// Postfix's smtpd_sender_login_maps with reject_authenticated_sender_login_mismatch
// does: a client that authenticated (RFC 4954) may give as MAIL FROM only an
// address the table lets its login use. Call CheckSender from a Handler's
// SenderChecker on submission listeners.
//
// The rules, in order:
//   - The null reverse-path (<>) is allowed to every login. RFC 5321 §4.5.5
//     reserves it for notifications that must not be answered, which mail
//     clients legitimately send (read receipts, RFC 8098 §2.1; vacation
//     replies, RFC 5230 §5.1); it names no address, so it cannot be used
//     to pass as another user.
//   - A login that is itself an address may send as that address without a
//     table entry (the rule most submission servers apply; Postfix needs it
//     listed).
//   - Otherwise the most specific entry decides: the address's own entry if
//     there is one, else its domain's "@domain" entry. The login must be
//     listed there; an address with neither entry is refused. A domain entry
//     covers that domain only, not its subdomains, and does not widen an
//     address entry: list a login on both if it should send as both.
//
// Addresses are compared case-insensitively, the local part included, as
// Postfix's hash: tables fold their keys (a mailbox whose owner relies on
// case in its local part does not exist in practice). Logins are compared
// exactly, as the Authenticator identified them (Postfix folds them too).
// Sub-addresses ("alice+tag@") need their own entry or a domain entry. A
// SenderLogins is immutable once built and safe for concurrent use.
type SenderLogins struct {
	owners map[string][]string // folded address or "@domain" → logins
}

// ParseSenderLogins reads a sender-login table in the format of a Postfix
// smtpd_sender_login_maps source file: one entry per line,
//
//	sender-address-or-@domain  login[,login...]
//
// with logins separated by commas and/or white space. A line that starts
// with white space continues the previous entry's login list; blank lines
// and lines whose first non-blank character is '#' are ignored. Addresses
// are written without angle brackets. name is used in error messages
// ("senders line 3: ..."); an entry without a login, a key that is not an
// address or "@domain", a key listed twice (case-insensitively) and control
// characters are errors.
func ParseSenderLogins(name string, r io.Reader) (*SenderLogins, error) {
	m := &SenderLogins{owners: make(map[string][]string)}
	lineOf := make(map[string]int) // key → line it was defined on
	last := ""                     // key of the entry a continuation line extends
	err := scanTable(name, r, func(n int, raw, line string) error {
		if raw[0] == ' ' || raw[0] == '\t' {
			if last == "" {
				return errors.New("continuation line without an entry")
			}
			logins := splitLogins(line)
			if err := checkLogins(logins); err != nil {
				return err
			}
			m.owners[last] = append(m.owners[last], logins...)
			return nil
		}
		sender, rest := line, ""
		if i := strings.IndexAny(line, " \t"); i >= 0 {
			sender, rest = line[:i], line[i+1:]
		}
		if prev, dup := lineOf[foldSender(sender)]; dup {
			return fmt.Errorf("duplicate entry %q (line %d)", sender, prev)
		}
		key, err := m.add(sender, splitLogins(rest))
		if err != nil {
			return err
		}
		lineOf[key], last = n, key
		return nil
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

// SenderLogin is one entry of a SenderLogins table: the logins that may use
// Sender, an address or "@domain", as the reverse-path.
type SenderLogin struct {
	Sender string
	Logins []string
}

// NewSenderLogins builds a table from entries, with the checks of
// ParseSenderLogins: Sender must be an address or "@domain" listed once
// (case-insensitively), with at least one login; logins hold no comma,
// white space or control character.
func NewSenderLogins(entries ...SenderLogin) (*SenderLogins, error) {
	m := &SenderLogins{owners: make(map[string][]string, len(entries))}
	for i, e := range entries {
		if _, err := m.add(e.Sender, slices.Clone(e.Logins)); err != nil {
			return nil, fmt.Errorf("transport: sender logins entry %d: %w", i+1, err)
		}
	}
	return m, nil
}

// add checks and adds a new entry and returns its key.
func (m *SenderLogins) add(sender string, logins []string) (string, error) {
	if !validSenderKey(sender) {
		return "", fmt.Errorf("%q: want an address or @domain", sender)
	}
	key := foldSender(sender)
	if _, dup := m.owners[key]; dup {
		return "", fmt.Errorf("duplicate entry %q", sender)
	}
	if len(logins) == 0 {
		return "", fmt.Errorf("%s: no login", sender)
	}
	if err := checkLogins(logins); err != nil {
		return "", err
	}
	m.owners[key] = logins
	return key, nil
}

// splitLogins splits a login list at commas and white space.
func splitLogins(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || unicode.IsSpace(r) })
}

func checkLogins(logins []string) error {
	for _, l := range logins {
		if l == "" || strings.ContainsFunc(l, func(r rune) bool { return r == ',' || unicode.IsSpace(r) }) || badAddressText(l) {
			return fmt.Errorf("login %q: empty, or a comma, white space, control character or invalid UTF-8", l)
		}
	}
	return nil
}

// LoadSenderLogins reads the sender-login table at path; see
// ParseSenderLogins.
func LoadSenderLogins(path string) (*SenderLogins, error) {
	return loadTable(path, "sender login table", ParseSenderLogins)
}

// Len returns the number of entries.
func (m *SenderLogins) Len() int { return len(m.owners) }

// Owns reports whether login may use sender as the reverse-path, by the
// rules of SenderLogins. An empty login owns nothing but the null
// reverse-path.
func (m *SenderLogins) Owns(login, sender string) bool {
	if sender == "" {
		return true // RFC 5321 §4.5.5
	}
	if login == "" {
		return false
	}
	key := foldSender(sender)
	if strings.Contains(login, "@") && foldSender(login) == key {
		return true
	}
	owners, ok := m.owners[key]
	if !ok {
		at := strings.LastIndexByte(key, '@')
		if at <= 0 {
			return false
		}
		owners = m.owners[key[at:]]
	}
	return slices.Contains(owners, login)
}

// CheckSender is the check a Handler's SenderChecker makes on submission
// listeners (Postfix's reject_authenticated_sender_login_mismatch): nil
// when env.AuthIdentity is empty (the client did not authenticate) or owns
// env.From, otherwise an *Error wrapping ErrSenderNotOwned with Postfix's
// reply, "553 5.7.1 <addr>: Sender address rejected: not owned by user
// LOGIN" (RFC 3463 X.7.1: delivery not authorized).
func (m *SenderLogins) CheckSender(_ context.Context, env *Envelope) error {
	if env.AuthIdentity == "" || m.Owns(env.AuthIdentity, env.From) {
		return nil
	}
	return &Error{
		Code:         553,
		EnhancedCode: EnhancedCode{5, 7, 1},
		Message:      "<" + printable(env.From) + ">: Sender address rejected: not owned by user " + printable(env.AuthIdentity),
		Command:      "MAIL",
		Err:          ErrSenderNotOwned,
	}
}

// foldSender is the lookup form of an address or "@domain" key: lower
// case, local part included.
func foldSender(s string) string { return strings.ToLower(s) }

// validSenderKey reports whether k is "local@domain" or "@domain" with a
// non-empty domain, without angle brackets, and with nothing the Server
// refuses in a reverse-path (badAddressText).
func validSenderKey(k string) bool {
	at := strings.LastIndexByte(k, '@')
	return at >= 0 && at < len(k)-1 && !strings.ContainsAny(k, "<>") && !badAddressText(k)
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) }

// printable replaces control characters with '?', for text that goes
// into a reply line or a log.
func printable(s string) string {
	if !strings.ContainsFunc(s, isControl) {
		return s
	}
	return strings.Map(func(r rune) rune {
		if isControl(r) {
			return '?'
		}
		return r
	}, s)
}

package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	sasl "github.com/emersion/go-sasl"
	"golang.org/x/crypto/bcrypt"
)

// Authenticator checks the credentials of AUTH PLAIN and AUTH LOGIN
// (RFC 4954, RFC 4616), which a Server accepts only under TLS.
//
// Authenticate returns nil for good credentials, an error wrapping
// ErrAuthFailed for bad ones (the client gets "535 5.7.8" and the failure
// counts against its address), and any other error when it cannot decide
// (the client gets "454 4.7.0 Temporary authentication failure"; the
// failure does not count). Implementations must be safe for concurrent use
// and honour ctx.
type Authenticator interface {
	Authenticate(ctx context.Context, username, password string) error
}

// AuthenticatorFunc adapts a function to Authenticator.
type AuthenticatorFunc func(ctx context.Context, username, password string) error

// Authenticate calls f.
func (f AuthenticatorFunc) Authenticate(ctx context.Context, username, password string) error {
	return f(ctx, username, password)
}

var _ Authenticator = AuthenticatorFunc(nil)

// ErrAuthFailed is the sentinel an Authenticator wraps to reject credentials
// (RFC 4954 §6 "535 5.7.8 Authentication credentials invalid").
var ErrAuthFailed = errors.New("transport: authentication credentials invalid")

// BcryptTable is an Authenticator backed by a table of bcrypt password
// hashes (golang.org/x/crypto/bcrypt), loaded from lines "user:hash" as
// written by `htpasswd -nbB user password` (the "$2y$" prefix is accepted).
// It is immutable once built and safe for concurrent use.
type BcryptTable struct {
	users map[string][]byte
	dummy []byte // hashed with the same cost, compared for unknown users
}

// MaxBcryptCost is the highest bcrypt cost a users file may use. Every
// AUTH attempt for a user, and for an unknown name, costs one comparison
// at that cost, which a client chooses to make: cost 14 takes about a
// second of a core, and each step doubles it (htpasswd -B uses 5,
// bcrypt.DefaultCost is 10).
const MaxBcryptCost = 14

// checkBcryptCost refuses a cost above MaxBcryptCost.
func checkBcryptCost(c int) error {
	if c > MaxBcryptCost {
		return fmt.Errorf("bcrypt cost %d is above the maximum %d (every AUTH attempt would cost %d times a cost-%d check)",
			c, MaxBcryptCost, 1<<(c-MaxBcryptCost), MaxBcryptCost)
	}
	return nil
}

// ParseBcryptTable reads a users file: one "user:bcrypt-hash" per line;
// blank lines and lines starting with '#' are ignored. name is used in
// error messages ("users.txt line 3: ..."). A duplicate user, an empty
// name, a hash bcrypt cannot read or a cost above MaxBcryptCost is an
// error.
func ParseBcryptTable(name string, r io.Reader) (*BcryptTable, error) {
	t := &BcryptTable{users: make(map[string][]byte)}
	cost := 0 // the dummy hash matches the table's highest cost
	err := scanTable(name, r, func(_ int, _, line string) error {
		user, hash, ok := strings.Cut(line, ":")
		if !ok {
			return errors.New("want user:bcrypt-hash")
		}
		if user == "" {
			return errors.New("empty user name")
		}
		if _, dup := t.users[user]; dup {
			return fmt.Errorf("duplicate user %q", user)
		}
		c, err := bcrypt.Cost([]byte(hash))
		if err != nil {
			return fmt.Errorf("user %q: not a bcrypt hash: %w", user, err)
		}
		if err := checkBcryptCost(c); err != nil {
			return fmt.Errorf("user %q: %w", user, err)
		}
		cost = max(cost, c)
		t.users[user] = []byte(hash)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if cost == 0 {
		cost = bcrypt.DefaultCost
	}
	dummy, err := bcrypt.GenerateFromPassword([]byte("mailtls unknown user"), cost)
	if err != nil {
		return nil, fmt.Errorf("transport: %s: %w", name, err)
	}
	t.dummy = dummy
	return t, nil
}

// LoadBcryptTable reads the users file at path; see ParseBcryptTable.
func LoadBcryptTable(path string) (*BcryptTable, error) {
	return loadTable(path, "users file", ParseBcryptTable)
}

// Len returns the number of users.
func (t *BcryptTable) Len() int { return len(t.users) }

// Users returns the user names, sorted: for example to accept mail for
// them as local recipients (Postfix's local_recipient_maps).
func (t *BcryptTable) Users() []string {
	return slices.Sorted(maps.Keys(t.users))
}

// Authenticate checks password against username's hash. Unknown users cost
// the same bcrypt comparison as known ones, so timing does not reveal which
// names exist. Failures wrap ErrAuthFailed.
func (t *BcryptTable) Authenticate(ctx context.Context, username, password string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	hash, ok := t.users[username]
	if !ok {
		bcrypt.CompareHashAndPassword(t.dummy, []byte(password))
		return fmt.Errorf("%w: unknown user", ErrAuthFailed)
	}
	if err := bcrypt.CompareHashAndPassword(hash, []byte(password)); err != nil {
		return fmt.Errorf("%w: wrong password", ErrAuthFailed)
	}
	return nil
}

// loginServer is the server side of the obsolete but ubiquitous LOGIN
// mechanism (draft-murchison-sasl-login-00), which go-sasl does not provide:
// challenges "Username:" and "Password:", an optional initial response
// carrying the user name.
type loginServer struct {
	authenticate func(username, password string) error
	username     *string
	done         bool
}

func (l *loginServer) Next(response []byte) ([]byte, bool, error) {
	if l.done {
		return nil, false, sasl.ErrUnexpectedClientResponse
	}
	if l.username == nil {
		if response == nil {
			return []byte("Username:"), false, nil
		}
		u := string(response)
		l.username = &u
		return []byte("Password:"), false, nil
	}
	l.done = true
	return nil, true, l.authenticate(*l.username, string(response))
}

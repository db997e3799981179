package transport

import (
	"errors"
	"fmt"
	"net"
	"os"
	"reflect"
	"strings"

	"github.com/mailtls/mailtls/policy"
)

// ErrConfig is wrapped by the errors of Connector.Validate (and of Deliver
// when it finds the same mistakes): the configuration cannot deliver any
// message, and retrying will not help.
var ErrConfig = errors.New("transport: invalid configuration")

// Validate checks the Connector's configuration once, so that a mistake
// that would defer every message (until the queue gives up on it days
// later) is reported when the program starts. transport/queue's Queue.Run
// calls it and refuses to start; Deliver makes the same checks on every
// call. The error wraps ErrConfig and names the field. It checks:
//
//   - Hostname, the EHLO name (RFC 5321 §4.1.1.1): a fully-qualified
//     domain name (with a dot, RFC 5321 §2.3.5) or an IP address (sent as
//     an address literal, §4.1.3), never "localhost" or a name under it.
//     An empty Hostname means this host's name (os.Hostname) when it is
//     such a name, as Server's does and as Postfix's myhostname does;
//     otherwise it is an error.
//   - Routes: each has a Domain ("example.com", ".example.com" or "*";
//     "*.example.com" is refused, since it would never match), no two
//     have the same Domain (the second would never match), NextHop parses,
//     and ImplicitTLS and Auth come with a NextHop (credentials are for a
//     smarthost, not for every MX host of the route's domains).
//   - Port is 0 to 65535.
//   - Policy and each Route.Policy are not a nil pointer in a non-nil
//     interface (a nil *policy.Table), which would panic at delivery.
func (c *Connector) Validate() error {
	if err := c.validateHostname(); err != nil {
		return err
	}
	if c.Port < 0 || c.Port > 65535 {
		return fmt.Errorf("%w: Connector.Port %d is not a port", ErrConfig, c.Port)
	}
	if err := nilPolicy("Connector.Policy", c.Policy); err != nil {
		return err
	}
	seen := map[string]int{}
	for i, r := range c.Routes {
		where := fmt.Sprintf("Connector.Routes[%d]", i)
		d := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(r.Domain), "."))
		switch {
		case d == "":
			return fmt.Errorf("%w: %s: Domain is empty (want \"example.com\", \".example.com\" or \"*\")", ErrConfig, where)
		case strings.HasPrefix(d, "*."):
			return fmt.Errorf("%w: %s: Domain %q: write %q for the subdomains of %s", ErrConfig, where, r.Domain, d[1:], d[2:])
		case d != "*" && (!validHost(strings.TrimPrefix(d, ".")) || net.ParseIP(strings.TrimPrefix(d, ".")) != nil):
			return fmt.Errorf("%w: %s: Domain %q is not a domain", ErrConfig, where, r.Domain)
		}
		if j, ok := seen[d]; ok {
			return fmt.Errorf("%w: %s has the same Domain %q as Routes[%d], so it would never be used", ErrConfig, where, r.Domain, j)
		}
		seen[d] = i
		if r.NextHop != "" {
			if _, err := parseNextHop(r.NextHop); err != nil {
				return fmt.Errorf("%w: %s: %w", ErrConfig, where, err)
			}
		} else {
			if r.ImplicitTLS {
				return fmt.Errorf("%w: %s (%q): ImplicitTLS needs a NextHop (MX hosts use STARTTLS on port 25)", ErrConfig, where, r.Domain)
			}
			if r.Auth != nil {
				return fmt.Errorf("%w: %s (%q): Auth needs a NextHop (credentials are for a smarthost, not for every MX host)", ErrConfig, where, r.Domain)
			}
		}
		if err := nilPolicy(where+".Policy", r.Policy); err != nil {
			return err
		}
	}
	return nil
}

func (c *Connector) validateHostname() error {
	h := c.hostname()
	if h == "" {
		return fmt.Errorf("%w: Connector.Hostname is required (the EHLO name, RFC 5321 §4.1.1.1), and this host's name %q is not a fully qualified domain name",
			ErrConfig, c.osName)
	}
	if msg := hostnameProblem(h); msg != "" {
		return fmt.Errorf("%w: Connector.Hostname %q %s", ErrConfig, h, msg)
	}
	return nil
}

// hostname is Hostname, or this host's name when Hostname is empty and
// the host's name is fully qualified (see hostnameDefault); "" otherwise.
func (c *Connector) hostname() string {
	if h := strings.TrimSpace(c.Hostname); h != "" {
		return h
	}
	c.init()
	return hostnameDefault(c.osName)
}

// hostnameProblem says why h cannot be an EHLO or greeting name, "" if it
// can: a fully-qualified domain name (RFC 5321 §2.3.5) or an IP address,
// bracketed or not, and not localhost.
func hostnameProblem(h string) string {
	if ip := net.ParseIP(strings.TrimPrefix(strings.Trim(h, "[]"), "IPv6:")); ip != nil {
		return ""
	}
	name := strings.ToLower(strings.TrimSuffix(h, "."))
	switch {
	case name == "localhost" || strings.HasPrefix(name, "localhost."):
		return "must be this host's public name, not localhost"
	case !validHost(name):
		return "is not a host name"
	case !strings.Contains(name, "."):
		return "is not fully qualified (RFC 5321 §2.3.5: a domain name with a dot)"
	}
	return ""
}

// hostnameDefault is the name a Server or Connector without Hostname
// uses: osName (this host's name, os.Hostname) without a trailing dot,
// when it is a fully-qualified domain name that hostnameProblem accepts
// and not an IP address; "" otherwise.
func hostnameDefault(osName string) string {
	h := strings.TrimSuffix(strings.TrimSpace(osName), ".")
	if h == "" || net.ParseIP(h) != nil || hostnameProblem(h) != "" {
		return ""
	}
	return h
}

// osHostname is os.Hostname, "" on error.
func osHostname() string {
	h, err := os.Hostname()
	if err != nil {
		return ""
	}
	return h
}

// nilPolicy reports a nil pointer stored in p, which p != nil does not
// catch and which would panic at the first lookup.
func nilPolicy(field string, p policy.Policy) error {
	if p == nil {
		return nil
	}
	if v := reflect.ValueOf(p); v.Kind() == reflect.Pointer && v.IsNil() {
		return fmt.Errorf("%w: %s is a nil %T", ErrConfig, field, p)
	}
	return nil
}

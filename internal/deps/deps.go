//go:build tools

// Package deps pins the module's chosen dependencies (see DESIGN.md) while
// the packages that use them are being written. It is never built.
package deps

import (
	_ "github.com/emersion/go-message"
	_ "github.com/emersion/go-msgauth/dkim"
	_ "github.com/emersion/go-sasl"
	_ "github.com/emersion/go-smtp"
	_ "github.com/foxcpp/go-mockdns"
	_ "github.com/miekg/dns"
	_ "golang.org/x/crypto/bcrypt"
)

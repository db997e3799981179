package transport

import "testing"

// The name a Server or Connector without Hostname uses: this host's name
// only when it is fully qualified, never localhost or an address.
func TestHostnameDefault(t *testing.T) {
	for _, tt := range []struct{ os, want string }{
		{"mail.example.com", "mail.example.com"},
		{"mail.example.com.", "mail.example.com"},
		{" MX1.Example.Org ", "MX1.Example.Org"},
		{"vm", ""},
		{"", ""},
		{"localhost", ""},
		{"localhost.localdomain", ""},
		{"192.0.2.1", ""},
		{"::1", ""},
		{"bad host.example", ""},
		{"a..b", ""},
	} {
		if got := hostnameDefault(tt.os); got != tt.want {
			t.Errorf("hostnameDefault(%q) = %q, want %q", tt.os, got, tt.want)
		}
	}
}

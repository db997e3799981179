package transport_test

import (
	"context"
	"fmt"
	"log"
	"strings"

	"github.com/mailtls/mailtls/transport"
)

// submission is a Handler for a submission listener that binds senders to
// logins: as a SenderChecker, the Server asks it at MAIL FROM.
type submission struct {
	transport.Handler // the queue
	logins            *transport.SenderLogins
}

func (h submission) CheckSender(ctx context.Context, env *transport.Envelope) error {
	return h.logins.CheckSender(ctx, env)
}

var _ transport.SenderChecker = submission{}

// ExampleSenderLogins loads a table in the format of Postfix's
// smtpd_sender_login_maps and shows which reverse-paths an authenticated
// login may use; a submission Handler calls CheckSender from its own
// CheckSender, as the submission type above does.
func ExampleSenderLogins() {
	logins, err := transport.ParseSenderLogins("senders", strings.NewReader(`
# sender-address-or-@domain  login[,login...]
alice@example.org     alice
sales@example.org     alice, bob
@shop.example.org     bob
`))
	if err != nil {
		log.Fatal(err)
	}
	for _, c := range [][2]string{
		{"alice", "alice@example.org"},
		{"alice", "Sales@Example.org"},
		{"bob", "orders@shop.example.org"},
		{"bob", "alice@example.org"},
		{"carol@example.org", "carol@example.org"}, // a login that is an address
		{"bob", ""}, // the null reverse-path
	} {
		fmt.Printf("%-18s as <%s>: %v\n", c[0], c[1], logins.Owns(c[0], c[1]))
	}
	env := &transport.Envelope{From: "alice@example.org", AuthIdentity: "bob"}
	err = logins.CheckSender(context.Background(), env)
	if e, ok := transport.AsError(err); ok {
		fmt.Println(e.Reply())
	}
	// Output:
	// alice              as <alice@example.org>: true
	// alice              as <Sales@Example.org>: true
	// bob                as <orders@shop.example.org>: true
	// bob                as <alice@example.org>: false
	// carol@example.org  as <carol@example.org>: true
	// bob                as <>: true
	// 553 5.7.1 <alice@example.org>: Sender address rejected: not owned by user bob
}

// ExampleNewSenderLogins builds the table in code, for example from a user
// database: each login may send as its address in two local domains.
func ExampleNewSenderLogins() {
	var entries []transport.SenderLogin
	for _, login := range []string{"alice", "bob"} {
		for _, domain := range []string{"example.org", "example.net"} {
			entries = append(entries, transport.SenderLogin{Sender: login + "@" + domain, Logins: []string{login}})
		}
	}
	logins, err := transport.NewSenderLogins(entries...)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(logins.Owns("bob", "bob@example.net"), logins.Owns("bob", "alice@example.net"))
	// Output: true false
}

package transport_test

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"

	sasl "github.com/emersion/go-sasl"
	smtp "github.com/emersion/go-smtp"

	"github.com/mailtls/mailtls/transport"
	"github.com/mailtls/mailtls/transport/transporttest"
)

// ExampleAuthenticatorFunc checks AUTH credentials with a function: here a
// fixed table, in an application its user store. Wrapping ErrAuthFailed
// rejects the credentials with "535 5.7.8" (RFC 4954 §6); any other error
// answers "454 4.7.0", a temporary failure the client retries.
func ExampleAuthenticatorFunc() {
	users := map[string]string{"alice": "wonderland"}
	auth := transport.AuthenticatorFunc(func(ctx context.Context, username, password string) error {
		want, ok := users[username]
		if !ok || subtle.ConstantTimeCompare([]byte(password), []byte(want)) != 1 {
			return fmt.Errorf("user %q: %w", username, transport.ErrAuthFailed)
		}
		return nil
	})

	// A submission server (RFC 6409: STARTTLS, then AUTH, before MAIL),
	// on loopback with a test certificate. In a test, use
	// transporttest.NewTransportServer(t, srv).
	srv, err := transporttest.StartTransportServer(&transport.Server{
		Hostname:      "submit.example.org",
		Kind:          transport.KindSubmission,
		Authenticator: auth,
	})
	if err != nil {
		panic(err)
	}
	defer srv.Close()

	for _, password := range []string{"guess", "wonderland"} {
		c, err := smtp.DialStartTLS(srv.Addr, srv.ClientTLSConfig())
		if err != nil {
			panic(err)
		}
		err = c.Auth(sasl.NewPlainClient("", "alice", password))
		var reply *smtp.SMTPError
		if errors.As(err, &reply) {
			fmt.Printf("alice/%s: %d %d.%d.%d\n", password, reply.Code, reply.EnhancedCode[0], reply.EnhancedCode[1], reply.EnhancedCode[2])
		} else {
			fmt.Printf("alice/%s: %v\n", password, err)
		}
		if err == nil {
			err = c.SendMail("alice@example.org", []string{"bob@example.net"}, strings.NewReader("Subject: hi\r\n\r\nHello.\r\n"))
			fmt.Println("sent:", err == nil)
		}
		c.Quit()
	}
	fmt.Println("messages accepted:", len(srv.Messages()), "authenticated as", srv.Messages()[0].Envelope.AuthIdentity)
	// Output:
	// alice/guess: 535 5.7.8
	// alice/wonderland: <nil>
	// sent: true
	// messages accepted: 1 authenticated as alice
}

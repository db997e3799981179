package transport_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"strings"
	"time"

	smtp "github.com/emersion/go-smtp"

	"github.com/mailtls/mailtls/policy"
	"github.com/mailtls/mailtls/transport"
	"github.com/mailtls/mailtls/transport/transporttest"
)

// ExampleServer stands up an MX-style listener that requires STARTTLS
// (the zero policy.Inbound), sends it one message over STARTTLS and shows
// what the Handler received.
func ExampleServer() {
	ca := transporttest.MustCA("example CA")
	cert := ca.MustIssue(transporttest.LeafOptions{DNSNames: []string{"mx.example"}})

	received := make(chan string, 1)
	srv := &transport.Server{
		Hostname:  "mx.example",
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert.TLS}},
		Inbound:   policy.Inbound{}, // require TLS, TLS 1.2+, 128-bit ciphers
		Handler: transport.HandlerFunc(func(ctx context.Context, env *transport.Envelope, body io.Reader) error {
			// A real Handler writes body to durable storage and fsyncs
			// before returning nil: only then does the client get 250.
			b, err := io.ReadAll(body)
			if err != nil {
				return err
			}
			received <- fmt.Sprintf("from=%s to=%s tls=%s\nfirst line: %s",
				env.From, env.Recipients[0].Address, env.TLS.VersionName(), strings.SplitN(string(b), "\r\n", 2)[0])
			return nil
		}),
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go srv.Serve(l)
	defer srv.Shutdown(context.Background())

	// A client: plaintext MAIL would get "530 5.7.0 Must issue a STARTTLS
	// command first"; with STARTTLS it goes through.
	c, err := smtp.DialStartTLS(l.Addr().String(), &tls.Config{RootCAs: ca.Pool, ServerName: "mx.example"})
	if err != nil {
		log.Fatal(err)
	}
	if err := c.SendMail("alice@example.org", []string{"bob@example.net"}, strings.NewReader("Subject: hi\r\n\r\nHello.\r\n")); err != nil {
		log.Fatal(err)
	}
	c.Quit()

	select {
	case s := <-received:
		fmt.Println(s)
	case <-time.After(10 * time.Second):
		fmt.Println("timeout")
	}
	// Output:
	// from=alice@example.org to=bob@example.net tls=TLSv1.3
	// first line: Received: from localhost ([127.0.0.1])
}

// ExampleParseBcryptTable loads credentials for AUTH PLAIN/LOGIN from lines
// "user:bcrypt-hash" (as `htpasswd -nbB user password` prints them).
func ExampleParseBcryptTable() {
	// alice's password is "wonderland" (cost 4 to keep the example fast;
	// use bcrypt.DefaultCost or more in production).
	users := "# submission users\nalice:$2a$04$u9fX5FoH5O/dzjJM/Z6y1.WKr5oY/GSmUd5XkRlOmhWnAmmRNJiqy\n"
	tab, err := transport.ParseBcryptTable("users.txt", strings.NewReader(users))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(tab.Len(), "user")
	fmt.Println(tab.Authenticate(context.Background(), "alice", "wonderland"))
	_, err = transport.ParseBcryptTable("users.txt", strings.NewReader("bob:secret\n"))
	fmt.Println(err)
	// Output:
	// 1 user
	// <nil>
	// transport: users.txt line 1: user "bob": not a bcrypt hash: crypto/bcrypt: hashedSecret too short to be a bcrypted password
}

// noRelay is a Handler that accepts mail for example.net only, refusing
// other recipients at RCPT unless the client authenticated.
type noRelay struct{ transport.HandlerFunc }

func (noRelay) CheckRecipient(_ context.Context, env *transport.Envelope, rcpt transport.Recipient) error {
	if strings.HasSuffix(rcpt.Address, "@example.net") || env.AuthIdentity != "" {
		return nil
	}
	return &transport.Error{Code: 554, EnhancedCode: transport.EnhancedCode{5, 7, 1}, Message: "Relay access denied"}
}

// ExampleRecipientChecker refuses relaying at RCPT, before the client sends
// any of the message (RFC 5321 §3.6.2).
func ExampleRecipientChecker() {
	ca := transporttest.MustCA("example CA")
	cert := ca.MustIssue(transporttest.LeafOptions{DNSNames: []string{"mx.example"}})
	srv := &transport.Server{
		Hostname:  "mx.example",
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert.TLS}},
		Handler: noRelay{func(_ context.Context, env *transport.Envelope, body io.Reader) error {
			_, err := io.Copy(io.Discard, body)
			return err
		}},
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go srv.Serve(l)
	defer srv.Shutdown(context.Background())

	c, err := smtp.DialStartTLS(l.Addr().String(), &tls.Config{RootCAs: ca.Pool, ServerName: "mx.example"})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if err := c.Mail("alice@example.org", nil); err != nil {
		log.Fatal(err)
	}
	fmt.Println(c.Rcpt("bob@example.net", nil))
	var se *smtp.SMTPError
	if errors.As(c.Rcpt("victim@elsewhere.example", nil), &se) {
		fmt.Printf("%d %d.%d.%d %s\n", se.Code, se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2], se.Message)
	}
	// Output:
	// <nil>
	// 554 5.7.1 Relay access denied
}

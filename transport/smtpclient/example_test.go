package smtpclient_test

import (
	"context"
	"fmt"

	"github.com/mailtls/mailtls/transport/smtpclient"
)

// Example sends one message with DATA and one with BDAT over a single
// STARTTLS session to a go-smtp server on loopback.
func Example() {
	be := &backend{}
	addr, cfg, stop, err := startServer(be, true)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stop()

	ctx := context.Background()
	d := &smtpclient.Dialer{TLSConfig: cfg, Hello: "client.test"}
	c, err := d.Dial(ctx, addr)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	body := "Subject: hello\r\n\r\nHello.\r\n"
	fmt.Println(c.Send(ctx, "a@client.test", "b@mx.test", body, false))
	fmt.Println(c.Send(ctx, "a@client.test", "b@mx.test", body, true))
	fmt.Println(c.Quit(ctx))
	fmt.Println(len(be.got()), "messages received")
	// Output:
	// <nil>
	// <nil>
	// <nil>
	// 2 messages received
}

package admin_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/mailtls/mailtls/transport"
	"github.com/mailtls/mailtls/transport/queue"
	"github.com/mailtls/mailtls/transport/queue/admin"
)

// An application that runs a Queue serves it on a socket in its own
// 0700 directory; an operator's tool is a Client of that socket.
func Example() {
	dir, _ := os.MkdirTemp("", "spool")
	defer os.RemoveAll(dir)
	store, _ := queue.OpenDirStore(filepath.Join(dir, "queue"))
	defer store.Close()
	q := &queue.Queue{Store: store, Deliverer: queue.DeliverFunc(nil)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The application also calls q.Run(ctx); this example only enqueues.
	id, _ := q.Enqueue(ctx, &transport.Envelope{From: "alice@example.org",
		Recipients: []transport.Recipient{{Address: "bob@example.net"}}}, strings.NewReader("Subject: hi\r\n\r\nHello.\r\n"))

	l, err := admin.Listen(filepath.Join(dir, "admin.sock"))
	if err != nil {
		fmt.Println(err)
		return
	}
	srv := &admin.Server{Queue: q}
	go srv.Serve(ctx, l)

	c := &admin.Client{Path: filepath.Join(dir, "admin.sock")}
	fmt.Println(c.Hold(ctx, id))
	resp, _ := c.List(ctx)
	for _, m := range resp.Messages {
		fmt.Println(m.ID == id, m.Held, m.Recipients[0].Address, m.Recipients[0].State)
	}
	fmt.Println("held:", resp.Counts[transport.Held], "pending:", resp.Counts[transport.Pending])
	fmt.Println(c.Remove(ctx, "nosuch"))
	// Output:
	// <nil>
	// true true bob@example.net pending
	// held: 1 pending: 0
	// admin: not_found: queue: message not found: nosuch
}

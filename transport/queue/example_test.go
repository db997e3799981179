package queue_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"strings"
	"time"

	"github.com/mailtls/mailtls/ndr"
	"github.com/mailtls/mailtls/policy"
	"github.com/mailtls/mailtls/transport"
	"github.com/mailtls/mailtls/transport/queue"
)

// A relay: the Server hands accepted mail to the Queue (which answers 250
// only once the message is fsynced), and the Queue delivers through a
// Connector that requires TLS to every destination and returns a DSN when a
// destination cannot do it.
func Example_relay() {
	store, err := queue.OpenLogStore("/var/spool/mailtls", queue.LogStoreOptions{})
	if err != nil {
		log.Fatal(err) // ErrLocked if another relay uses this spool
	}
	defer store.Close()
	conn := &transport.Connector{
		Hostname: "relay.example.org",
		Policy:   policy.Fixed{Level: policy.Verify, OnFailure: policy.Bounce},
	}
	q := &queue.Queue{
		Store:     store,
		Deliverer: conn,
		Hostname:  "relay.example.org",
		Language:  "ja",               // NDRs in Japanese, English fallback
		MaxAge:    3 * 24 * time.Hour, // give up after 3 days instead of 5
	}
	srv := &transport.Server{
		Hostname: "relay.example.org",
		Handler:  q, // Queue implements transport.Handler
		// TLSConfig, Inbound, Authenticator: see package transport.
	}
	ctx := context.Background()
	go q.Run(ctx)
	log.Fatal(srv.ListenAndServe(ctx, ":25"))
}

// A queue in a test or a small program: a Deliverer that stands for the
// next hop, a message with a recipient that fails permanently, and the
// failed DSN that goes back to the sender with a null reverse-path.
func ExampleQueue() {
	dir, _ := os.MkdirTemp("", "spool")
	defer os.RemoveAll(dir)
	store, err := queue.OpenDirStore(dir)
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	done := make(chan struct{})
	deliver := queue.DeliverFunc(func(ctx context.Context, env *transport.Envelope, body io.ReaderAt, size int64) (*transport.Result, error) {
		res := &transport.Result{}
		for _, r := range env.Recipients {
			rr := transport.RecipientResult{Recipient: r, Status: transport.Delivered}
			if strings.HasPrefix(r.Address, "nobody@") {
				rr.Status = transport.Failed
				rr.Reply = &transport.Error{Code: 550, EnhancedCode: transport.EnhancedCode{5, 1, 1}, Message: "no such user"}
			}
			fmt.Printf("from <%s> to %s: %s\n", env.From, r.Address, rr.Status)
			res.Recipients = append(res.Recipients, rr)
		}
		if env.From == "" {
			close(done) // the report went out
		}
		return res, nil
	})
	q := &queue.Queue{Store: store, Deliverer: deliver, Hostname: "relay.example.org", Concurrency: 1}

	env := &transport.Envelope{
		From:       "alice@example.org",
		Recipients: []transport.Recipient{{Address: "nobody@example.net"}},
	}
	if _, err := q.Enqueue(context.Background(), env, strings.NewReader("Subject: hi\r\n\r\nHello.\r\n")); err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { q.Run(ctx); close(stopped) }()
	<-done
	cancel()
	<-stopped
	// Output:
	// from <alice@example.org> to nobody@example.net: failed
	// from <> to alice@example.org: delivered
}

// Operators look at the queue with List and Counts, and act on it with
// RetryNow and Remove, whether or not Run is running.
func ExampleQueue_List() {
	dir, _ := os.MkdirTemp("", "spool")
	defer os.RemoveAll(dir)
	store, _ := queue.OpenDirStore(dir)
	defer store.Close()
	q := &queue.Queue{Store: store, Deliverer: queue.DeliverFunc(nil)}
	ctx := context.Background()
	env := &transport.Envelope{From: "alice@example.org", Recipients: []transport.Recipient{
		{Address: "bob@example.net"}, {Address: "carol@example.com", Notify: ndr.NotifyNever}}}
	id, _ := q.Enqueue(ctx, env, strings.NewReader("Subject: hi\r\n\r\nHello.\r\n"))

	msgs, _ := q.List(ctx)
	for _, m := range msgs {
		for _, r := range m.Recipients {
			fmt.Println(m.ID == id, r.Address, r.State, r.Attempts, r.LastError.Reply() == "")
		}
	}
	counts, _ := q.Counts(ctx)
	fmt.Println("pending:", counts[transport.Pending], "deferred:", counts[transport.Deferred])
	fmt.Println(q.Remove(ctx, id))
	// Output:
	// true bob@example.net pending 0 true
	// true carol@example.com pending 0 true
	// pending: 2 deferred: 0
	// <nil>
}

// An application that delivers with a Connector itself, without a Queue,
// turns a result into the DSN the queue would send with one call.
func ExampleReport() {
	env := &transport.Envelope{From: "alice@example.org",
		Recipients: []transport.Recipient{{Address: "bob@legacy.example"}, {Address: "carol@example.net"}}}
	// As Connector.Deliver returns it: bob's MX did not offer STARTTLS
	// under a policy that bounces; carol's attempt is to be retried.
	res := &transport.Result{Recipients: []transport.RecipientResult{
		{Recipient: env.Recipients[0], Status: transport.Failed,
			Reply: &transport.Error{Local: true, Code: 554, EnhancedCode: transport.EnhancedCode{5, 7, 4},
				Message: "STARTTLS required by policy but not offered by mx.legacy.example"}},
		{Recipient: env.Recipients[1], Status: transport.Deferred,
			Reply: &transport.Error{Code: 451, EnhancedCode: transport.EnhancedCode{4, 3, 0}, Message: "try later"}},
	}}
	rep := queue.Report(env, res, nil, "relay.example.org")
	for _, r := range rep.Recipients {
		fmt.Println(r.FinalRecipient, r.Action, r.Status, r.DiagnosticType+";", r.DiagnosticCode)
	}
	// Output:
	// bob@legacy.example failed 5.7.4 X-mailtls; STARTTLS required by policy but not offered by mx.legacy.example
}

// A log spool: a message is durable when Create returns, its record can be
// replaced, and it is read back, body included, after the store is
// reopened (as after a restart).
func ExampleOpenLogStore() {
	dir, _ := os.MkdirTemp("", "log")
	defer os.RemoveAll(dir)
	ctx := context.Background()
	st, err := queue.OpenLogStore(dir, queue.LogStoreOptions{})
	if err != nil {
		log.Fatal(err) // ErrLocked if another process uses this directory
	}
	m := &queue.Message{ID: "m1", From: "a@example.org",
		Recipients: []*queue.Recipient{{Address: "b@example.net", State: transport.Pending}}}
	if err := st.Create(ctx, m, strings.NewReader("Subject: hi\r\n\r\nhello\r\n")); err != nil {
		log.Fatal(err)
	}
	m.Recipients[0].State = transport.Deferred
	if err := st.Update(ctx, m); err != nil {
		log.Fatal(err)
	}
	st.Close()

	st, err = queue.OpenLogStore(dir, queue.LogStoreOptions{})
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	got, _ := st.Get(ctx, "m1")
	body, _ := st.Body(ctx, "m1")
	defer body.Close()
	b, _ := io.ReadAll(io.NewSectionReader(body, 0, body.Size()))
	fmt.Println(got.Recipients[0].State, got.Size)
	fmt.Printf("%q\n", b)
	// Output:
	// deferred 22
	// "Subject: hi\r\n\r\nhello\r\n"
}

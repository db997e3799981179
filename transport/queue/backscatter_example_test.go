package queue_test

import (
	"fmt"

	"github.com/mailtls/mailtls/ndr"
	"github.com/mailtls/mailtls/transport/queue"
)

// The backscatter rule: an anonymous client of an MX asked NOTIFY=SUCCESS
// for a local mailbox, naming a third party as the sender. The mailbox gets
// the message; the third party gets no "delivered" report, though it would
// get a "failed" one. A queue applies the rule itself once
// Queue.LocalDomain is set.
func ExampleMayOriginate() {
	o := queue.Origin{Trusted: false, LocalRecipient: true, LocalSender: false}
	fmt.Println("delivered:", queue.MayOriginate(ndr.ActionDelivered, o))
	fmt.Println("delayed:", queue.MayOriginate(ndr.ActionDelayed, o))
	fmt.Println("failed:", queue.MayOriginate(ndr.ActionFailed, o))
	o.Trusted = true // the same request after AUTH
	fmt.Println("delivered after AUTH:", queue.MayOriginate(ndr.ActionDelivered, o))
	// Output:
	// delivered: false
	// delayed: false
	// failed: true
	// delivered after AUTH: true
}

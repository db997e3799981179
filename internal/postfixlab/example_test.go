package postfixlab

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
)

// Example starts a private Postfix smtpd on a loopback port (as root, with
// Postfix installed), waits for a line in its log and stops it.
func Example() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "postfixlab-")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	if err := MakeTraversable(dir, os.TempDir()); err != nil {
		fmt.Println(err)
		return
	}
	addr, err := FreeAddr()
	if err != nil {
		fmt.Println(err)
		return
	}
	p, err := Start(ctx, Config{
		Dir:   dir,
		SMTPD: addr,
		MainCF: map[string]string{
			"myhostname":     "mx.example.test",
			"relay_domains":  "example.test",
			"transport_maps": "inline:{example.test=discard:}",
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Stop(ctx)
	// ... deliver to p.Addr() ...
	m, _, err := p.WaitLog(ctx, regexp.MustCompile(`status=sent`))
	fmt.Println(m, err)
}

// ExampleMasterCF prints the master.cf of an instance that only sends
// (sendmail(1) in, smtp(8) out).
func ExampleMasterCF() {
	lines := strings.SplitAfter(MasterCF(Config{Pickup: true}), "\n")
	fmt.Print(lines[0], lines[1])
	// Output:
	// pickup    unix  n - n 60 1 pickup
	// cleanup   unix  n - n - 0 cleanup
}

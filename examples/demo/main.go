// Command demo shows mailtls end to end in one process, on loopback only,
// with no set-up: a relay that requires TLS to two destinations delivers to
// the one that supports it (TLS 1.3, certificate verified) and refuses the
// one that does not offer STARTTLS before sending anything in plaintext,
// returning a DSN (RFC 3464) to the sender. It prints what happened and
// exits; -v adds the library's logs on stderr.
//
//	go run ./examples/demo
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
)

func main() {
	verbose := flag.Bool("v", false, "print the library's logs (slog) on stderr")
	flag.Parse()
	logOut := io.Discard
	if *verbose {
		logOut = os.Stderr
	}
	if err := runDemo(context.Background(), os.Stdout, logOut); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

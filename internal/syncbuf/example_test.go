package syncbuf

import (
	"fmt"
	"log/slog"
	"strings"
)

// A Buffer as the sink of a logger whose output a test checks.
func Example() {
	var logs Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
	logger.Info("delivered", "domain", "example.org")
	fmt.Print(logs.String())
	fmt.Println(strings.Contains(logs.String(), "domain=example.org"))
	// Output:
	// level=INFO msg=delivered domain=example.org
	// true
}

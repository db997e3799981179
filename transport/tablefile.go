package transport

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"
)

// scanTable reads a table file of the kind Postfix and htpasswd use: it
// calls entry with the number, the raw text and the trimmed text of each
// line that is neither blank nor a comment ('#' first after white space).
// An error from entry, or a line over 64 KiB, is returned as
// "transport: NAME line N: ...".
func scanTable(name string, r io.Reader, entry func(n int, raw, line string) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 64*1024)
	n := 0
	for sc.Scan() {
		n++
		raw := sc.Text()
		line := strings.TrimSpace(raw)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if err := entry(n, raw, line); err != nil {
			return fmt.Errorf("transport: %s line %d: %w", name, n, err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("transport: %s line %d: %w", name, n+1, err)
	}
	return nil
}

// loadTable opens path and parses it with parse, naming it path in errors;
// what names the file when it cannot be opened.
func loadTable[T any](path, what string, parse func(name string, r io.Reader) (T, error)) (T, error) {
	f, err := os.Open(path)
	if err != nil {
		var zero T
		return zero, fmt.Errorf("transport: %s: %w", what, err)
	}
	defer f.Close()
	return parse(path, f)
}

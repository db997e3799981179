package txtrecord

import (
	"errors"
	"fmt"
)

var errExampleSyntax = errors.New("example: invalid TXT record")

// A TLS-RPT-like format (RFC 8460 §3): rua is a comma-separated list.
func ExampleFormat_Fields() {
	f := Format{Version: "v=TLSRPTv1", ListFields: []string{"rua"}, ErrSyntax: errExampleSyntax}
	for fld, err := range f.Fields("v=TLSRPTv1; rua=mailto:a@example.com , https://r.example/;ext=1") {
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("%s=%s\n", fld.Name, fld.Value)
	}
	// Output:
	// rua=mailto:a@example.com
	// rua=https://r.example/
	// ext=1
}

// Choosing the one record among a domain's TXT records (RFC 8461 §3.1).
func ExampleFormat_Select() {
	errNone := errors.New("example: no record")
	errMultiple := errors.New("example: multiple records")
	f := Format{Version: "v=STSv1", ErrNoRecord: errNone, ErrMultipleRecords: errMultiple}
	fmt.Println(f.Select([]string{"v=spf1 -all", "v=STSv1; id=1", "v=STSv10; id=2"}))
	_, err := f.Select([]string{"v=STSv1; id=1", "v=STSv1; id=2"})
	fmt.Println(err == errMultiple)
	// Output:
	// v=STSv1; id=1 <nil>
	// true
}

package txtrecord

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// FuzzTXTRecordFields checks Fields against its grammar: accepted records
// are candidates, every name is an ext-name, values hold no delimiter, and
// the fields written back in canonical form read the same.
func FuzzTXTRecordFields(f *testing.F) {
	f.Add("v=T1; a=1")                    // one field
	f.Add("v=T1;a=1;")                    // no spaces, trailing delimiter
	f.Add("v=T1 ;\ta=1 ; b=2 ;\t")        // WSP around delimiters
	f.Add("v=T1; l=1 , 2,3; l=4")         // list field, WSP around ','
	f.Add("v=T1; l=1,")                   // empty list element
	f.Add("v=T1; a=x=y")                  // '=' in a value
	f.Add("v=T1; a;b=1")                  // ';' before '='
	f.Add("v=T1;; a=1")                   // empty field
	f.Add("v=T1")                         // version only
	f.Add("v=T10; a=1")                   // longer version
	f.Add("v=T1; _a=1")                   // bad name
	f.Add("v=STSv1; id=20160831085700Z;") // RFC 8461 §3.1 example, other version
	f.Fuzz(func(t *testing.T, s string) {
		format := testFormat()
		var fields []Field
		var ferr error
		for fld, err := range format.Fields(s) {
			if err != nil {
				if fld != (Field{}) {
					t.Fatalf("error %v with field %+v", err, fld)
				}
				ferr = err
				break
			}
			fields = append(fields, fld)
		}
		if ferr != nil {
			if !errors.Is(ferr, errSyntax) {
				t.Fatalf("error %v does not wrap ErrSyntax", ferr)
			}
			return
		}
		if !format.IsCandidate(s) {
			t.Fatalf("%q accepted but not a candidate", s)
		}
		if len(fields) == 0 {
			t.Fatal("no fields")
		}
		var b strings.Builder
		b.WriteString(format.Version)
		for _, fld := range fields {
			if !IsExtName(fld.Name) {
				t.Fatalf("name %q accepted", fld.Name)
			}
			stop := " \t;"
			if fld.Name == "l" {
				stop += ","
			}
			if strings.ContainsAny(fld.Value, stop) {
				t.Fatalf("value %q of %q holds a delimiter", fld.Value, fld.Name)
			}
			b.WriteString("; " + fld.Name + "=" + fld.Value)
		}
		got, err := collect(format, b.String())
		if err != nil {
			t.Fatalf("canonical form %q: %v", b.String(), err)
		}
		if !reflect.DeepEqual(got, fields) {
			t.Fatalf("canonical form %q: %q, want %q", b.String(), got, fields)
		}
	})
}

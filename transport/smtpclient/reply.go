package smtpclient

import (
	"errors"
	"fmt"
	"net/textproto"
	"strconv"
	"strings"
)

// EnhancedCode is an RFC 3463 enhanced status code: class.subject.detail.
// The zero value means "none".
type EnhancedCode [3]int

// String renders "5.7.4", or "" for the zero value.
func (c EnhancedCode) String() string {
	if c == (EnhancedCode{}) {
		return ""
	}
	return fmt.Sprintf("%d.%d.%d", c[0], c[1], c[2])
}

// ParseEnhancedCode parses "5.7.4" (RFC 3463 §2): the class is 2, 4 or 5,
// subject and detail at most three digits.
func ParseEnhancedCode(s string) (EnhancedCode, error) {
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return EnhancedCode{}, fmt.Errorf("smtp: malformed enhanced status code %q", s)
	}
	var c EnhancedCode
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || n > 999 || (i == 0 && n != 2 && n != 4 && n != 5) {
			return EnhancedCode{}, fmt.Errorf("smtp: malformed enhanced status code %q", s)
		}
		c[i] = n
	}
	return c, nil
}

// Reply is one SMTP reply (RFC 5321 §4.2): the three-digit code and the text
// of each line without the code and separator.
type Reply struct {
	Code  int
	Lines []string
}

// String returns the reply's first line as it was received, without CRLF:
// "550 5.1.1 no such user".
func (r *Reply) String() string {
	if len(r.Lines) == 0 || r.Lines[0] == "" {
		return strconv.Itoa(r.Code)
	}
	return strconv.Itoa(r.Code) + " " + r.Lines[0]
}

// Enhanced splits an RFC 2034 enhanced status code off the reply's lines: it
// returns the code of the first line (the zero code if there is none) and
// the text of all lines, without their codes, joined by spaces.
func (r *Reply) Enhanced() (EnhancedCode, string) {
	if len(r.Lines) == 0 {
		return EnhancedCode{}, ""
	}
	ec, text := splitEnhanced(r.Lines[0])
	if len(r.Lines) > 1 {
		rest := make([]string, 0, len(r.Lines))
		rest = append(rest, text)
		for _, l := range r.Lines[1:] {
			_, t := splitEnhanced(l)
			rest = append(rest, t)
		}
		text = strings.Join(rest, " ")
	}
	return ec, text
}

// splitEnhanced parses a leading "x.y.z " enhanced status code (RFC 2034
// §4). A malformed or absent code yields the zero EnhancedCode and the line
// unchanged.
func splitEnhanced(line string) (EnhancedCode, string) {
	word, rest, _ := strings.Cut(line, " ")
	ec, err := ParseEnhancedCode(word)
	if err != nil {
		return EnhancedCode{}, line
	}
	return ec, rest
}

// ParseEHLO reads the extension list from the lines of a 250 EHLO reply
// (RFC 5321 §4.1.1.1): the first line is the server's greeting, each further
// line an ehlo-keyword with optional parameters. Keywords are returned
// upper-cased; the parameters keep their case. Lines whose keyword is not
// (ALPHA / DIGIT) *(ALPHA / DIGIT / "-") are ignored.
func ParseEHLO(lines []string) map[string]string {
	ext := make(map[string]string)
	if len(lines) < 2 {
		return ext
	}
	for _, l := range lines[1:] {
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		kw, params, _ := strings.Cut(l, " ")
		if !validKeyword(kw) {
			continue
		}
		ext[strings.ToUpper(kw)] = strings.TrimSpace(params)
	}
	return ext
}

func validKeyword(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c == '-' && i > 0:
		default:
			return false
		}
	}
	return true
}

// maxReplyLines bounds the lines of one reply.
const maxReplyLines = 512

// ReadReply reads one possibly multi-line reply (RFC 5321 §4.2.1). It
// rejects lines without a 3-digit code in 200–599, continuation lines whose
// code differs from the first, and replies of more than 512 lines.
func ReadReply(r *textproto.Reader) (*Reply, error) {
	var rep Reply
	for {
		line, err := r.ReadLine()
		if err != nil {
			return nil, err
		}
		code, cont, text, err := parseReplyLine(line)
		if err != nil {
			return nil, err
		}
		if rep.Lines == nil {
			rep.Code = code
		} else if code != rep.Code {
			return nil, fmt.Errorf("smtp: reply code changed within a multi-line reply: %q", line)
		}
		rep.Lines = append(rep.Lines, text)
		if !cont {
			return &rep, nil
		}
		if len(rep.Lines) > maxReplyLines {
			return nil, errors.New("smtp: reply has too many lines")
		}
	}
}

// parseReplyLine splits "250-text" / "250 text" / "250".
func parseReplyLine(line string) (code int, cont bool, text string, err error) {
	if len(line) < 3 {
		return 0, false, "", fmt.Errorf("smtp: malformed reply line %q", line)
	}
	code, err = strconv.Atoi(line[:3])
	if err != nil || code < 200 || code > 599 || line[0] == '+' || line[0] == '-' {
		return 0, false, "", fmt.Errorf("smtp: malformed reply line %q", line)
	}
	if len(line) == 3 {
		return code, false, "", nil
	}
	switch line[3] {
	case '-':
		return code, true, line[4:], nil
	case ' ':
		return code, false, line[4:], nil
	}
	return 0, false, "", fmt.Errorf("smtp: malformed reply line %q", line)
}

// ReplyError is a reply other than the one a step expected, as an error.
type ReplyError struct {
	Command string // the command answered, without arguments ("" for the greeting)
	Want    int    // the code the step expected, 0 if not one code
	Reply   Reply
}

func (e *ReplyError) Error() string {
	cmd := e.Command
	if cmd == "" {
		cmd = "greeting"
	}
	ec, text := e.Reply.Enhanced()
	s := fmt.Sprintf("smtp: %s: %d", cmd, e.Reply.Code)
	if ec != (EnhancedCode{}) {
		s += " " + ec.String()
	}
	return s + " " + text
}

// XText encodes s as RFC 3461 §4 xtext: "+", "=" and characters outside "!"
// to "~" become "+HH".
func XText(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '!' || c > '~' || c == '+' || c == '=' {
			fmt.Fprintf(&b, "+%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

package transport

import (
	"net"
	"time"

	"github.com/mailtls/mailtls/policy"
	"github.com/mailtls/mailtls/transport/smtpclient"
)

// session is one outbound SMTP session to one next-hop address: the
// protocol is smtpclient's; the fields are what the Connector knows about
// the hop and what the TLS checks found.
type session struct {
	*smtpclient.Client
	host    string // MX or next-hop host name
	addr    string // ip:port dialled
	created time.Time
	poolKey string
	mta     RemoteMTA // the address as computed from DNS or the route

	verified bool               // the certificate passed the level's check
	failure  policy.FailureType // a TLS failure recorded but not enforced (testing mode, May)
	failErr  error              // the check's error behind failure, if any
	reused   bool               // taken from the idle pool
	broken   bool               // replies of a pipelined group left unread: not reusable
	clean    bool               // the last transaction ended with its final reply: no RSET needed
	info     *TLSInfo           // tlsInfo's summary, made once: the TLS state does not change
}

func newSession(conn net.Conn, host, addr string, now time.Time) *session {
	return &session{Client: smtpclient.New(conn), host: host, addr: addr, created: now}
}

// replyError turns a reply into an *Error for command.
func replyError(r *smtpclient.Reply, command string) *Error {
	ec, text := r.Enhanced()
	return &Error{Code: r.Code, EnhancedCode: ec, Message: text, Command: command}
}

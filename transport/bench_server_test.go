package transport

// Benchmarks of accepted messages per second over STARTTLS through
// transport.Server against a bare go-smtp server with the same TLS
// configuration, measured in the same run. Pairs differ only in the last
// name element:
//
//	go test -run='^$' -bench=Server -benchtime=2s -count=5 ./transport
//
//	BenchmarkServer/DATA/1KiB/1perconn/mailtls
//	BenchmarkServer/DATA/1KiB/1perconn/gosmtp
//	...
//
// The client (in the same process, on loopback) is transport/smtpclient's Dialer, a
// minimal lock-step SMTP client: EHLO, STARTTLS, full TLS 1.3 handshake (no
// resumption), EHLO, then n × (MAIL, RCPT, DATA or BDAT LAST), QUIT. Both
// servers' handlers read and discard the body. Client CPU is included in both figures.

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"
	"testing"
	"time"

	smtp "github.com/emersion/go-smtp"

	"github.com/mailtls/mailtls/internal/testmsg"
	"github.com/mailtls/mailtls/transport/smtpclient"
)

// bareBackend is the baseline: a go-smtp session that discards the body.
type bareBackend struct{}

func (bareBackend) NewSession(*smtp.Conn) (smtp.Session, error) { return bareSession{}, nil }

type bareSession struct{}

func (bareSession) Reset()                               {}
func (bareSession) Logout() error                        { return nil }
func (bareSession) Mail(string, *smtp.MailOptions) error { return nil }
func (bareSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (bareSession) Data(r io.Reader) error               { _, err := io.Copy(io.Discard, r); return err }

// benchBody is a message of exactly size octets, no line starting with '.'.
func benchBody(size int) string { return testmsg.Body("benchmark", size) }

// benchClient sends msgs messages on one STARTTLS connection with
// smtpclient (no line of body starts with '.').
func benchClient(addr string, cfg *tls.Config, body string, msgs int, bdat bool) error {
	ctx := context.Background() // never done: no per-call cost
	d := smtpclient.Dialer{TLSConfig: cfg, Hello: "bench.test"}
	c, err := d.Dial(ctx, addr)
	if err != nil {
		return err
	}
	defer c.Close()
	for range msgs {
		if err := c.Send(ctx, "sender@bench.test", "rcpt@bench.test", body, bdat); err != nil {
			return err
		}
	}
	return c.Quit(ctx)
}

// benchServers starts transport.Server and a bare go-smtp server with the
// same certificate and limits, returning their addresses.
func benchServers(b *testing.B) (oursAddr, bareAddr string, clientCfg *tls.Config) {
	pki := newSrvPKI(b)
	clientCfg = pki.clientConfig()
	clientCfg.ClientSessionCache = nil // a full handshake per connection, as between MTAs

	ours := &Server{
		Hostname:  "mx.test",
		TLSConfig: pki.serverConfig(),
		Handler:   HandlerFunc(func(_ context.Context, _ *Envelope, r io.Reader) error { _, err := io.Copy(io.Discard, r); return err }),
	}
	ol, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go ours.Serve(ol)
	o := ours

	bare := smtp.NewServer(bareBackend{})
	bare.Domain = "mx.test"
	bare.TLSConfig = pki.serverConfig()
	bare.MaxMessageBytes = DefaultMaxMessageBytes
	bare.MaxRecipients = DefaultMaxRecipients
	bare.ErrorLog = log.New(io.Discard, "", 0)
	bl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go bare.Serve(bl)
	bs := bare

	b.Cleanup(func() { o.Close(); bs.Close() })
	return ol.Addr().String(), bl.Addr().String(), clientCfg
}

var benchModes = []string{"DATA", "BDAT"}
var benchSizes = []int{1 << 10, 100 << 10}
var benchPerConn = []int{1, 20}

// BenchmarkServer runs each configuration against each server as a
// separate sub-benchmark: compare .../mailtls with .../gosmtp.
func BenchmarkServer(b *testing.B) {
	oursAddr, bareAddr, clientCfg := benchServers(b)
	servers := []struct{ name, addr string }{{"mailtls", oursAddr}, {"gosmtp", bareAddr}}
	for _, mode := range benchModes {
		for _, size := range benchSizes {
			body := benchBody(size)
			for _, per := range benchPerConn {
				for _, srv := range servers {
					name := fmt.Sprintf("%s/%dKiB/%dperconn/%s", mode, size>>10, per, srv.name)
					b.Run(name, func(b *testing.B) {
						b.SetBytes(int64(size))
						b.ReportAllocs()
						sent := 0
						for sent < b.N {
							n := min(per, b.N-sent)
							if err := benchClient(srv.addr, clientCfg, body, n, mode == "BDAT"); err != nil {
								b.Fatal(err)
							}
							sent += n
						}
						b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
					})
				}
			}
		}
	}
}

// BenchmarkServerInterleaved alternates connections between the two servers
// inside one benchmark, so that load from other processes hits both alike,
// and reports msgs/s for each and the overhead of transport.Server in
// percent (positive: slower than bare go-smtp).
func BenchmarkServerInterleaved(b *testing.B) {
	oursAddr, bareAddr, clientCfg := benchServers(b)
	for _, mode := range benchModes {
		for _, size := range benchSizes {
			body := benchBody(size)
			for _, per := range benchPerConn {
				b.Run(fmt.Sprintf("%s/%dKiB/%dperconn", mode, size>>10, per), func(b *testing.B) {
					var tOurs, tBare time.Duration
					run := func(ours bool, n int) {
						addr := bareAddr
						if ours {
							addr = oursAddr
						}
						start := time.Now()
						if err := benchClient(addr, clientCfg, body, n, mode == "BDAT"); err != nil {
							b.Fatal(err)
						}
						if ours {
							tOurs += time.Since(start)
						} else {
							tBare += time.Since(start)
						}
					}
					sent := 0
					for round := 0; sent < b.N; round++ {
						n := min(per, b.N-sent)
						// Alternate which server goes first (ABBA), so
						// neither always follows the other's GC or cache
						// effects.
						first := round%2 == 0
						run(first, n)
						run(!first, n)
						sent += n
					}
					b.ReportMetric(float64(b.N)/tOurs.Seconds(), "mailtls-msgs/s")
					b.ReportMetric(float64(b.N)/tBare.Seconds(), "gosmtp-msgs/s")
					b.ReportMetric((tOurs.Seconds()/tBare.Seconds()-1)*100, "overhead-%")
				})
			}
		}
	}
}

package transport

import (
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailtls/mailtls/policy"
)

// TestDataRateDeadline is the pure rule: outside stress a transfer has
// Timeouts.Read per read and Timeouts.Data in all; under stress it must also
// average MinDataRate after its first Timeouts.Stress.
func TestDataRateDeadline(t *testing.T) {
	t0 := time.Unix(1000, 0)
	s := func(d time.Duration) time.Time { return t0.Add(d) }
	for _, c := range []struct {
		name     string
		now      time.Time
		n        int64
		stressed bool
		rate     int
		want     time.Time
	}{
		{"idle read, no stress", s(0), 0, false, 500, s(5 * time.Minute)},
		{"whole transfer bound", s(9 * time.Minute), 1 << 30, false, 500, s(10 * time.Minute)},
		{"stress, just started", s(0), 0, true, 500, s(10 * time.Second)},
		{"stress, trickler after 9s", s(9 * time.Second), 3, true, 500, s(10*time.Second + 6*time.Millisecond)},
		{"stress, fast sender", s(20 * time.Second), 1 << 20, true, 500, s(20*time.Second + 10*time.Second)},
		{"stress, rate off", s(9 * time.Second), 3, true, -1, s(9*time.Second + 10*time.Second)},
	} {
		stress := time.Duration(0)
		rt := 5 * time.Minute
		if c.stressed {
			stress, rt = 10*time.Second, 10*time.Second
		}
		got := dataReadDeadline(c.now, t0, rt, 10*time.Minute, stress, c.rate, c.n)
		if !got.Equal(c.want) {
			t.Errorf("%s: deadline %v after start, want %v", c.name, got.Sub(t0), c.want.Sub(t0))
		}
	}
}

// TestStressMinDataRate: under stress a DATA transfer trickled a byte at a
// time (each read inside the stress timeout, so no read ever times out) is
// ended once it falls below MinDataRate after Timeouts.Stress (Postfix's
// smtpd_min_data_rate with smtpd_per_request_deadline), while a message sent
// at an ordinary speed under the same stress is accepted.
func TestStressMinDataRate(t *testing.T) {
	for _, mode := range []string{"plaintext", "tls"} {
		t.Run(mode, func(t *testing.T) {
			ts := startServer(t, &Server{MaxConnections: 5, MinDataRate: 1000,
				Timeouts: ServerTimeouts{Stress: time.Second, Data: time.Minute, Read: time.Minute, Command: time.Minute},
				Inbound:  policy.Inbound{InsecureAllowPlaintext: true}}, newSrvPKI(t))
			stop := holdStress(t, ts.addr, 3) // with the client below, 4 of 5: stress
			defer stop()

			fast := dataDialogue(t, ts, mode)
			waitFor(t, "stress", ts.stressed)
			fast.send(strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\r\n", 300) + ".\r\n")
			if got := fast.read(); !strings.HasPrefix(got, "250 ") {
				t.Errorf("ordinary-speed DATA under stress: %q", got)
			}
			fast.conn.Close()

			d := dataDialogue(t, ts, mode)
			waitFor(t, "stress", ts.stressed)
			start := time.Now()
			done := make(chan struct{})
			go func() {
				defer close(done)
				for i := 0; i < 60; i++ { // 6 s in all, 10 bytes/s
					if _, err := io.WriteString(d.conn, "x"); err != nil {
						return
					}
					time.Sleep(100 * time.Millisecond)
				}
				io.WriteString(d.conn, "\r\n.\r\n")
			}()
			got, _ := d.tryRead()
			el := time.Since(start)
			if strings.HasPrefix(got, "2") || el > 4*time.Second {
				t.Errorf("trickled DATA under stress: %q after %v, want a 4xx or a close at about 1s", got, el)
			}
			d.conn.Close()
			<-done
			if n := len(ts.rec.all()); n != 1 {
				t.Errorf("%d messages accepted, want only the ordinary one", n)
			}
		})
	}
}

// holdStress keeps n connections open to addr from 127.0.9.x, opening a new
// one whenever the server ends one, until the returned stop is called.
func holdStress(t *testing.T, addr string, n int) (stop func()) {
	t.Helper()
	quit := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			nd := net.Dialer{Timeout: time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(fmt.Sprintf("127.0.9.%d", i+1))}}
			for {
				select {
				case <-quit:
					return
				default:
				}
				c, err := nd.Dial("tcp", addr)
				if err != nil {
					time.Sleep(10 * time.Millisecond)
					continue
				}
				ended := make(chan struct{})
				go func() { io.Copy(io.Discard, c); close(ended) }()
				select {
				case <-quit:
					c.Close()
					<-ended
					return
				case <-ended:
					c.Close()
				}
			}
		})
	}
	return func() { close(quit); wg.Wait() }
}

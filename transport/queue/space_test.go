package queue

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mailtls/mailtls/certstore/certtest"
	"github.com/mailtls/mailtls/transport"
)

func TestCheckFreeSpace(t *testing.T) {
	const mb = 1 << 20
	for _, tc := range []struct {
		name                string
		free, minFree, size int64
		refuse              bool
	}{
		{"plenty", 1000 * mb, 75 * mb, 0, false},
		{"exactly the floor", 75 * mb, 75 * mb, 0, false},
		{"one byte under the floor", 75*mb - 1, 75 * mb, 0, true},
		{"declared size fits", 100 * mb, 75 * mb, 25 * mb, false},
		{"declared size does not fit", 100 * mb, 75 * mb, 25*mb + 1, true},
		{"no floor, size fits", 10, 0, 10, false},
		{"no floor, size too big", 10, 0, 11, true},
		{"full disk", 0, 0, 0, false},
		{"full disk with a floor", 0, 1, 0, true},
		{"negative size is no size", 10, 10, -5, false},
		{"negative floor is no floor", 10, -1, 10, false},
		{"huge size does not overflow", 1 << 40, 1 << 40, 1<<63 - 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckFreeSpace(tc.free, tc.minFree, tc.size)
			if !tc.refuse {
				if err != nil {
					t.Fatalf("CheckFreeSpace(%d, %d, %d) = %v, want nil", tc.free, tc.minFree, tc.size, err)
				}
				return
			}
			var te *transport.Error
			if !errors.As(err, &te) || te.Code != 452 || te.EnhancedCode != (transport.EnhancedCode{4, 3, 1}) ||
				te.Message != "Insufficient system storage" || !errors.Is(err, ErrInsufficientStorage) {
				t.Fatalf("CheckFreeSpace(%d, %d, %d) = %v, want 452 4.3.1 Insufficient system storage", tc.free, tc.minFree, tc.size, err)
			}
		})
	}
}

// spaceStore is a DirStore that reports a chosen free space or error.
type spaceStore struct {
	*DirStore
	free int64
	err  error
}

func (s spaceStore) FreeSpace(context.Context) (int64, error) { return s.free, s.err }

// TestQueueCheckSender: the Queue refuses MAIL by the Store's free space,
// MinFree (zero: DefaultMinFree; negative: off) and SIZE=, and accepts when
// the Store cannot tell.
func TestQueueCheckSender(t *testing.T) {
	st, err := OpenDirStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const mb = 1 << 20
	for _, tc := range []struct {
		name    string
		store   Store
		minFree int64
		size    int64
		refuse  bool
	}{
		{"default floor met", spaceStore{st, DefaultMinFree, nil}, 0, 0, false},
		{"default floor missed", spaceStore{st, DefaultMinFree - 1, nil}, 0, 0, true},
		{"SIZE= counts", spaceStore{st, DefaultMinFree + mb, nil}, 0, mb + 1, true},
		{"own floor", spaceStore{st, 10 * mb, nil}, 20 * mb, 0, true},
		{"check off", spaceStore{st, 0, nil}, -1, mb, false},
		{"store cannot tell", spaceStore{st, 0, fmt.Errorf("x: %w", errors.ErrUnsupported)}, 0, 0, false},
		{"statfs fails", spaceStore{st, 0, errors.New("EIO")}, 0, 0, false},
		{"not a SpaceReporter", failingStore{}, 1 << 62, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := &Queue{Store: tc.store, MinFree: tc.minFree}
			err := q.CheckSender(context.Background(), &transport.Envelope{From: "a@example.org", Size: tc.size})
			if got := errors.Is(err, ErrInsufficientStorage); got != tc.refuse || (!tc.refuse && err != nil) {
				t.Fatalf("CheckSender = %v, want refusal %v", err, tc.refuse)
			}
		})
	}
}

func TestDirStoreFreeSpace(t *testing.T) {
	st, err := OpenDirStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	free, err := st.FreeSpace(context.Background())
	if errors.Is(err, errors.ErrUnsupported) {
		t.Skip(err)
	}
	if err != nil || free <= 0 {
		t.Fatalf("FreeSpace = %d, %v; want the bytes free on the test's file system", free, err)
	}
}

// TestMinFreeAtMail: a Queue serving as a Server's Handler answers MAIL
// with 452 4.3.1 over a real TLS session, before any recipient or data,
// when its spool has less than MinFree free; here MinFree is set above the
// real free space of the test's file system. With the check off the same
// client is accepted.
func TestMinFreeAtMail(t *testing.T) {
	ca := certtest.MustCA("queue test CA")
	leaf := ca.MustIssue(certtest.LeafOptions{CommonName: "mx.relay.test", DNSNames: []string{"mx.relay.test"}})
	st, err := OpenDirStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	free, err := st.FreeSpace(context.Background())
	if err != nil {
		t.Skip(err)
	}
	serve := func(q *Queue) string {
		srv := &transport.Server{
			Hostname:  "mx.relay.test",
			TLSConfig: &tls.Config{Certificates: []tls.Certificate{leaf.TLS}},
			Handler:   q,
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go srv.Serve(l)
		t.Cleanup(func() { srv.Close() })
		return l.Addr().String()
	}
	mail := func(addr string) error {
		c := dialStartTLS(t, addr, ca.Pool)
		defer c.Close()
		return c.Mail("alice@example.org", &smtp.MailOptions{Size: 1000})
	}

	short := &Queue{Store: st, Deliverer: newFake(nil), MinFree: free + 1<<40}
	err = mail(serve(short))
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 452 || se.EnhancedCode != (smtp.EnhancedCode{4, 3, 1}) {
		t.Fatalf("MAIL with %d bytes free and MinFree %d: %v, want 452 4.3.1", free, short.MinFree, err)
	}
	if msgs, _ := st.List(context.Background()); len(msgs) != 0 {
		t.Errorf("%d messages in the spool after a refused MAIL", len(msgs))
	}

	off := &Queue{Store: st, Deliverer: newFake(nil), MinFree: -1}
	if err := mail(serve(off)); err != nil {
		t.Fatalf("MAIL with the check off: %v", err)
	}
}

// dialStartTLS connects to the test server mx.relay.test at addr, starts
// TLS trusting pool, and says EHLO client.test.
func dialStartTLS(t *testing.T, addr string, pool *x509.CertPool) *smtp.Client {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c, err := smtp.NewClientStartTLS(conn, &tls.Config{RootCAs: pool, ServerName: "mx.relay.test"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Hello("client.test"); err != nil {
		c.Close()
		t.Fatal(err)
	}
	return c
}

// FreeSpace refuses MAIL while the directory's file system is short of
// MinFree plus SIZE=, and not at all with a negative MinFree.
func TestFreeSpace(t *testing.T) {
	dir := t.TempDir()
	free, err := DiskFree(dir)
	if err != nil {
		t.Skip(err)
	}
	for _, tc := range []struct {
		name    string
		minFree int64
		size    int64
		refused bool
	}{
		{"room", 1, 0, false},
		{"short", free + 1<<40, 0, true},
		{"SIZE= does not fit", 1, free + 1<<40, true},
		{"check off", -1, free + 1<<40, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := FreeSpace{Dir: dir, MinFree: tc.minFree}.CheckSender(context.Background(), &transport.Envelope{From: "a@example.org", Size: tc.size})
			if tc.refused != (err != nil) || err != nil && !errors.Is(err, ErrInsufficientStorage) {
				t.Fatalf("CheckSender = %v, want refused %v", err, tc.refused)
			}
			var te *transport.Error
			if tc.refused && (!errors.As(err, &te) || te.Code != 452 || te.EnhancedCode.String() != "4.3.1") {
				t.Fatalf("CheckSender = %v, want 452 4.3.1", err)
			}
		})
	}
}

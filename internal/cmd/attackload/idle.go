package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mailtls/mailtls/transport/smtpclient"
)

// idleAddr is the address of the idle scenario's connection i when each
// address holds per connections: 127.60.0.1, 127.60.0.2, ... (254 per
// /24). base is the second octet (60 for the idle connections, 61 for
// the ones that fill the table after them).
func idleAddr(base byte, i, per int) *net.TCPAddr {
	k := i / per
	return loopback(base+byte(k/(254*256)), byte(k/254%256), byte(k%254+1))
}

// idleRelayArgs are the flags the idle scenario gives the relay: a
// connection cap on 25 that the idle connections and the normal client
// stay under, with stress mode (80% of the cap) out of their way.
func idleRelayArgs(cfg *config) []string {
	return []string{"-max-connections", strconv.Itoa(idleCap(cfg))}
}

func idleCap(cfg *config) int { return cfg.idleN + cfg.idleN/4 + 64 }

// idleAttack opens cfg.idleN connections to 25, cfg.idlePer from each
// address, each with EHLO, STARTTLS, a full TLS 1.3 handshake and EHLO,
// and leaves them idle for cfg.idleTime while the normal client runs. It
// reports the relay's resident memory growth per connection, then checks
// that the per-address cap still refuses and that the connection cap
// still evicts idle connections for newcomers.
func idleAttack(ctx context.Context, cfg *config, c *client, r *relayProc, out io.Writer) (*phase, []string, error) {
	pid := r.cmd.Process.Pid
	rss0, ok := procRSS(pid)
	if !ok {
		return nil, nil, fmt.Errorf("no resident memory figure for pid %d (/proc)", pid)
	}
	var notes []string
	var conns []*smtpclient.Client
	var mu sync.Mutex
	var opens counts
	var peak, rssOpen, rssEnd int64
	start := time.Now()
	p, _ := during(ctx, c, r, cfg.gap, func() error {
		var next atomic.Int64
		var wg sync.WaitGroup
		for range 32 {
			wg.Go(func() {
				for {
					i := int(next.Add(1) - 1)
					if i >= cfg.idleN || ctx.Err() != nil {
						return
					}
					dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
					sc, err := c.attacker(idleAddr(60, i, cfg.idlePer)).dial(dctx, r.smtp, "idle.load.test")
					cancel()
					opens.add(outcome(err))
					if err == nil {
						mu.Lock()
						conns = append(conns, sc)
						mu.Unlock()
					}
				}
			})
		}
		wg.Wait()
		fmt.Fprintf(out, "  idle: %d connections opened in %.1fs\n", len(conns), time.Since(start).Seconds())
		rssOpen, _ = procRSS(pid)
		peak = rssOpen
		t := time.NewTicker(time.Second)
		defer t.Stop()
		end := time.After(cfg.idleTime)
		for {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-end:
				rssEnd, _ = procRSS(pid)
				return nil
			case <-t.C:
				if v, ok := procRSS(pid); ok {
					peak = max(peak, v)
				}
			}
		}
	})
	defer func() {
		for _, sc := range conns {
			sc.Close()
		}
	}()
	n := int64(len(conns))
	per := func(v int64) string {
		if n == 0 {
			return "-"
		}
		return fmt.Sprintf("%.1f KiB", float64(v-rss0)/float64(n)/1024)
	}
	notes = append(notes,
		fmt.Sprintf("idle connections to 25 (EHLO, STARTTLS, TLS 1.3, EHLO), %d per address from 127.60.0.1 on: %d of %d open; dials: %s",
			cfg.idlePer, n, cfg.idleN, opens.String()),
		fmt.Sprintf("relay RSS: before %.1f MiB, all open %.1f MiB, after %s idle %.1f MiB, peak %.1f MiB",
			mib(rss0), mib(rssOpen), cfg.idleTime, mib(rssEnd), mib(peak)),
		fmt.Sprintf("relay RSS growth per idle connection: all open %s, after %s idle %s, peak %s",
			per(rssOpen), cfg.idleTime, per(rssEnd), per(peak)),
		fmt.Sprintf("idle table: N=%d RSS-before=%.1fMiB RSS-after=%.1fMiB per-conn=%s", n, mib(rss0), mib(rssEnd), per(rssEnd)),
	)
	if n == 0 {
		return p, notes, ctx.Err()
	}
	// The per-address cap: the first address holds cfg.idlePer connections.
	_, err := c.attacker(idleAddr(60, 0, cfg.idlePer)).dial(ctx, r.smtp, "idle.load.test")
	notes = append(notes, fmt.Sprintf("one more connection from %s (holding %d): %s", idleAddr(60, 0, cfg.idlePer).IP, cfg.idlePer, outcome(err)))
	// The connection cap: fill the table with plaintext connections that
	// only read the greeting, past the cap by 10; an idle connection
	// (EHLO said, last reply long ago) is closed for each newcomer over it.
	time.Sleep(transportEvictGrace)
	over := idleCap(cfg) - int(n) - 1 + 10 // the normal client may hold one slot
	var fill counts
	var plain []net.Conn
	for i := range over {
		d := net.Dialer{LocalAddr: idleAddr(61, i, cfg.idlePer), Timeout: 5 * time.Second}
		nc, err := d.DialContext(ctx, "tcp", r.smtp)
		if err != nil {
			fill.add(outcome(err))
			continue
		}
		plain = append(plain, nc)
		nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		line, err := smtpclient.New(nc).ReadReply(ctx, 5*time.Second)
		if err != nil {
			fill.add(outcome(err))
			continue
		}
		fill.add(cut(line.String()))
	}
	defer func() {
		for _, nc := range plain {
			nc.Close()
		}
	}()
	var evicted counts
	var wg sync.WaitGroup
	for _, sc := range conns {
		wg.Go(func() {
			rp, err := sc.ReadReply(ctx, 2*time.Second)
			switch {
			case err != nil && outcome(err) == "timeout":
				evicted.add("still open")
			case err != nil:
				evicted.add(outcome(err))
			default:
				evicted.add(cut(rp.String()))
			}
		})
	}
	wg.Wait()
	notes = append(notes,
		fmt.Sprintf("cap %d on 25: %d greeting-only connections opened after the idle ones (from 127.61.0.1 on): %s", idleCap(cfg), over, fill.String()),
		fmt.Sprintf("the idle connections then: %s", evicted.String()))
	return p, notes, ctx.Err()
}

// transportEvictGrace is how long an idle connection must have been
// silent before the relay may close it for a newcomer.
const transportEvictGrace = 2 * time.Second

func mib(v int64) float64 { return float64(v) / (1 << 20) }

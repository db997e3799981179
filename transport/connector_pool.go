package transport

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/mailtls/mailtls/policy/dane"
)

// connPool keeps idle sessions for reuse by later Deliver calls. A session
// is keyed by the address it is connected to and everything that decided
// how it was set up (host name, level, verification, match names, minimum
// version, route), so a connection is only ever reused for a message that
// would have been allowed to open it.
type connPool struct {
	mu     sync.Mutex
	m      map[string][]*pooledConn
	closed bool
}

type pooledConn struct {
	s     *session
	timer *time.Timer
}

func (c *Connector) poolKey(st *groupState, t target, addr string) string {
	if c.Pool.MaxIdle <= 0 {
		return ""
	}
	// Under DANE the connection was verified against this host's records:
	// reuse it only while they are the same.
	var tlsa []string
	if st.hopDANE != nil {
		tlsa = append(tlsa, st.hopDANE.ServerName())
		for _, r := range st.hopDANE.TLSA {
			tlsa = append(tlsa, dane.FormatTLSA(r))
		}
	}
	return fmt.Sprintf("%s|%s|%s|%s|%d|%v|%v|%v|%d|%s|%d|%s",
		addr, t.host, c.Hostname, st.req.Level, st.hop.Check, st.hop.TryTLS, st.hop.Required, st.hop.Enforce,
		st.req.EffectiveMinVersion(), strings.Join(c.matchNames(st), ":"), st.g.routeIdx, strings.Join(tlsa, ","))
}

// get takes an idle session for key, or returns nil.
func (p *connPool) get(key string) *session {
	if key == "" {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		list := p.m[key]
		if len(list) == 0 {
			return nil
		}
		pc := list[len(list)-1]
		p.m[key] = list[:len(list)-1]
		if pc.timer.Stop() {
			return pc.s
		}
		// The idle timer fired and is closing it; take the next one.
	}
}

// release returns s to the pool, or closes it with QUIT when pooling is
// off, the pool is full or closed.
func (c *Connector) release(st *groupState, t target, s *session) {
	s.Unbind()
	key := s.poolKey
	if key == "" || c.Pool.MaxIdle <= 0 {
		s.Quit(context.Background())
		return
	}
	p := c.pool
	p.mu.Lock()
	if p.closed || len(p.m[key]) >= c.Pool.MaxIdle {
		p.mu.Unlock()
		s.Quit(context.Background())
		return
	}
	pc := &pooledConn{s: s}
	pc.timer = time.AfterFunc(orDefault(c.Pool.IdleTimeout, 30*time.Second), func() {
		p.mu.Lock()
		list := p.m[key]
		for i, x := range list {
			if x == pc {
				p.m[key] = append(list[:i:i], list[i+1:]...)
				break
			}
		}
		p.mu.Unlock()
		s.Quit(context.Background())
	})
	p.m[key] = append(p.m[key], pc)
	p.mu.Unlock()
}

// close QUITs every idle session and disables pooling.
func (p *connPool) close() {
	p.mu.Lock()
	p.closed = true
	var all []*pooledConn
	for k, list := range p.m {
		all = append(all, list...)
		delete(p.m, k)
	}
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, pc := range all {
		if pc.timer.Stop() {
			wg.Add(1)
			go func() { defer wg.Done(); pc.s.Quit(context.Background()) }()
		}
	}
	wg.Wait()
}

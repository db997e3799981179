package dane

import (
	"context"
	"sync"
)

// Memo remembers the answers to the queries sent under one context, so that
// the lookups of one delivery attempt send each query once: a Connector's
// policy lookup (policy.Standard asking Policy.Lookup) and its own
// per-host lookup (Policy.LookupMX) need the same MX, A, AAAA and TLSA
// answers (RFC 7672 §2.2). Both then also decide on the same answers.
//
// A Memo belongs to one delivery attempt: it never expires what it holds
// (the resolver caches across attempts, honouring TTLs). Failed queries are
// remembered too, so that a SERVFAIL (bogus DNSSEC data) or a timeout is
// met once per attempt; a query interrupted by its context's cancellation
// is not. Answers are keyed by resolver address, trust, name and type, so
// a Memo shared by two Resolvers never mixes their answers.
//
// Attach a Memo to a context with WithMemo; every Resolver query made
// under that context consults it. The zero Memo is empty and ready to use.
// A Memo is safe for concurrent use: concurrent queries for the same key
// wait for the first.
type Memo struct {
	mu sync.Mutex
	m  map[memoKey]*memoEntry
}

type memoKey struct {
	addr    string
	trusted bool
	name    string
	qtype   uint16
}

type memoEntry struct {
	done      chan struct{}
	a         *Answer
	err       error
	forgotten bool // the query was cancelled; ask again
}

type memoCtxKey struct{}

// WithMemo returns a copy of ctx whose Resolver queries are answered from m
// when m holds the answer, and recorded in m otherwise. A nil m returns ctx.
func WithMemo(ctx context.Context, m *Memo) context.Context {
	if m == nil {
		return ctx
	}
	return context.WithValue(ctx, memoCtxKey{}, m)
}

func memoFrom(ctx context.Context) *Memo {
	m, _ := ctx.Value(memoCtxKey{}).(*Memo)
	return m
}

// Len returns the number of distinct queries m holds an answer or an error
// for.
func (m *Memo) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, e := range m.m {
		if !e.forgotten {
			n++
		}
	}
	return n
}

// do returns the remembered result for k, or runs query once and
// remembers its result. The returned Answer is a copy; its Records are
// shared and must not be modified.
func (m *Memo) do(ctx context.Context, k memoKey, query func() (*Answer, error)) (*Answer, error) {
	for {
		m.mu.Lock()
		if m.m == nil {
			m.m = map[memoKey]*memoEntry{}
		}
		e, ok := m.m[k]
		if !ok {
			e = &memoEntry{done: make(chan struct{})}
			m.m[k] = e
			m.mu.Unlock()
			e.a, e.err = query()
			if e.err != nil && ctx.Err() != nil {
				m.mu.Lock()
				e.forgotten = true
				delete(m.m, k)
				m.mu.Unlock()
			}
			close(e.done)
			return copyAnswer(e.a), e.err
		}
		m.mu.Unlock()
		select {
		case <-e.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if !e.forgotten {
			return copyAnswer(e.a), e.err
		}
	}
}

func copyAnswer(a *Answer) *Answer {
	if a == nil {
		return nil
	}
	c := *a
	return &c
}

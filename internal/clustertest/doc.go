// Package clustertest runs several relay processes (the examples/relay
// program, built by the tests) on one PostgreSQL queue
// (transport/queue/pgstore, in a private cluster from internal/pgtest),
// delivering to one TLS sink, and breaks them: SIGKILL, SIGSTOP, an
// immediate restart of PostgreSQL. It holds only tests; see
// cluster_test.go for the rig and the README for the commands.
package clustertest

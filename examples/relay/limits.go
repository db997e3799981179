package main

import (
	"flag"
	"time"

	"github.com/mailtls/mailtls/transport"
)

// serverLimits are the inbound limits every listener applies, from the
// flags registerLimits defines. Each mirrors a transport.Server field; the
// flag defaults are the library's defaults, spelled out so that -h shows
// them.
type serverLimits struct {
	MaxMessageBytes         int64         // -max-message-size (Postfix message_size_limit)
	MaxRecipients           int           // -max-recipients (smtpd_recipient_limit)
	MaxConnections          int           // -max-connections, per listener
	MaxConnectionsPerClient int           // -max-connections-per-client (smtpd_client_connection_count_limit)
	CommandTimeout          time.Duration // -command-timeout (smtpd_timeout, smtpd_per_record_deadline)
	DataTimeout             time.Duration // -data-timeout: a whole DATA/BDAT transfer
	StressTimeout           time.Duration // -stress-timeout (stress mode smtpd_timeout); <= 0: off
	MinDataRate             int           // -min-data-rate under stress (smtpd_min_data_rate); <= 0: off
	MaxJunkCommands         int           // -max-junk-commands (smtpd_junk_command_limit); <= 0: off
	AuthMaxFailures         int           // -auth-max-failures per address (smtpd_client_auth_rate_limit)
	AuthMaxNetworkFailures  int           // -auth-max-network-failures per /24 or /48
	AuthFailureWindow       time.Duration // -auth-failure-window (anvil_rate_time_unit)
	AuthMaxConcurrent       int           // -auth-max-concurrent password checks; 0: one per CPU
	AuthQueueTimeout        time.Duration // -auth-queue-timeout: wait for a check slot, then 454 4.7.0
}

// registerLimits defines the limit flags on fs, filling l.
func registerLimits(fs *flag.FlagSet, l *serverLimits) {
	fs.Int64Var(&l.MaxMessageBytes, "max-message-size", transport.DefaultMaxMessageBytes, "largest message in `bytes`, advertised as SIZE; larger ones get 552 5.3.4 (Postfix message_size_limit)")
	fs.IntVar(&l.MaxRecipients, "max-recipients", transport.DefaultMaxRecipients, "most RCPT per message; more get 452 4.5.3 (Postfix smtpd_recipient_limit)")
	fs.IntVar(&l.MaxConnections, "max-connections", transport.DefaultMaxConnections, "concurrent connections per listener; at the cap a new one takes the slot of the one making the least progress")
	fs.IntVar(&l.MaxConnectionsPerClient, "max-connections-per-client", transport.DefaultMaxConnectionsPerClient, "concurrent connections per client address (IPv4, IPv6 /64) per listener; one more gets 421 4.7.0 (Postfix smtpd_client_connection_count_limit)")
	fs.DurationVar(&l.CommandTimeout, "command-timeout", transport.DefaultCommandTimeout, "time for a whole command line, from the previous reply, however slowly its bytes arrive (Postfix smtpd_timeout with smtpd_per_record_deadline)")
	fs.DurationVar(&l.DataTimeout, "data-timeout", transport.DefaultDataTimeout, "time for a whole DATA or BDAT transfer; then 421 4.4.2 and nothing is accepted")
	fs.DurationVar(&l.StressTimeout, "stress-timeout", transport.DefaultStressTimeout, "timeouts while a listener holds 80% of -max-connections (Postfix stress mode); 0 or negative: no stress mode")
	fs.IntVar(&l.MinDataRate, "min-data-rate", transport.DefaultMinDataRate, "under stress, the slowest average `bytes/s` of a DATA or BDAT transfer after its first -stress-timeout; slower ones are ended with 421 4.4.2 (Postfix smtpd_min_data_rate); 0 or negative: off")
	fs.IntVar(&l.MaxJunkCommands, "max-junk-commands", transport.DefaultMaxJunkCommands, "commands a connection may send that advance no transaction (NOOP, RSET, VRFY, refused commands; a tenth under stress) before 421 4.7.0 (Postfix smtpd_junk_command_limit); 0 or negative: off")
	fs.IntVar(&l.AuthMaxFailures, "auth-max-failures", transport.DefaultAuthMaxFailures, "failed AUTH attempts per client address (IPv4, IPv6 /64) within -auth-failure-window before 454 4.7.0 (Postfix smtpd_client_auth_rate_limit)")
	fs.IntVar(&l.AuthMaxNetworkFailures, "auth-max-network-failures", transport.DefaultAuthMaxNetworkFailures, "the same limit for a client network (IPv4 /24, IPv6 /48)")
	fs.DurationVar(&l.AuthFailureWindow, "auth-failure-window", transport.DefaultAuthFailureWindow, "window of the AUTH failure limits (Postfix anvil_rate_time_unit)")
	fs.IntVar(&l.AuthMaxConcurrent, "auth-max-concurrent", 0, "password checks (bcrypt) running at once; 0: one per CPU")
	fs.DurationVar(&l.AuthQueueTimeout, "auth-queue-timeout", transport.DefaultAuthQueueTimeout, "how long an AUTH waits for a password-check slot before 454 4.7.0")
}

// check reports the limits that are out of range through bad.
func (l *serverLimits) check(bad func(format string, a ...any)) {
	for _, p := range []struct {
		flag string
		v    int64
	}{
		{"-max-message-size", l.MaxMessageBytes},
		{"-max-recipients", int64(l.MaxRecipients)},
		{"-max-connections", int64(l.MaxConnections)},
		{"-max-connections-per-client", int64(l.MaxConnectionsPerClient)},
		{"-command-timeout", int64(l.CommandTimeout)},
		{"-data-timeout", int64(l.DataTimeout)},
		{"-auth-max-failures", int64(l.AuthMaxFailures)},
		{"-auth-max-network-failures", int64(l.AuthMaxNetworkFailures)},
		{"-auth-failure-window", int64(l.AuthFailureWindow)},
		{"-auth-queue-timeout", int64(l.AuthQueueTimeout)},
	} {
		if p.v <= 0 {
			bad("%s: must be positive", p.flag)
		}
	}
	if l.AuthMaxConcurrent < 0 {
		bad("-auth-max-concurrent: must not be negative (0: one per CPU)")
	}
}

// apply sets the limits on srv.
func (l *serverLimits) apply(srv *transport.Server) {
	srv.MaxMessageBytes = l.MaxMessageBytes
	srv.MaxRecipients = l.MaxRecipients
	srv.MaxConnections = l.MaxConnections
	srv.MaxConnectionsPerClient = l.MaxConnectionsPerClient
	srv.Timeouts.Command = l.CommandTimeout
	srv.Timeouts.Data = l.DataTimeout
	srv.Timeouts.Stress = l.StressTimeout
	if l.StressTimeout <= 0 {
		srv.Timeouts.Stress = -1 // off
	}
	srv.MinDataRate = l.MinDataRate
	if l.MinDataRate <= 0 {
		srv.MinDataRate = -1 // off
	}
	srv.MaxJunkCommands = l.MaxJunkCommands
	if l.MaxJunkCommands <= 0 {
		srv.MaxJunkCommands = -1 // off
	}
	srv.AuthMaxFailures = l.AuthMaxFailures
	srv.AuthMaxNetworkFailures = l.AuthMaxNetworkFailures
	srv.AuthFailureWindow = l.AuthFailureWindow
	srv.AuthMaxConcurrent = l.AuthMaxConcurrent
	srv.AuthQueueTimeout = l.AuthQueueTimeout
}

// minFree is the free space -queue-minfree asks for: its value, or for 0
// one and a half times -max-message-size (the margin Postfix keeps without
// queue_minfree); negative means no check.
func (c *Config) minFree() int64 {
	if c.QueueMinFree == 0 {
		return c.Limits.MaxMessageBytes * 3 / 2
	}
	return c.QueueMinFree
}

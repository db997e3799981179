package transport

import (
	"errors"
	"flag"
	"fmt"
)

// LimitFlags defines on fs one command-line flag per limit of s, bound to
// s's fields, named after Postfix's parameters where one exists, with the
// library's defaults as flag defaults so that -h shows them:
// -max-message-size, -max-recipients, -max-connections,
// -max-connections-per-client, -command-timeout, -data-timeout,
// -stress-timeout, -min-data-rate, -max-junk-commands, -auth-max-failures,
// -auth-max-network-failures, -auth-failure-window, -auth-max-concurrent
// and -auth-queue-timeout. s is a template that holds only limits: after
// fs.Parse call CheckLimitFlags, then CopyLimits into each listener.
func (s *Server) LimitFlags(fs *flag.FlagSet) {
	fs.Int64Var(&s.MaxMessageBytes, "max-message-size", DefaultMaxMessageBytes, "largest message in `bytes`, advertised as SIZE; larger ones get 552 5.3.4 (Postfix message_size_limit)")
	fs.IntVar(&s.MaxRecipients, "max-recipients", DefaultMaxRecipients, "most RCPT per message; more get 452 4.5.3 (Postfix smtpd_recipient_limit)")
	fs.IntVar(&s.MaxConnections, "max-connections", DefaultMaxConnections, "concurrent connections per listener; at the cap a new one takes the slot of the one making the least progress")
	fs.IntVar(&s.MaxConnectionsPerClient, "max-connections-per-client", DefaultMaxConnectionsPerClient, "concurrent connections per client address (IPv4, IPv6 /64) per listener; one more gets 421 4.7.0 (Postfix smtpd_client_connection_count_limit)")
	fs.DurationVar(&s.Timeouts.Command, "command-timeout", DefaultCommandTimeout, "time for a whole command line, from the previous reply, however slowly its bytes arrive (Postfix smtpd_timeout with smtpd_per_record_deadline)")
	fs.DurationVar(&s.Timeouts.Data, "data-timeout", DefaultDataTimeout, "time for a whole DATA or BDAT transfer; then 421 4.4.2 and nothing is accepted")
	fs.DurationVar(&s.Timeouts.Stress, "stress-timeout", DefaultStressTimeout, "timeouts while a listener holds 80% of -max-connections (Postfix stress mode); 0 or negative: no stress mode")
	fs.IntVar(&s.MinDataRate, "min-data-rate", DefaultMinDataRate, "under stress, the slowest average `bytes/s` of a DATA or BDAT transfer after its first -stress-timeout; slower ones are ended with 421 4.4.2 (Postfix smtpd_min_data_rate); 0 or negative: off")
	fs.IntVar(&s.MaxJunkCommands, "max-junk-commands", DefaultMaxJunkCommands, "commands a connection may send that advance no transaction (NOOP, RSET, VRFY, refused commands; a tenth under stress) before 421 4.7.0 (Postfix smtpd_junk_command_limit); 0 or negative: off")
	fs.IntVar(&s.AuthMaxFailures, "auth-max-failures", DefaultAuthMaxFailures, "failed AUTH attempts per client address (IPv4, IPv6 /64) within -auth-failure-window before 454 4.7.0 (Postfix smtpd_client_auth_rate_limit)")
	fs.IntVar(&s.AuthMaxNetworkFailures, "auth-max-network-failures", DefaultAuthMaxNetworkFailures, "the same limit for a client network (IPv4 /24, IPv6 /48)")
	fs.DurationVar(&s.AuthFailureWindow, "auth-failure-window", DefaultAuthFailureWindow, "window of the AUTH failure limits (Postfix anvil_rate_time_unit)")
	fs.IntVar(&s.AuthMaxConcurrent, "auth-max-concurrent", 0, "password checks (bcrypt) running at once; 0: one per CPU")
	fs.DurationVar(&s.AuthQueueTimeout, "auth-queue-timeout", DefaultAuthQueueTimeout, "how long an AUTH waits for a password-check slot before 454 4.7.0")
}

// CheckLimitFlags checks the limits LimitFlags parsed, with errors naming
// the flags, and turns the "0 or negative: off" of -stress-timeout,
// -min-data-rate and -max-junk-commands into the Server's "off" (-1).
func (s *Server) CheckLimitFlags() error {
	var errs []error
	for _, p := range []struct {
		flag string
		v    int64
	}{
		{"-max-message-size", s.MaxMessageBytes},
		{"-max-recipients", int64(s.MaxRecipients)},
		{"-max-connections", int64(s.MaxConnections)},
		{"-max-connections-per-client", int64(s.MaxConnectionsPerClient)},
		{"-command-timeout", int64(s.Timeouts.Command)},
		{"-data-timeout", int64(s.Timeouts.Data)},
		{"-auth-max-failures", int64(s.AuthMaxFailures)},
		{"-auth-max-network-failures", int64(s.AuthMaxNetworkFailures)},
		{"-auth-failure-window", int64(s.AuthFailureWindow)},
		{"-auth-queue-timeout", int64(s.AuthQueueTimeout)},
	} {
		if p.v <= 0 {
			errs = append(errs, fmt.Errorf("%s: must be positive", p.flag))
		}
	}
	if s.AuthMaxConcurrent < 0 {
		errs = append(errs, errors.New("-auth-max-concurrent: must not be negative (0: one per CPU)"))
	}
	if s.Timeouts.Stress <= 0 {
		s.Timeouts.Stress = -1
	}
	if s.MinDataRate <= 0 {
		s.MinDataRate = -1
	}
	if s.MaxJunkCommands <= 0 {
		s.MaxJunkCommands = -1
	}
	return errors.Join(errs...)
}

// CopyLimits sets the limits LimitFlags defines on s from from.
func (s *Server) CopyLimits(from *Server) {
	s.MaxMessageBytes, s.MaxRecipients = from.MaxMessageBytes, from.MaxRecipients
	s.MaxConnections, s.MaxConnectionsPerClient = from.MaxConnections, from.MaxConnectionsPerClient
	s.Timeouts.Command, s.Timeouts.Data, s.Timeouts.Stress = from.Timeouts.Command, from.Timeouts.Data, from.Timeouts.Stress
	s.MinDataRate, s.MaxJunkCommands = from.MinDataRate, from.MaxJunkCommands
	s.AuthMaxFailures, s.AuthMaxNetworkFailures = from.AuthMaxFailures, from.AuthMaxNetworkFailures
	s.AuthFailureWindow, s.AuthMaxConcurrent, s.AuthQueueTimeout = from.AuthFailureWindow, from.AuthMaxConcurrent, from.AuthQueueTimeout
}

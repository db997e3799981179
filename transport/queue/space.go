package queue

import (
	"context"
	"errors"
	"log/slog"

	"github.com/mailtls/mailtls/transport"
)

// DefaultMinFree is the free space a Queue keeps in its Store when
// Queue.MinFree is zero: one and a half times the transport.Server's
// default message size limit, the margin Postfix's smtpd keeps when
// queue_minfree is not set (1.5 × message_size_limit).
const DefaultMinFree = transport.DefaultMaxMessageBytes * 3 / 2

// ErrInsufficientStorage is the cause (Err) of the "452 4.3.1" refusal
// CheckFreeSpace returns; match it with errors.Is.
var ErrInsufficientStorage = errors.New("queue: insufficient free space for new mail")

// SpaceReporter is an optional interface of a Store that can tell how much
// space is left for new messages. A Queue whose Store implements it refuses
// new mail at MAIL FROM while the space is short (see Queue.CheckSender).
// DirStore implements it.
type SpaceReporter interface {
	// FreeSpace returns the bytes available for new messages. An error
	// wrapping errors.ErrUnsupported means the store cannot tell.
	FreeSpace(ctx context.Context) (int64, error)
}

// CheckFreeSpace decides whether a new message of size bytes (the MAIL
// SIZE= parameter, RFC 1870 §6; 0 if the client gave none) may be accepted
// where free bytes are available and minFree bytes must stay free: it
// returns nil when free is at least minFree + size, and otherwise "452 4.3.1
// Insufficient system storage" (RFC 5321 §4.2.2, RFC 3463 §3.4), the reply
// Postfix's smtpd gives at MAIL under queue_minfree, wrapping
// ErrInsufficientStorage. A negative minFree or size counts as zero.
func CheckFreeSpace(free, minFree, size int64) error {
	minFree, size = max(minFree, 0), max(size, 0)
	if free >= minFree && free-minFree >= size {
		return nil
	}
	return &transport.Error{Code: 452, EnhancedCode: transport.EnhancedCode{4, 3, 1},
		Message: "Insufficient system storage", Err: ErrInsufficientStorage}
}

// CheckSender implements transport.SenderChecker, so a Server whose
// Handler is the Queue refuses a transaction at MAIL FROM, before the
// client sends any data, while the Store is short of space: when the Store
// is a SpaceReporter with less than MinFree plus the MAIL SIZE= parameter
// free, it returns "452 4.3.1 Insufficient system storage" (see
// CheckFreeSpace; Postfix's queue_minfree). A Store that cannot tell, or a
// negative MinFree, accepts every sender; an error reading the free space
// is logged and the sender accepted (Enqueue still fails with 451 if the
// disk is really full).
func (q *Queue) CheckSender(ctx context.Context, env *transport.Envelope) error {
	sr, ok := q.Store.(SpaceReporter)
	if !ok || q.MinFree < 0 {
		return nil
	}
	free, err := sr.FreeSpace(ctx)
	if err != nil {
		if !errors.Is(err, errors.ErrUnsupported) {
			q.logger().Warn("cannot read the spool's free space", "err", err)
		}
		return nil
	}
	minFree := orDefault(q.MinFree, DefaultMinFree)
	if err := CheckFreeSpace(free, minFree, env.Size); err != nil {
		q.logger().Warn("refusing mail: spool short of space", "free", free, "min_free", minFree,
			"size", env.Size, "from", env.From, "peer", env.ClientAddr)
		return err
	}
	return nil
}

// FreeSpace implements SpaceReporter: the bytes available to an
// unprivileged process on the file system holding the spool directory
// (statfs(2) f_bavail × f_bsize). Where the system has no statfs it
// returns an error wrapping errors.ErrUnsupported.
func (s *DirStore) FreeSpace(ctx context.Context) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	return DiskFree(s.dir)
}

var (
	_ transport.SenderChecker = (*Queue)(nil)
	_ SpaceReporter           = (*DirStore)(nil)
)

// FreeSpace is a transport.SenderChecker for a directory besides the
// spool that accepted mail fills, such as the Maildir root of local
// delivery: at MAIL FROM it refuses with "452 4.3.1" while the file system
// holding Dir has less than MinFree plus the MAIL SIZE= parameter free
// (CheckFreeSpace). A file system that cannot tell is not refused.
type FreeSpace struct {
	Dir string
	// MinFree is the margin; negative disables the check.
	MinFree int64
	// Logger receives refusals; nil discards.
	Logger *slog.Logger
}

var _ transport.SenderChecker = FreeSpace{}

// CheckSender implements transport.SenderChecker.
func (f FreeSpace) CheckSender(ctx context.Context, env *transport.Envelope) error {
	if f.MinFree < 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	free, err := DiskFree(f.Dir)
	if err != nil {
		return nil
	}
	if err := CheckFreeSpace(free, f.MinFree, env.Size); err != nil {
		if f.Logger != nil {
			f.Logger.Warn("refusing mail: short of space", "dir", f.Dir, "free", free,
				"min_free", f.MinFree, "size", env.Size, "from", env.From, "peer", env.ClientAddr)
		}
		return err
	}
	return nil
}

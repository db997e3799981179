package queue

import "errors"

// ErrLeaseLost is returned by a shared Store's Update or Delete when this
// node's lease on the message was taken over by another node (it was
// paused or cut off longer than the lease): the other node now owns the
// message, and this node's copy must be dropped without delivering.
var ErrLeaseLost = errors.New("queue: lease on message taken over by another node")

// ValidID reports whether id is a well-formed message id: ASCII letters,
// digits, '.', '-' and '_', not starting with '.', at most 200 bytes. A
// Store may rely on it (the file store uses ids as file names).
func ValidID(id string) bool { return validID(id) }

// EncodeMessage checks m and renders it as the spool record (JSON), the
// inverse of DecodeMessage. Stores other than the file store keep this
// record as it is.
func EncodeMessage(m *Message) ([]byte, error) { return encodeMessage(m) }

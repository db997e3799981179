package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/mailtls/mailtls/transport/queue"
)

// Client sends requests to a Server, one connection per request.
type Client struct {
	// Path is the server's socket.
	Path string
	// Timeout bounds one request, connection included. Zero means
	// DefaultTimeout.
	Timeout time.Duration
}

// Do sends req and returns the server's response. A failure the server
// answered is returned as an *Error (with the response); a connection or
// decoding failure as another error.
func (c *Client) Do(ctx context.Context, req *Request) (*Response, error) {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.Path)
	if err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	b, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	// A server that refuses the connection (busy) answers and closes
	// without reading: its answer is read even if the write failed.
	_, werr := conn.Write(append(b, '\n'))
	var resp Response
	if err := json.NewDecoder(io.LimitReader(conn, MaxResponse)).Decode(&resp); err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		if werr != nil {
			return nil, fmt.Errorf("admin: sending request: %w", werr)
		}
		return nil, fmt.Errorf("admin: reading response: %w", err)
	}
	if !resp.OK {
		return &resp, &Error{Code: resp.Code, Message: resp.Error}
	}
	return &resp, nil
}

// List returns every queued message, oldest first, and the recipient
// counts by state (the response's Messages, Counts and Warning).
func (c *Client) List(ctx context.Context) (*Response, error) {
	return c.Do(ctx, &Request{Command: List})
}

// Show returns message id; errors.Is(err, queue.ErrNotFound) if there is
// none.
func (c *Client) Show(ctx context.Context, id string) (*queue.Message, error) {
	resp, err := c.Do(ctx, &Request{Command: Show, ID: id})
	if err != nil {
		return nil, err
	}
	return resp.Message, nil
}

// Retry makes the waiting recipients of message id due now.
func (c *Client) Retry(ctx context.Context, id string) error {
	_, err := c.Do(ctx, &Request{Command: Retry, ID: id})
	return err
}

// RetryDomain makes due now the waiting recipients at domain and returns
// how many messages changed.
func (c *Client) RetryDomain(ctx context.Context, domain string) (int, error) {
	return c.changed(c.Do(ctx, &Request{Command: Retry, Domain: domain}))
}

// RetryAll makes every waiting recipient due now and returns how many
// messages changed.
func (c *Client) RetryAll(ctx context.Context) (int, error) {
	return c.changed(c.Do(ctx, &Request{Command: Retry, All: true}))
}

// Remove deletes message id without a report.
func (c *Client) Remove(ctx context.Context, id string) error {
	_, err := c.Do(ctx, &Request{Command: Remove, ID: id})
	return err
}

// Hold stops delivery attempts for message id until Release.
func (c *Client) Hold(ctx context.Context, id string) error {
	_, err := c.Do(ctx, &Request{Command: Hold, ID: id})
	return err
}

// Release lets a held message id be attempted again.
func (c *Client) Release(ctx context.Context, id string) error {
	_, err := c.Do(ctx, &Request{Command: Release, ID: id})
	return err
}

func (c *Client) changed(resp *Response, err error) (int, error) {
	if err != nil {
		return 0, err
	}
	return resp.Changed, nil
}

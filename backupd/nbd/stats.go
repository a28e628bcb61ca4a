package nbd

import "sync/atomic"

// Stats counts what a Client did since it was dialed.
type Stats struct {
	Requests   int64 // requests sent, including retries
	Retries    int64 // attempts after a failed one
	Reconnects int64 // connections re-established after a failure
	Stalls     int64 // connections dropped by the stall timeout
}

// counters are the live values behind Stats.
type counters struct {
	requests, retries, reconnects, stalls atomic.Int64
}

// Stats returns a snapshot of the client's counters.
func (c *Client) Stats() Stats {
	return Stats{
		Requests:   c.stats.requests.Load(),
		Retries:    c.stats.retries.Load(),
		Reconnects: c.stats.reconnects.Load(),
		Stalls:     c.stats.stalls.Load(),
	}
}

package serve

import (
	"net"
	"sync"
)

// MaxConnsPerClient caps the API connections one client address (an
// IPv4 address, an IPv6 /64) holds at once, below MaxConns: one host that
// opens connections and sends nothing (slowloris), or floods the
// listener's backlog, cannot take every slot from the others. A
// connection past it is closed at once.
const MaxConnsPerClient = 32

// clientConnListener closes a connection from a client that already
// holds max of them.
type clientConnListener struct {
	net.Listener
	max  int
	mu   sync.Mutex
	open map[string]int
}

func newClientConnListener(l net.Listener, max int) net.Listener {
	return &clientConnListener{Listener: l, max: max, open: map[string]int{}}
}

func (l *clientConnListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key := clientKey(c.RemoteAddr().String())
		l.mu.Lock()
		full := l.open[key] >= l.max
		if !full {
			l.open[key]++
		}
		l.mu.Unlock()
		if full {
			c.Close()
			continue
		}
		return &clientConn{Conn: c, release: func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			if l.open[key]--; l.open[key] <= 0 {
				delete(l.open, key)
			}
		}}, nil
	}
}

type clientConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *clientConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/term"

	"github.com/cairnbackup/cairn/internal/bytesize"
)

// progressBar draws one updating line on a terminal (stderr) and nothing
// at all when stderr is not a terminal.
type progressBar struct {
	label   string
	total   int64
	done    atomic.Int64
	start   time.Time
	out     io.Writer
	stop    chan struct{}
	stopped sync.WaitGroup
}

func newProgressBar(label string, total int64) *progressBar {
	p := &progressBar{label: label, total: total, start: time.Now(), stop: make(chan struct{})}
	if !term.IsTerminal(int(os.Stderr.Fd())) {
		return p
	}
	p.out = os.Stderr
	p.stopped.Add(1)
	go func() {
		defer p.stopped.Done()
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				p.draw()
				fmt.Fprintln(p.out)
				return
			case <-t.C:
				p.draw()
			}
		}
	}()
	return p
}

// Add counts n more bytes done. Safe for concurrent use.
func (p *progressBar) Add(n int64) { p.done.Add(n) }

func (p *progressBar) draw() {
	done := p.done.Load()
	pct := 100.0
	if p.total > 0 {
		pct = float64(done) * 100 / float64(p.total)
	}
	rate := float64(done) / max(time.Since(p.start).Seconds(), 0.001)
	width := 30
	filled := int(pct / 100 * float64(width))
	bar := make([]byte, width)
	for i := range bar {
		if i < filled {
			bar[i] = '#'
		} else {
			bar[i] = '.'
		}
	}
	fmt.Fprintf(p.out, "\r%-12s [%s] %5.1f%% %s/%s %s/s   ", p.label, bar, pct, bytesize.IEC(done), bytesize.IEC(p.total), bytesize.IEC(int64(rate)))
}

// Finish stops drawing.
func (p *progressBar) Finish() {
	if p.out == nil {
		return
	}
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	p.stopped.Wait()
}

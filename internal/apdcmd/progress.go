package apdcmd

import (
	"fmt"
	"io"
	"os"
	"time"
)

// progress shows a running count on a terminal ("imported 120,000
// readings, 95,000/s"); on anything else it stays silent, so logs and
// pipes get only the final summary.
type progress struct {
	w     io.Writer
	verb  string
	n     int
	start time.Time
	last  time.Time
}

func newProgress(w io.Writer, verb string) *progress {
	f, ok := w.(*os.File)
	if !ok {
		return &progress{}
	}
	if fi, err := f.Stat(); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return &progress{}
	}
	now := time.Now()
	return &progress{w: w, verb: verb, start: now, last: now}
}

func (p *progress) add(k int) {
	p.n += k
	if p.w == nil || p.n%1000 != 0 {
		return
	}
	if now := time.Now(); now.Sub(p.last) >= 200*time.Millisecond {
		p.last = now
		fmt.Fprintf(p.w, "\r%s %s readings, %s/s   ", p.verb, thousands(p.n), thousands(int(float64(p.n)/now.Sub(p.start).Seconds())))
	}
}

// done clears the progress line.
func (p *progress) done() {
	if p.w != nil {
		fmt.Fprint(p.w, "\r\033[K")
	}
}

// thousands formats n with thousands separators: 1234567 → 1,234,567.
func thousands(n int) string {
	s := fmt.Sprint(n)
	if n < 0 {
		return "-" + thousands(-n)
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

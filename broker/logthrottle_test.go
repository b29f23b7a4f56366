package broker

import (
	"log/slog"
	"strings"
	"testing"
)

func TestOncePerMinute(t *testing.T) {
	var b strings.Builder
	log := slog.New(newOncePerMinute(slog.NewTextHandler(&b, nil)))
	for i := 0; i < 100; i++ {
		log.Warn("client store quota reached", "client", "agg")
		log.Info("routine", "n", i)
	}
	log.Warn("client store quota reached", "client", "other")
	out := b.String()
	if n := strings.Count(out, "quota reached"); n != 2 {
		t.Errorf("%d warnings passed, want 2 (one per client):\n%s", n, out)
	}
	if n := strings.Count(out, "routine"); n != 100 {
		t.Errorf("info messages throttled: %d", n)
	}
}

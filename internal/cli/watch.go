package cli

import (
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/apd-telemetry/apd/internal/mqttc"
)

func newWatchClient(url, user, password, ca string, log *slog.Logger) (*mqttc.Client, error) {
	return mqttc.Dial(mqttc.Options{
		URL: url, ClientID: fmt.Sprintf("apd-watch-%08x", rand.Uint32()),
		Username: user, Password: password, TLSCA: ca, QoS: 0, Logger: log,
	})
}

// watcher prints messages one line at a time.
type watcher struct {
	mu     sync.Mutex
	prefix string
	w      io.Writer
}

func newWatcher(prefix string, w io.Writer) *watcher { return &watcher{prefix: prefix, w: w} }

func (w *watcher) show(topic string, payload []byte) {
	line, ok := watchLine(topic, payload, w.prefix, time.Now())
	if !ok {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	fmt.Fprintln(w.w, line)
}

// Package wifi_signal is an example of a compiled-in sensor: the signal
// level of this machine's Wi-Fi link from /proc/net/wireless, in dBm.
//
// Importing it registers the sensor "wifi_signal" with apd-publish's
// registry, the way database/sql drivers register themselves; a custom
// build of apd-publish (see ../apd-publish-custom and docs/plugins.md)
// then has it like any built-in. It shows what a sensor provides: a
// title, a Read that returns a value or an error of a kind, and,
// optionally, a probe of its hardware and a format of its own.
package wifi_signal

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/apd-telemetry/apd/publisher"
	"github.com/apd-telemetry/apd/schema"
)

func init() {
	publisher.Register("wifi_signal", New)
	// The format works on the stored value alone, so an aggregator that
	// links this package formats any host's wifi_signal readings too.
	schema.RegisterFormat("wifi_signal", Format)
}

// Sensor reads the link named Interface, or the first one listed.
type Sensor struct {
	Path      string
	Interface string
}

// New is the factory: it reads its parameter ([sensors.wifi_signal]
// interface = "wlan0") and never fails for missing hardware: Present
// tells apd-publish, which then lists the sensor as absent instead of
// sampling it, and Read reports it when the configuration asks for the
// sensor anyway.
func New(env publisher.Env) (publisher.Sensor, error) {
	var p struct {
		Interface string `toml:"interface"`
	}
	if err := env.Decode(&p); err != nil {
		return nil, err
	}
	return Sensor{Path: env.Path("/proc/net/wireless"), Interface: p.Interface}, nil
}

// Title implements publisher.Sensor.
func (Sensor) Title() string { return "Wi-Fi Signal" }

// Present implements publisher.Prober: a machine without Wi-Fi has no
// wifi_signal to sample. A link that is there but reads badly is present.
func (s Sensor) Present() error {
	if _, err := s.Read(context.Background()); errors.Is(err, publisher.ErrNotPresent) {
		return err
	}
	return nil
}

// Read implements publisher.Sensor. No Wi-Fi at all is persistent (retrying
// will not help); a line that does not parse is intermittent.
func (s Sensor) Read(context.Context) (any, error) {
	f, err := os.Open(s.Path)
	if err != nil {
		return nil, publisher.Persistent(fmt.Errorf("no wireless statistics: %w", publisher.ErrNotPresent))
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for line := 0; sc.Scan(); line++ {
		if line < 2 {
			continue // two header lines
		}
		iface, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || (s.Interface != "" && strings.TrimSpace(iface) != s.Interface) {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) < 3 {
			return nil, publisher.Intermittent(fmt.Errorf("%s: short line %q", s.Path, sc.Text()))
		}
		level, err := strconv.ParseFloat(strings.TrimSuffix(fields[2], "."), 64)
		if err != nil {
			return nil, publisher.Intermittent(fmt.Errorf("%s: signal level %q: %w", s.Path, fields[2], err))
		}
		return schema.Quantity{Magnitude: level, Unit: "dBm"}, nil
	}
	if s.Interface != "" {
		return nil, publisher.Persistent(fmt.Errorf("no wireless interface %s: %w", s.Interface, publisher.ErrNotPresent))
	}
	return nil, publisher.Persistent(fmt.Errorf("no wireless interface: %w", publisher.ErrNotPresent))
}

// Format is the level with a word for it: "-52 dBm (good)".
func Format(value json.RawMessage) string {
	q, ok := schema.ParseQuantity(value)
	if !ok {
		return schema.FormatValue(value)
	}
	word := "poor"
	switch {
	case q.Magnitude >= -50:
		word = "excellent"
	case q.Magnitude >= -60:
		word = "good"
	case q.Magnitude >= -70:
		word = "fair"
	}
	return fmt.Sprintf("%.0f dBm (%s)", q.Magnitude, word)
}

package demo

import (
	"fmt"
	"slices"
	"time"

	"github.com/apd-telemetry/apd/internal/rules"
	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/schema"
)

// History says what history to write.
type History struct {
	// End is the history's last instant (exclusive); its readings are
	// stamped on whole Steps before it.
	End time.Time
	// Span is how far back it goes; 0 means a week.
	Span time.Duration
	// Step is the interval of its readings; 0 means a minute.
	Step time.Duration
	// Rules are replayed over it: their outcomes are stored as the
	// publish action would have stored them.
	Rules []rules.Config
	// Progress, when set, is told how many of about total readings are
	// written, after each commit.
	Progress func(done, total int)
}

// Imported is what Import wrote.
type Imported struct {
	Readings int
	Outcomes int
	Start    time.Time
}

// importBatch is how many readings one commit writes: large enough that
// a week of a dozen hosts takes a few dozen commits.
const importBatch = 20000

// Import writes the fleet's history into st, as apd import does: host
// names, colours and locations, the readings of every host (the offline
// host's stopping OfflineAgo before the end), the outcomes the rules
// would have published, the offline host's lost status, and then every
// head sealed where the engine can.
func (f *Fleet) Import(st store.Store, h History) (Imported, error) {
	if h.Span == 0 {
		h.Span = 7 * 24 * time.Hour
	}
	if h.Step == 0 {
		h.Step = time.Minute
	}
	end := h.End.UTC().Truncate(h.Step)
	if !end.Before(h.End) {
		end = end.Add(-h.Step)
	}
	start := end.Add(-h.Span).Add(h.Step)
	offlineAt := h.End.Add(-OfflineAgo)
	res := Imported{Start: start}

	for _, host := range f.Hosts {
		if err := st.SetHostMeta(host.Name, host.Meta); err != nil {
			return res, fmt.Errorf("set the names of the demo's hosts: %w", err)
		}
	}
	total := 0
	for _, host := range f.Hosts {
		total += len(host.Sensors) * int(h.Span/h.Step)
	}
	// The model makes the next batch while the store commits this one.
	batches := make(chan []schema.Reading, 2)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		defer close(batches)
		rs := make([]schema.Reading, 0, importBatch+64)
		for t := start; !t.After(end); t = t.Add(h.Step) {
			for _, host := range f.Hosts {
				if host.Name == OfflineHost && !t.Before(offlineAt) {
					continue
				}
				for _, s := range host.Sensors {
					rs = append(rs, f.Reading(host, s, t))
				}
			}
			if len(rs) >= importBatch {
				select {
				case batches <- rs:
				case <-stop:
					return
				}
				rs = make([]schema.Reading, 0, importBatch+64)
			}
		}
		select {
		case batches <- rs:
		case <-stop:
		}
	}()
	batch := &store.Batch{Imported: true}
	commit := func() error {
		if _, err := st.Commit(batch); err != nil {
			return fmt.Errorf("store the demo's history: %w", err)
		}
		res.Readings += len(batch.Readings)
		if h.Progress != nil {
			h.Progress(res.Readings, total)
		}
		return nil
	}
	for rs := range batches {
		batch.Readings = rs
		if err := commit(); err != nil {
			return res, err
		}
	}
	batch.Readings = nil

	// What the rules would have decided, replayed over the same model.
	series := func(sensor string, hosts []string, fn func(*schema.Reading) error) error {
		for _, host := range f.Hosts {
			if len(hosts) > 0 && !slices.Contains(hosts, host.Name) || !slices.Contains(host.Sensors, sensor) {
				continue
			}
			for t := start; !t.After(end); t = t.Add(h.Step) {
				if host.Name == OfflineHost && !t.Before(offlineAt) {
					break
				}
				r := f.Reading(host, sensor, t)
				if err := fn(&r); err != nil {
					return err
				}
			}
		}
		return nil
	}
	err := rules.Replay(h.Rules, series, func(o rules.Outcome) error {
		batch.Readings = append(batch.Readings, o.Reading())
		res.Outcomes++
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("replay the demo's rules: %w", err)
	}
	if err := commit(); err != nil {
		return res, err
	}
	res.Readings -= res.Outcomes

	// The studio's power went: the broker published its last will.
	lost := &store.Batch{Statuses: []store.StatusUpdate{{Host: OfflineHost,
		Status: schema.Status{State: schema.StateLost, Time: offlineAt.Truncate(time.Second).Add(37 * time.Second)}}}}
	if _, err := st.Commit(lost); err != nil {
		return res, fmt.Errorf("store the offline host's status: %w", err)
	}
	// Readings would otherwise wait in the heads and the log until their
	// age: an import leaves only chunks.
	if sealer, ok := st.(store.Sealer); ok {
		if err := sealer.SealAll(); err != nil {
			return res, fmt.Errorf("seal the demo's history: %w", err)
		}
	}
	return res, nil
}

package store

import (
	"encoding/json"
	"slices"
	"strconv"
	"time"
)

// HostRecord is what an engine keeps about a host besides its readings,
// as the commit rules (commitrules.go) change it.
type HostRecord struct {
	State     string    `json:"state,omitempty"`
	StateTime time.Time `json:"state_time,omitzero"`
	Version   string    `json:"version,omitempty"`
	LastSeen  time.Time `json:"last_seen,omitzero"`
	SeqState
	Sensors    map[string]*SensorStats `json:"sensors,omitempty"`
	Meta       HostMeta                `json:"meta,omitzero"`
	Aggregator string                  `json:"aggregator,omitempty"`
}

// AppendJSON appends h as encoding/json would encode it (the test checks
// they agree): that took a third of a fleet commit's time, most of it
// reflection.
func (h *HostRecord) AppendJSON(b []byte) ([]byte, error) {
	b = append(b, '{')
	first := true
	field := func(name string) {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, '"')
		b = append(b, name...)
		b = append(b, `":`...)
	}
	var err error
	if h.State != "" {
		field("state")
		b = appendJSONString(b, h.State)
	}
	if !h.StateTime.IsZero() {
		field("state_time")
		if b, err = appendJSONTime(b, h.StateTime); err != nil {
			return nil, err
		}
	}
	if h.Version != "" {
		field("version")
		b = appendJSONString(b, h.Version)
	}
	if !h.LastSeen.IsZero() {
		field("last_seen")
		if b, err = appendJSONTime(b, h.LastSeen); err != nil {
			return nil, err
		}
	}
	field("watermark")
	b = strconv.AppendUint(b, h.Watermark, 10)
	if h.HasMark {
		field("has_mark")
		b = append(b, "true"...)
	}
	if h.MaxSeq != 0 {
		field("max_seq")
		b = strconv.AppendUint(b, h.MaxSeq, 10)
	}
	if h.Lost != 0 {
		field("lost")
		b = strconv.AppendUint(b, h.Lost, 10)
	}
	if h.Spool != "" {
		field("spool")
		b = appendJSONString(b, h.Spool)
	}
	if h.PendingFloor != 0 {
		field("pending_floor")
		b = strconv.AppendUint(b, h.PendingFloor, 10)
	}
	if len(h.Sensors) > 0 {
		field("sensors")
		names := make([]string, 0, len(h.Sensors))
		for name := range h.Sensors {
			names = append(names, name)
		}
		slices.Sort(names)
		b = append(b, '{')
		for i, name := range names {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, name)
			b = append(b, ':')
			st := h.Sensors[name]
			if st == nil {
				b = append(b, "null"...)
				continue
			}
			b = append(b, `{"count":`...)
			b = strconv.AppendUint(b, st.Count, 10)
			b = append(b, `,"last":`...)
			if b, err = appendJSONTime(b, st.Last); err != nil {
				return nil, err
			}
			b = append(b, '}')
		}
		b = append(b, '}')
	}
	if !h.Meta.IsZero() {
		// Set by hand, rarely: encoding/json is fast enough.
		field("meta")
		m, err := json.Marshal(h.Meta)
		if err != nil {
			return nil, err
		}
		b = append(b, m...)
	}
	if h.Aggregator != "" {
		field("aggregator")
		b = appendJSONString(b, h.Aggregator)
	}
	return append(b, '}'), nil
}

// appendJSONString appends s quoted; anything encoding/json would escape
// goes through it.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

func appendJSONTime(b []byte, t time.Time) ([]byte, error) {
	if y := t.Year(); y < 0 || y > 9999 {
		q, err := json.Marshal(t) // its error, word for word
		return append(b, q...), err
	}
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"'), nil
}

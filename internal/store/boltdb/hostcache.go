package boltdb

import (
	"encoding/json"
	"slices"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Host records are kept decoded in memory between commits: under a fleet's
// tick every commit touches most hosts once, and decoding each host's JSON
// record again at every commit cost more than storing its readings. Write
// transactions (one at a time; readers read the file) change the cached
// records in place; a transaction that does not commit drops every record
// it touched from the cache, so the next one decodes it again from the
// file as bbolt rolled it back. (Copying each record instead cost a tenth
// of the commit.)

// maxCachedHosts bounds the cache; past it the cache starts again empty.
const maxCachedHosts = 200_000

// host returns host name's record for this transaction to change, from
// the cache or decoded from b.
func (ht *headTx) host(b *bolt.Bucket, name string) (*hostRecord, error) {
	if h, ok := ht.hosts[name]; ok && h != nil {
		return h, nil
	}
	if h, ok := ht.h.hosts[name]; ok {
		ht.hosts[name] = h
		return h, nil
	}
	h, err := getHost(b, name)
	if err != nil {
		return nil, err
	}
	ht.hosts[name] = h
	return h, nil
}

// putHost writes host name's record, as changed by this transaction.
func (ht *headTx) putHost(b *bolt.Bucket, name string, h *hostRecord) error {
	v, err := h.appendJSON(nil)
	if err != nil {
		return err
	}
	ht.hosts[name] = h
	return b.Put([]byte(name), v)
}

// deleteHost removes host name's record.
func (ht *headTx) deleteHost(b *bolt.Bucket, name string) error {
	ht.hosts[name] = nil
	return b.Delete([]byte(name))
}

// publishHosts makes the committed transaction's records the cached ones.
func (ht *headTx) publishHosts() {
	cache := ht.h.hosts
	if len(cache)+len(ht.hosts) > maxCachedHosts {
		clear(cache)
	}
	for name, h := range ht.hosts {
		if h == nil {
			delete(cache, name)
			continue
		}
		cache[name] = h
	}
}

// abortHosts forgets what a transaction that did not commit touched.
func (ht *headTx) abortHosts() {
	for name := range ht.hosts {
		delete(ht.h.hosts, name)
	}
}

// appendJSON appends h as encoding/json would encode it (the test checks
// they agree): that took a third of a fleet commit's time, most of it
// reflection.
func (h *hostRecord) appendJSON(b []byte) ([]byte, error) {
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

package boltdb

import (
	"encoding/json"

	bolt "go.etcd.io/bbolt"

	"github.com/apd-telemetry/apd/internal/store"
)

// Host records are kept decoded in memory between commits: under a fleet's
// tick every commit touches most hosts once, and decoding each host's JSON
// record again at every commit cost more than storing its readings. A
// transaction works on copies; they replace the cached records only once
// its bbolt transaction has committed, so a failed commit leaves the cache
// as the file is.

// maxCachedHosts bounds the cache; past it the cache starts again empty.
const maxCachedHosts = 200_000

// host returns host name's record for this transaction to change: its
// own copy, from the cache or decoded from b.
func (ht *headTx) host(b *bolt.Bucket, name string) (*hostRecord, error) {
	if h, ok := ht.hosts[name]; ok && h != nil {
		return h, nil
	}
	if h, ok := ht.h.hosts[name]; ok {
		c := h.clone()
		ht.hosts[name] = c
		return c, nil
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
	v, err := json.Marshal(h)
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

func (h *hostRecord) clone() *hostRecord {
	c := *h
	c.Sensors = make(map[string]*store.SensorStats, len(h.Sensors))
	for k, v := range h.Sensors {
		s := *v
		c.Sensors[k] = &s
	}
	return &c
}

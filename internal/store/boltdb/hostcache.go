package boltdb

import (
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
	v, err := h.AppendJSON(nil)
	if err != nil {
		return err
	}
	ht.hosts[name] = h
	if ht.hostBytes != nil {
		ht.hostBytes[name] = v
	}
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

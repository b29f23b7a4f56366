// Package store keeps readings in a bbolt file and answers range scans over
// them.
//
// # Basics
//
// [Open] creates or opens a database and runs the migrations its schema
// version needs. The aggregator writes through [Store.Commit], one
// transaction per batch (group commit: one fsync for the whole batch).
// [Store.Scan] streams the readings of a [store.Query] in order: by sensor, then
// host, then time.
//
// # Layout
//
//	meta/schema                    schema version, decimal
//	readings/<sensor>/<host>/<ts>  one record per reading: its JSON without
//	                               v, host, sensor and ts, which the keys hold
//	hosts/<host>                   JSON hostRecord: state, watermark, counts
//	pending/<host>/<seq>           committed seqs above the host's watermark
//	dead/<n>                       JSON store.DeadLetter
//
// A time key is the millisecond Unix time as 8 big-endian bytes with the
// sign bit flipped, so byte order is time order and a time range is a cursor
// seek.
//
// # Caveats
//
// bbolt allows one process at a time: while an aggregator holds the file,
// Open fails with [store.ErrLocked] after Options.Timeout.
package boltdb

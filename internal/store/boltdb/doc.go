// Package boltdb is apd's embedded storage engine: one bbolt file, no
// configuration, years of a household's readings on a Pi. It implements
// the storage contract (package store, its conformance suite in
// store/storetest) and also store.Backuper.
//
// # Basics
//
// [Open] creates or opens a database and runs the migrations its schema
// version needs; a read-only open of a file that needs one says so. The
// aggregator writes through [Store.Commit], one transaction per batch
// (group commit: one fsync for the whole batch). A live series' newest
// readings live in the head (head.go): rows in memory and one
// write-ahead log record per commit in the same file, sealed into chunks
// by size and age, replayed by Open. [Store.Scan] streams the
// readings of a store.Query in order: by sensor, then host, then time.
// [Compact] rewrites a file to give back the space of deleted readings;
// [Verify] checks a file (a backup) page by page.
//
// # Layout (schema 3)
//
//	meta/schema                      schema version, decimal
//	meta/dead_count, dead_bytes, dead_dropped   dead-letter accounting
//	meta/log_next                    the number of the next log record
//	readings/<sensor>/<host>/<ts>    a chunk (package store/chunk) of up to
//	                                 512 readings, keyed by its first time
//	hosts/<host>                     JSON hostRecord: state, store.SeqState, counts
//	pending/<host>/<seq>             committed seqs above the host's watermark
//	dead/<n>                         JSON store.DeadLetter
//	log/<n>                          a commit's head rows: its time, then per
//	                                 series sensor, host, count, rows
//	headmeta/<sensor>\x00<host>      the log record its head was last sealed at
//	quarantine/<sensor>/<host>/<ts>  chunks that did not decode, as found
//
// A time key is the millisecond Unix time as 8 big-endian bytes with the
// sign bit flipped, so byte order is time order and a time range is a cursor
// seek. Schema 1 kept one JSON record per reading, schema 2 had no head; Open
// migrates both.
//
// # Caveats
//
// bbolt allows one writing process at a time: while an aggregator holds
// the file, Open fails with store.ErrLocked after Options.Timeout. The
// file grows in 64 KiB steps, not bbolt's doubling, so a bound on what part
// of it holds (dead letters) bounds the file.
package boltdb

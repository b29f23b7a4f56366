// Package pgstore is the PostgreSQL storage engine: the storage contract
// (package store) on a PostgreSQL database, for fleets that outgrow one
// machine's file — several aggregators writing at once, replication, SQL
// for the analyst next door. It passes the same conformance suite as the
// embedded engine (storetest).
//
// Layout (schema version 3, migrations applied on open):
//
//	apd_meta(key, value)                 the schema version
//	apd_series(id, sensor, host)         one row per series
//	apd_readings(series_id, ts, seq, payload)
//	                                     the days being written: one row
//	                                     per reading, partitioned by day of
//	                                     ts (ms since the epoch):
//	                                     apd_readings_pYYYYMMDD, made as
//	                                     readings of that day arrive
//	apd_packed(series_id, hour, n, chunk, summary)
//	                                     finished days: one row per series
//	                                     and hour, its readings in the
//	                                     embedded engine's chunk encoding
//	                                     and their sums per 15 minutes,
//	                                     partitioned by day (packed.go)
//	apd_packing(day, done)               the days packed or being packed
//	apd_hosts(host, record)              store.HostRecord as JSON
//	apd_pending(host, seq)               seqs committed above a host's gap
//	apd_dead(id, record, cost), apd_dead_stats
//
// A commit is one transaction: the batch's host rows are locked in host
// order (so aggregators writing the same hosts wait for each other rather
// than deadlock), the readings are copied into a temporary staging table
// and inserted with ON CONFLICT DO NOTHING — or, for a packed day, merged
// into their hour's block — and the watermarks move by the shared commit
// rules (store.AdvanceWatermarks) in the same transaction: a reading and
// its acknowledgement commit together. Pack, run hourly by the server,
// moves each finished day from rows into blocks a few series per
// transaction; readings of days long over go straight into blocks.
//
// Claims (claims.go) divides numbered partitions of work among the
// aggregators on one database, with session advisory locks.
package pgstore

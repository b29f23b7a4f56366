// Package archtest holds no code: its tests keep docs/architecture.md's
// package table true of the module — a row for every package, imports
// that only point to rows below, and nothing linked that a row forbids
// (the device binary links no server-side package, the ingestion core
// no MQTT or NATS library, the storage contract no engine).
package archtest

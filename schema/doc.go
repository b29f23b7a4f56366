// Package schema is the wire contract of apd, version 1: the MQTT topics
// readings travel on, the JSON payload of a reading and of a host's status,
// the rules for host and sensor names, canonical units and their conversions,
// and the human formatting of values.
//
// Every other part of apd depends on this package; it depends on nothing of
// apd's own, so a third-party consumer can decode apd traffic by importing it
// alone.
//
// # Basics
//
// A reading travels on apd/<host>/<sensor> as a JSON object:
//
//	{"v":1,"host":"pi-kitchen","sensor":"temperature","title":"Ambient Temperature",
//	 "ts":"2026-11-23T10:15:00.000Z","seq":1042,
//	 "value":{"magnitude":21.3,"unit":"degC"},"human":"21.3 °C (70.3 °F)"}
//
// [Decode] turns any payload a device may send (a full v1 reading, a bare
// JSON value, an object without "v") into a [Reading]; [Reading.AppendJSON]
// writes the canonical v1 form back, byte for byte the same for the same
// reading.
//
// # Caveats
//
// Timestamps have millisecond resolution: finer digits are truncated on
// decode, so two readings of one sensor within the same millisecond are the
// same reading.
package schema

// Package faults holds apd's fault-injection tests: real binaries (apd
// broker, apd aggregate, several apd-publish) on loopback, with processes
// killed and restarted and malformed input published alongside, checked
// for exactly-once storage afterwards. `make test-faults` runs the long
// form; `go test` runs a short one.
package faults

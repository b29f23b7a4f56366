// Package bench holds apd's benchmarks (make bench). They measure the real
// binaries and the real store; results and the commands that produced them
// are reported in docs/benchmarks.md.
package bench

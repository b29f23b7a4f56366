//go:build !linux

package faults

import "testing"

// onTmpfs reports whether dir is on a tmpfs; only Linux's is known.
func onTmpfs(*testing.T, string) bool { return false }

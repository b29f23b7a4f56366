// Package publishmain is the whole apd-publish program behind one call, so
// that a custom build can add compiled-in sensors to it:
//
//	package main
//
//	import (
//		"github.com/apd-telemetry/apd/cmd/apd-publish/publishmain"
//		_ "github.com/apd-telemetry/apd/publisher/sensors/all" // the built-ins
//		_ "example.com/greenhouse/soil_moisture"               // yours
//	)
//
//	func main() { publishmain.Main() }
//
// See docs/plugins.md.
package publishmain

import (
	"io"
	"os"
	"runtime/debug"

	"github.com/apd-telemetry/apd/internal/agent"
)

// Main runs apd-publish with the process's arguments and exits with its
// exit code.
func Main() {
	if os.Getenv("GOGC") == "" {
		// The publisher's live heap is a few hundred KiB; Go's default lets
		// the heap grow to twice that between collections, which on a Pi
		// Zero's 512 MB is memory better left to others. At one reading per
		// sensor per interval the extra collections cost nothing visible.
		debug.SetGCPercent(50)
	}
	os.Exit(Run(os.Args[1:], os.Stdout, os.Stderr))
}

// Run runs apd-publish with args and returns its exit code. The sensors
// are those registered with publisher.Register by the imported packages.
func Run(args []string, stdout, stderr io.Writer) int {
	return agent.MainPublish(args, stdout, stderr)
}

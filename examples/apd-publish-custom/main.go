// Command apd-publish-custom is apd-publish with one more compiled-in
// sensor, wifi_signal: the whole of a custom build (docs/plugins.md).
//
//	go build -o apd-publish ./examples/apd-publish-custom
//	./apd-publish --sensors wifi_signal,cpu_load --dry-run
package main

import (
	"github.com/apd-telemetry/apd/cmd/apd-publish/publishmain"
	_ "github.com/apd-telemetry/apd/examples/wifi_signal"  // registers wifi_signal from init
	_ "github.com/apd-telemetry/apd/publisher/sensors/all" // the built-in sensors
)

func main() { publishmain.Main() }

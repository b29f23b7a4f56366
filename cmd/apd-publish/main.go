// Command apd-publish samples a device's sensors and publishes the readings
// over MQTT; see apd-publish --help.
package main

import (
	"github.com/apd-telemetry/apd/cmd/apd-publish/publishmain"
	_ "github.com/apd-telemetry/apd/publisher/sensors/all"
)

func main() { publishmain.Main() }

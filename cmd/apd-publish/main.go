// Command apd-publish samples a device's sensors and publishes the readings
// over MQTT; see apd-publish --help.
package main

import (
	"os"

	"github.com/apd-telemetry/apd/internal/cli"
	_ "github.com/apd-telemetry/apd/publisher/sensors/all"
)

func main() { os.Exit(cli.MainPublish(os.Args[1:], os.Stdout, os.Stderr)) }

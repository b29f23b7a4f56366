// Command apd runs the apd broker, aggregator and tools; see apd --help.
package main

import (
	"os"

	"github.com/apd-telemetry/apd/internal/apdcmd"
	_ "github.com/apd-telemetry/apd/publisher/sensors/all"
)

func main() { os.Exit(apdcmd.MainAPD(os.Args[1:], os.Stdout, os.Stderr)) }

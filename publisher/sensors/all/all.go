// Package all registers every built-in sensor. Import it for its side
// effect:
//
//	import _ "github.com/apd-telemetry/apd/publisher/sensors/all"
package all

import (
	_ "github.com/apd-telemetry/apd/publisher/sensors/ac_connected"
	_ "github.com/apd-telemetry/apd/publisher/sensors/battery_level"
	_ "github.com/apd-telemetry/apd/publisher/sensors/cpu_load"
	_ "github.com/apd-telemetry/apd/publisher/sensors/cpu_temperature"
	_ "github.com/apd-telemetry/apd/publisher/sensors/dht"
	_ "github.com/apd-telemetry/apd/publisher/sensors/disk_usage"
	_ "github.com/apd-telemetry/apd/publisher/sensors/ds18b20"
	_ "github.com/apd-telemetry/apd/publisher/sensors/ip_addresses"
	_ "github.com/apd-telemetry/apd/publisher/sensors/load_average"
	_ "github.com/apd-telemetry/apd/publisher/sensors/ram_available"
	_ "github.com/apd-telemetry/apd/publisher/sensors/uptime"
	_ "github.com/apd-telemetry/apd/publisher/sensors/version"
)

package cli

import "io"

// VersionCmd prints the version.
type VersionCmd struct{}

// Run implements the command.
func (VersionCmd) Run(g *Globals) error {
	_, err := io.WriteString(g.Stdout(), "apd "+Version+"\n")
	return err
}

// PublishRoot is the command tree of apd-publish.
type PublishRoot struct {
	Globals
	PublishCmd
}

// MainPublish runs the apd-publish binary.
func MainPublish(args []string, stdout, stderr io.Writer) int {
	var root PublishRoot
	// The file may also hold apd's own sections: apd checks those.
	keys := Keys(&PublishRoot{})
	for _, section := range []string{"server", "aggregator", "client"} {
		keys[section+".*"] = true
	}
	return Main("apd-publish", "apd-publish: sample this device's sensors and publish readings over MQTT.",
		&root, &root.Globals, args, stdout, stderr, keys, nil)
}

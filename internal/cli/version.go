package cli

import "io"

// VersionCmd prints the version.
type VersionCmd struct{}

// Run implements the command.
func (VersionCmd) Run(g *Globals) error {
	_, err := io.WriteString(g.Stdout(), "apd "+Version+"\n")
	return err
}

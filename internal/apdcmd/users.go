package apdcmd

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/apd-telemetry/apd/broker"
	"github.com/apd-telemetry/apd/internal/cli"
	"github.com/apd-telemetry/apd/schema"
	"golang.org/x/term"
)

// UsersCmd is apd users.
type UsersCmd struct {
	Add    UsersAddCmd    `cmd:"" help:"Add a broker user, or change one's role or password."`
	List   UsersListCmd   `cmd:"" help:"List the broker users."`
	Remove UsersRemoveCmd `cmd:"" help:"Remove a broker user."`
}

// UsersFileFlag names the users file.
type UsersFileFlag struct {
	UsersFile string `help:"The broker's users file (bcrypt hashes, mode 0600)." required:"" placeholder:"FILE" type:"path" config:"server.users_file"`
}

// UsersAddCmd is apd users add.
type UsersAddCmd struct {
	UsersFileFlag
	Name         string `arg:"" help:"User name (the MQTT user name)."`
	Role         string `help:"device, reader, aggregator or admin." required:"" enum:"device,reader,aggregator,admin"`
	Host         string `help:"The device's host name (role device)." placeholder:"NAME"`
	PasswordFile string `help:"Read the password from this file instead of prompting." placeholder:"FILE" type:"existingfile"`
}

// Help implements kong's HelpProvider.
func (UsersAddCmd) Help() string {
	return `Adds a user to the broker's users file (created if missing), or replaces
one. The password is prompted for on a terminal, or read from a file; it is
never taken as a flag value, and only its bcrypt hash is stored. A running
broker reads the file again on SIGHUP.

Roles: device (publishes only under apd/<host>/#, subscribes only to its own
apd/<host>/$ack), reader (subscribes to apd/#), aggregator (subscribes to
apd/#, publishes only $ack topics), admin (everything).

Examples:
  apd users add pi-kitchen --role device --host pi-kitchen --users-file /etc/apd/users
  apd users add aggregator --role aggregator --users-file /etc/apd/users --password-file agg.pw`
}

func readNewPassword(file string) ([]byte, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("read password file: %w", err)
		}
		pw := bytes.TrimRight(b, "\r\n")
		if len(pw) == 0 {
			return nil, errors.New("password file is empty")
		}
		return pw, nil
	}
	fd := int(os.Stdin.Fd())
	if !term.IsTerminal(fd) {
		return nil, cli.WithCode(cli.ExitUsage, errors.New("no terminal to prompt for the password"), "pass --password-file")
	}
	fmt.Fprint(os.Stderr, "Password: ")
	pw, err := term.ReadPassword(fd)
	fmt.Fprintln(os.Stderr)
	if err != nil {
		return nil, fmt.Errorf("read password: %w", err)
	}
	fmt.Fprint(os.Stderr, "Again: ")
	again, err := term.ReadPassword(fd)
	fmt.Fprintln(os.Stderr)
	if err != nil {
		return nil, fmt.Errorf("read password: %w", err)
	}
	if !bytes.Equal(pw, again) {
		return nil, errors.New("the passwords differ")
	}
	if len(pw) == 0 {
		return nil, errors.New("empty password")
	}
	return pw, nil
}

func loadOrNewUsers(path string) (*broker.Users, error) {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return broker.NewUsers(), nil
	}
	return broker.LoadUsers(path)
}

// Run implements the command.
func (c *UsersAddCmd) Run(g *cli.Globals) error {
	role := broker.Role(c.Role)
	if role == broker.RoleDevice {
		if c.Host == "" {
			return cli.WithCode(cli.ExitUsage, errors.New("a device user needs --host"), "")
		}
		if err := schema.ValidateName(c.Host); err != nil {
			return cli.WithCode(cli.ExitUsage, fmt.Errorf("--host: %w", err), "")
		}
	} else if c.Host != "" {
		return cli.WithCode(cli.ExitUsage, fmt.Errorf("--host is for devices, not role %s", role), "")
	}
	us, err := loadOrNewUsers(c.UsersFile)
	if err != nil {
		return err
	}
	pw, err := readNewPassword(c.PasswordFile)
	if err != nil {
		return err
	}
	if err := us.Set(c.Name, role, c.Host, pw); err != nil {
		return cli.WithCode(cli.ExitUsage, err, "")
	}
	if err := us.Save(c.UsersFile); err != nil {
		return err
	}
	fmt.Fprintf(g.Stdout(), "user %s (%s) saved in %s; send SIGHUP to a running broker to apply\n", c.Name, role, c.UsersFile)
	return nil
}

// UsersListCmd is apd users list.
type UsersListCmd struct {
	UsersFileFlag
}

// Run implements the command.
func (c *UsersListCmd) Run(g *cli.Globals) error {
	us, err := broker.LoadUsers(c.UsersFile)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(g.Stdout(), 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "USER\tROLE\tHOST")
	for _, u := range us.List() {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", u.Name, u.Role, strings.TrimSpace(u.Host+" "))
	}
	return tw.Flush()
}

// UsersRemoveCmd is apd users remove.
type UsersRemoveCmd struct {
	UsersFileFlag
	Name string `arg:"" help:"User to remove."`
}

// Run implements the command.
func (c *UsersRemoveCmd) Run(g *cli.Globals) error {
	us, err := broker.LoadUsers(c.UsersFile)
	if err != nil {
		return err
	}
	if err := us.Remove(c.Name); err != nil {
		return err
	}
	if err := us.Save(c.UsersFile); err != nil {
		return err
	}
	fmt.Fprintf(g.Stdout(), "user %s removed from %s\n", c.Name, c.UsersFile)
	return nil
}

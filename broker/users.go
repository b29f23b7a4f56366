package broker

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/apd-telemetry/apd/schema"
	"golang.org/x/crypto/bcrypt"
)

// Role says what a broker user may do (see ACL).
type Role string

// The roles.
const (
	// RoleDevice publishes only under <prefix>/<its host>/# and subscribes
	// only to its own <prefix>/<host>/$ack.
	RoleDevice Role = "device"
	// RoleReader subscribes to <prefix>/#.
	RoleReader Role = "reader"
	// RoleAggregator subscribes to <prefix>/# and publishes only $ack topics.
	RoleAggregator Role = "aggregator"
	// RoleAdmin may do everything.
	RoleAdmin Role = "admin"
)

// Roles lists the valid roles.
var Roles = []Role{RoleDevice, RoleReader, RoleAggregator, RoleAdmin}

// User is one entry of a users file.
type User struct {
	Name string
	Role Role
	// Host is the device's host name (RoleDevice only).
	Host string
	// Hash is the bcrypt hash of the password; the password itself is
	// never stored.
	Hash []byte
}

// CheckPassword reports whether password is the user's.
func (u User) CheckPassword(password []byte) bool {
	return bcrypt.CompareHashAndPassword(u.Hash, password) == nil
}

// Users is the content of a users file: one user per line,
// "name role host bcrypt-hash", host "-" for roles without one.
type Users struct {
	byName map[string]User
}

// ErrNoSuchUser is returned by Remove for an unknown name.
var ErrNoSuchUser = errors.New("no such user")

// NewUsers returns an empty set.
func NewUsers() *Users { return &Users{byName: map[string]User{}} }

// LoadUsers reads a users file. A missing file is an error; use NewUsers
// to start one.
func LoadUsers(path string) (*Users, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read users file: %w", err)
	}
	us := NewUsers()
	sc := bufio.NewScanner(bytes.NewReader(b))
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		f := strings.Fields(text)
		if len(f) != 4 {
			return nil, fmt.Errorf("users file %s line %d: want \"name role host hash\"", path, line)
		}
		u := User{Name: f[0], Role: Role(f[1]), Host: f[2], Hash: []byte(f[3])}
		if u.Host == "-" {
			u.Host = ""
		}
		if err := u.validate(); err != nil {
			return nil, fmt.Errorf("users file %s line %d: %w", path, line, err)
		}
		us.byName[u.Name] = u
	}
	return us, nil
}

func (u User) validate() error {
	if u.Name == "" || len(u.Name) > 128 || !utf8.ValidString(u.Name) || strings.ContainsAny(u.Name, "#") ||
		strings.IndexFunc(u.Name, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		return fmt.Errorf("user name %q: 1–128 characters, no spaces, control characters or #", u.Name)
	}
	valid := false
	for _, r := range Roles {
		valid = valid || r == u.Role
	}
	if !valid {
		return fmt.Errorf("user %s: role %q (want device, reader, aggregator or admin)", u.Name, u.Role)
	}
	if u.Role == RoleDevice && u.Host == "" {
		return fmt.Errorf("user %s: a device needs its host", u.Name)
	}
	if u.Host != "" {
		if err := schema.ValidateName(u.Host); err != nil {
			return fmt.Errorf("user %s: host: %w", u.Name, err)
		}
	}
	if _, err := bcrypt.Cost(u.Hash); err != nil {
		return fmt.Errorf("user %s: not a bcrypt hash", u.Name)
	}
	return nil
}

// Lookup returns the user called name.
func (us *Users) Lookup(name string) (User, bool) {
	u, ok := us.byName[name]
	return u, ok
}

// List returns the users sorted by name.
func (us *Users) List() []User {
	out := make([]User, 0, len(us.byName))
	for _, u := range us.byName {
		out = append(out, u)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Set adds or replaces a user, hashing password with bcrypt.
func (us *Users) Set(name string, role Role, host string, password []byte) error {
	if len(password) == 0 {
		return errors.New("empty password")
	}
	hash, err := bcrypt.GenerateFromPassword(password, bcrypt.DefaultCost)
	if err != nil {
		return fmt.Errorf("hash password: %w", err)
	}
	u := User{Name: name, Role: role, Host: host, Hash: hash}
	if err := u.validate(); err != nil {
		return err
	}
	us.byName[name] = u
	return nil
}

// Remove deletes the user called name.
func (us *Users) Remove(name string) error {
	if _, ok := us.byName[name]; !ok {
		return fmt.Errorf("%w: %s", ErrNoSuchUser, name)
	}
	delete(us.byName, name)
	return nil
}

// Save writes the users to path atomically (a temporary file renamed over
// it) with mode 0600.
func (us *Users) Save(path string) error {
	var b strings.Builder
	b.WriteString("# apd broker users: name role host bcrypt-hash (written by apd users)\n")
	for _, u := range us.List() {
		host := u.Host
		if host == "" {
			host = "-"
		}
		fmt.Fprintf(&b, "%s %s %s %s\n", u.Name, u.Role, host, u.Hash)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write users file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("write users file: %w", err)
	}
	if _, err := tmp.WriteString(b.String()); err != nil {
		tmp.Close()
		return fmt.Errorf("write users file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write users file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write users file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write users file: %w", err)
	}
	return nil
}
